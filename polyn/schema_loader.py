"""The schema loader: put a folder of payload schemas into the schema bucket (``polyn schemas``).

This is the Ruby polyn-cli's ``SchemaLoader`` in Python (fact sheet §3), plus a compatibility
check. :func:`read_schemas` reads ``DIR/**/*.json`` (other files are ignored) and checks that

- each file is JSON and a valid JSON Schema (draft-07 unless it says otherwise, as the codec
  reads it), else "Invalid JSON Schema document for event <name>";
- each file name (without ``.json``) is a valid message name (``app.widgets.v1``), else
  "Message names must be lowercase, alphanumeric and dot separated";
- no name appears twice across folders, else "There can only be one of each schema name. The
  following schemas were duplicated: ...";

and reports every problem at once (one :class:`~polyn.SchemaError`) before anything is written.
:func:`load_schemas` then creates the bucket when missing (with the config's ``kv_replicas``),
compares each schema with the stored one (:mod:`polyn.schema_compat`), refuses
backwards-incompatible changes unless ``allow_breaking`` (nothing is written then), and puts each
new or changed schema under its name as compact JSON (the file's content re-serialized, key order
kept, as Ruby's ``JSON.generate`` writes it). Keys of the bucket that are not on disk are **kept**
(ADR 0010: the bucket is shared by every service, and another service may own them) unless
``prune`` is given. :func:`check_schemas` does all of it without writing.

Example::

    files = read_schemas("schemas")
    async with polyn.migration.open_transport(config) as transport:
        report = await load_schemas(transport, files, bucket=config.schema_store)
    print(report.summary())
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from polyn._validator import Refused, compile_schema
from polyn.errors import BucketNotFoundError, PolynError, SchemaError, SchemaStoreError
from polyn.naming import is_valid_message_name, subject_matches
from polyn.nats.transport import Transport
from polyn.schema_compat import breaking_changes

__all__ = [
    "LoadReport",
    "Prune",
    "SchemaChange",
    "SchemaFile",
    "check_schemas",
    "init_schemas",
    "load_schemas",
    "read_schemas",
    "readers",
]

Status = Literal["added", "changed", "unchanged", "kept", "removed"]

EXAMPLE_NAME = "user.created.v1"
_EXAMPLE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "description": "A user signed up. The file name is the message name; this is its data.",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
    },
    "required": ["id", "email"],
}


@attrs.frozen
class SchemaFile:
    """One schema read from disk: its message ``name``, ``path`` and JSON ``document``."""

    name: str
    path: Path
    document: Any

    @property
    def text(self) -> str:
        """The value stored in the bucket: compact JSON, keys in the file's order."""
        return json.dumps(self.document, separators=(",", ":"), ensure_ascii=False)


@attrs.frozen
class SchemaChange:
    """What loading does to one key: ``added``, ``changed``, ``unchanged``, ``kept`` (in the
    bucket, not on disk) or ``removed`` (pruned); ``breaking`` lists incompatibilities."""

    name: str
    status: Status
    breaking: tuple[str, ...] = ()
    note: str | None = None


@attrs.frozen
class LoadReport:
    """The outcome of a load or check, one :class:`SchemaChange` per name, sorted by name."""

    bucket: str
    changes: tuple[SchemaChange, ...]
    written: bool

    def by_status(self, status: Status) -> list[str]:
        return [change.name for change in self.changes if change.status == status]

    @property
    def breaking(self) -> list[SchemaChange]:
        return [change for change in self.changes if change.breaking]

    def lines(self) -> list[str]:
        """One line per schema that is not unchanged (for the command line)."""
        out = []
        for change in self.changes:
            if change.status == "unchanged":
                continue
            line = f"{change.status:>9} {change.name}"
            if change.status == "kept":
                line += " (in the bucket, not on disk; --prune removes it)"
            if change.breaking:
                line += " (backwards-incompatible)"
            if change.note:
                line += f" ({change.note})"
            out.append(line)
        return out

    def summary(self) -> str:
        counts = [
            f"{len(self.by_status(status))} {status}"
            for status in ("added", "changed", "unchanged", "kept", "removed")
            if self.by_status(status)
        ]
        verb = "loaded into" if self.written else "checked against"
        return f"{len(self.changes)} schemas {verb} {self.bucket}: " + (
            ", ".join(counts) or "nothing to do"
        )


