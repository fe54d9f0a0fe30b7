"""Typed events on the command line: ``polyn schemas codegen``, ``schemas check --codegen``.

:mod:`polyn.cli` registers them with :func:`add_codegen_command` and :func:`add_check_option`
and calls :func:`check_codegen` from ``schemas check``; everything else lives here.

``polyn schemas codegen [DIR] [--from-bucket] [--out PATH] [--check]`` writes the module of
:func:`polyn.typed.codegen.generate_module` for the schemas of DIR (default: the config's
``schemas_dir``) or, with ``--from-bucket``, of the schema bucket. ``--out`` is a ``.py`` file, a
package folder (its ``__init__.py`` is written) or a dotted module name (``examples.shop.events``
is ``examples/shop/events.py``); without it the module is printed. ``--check`` writes nothing
and fails when the file differs from what would be written (for CI).

``polyn schemas check --codegen MODULE`` reads a generated module **without importing it** and
judges each class against the schema it will meet: the folder's schema of that message, or the
bucket's when the folder has none. Another hash is a warning (stale); a breaking change
(:mod:`polyn.schema_compat` rules, the class's schema as the old one) fails the check.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from polyn.errors import BucketNotFoundError, ConfigError, PolynError, SchemaError, SchemaStoreError
from polyn.schema_compat import breaking_changes
from polyn.typed._schema import schema_hash

if TYPE_CHECKING:
    from polyn.config import Config
    from polyn.nats.transport import Transport
    from polyn.schema_loader import SchemaFile

__all__ = ["add_check_option", "add_codegen_command", "check_codegen", "codegen_command"]

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def add_codegen_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
) -> None:
    """Add ``codegen`` to the ``polyn schemas`` subcommands (``config``: the shared flags)."""
    command = commands.add_parser(
        "codegen",
        parents=[config],
        help="write one frozen class per schema (typed events)",
        description=(
            "Write a Python module with one frozen dataclass per message schema "
            "(datamodel-code-generator; needs the codegen extra: pip install 'polyn[codegen]')."
        ),
    )
    command.add_argument(
        "dir", nargs="?", help="the schemas folder (default: the config's schemas_dir)"
    )
    command.add_argument(
        "--from-bucket",
        action="store_true",
        help="read the schemas from the schema bucket instead of a folder",
    )
    command.add_argument(
        "--out",
        metavar="PATH",
        help="a .py file, a package folder or a dotted module name (default: print the module)",
    )
    command.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail when --out is not what would be written",
    )
    command.set_defaults(handler=codegen_command)


def add_check_option(check: argparse.ArgumentParser) -> None:
    """Add ``--codegen MODULE`` to ``polyn schemas check``."""
    check.add_argument(
        "--codegen",
        metavar="MODULE",
        help="also judge a module written by `polyn schemas codegen` (a .py file or dotted name)",
    )


# -- polyn schemas codegen ---------------------------------------------------------------------


def output_path(out: str) -> Path:
    """Where ``--out`` writes: a ``.py`` file, ``<folder>/__init__.py``, or a dotted name's file."""
    path = Path(out)
    if out.endswith(".py"):
        return path
    if out.endswith(("/", "\\")) or path.is_dir():
        return path / "__init__.py"
    if _DOTTED.fullmatch(out):
        return Path(*out.split(".")).with_suffix(".py")
    raise ConfigError(
        f"--out {out!r} is neither a .py file, a folder nor a dotted module name "
        "(examples.shop.events)"
    )


def codegen_command(args: argparse.Namespace) -> int:
    """``polyn schemas codegen``: the handler :mod:`polyn.cli` calls."""
    from polyn.cli import load_config, say
    from polyn.schema_loader import read_schemas
    from polyn.typed import codegen

    codegen._generator()  # the missing extra is reported before anything else happens
    config = load_config(args, service=False)
    if args.from_bucket:
        if args.dir:
            raise ConfigError("Give a schemas folder or --from-bucket, not both")
        documents = _read_bucket(config)
        source = f"the schema bucket {config.schema_store}"
    else:
        folder = args.dir or config.schemas_dir
        documents = {name: f.document for name, f in read_schemas(folder).items()}
        source = f"the schemas folder {Path(folder).as_posix()}"
    if args.check and not args.out:
        raise ConfigError("--check compares with the file --out names; give --out too")
    module = codegen.generate_module(documents, source=source)
    for message, reason in sorted(module.skipped.items()):
        print(f"polyn: warning: no class for {message}: {reason}", file=sys.stderr)
    if not args.out:
        sys.stdout.write(module.text)
        return 0
    path = output_path(args.out)
    current = path.read_text("utf-8") if path.is_file() else None
    if args.check:
        if current != module.text:
            print(
                f"polyn: error: {path} is not what `polyn schemas codegen` writes for {source}; "
                f"regenerate it: polyn schemas codegen ... --out {args.out}",
                file=sys.stderr,
            )
            return 1
        say(f"{path} is up to date with {source}")
        return 0
    if current != module.text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(module.text, encoding="utf-8")
    names = ", ".join(module.classes.values()) or "none"
    say(f"Wrote {path}: {len(module.classes)} classes from {source} ({names})")
    return 0