def read_schemas(directory: str | Path) -> dict[str, SchemaFile]:
    """Every ``*.json`` schema under ``directory`` (recursively), by message name.

    Raises :class:`~polyn.SchemaError` listing every invalid file, invalid name and duplicate,
    one line each: a JSON syntax error names the file, line and column; a schema Polyn does not
    take says why (see :mod:`polyn._validator`: references out of the document, unknown drafts,
    patterns the linear-time engine cannot compile...).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise SchemaError(
            f"There is no schemas folder at {folder}; create one with `polyn schemas init {folder}`"
        )
    problems: list[str] = []
    found: dict[str, list[Path]] = {}
    files: dict[str, SchemaFile] = {}
    for path in sorted(folder.rglob("*.json")):
        if not path.is_file():
            continue
        name = path.name[: -len(".json")]
        if not is_valid_message_name(name):
            problems.append(
                f"Message names must be lowercase, alphanumeric and dot separated, got {name!r} "
                f"({path})"
            )
            continue
        found.setdefault(name, []).append(path)
        problem, document = _read_schema(path)
        if problem is not None:
            problems.append(f"Invalid JSON Schema document for event {name} ({problem})")
            continue
        files[name] = SchemaFile(name, path, document)
    duplicated = {name: paths for name, paths in found.items() if len(paths) > 1}
    if duplicated:
        listed = "\n".join(
            f"  {name}: {', '.join(str(p) for p in paths)}" for name, paths in duplicated.items()
        )
        problems.append(
            "There can only be one of each schema name. The following schemas were duplicated:\n"
            + listed
        )
    if problems:
        raise SchemaError("\n".join(problems))
    return files


def _read_schema(path: Path) -> tuple[str | None, Any]:
    """``(None, document)``, or ``(where and why it is refused, None)`` on one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: {exc}", None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{path}, line {exc.lineno}, column {exc.colno}: {exc.msg}", None
    except (ValueError, RecursionError) as exc:
        return f"{path}: not JSON: {exc}", None
    try:
        compile_schema(document)
    except Refused as exc:
        return f"{path}: {exc}", None
    return None, document


Prune = bool | Collection[str]
"""Which bucket keys that are not on disk to delete: none (False), all (True), or these."""


def _pruned(name: str, prune: Prune) -> bool:
    return prune if isinstance(prune, bool) else name in prune


def plan_changes(
    files: Mapping[str, SchemaFile], stored: Mapping[str, bytes], *, prune: Prune = False
) -> list[SchemaChange]:
    """What loading ``files`` over the bucket contents ``stored`` would do (no I/O).

    Raises :class:`~polyn.SchemaError` when ``prune`` names a key that is on disk or not in the
    bucket (nothing to prune there: a typo, most likely).
    """
    if not isinstance(prune, bool):
        wrong = sorted(name for name in prune if name in files or name not in stored)
        if wrong:
            raise SchemaError(
                "--prune takes keys that are in the bucket and not on disk; not so: "
                + ", ".join(wrong)
                + "\nNothing was written."
            )
    changes = []
    for name in sorted({*files, *stored}):
        if name not in files:
            changes.append(SchemaChange(name, "removed" if _pruned(name, prune) else "kept"))
            continue
        new = files[name].document
        if name not in stored:
            changes.append(SchemaChange(name, "added"))
            continue
        old, note = _stored_document(stored[name])
        if note is not None:
            changes.append(SchemaChange(name, "changed", note=note))
        elif old == new:
            changes.append(SchemaChange(name, "unchanged"))
        else:
            changes.append(SchemaChange(name, "changed", tuple(breaking_changes(old, new))))
    return changes


def _stored_document(value: bytes) -> tuple[Any, str | None]:
    try:
        document = json.loads(value)
    except ValueError:
        return None, "the stored value was not JSON; replaced without a compatibility check"
    definitions = document.get("definitions") if isinstance(document, dict) else None
    required = document.get("required") if isinstance(document, dict) else None
    if isinstance(definitions, dict) and "datadef" in definitions and "id" in (required or ()):
        # A CloudEvent schema with the payload inside, as polyn-cli <= 0.2 stored (§16.18).
        return definitions["datadef"], None
    return document, None


def breaking_report(changes: list[SchemaChange]) -> str:
    """The refusal text: one block per schema with its incompatible changes."""
    blocks = []
    for change in changes:
        lines = "\n".join(f"  {problem}" for problem in change.breaking)
        blocks.append(
            f"You have made a backwards-incompatible change on schema {change.name}:\n{lines}\n"
            f"Publish it as a new version ({_next_version(change.name)}) instead, or pass "
            f"--allow-breaking once every producer and consumer of {change.name} is ready."
        )
    return "\n".join(blocks)


def _next_version(name: str) -> str:
    head, _, last = name.rpartition(".")
    if head and last.startswith("v") and last[1:].isdigit():
        return f"{head}.v{int(last[1:]) + 1}"
    return f"{name}.v2"