def _read_bucket(config: Config) -> dict[str, Any]:
    import trio

    from polyn.migration import open_transport

    async def fetch() -> dict[str, bytes]:
        async with open_transport(config) as transport:
            return await _stored(transport, config.schema_store)

    documents = {}
    for name, value in trio.run(fetch).items():
        try:
            documents[name] = json.loads(value)
        except ValueError:
            print(f"polyn: warning: {name} in the bucket is not JSON; skipped", file=sys.stderr)
    return documents


async def _stored(transport: Transport, bucket: str) -> dict[str, bytes]:
    try:
        return await transport.kv_entries(bucket)
    except BucketNotFoundError:
        return {}
    except PolynError as exc:
        raise SchemaStoreError(f"Could not read the schema bucket {bucket}: {exc}") from exc


# -- polyn schemas check --codegen ---------------------------------------------------------------


@attrs.frozen
class GeneratedClass:
    """What a generated module says of one class, read from its source."""

    class_name: str
    message: str
    schema_hash: str
    schema: Any


def module_file(module: str) -> Path:
    """The file of ``module``: a path as given, or the file of a dotted module name."""
    path = Path(module)
    if module.endswith(".py") or path.is_file():
        return path
    if path.is_dir():
        return path / "__init__.py"
    if _DOTTED.fullmatch(module):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return Path(spec.origin)
    raise ConfigError(f"There is no Python module {module!r} (a .py file or a dotted module name)")


def read_generated(path: Path) -> list[GeneratedClass]:
    """The generated classes of the module at ``path``, read with :mod:`ast` (nothing runs).

    Raises :class:`~polyn.SchemaError` when the file is missing, not Python, or has no
    generated class.
    """
    try:
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise SchemaError(f"Cannot read the generated module {path}: {exc}") from exc
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        values: dict[str, Any] = {}
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                if statement.target.id.startswith("__polyn_") and statement.value is not None:
                    try:
                        values[statement.target.id] = ast.literal_eval(statement.value)
                    except ValueError:
                        continue
        message = values.get("__polyn_message__")
        if not isinstance(message, str):
            continue
        try:
            schema = json.loads(values.get("__polyn_schema__", ""))
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"{path}: the schema of {node.name} is not JSON: {exc}") from exc
        found.append(
            GeneratedClass(node.name, message, str(values.get("__polyn_schema_hash__")), schema)
        )
    if not found:
        raise SchemaError(f"{path} has no class written by `polyn schemas codegen`")
    return found


@attrs.frozen
class CodegenVerdict:
    """How one generated class compares with the schema it will meet."""

    generated: GeneratedClass
    where: str | None  # "the schemas folder" / "the bucket"; None: no schema anywhere
    stale: bool
    problems: tuple[str, ...]


def judge_module(
    classes: list[GeneratedClass],
    folder: Mapping[str, Any],
    bucket: Mapping[str, Any],
) -> list[CodegenVerdict]:
    """Judge each class against ``folder[message]``, else ``bucket[message]`` (documents)."""
    verdicts = []
    for generated in classes:
        if generated.message in folder:
            where, schema = "the schemas folder", folder[generated.message]
        elif generated.message in bucket:
            where, schema = "the schema bucket", bucket[generated.message]
        else:
            verdicts.append(CodegenVerdict(generated, None, False, ()))
            continue
        verdicts.append(
            CodegenVerdict(
                generated,
                where,
                stale=schema_hash(schema) != generated.schema_hash,
                problems=tuple(breaking_changes(generated.schema, schema)),
            )
        )
    return verdicts


async def check_codegen(
    transport: Transport,
    config: Config,
    files: Mapping[str, SchemaFile],
    module: str,
    say: Callable[[str], None],
) -> int:
    """``polyn schemas check --codegen MODULE``: report each class; 1 when one cannot read its
    schema any more, else 0."""
    path = module_file(module)
    classes = read_generated(path)
    bucket: dict[str, Any] = {}
    for name, value in (await _stored(transport, config.schema_store)).items():
        try:
            bucket[name] = json.loads(value)
        except ValueError:
            continue
    folder = {name: file.document for name, file in files.items()}
    verdicts = judge_module(classes, folder, bucket)
    say(f"Generated module {path}:")
    for verdict in verdicts:
        about = f"{verdict.generated.class_name} ({verdict.generated.message})"
        if verdict.where is None:
            say(f"  no schema     {about}: neither in the folder nor in the bucket")
        elif verdict.problems:
            say(f"  incompatible  {about} with {verdict.where}:")
            for problem in verdict.problems:
                say(f"                  {problem}")
        elif verdict.stale:
            say(f"  stale         {about}: generated from another, compatible revision")
        else:
            say(f"  up to date    {about}")
    broken = [v for v in verdicts if v.problems]
    stale = [v for v in verdicts if v.stale or v.problems]
    if stale:
        say(f"Regenerate it: polyn schemas codegen --out {module}")
    if broken:
        names = ", ".join(v.generated.class_name for v in broken)
        print(
            f"polyn: error: {path} cannot read the current schema of {names}: a typed consumer "
            "would nak those events. Regenerate the module and update the code that uses it.",
            file=sys.stderr,
        )
        return 1
    return 0