async def _stored(transport: Transport, bucket: str) -> dict[str, bytes]:
    try:
        return await transport.kv_entries(bucket)
    except BucketNotFoundError:
        return {}
    except PolynError as exc:
        raise SchemaStoreError(f"Could not read the schema bucket {bucket}: {exc}") from exc


async def check_schemas(
    transport: Transport, files: Mapping[str, SchemaFile], *, bucket: str, prune: Prune = False
) -> LoadReport:
    """What :func:`load_schemas` would do, without writing (a missing bucket counts as empty).

    The report's :attr:`~LoadReport.breaking` lists the incompatible changes; nothing raises
    for them here.
    """
    changes = plan_changes(files, await _stored(transport, bucket), prune=prune)
    return LoadReport(bucket, tuple(changes), written=False)


async def load_schemas(
    transport: Transport,
    files: Mapping[str, SchemaFile],
    *,
    bucket: str,
    replicas: int = 1,
    prune: Prune = False,
    allow_breaking: bool = False,
) -> LoadReport:
    """Create the bucket if missing, then write the new and changed schemas of ``files``.

    Raises :class:`~polyn.SchemaError` with a report per schema, writing nothing, when a change
    is backwards-incompatible and ``allow_breaking`` is false. Keys not in ``files`` are
    deleted when ``prune`` is true, or those of them that ``prune`` names.
    """
    try:
        await transport.kv_create(
            bucket, replicas=replicas, description="Polyn: payload JSON Schemas by message name"
        )
    except PolynError as exc:
        raise SchemaStoreError(f"Could not create the schema bucket {bucket}: {exc}") from exc
    changes = plan_changes(files, await _stored(transport, bucket), prune=prune)
    breaking = [change for change in changes if change.breaking]
    if breaking and not allow_breaking:
        raise SchemaError(breaking_report(breaking) + "\nNothing was written.")
    try:
        for change in changes:
            if change.status in ("added", "changed"):
                await transport.kv_put(bucket, change.name, files[change.name].text.encode())
            elif change.status == "removed":
                await transport.kv_delete(bucket, change.name)
    except PolynError as exc:
        raise SchemaStoreError(f"Could not write the schema bucket {bucket}: {exc}") from exc
    return LoadReport(bucket, tuple(changes), written=True)


async def readers(transport: Transport, names: Collection[str]) -> dict[str, list[str]]:
    """The JetStream consumers that read each of ``names``: ``{name: ["STREAM/consumer"]}``.

    A consumer reads a message name when one of its filter subjects matches it, or, without a
    filter, when one of its stream's subjects does. What the server does not let this
    connection list is left out, so an empty answer means "none seen", not "none".
    """
    found: dict[str, list[str]] = {name: [] for name in names}
    if not found:
        return found
    try:
        streams = await transport.stream_names()
    except PolynError:
        return found
    for stream in streams:
        offset = 0
        while True:
            try:
                reply = await transport.request(
                    f"$JS.API.CONSUMER.LIST.{stream}", json.dumps({"offset": offset}).encode()
                )
                page = json.loads(reply.data)
            except (PolynError, ValueError):
                break
            consumers = (page.get("consumers") or []) if isinstance(page, dict) else []
            for consumer in consumers:
                config = consumer.get("config") or {}
                filters = list(config.get("filter_subjects") or [])
                if config.get("filter_subject"):
                    filters.append(config["filter_subject"])
                if not filters:
                    try:
                        filters = (await transport.stream_info(stream)).subjects
                    except PolynError:
                        continue
                for name in found:
                    if any(subject_matches(subject, name) for subject in filters):
                        found[name].append(f"{stream}/{consumer.get('name')}")
            offset += len(consumers)
            if not consumers or offset >= int(page.get("total") or 0):
                break
    return found


def init_schemas(directory: str | Path) -> Path:
    """Create ``directory`` with one example schema, ``user.created.v1.json``; returns its path.

    Refuses (:class:`~polyn.SchemaError`) a folder that already holds anything but hidden files
    (``.gitkeep``): the example must not join real schemas, which ``polyn schemas load`` would
    then publish.
    """
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise SchemaError(f"{folder} is a file, not a folder; nothing was written")
    if folder.is_dir():
        present = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
        if present:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise SchemaError(
                f"{folder} is not empty ({shown}); nothing was written. `polyn schemas init` "
                "starts a new schemas folder: name a new or empty one"
            )
    path = folder / f"{EXAMPLE_NAME}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_EXAMPLE, indent=2) + "\n", encoding="utf-8")
    return path
