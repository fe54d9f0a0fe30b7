"""``polyn schemas codegen``: a frozen class per message schema, by datamodel-code-generator.

Needs the ``codegen`` extra (``pip install 'polyn[codegen]'``); the rest of :mod:`polyn.typed`
does not. :func:`generate_module` turns ``{message name: JSON Schema}`` into the text of one
Python module:

- one frozen, keyword-only dataclass per message, named from the message name
  (``order.placed.v1`` → ``OrderPlacedV1``, :func:`class_name_for`), carrying the message name,
  the schema's hash and the schema itself (``__polyn_message__``, ``__polyn_schema_hash__``,
  ``__polyn_schema__``, see :mod:`polyn.typed`);
- nested objects as classes of their own, named after the class and property that hold them
  (``OrderPlacedV1Item``); ``$defs`` / ``definitions`` followed, their classes prefixed with the
  message's class (``ShipmentSentV1Address``); arrays as ``Sequence`` (built as tuples), objects
  with only ``additionalProperties`` as ``Mapping``;
- ``enum`` and ``const`` as ``Literal``; an optional property as ``T | None = None`` (or its
  schema ``default``), a nullable one (``"type": ["string", "null"]``) as ``T | None``;
- a property whose name is not a Python name (``odd-name``, ``class``, ``_id``) under a Python
  name the generator picks (``odd_name``, ``class_``, ``field_id``), with its JSON key in the
  field's metadata (``{"json_key": "odd-name"}``), which :func:`polyn.typed.structure` and
  :func:`polyn.typed.unstructure` honour.

The classes are written by **datamodel-code-generator** (its ``dataclasses.dataclass`` output,
frozen and keyword-only); this module only prepares each schema (names), calls it once per
schema, merges the outputs into one module and adds Polyn's class variables. A schema whose
root is not an object (``{"type": "string"}``, ``true``, a ``oneOf`` of objects) gets no class
and is listed as skipped. The output is deterministic: schemas are written in message-name order
and nothing depends on the time or the machine.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import sys
import textwrap
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from polyn.errors import MissingExtraError, SchemaError
from polyn.typed._convert import JSON_KEY
from polyn.typed._schema import schema_hash

__all__ = [
    "GeneratedModule",
    "MissingExtraError",
    "class_name_for",
    "generate_module",
]

EXTRA = "codegen"
_LINE = 100
_CHUNK = 84




@attrs.frozen
class GeneratedModule:
    """The result of :func:`generate_module`.

    ``text`` is the module; ``classes`` maps each message name to its class; ``skipped`` maps
    the messages that got no class to the reason.
    """

    text: str
    classes: Mapping[str, str]
    skipped: Mapping[str, str]


def class_name_for(message: str) -> str:
    """The class name of a message: ``order.placed.v1`` → ``OrderPlacedV1``.

    Each dot-separated part is capitalised; a name that would start with a digit gets the
    prefix ``Event`` (``2fa.enabled.v1`` → ``Event2faEnabledV1``).
    """
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", message))
    if not name or not name[0].isalpha():
        name = "Event" + name
    return name


def _generator() -> Any:
    try:
        import datamodel_code_generator
    except ImportError as exc:
        raise MissingExtraError(
            "polyn schemas codegen needs datamodel-code-generator, which the "
            f"'{EXTRA}' extra installs: pip install 'polyn[{EXTRA}]'"
        ) from exc
    return datamodel_code_generator


# -- preparing a schema for the generator ----------------------------------------------------------

_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SINGLE = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)


def _schema_objects(schema: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in ``schema`` (not the data in ``enum``, ``const``, ``default``...)."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in _MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for child in children.values():
                yield from _schema_objects(child)
    for key in _LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for child in children:
                yield from _schema_objects(child)
    for key in _SINGLE:
        yield from _schema_objects(schema.get(key))
    items = schema.get("items")
    for child in items if isinstance(items, list) else [items]:
        yield from _schema_objects(child)


def _plain_name(name: str) -> bool:
    """A property name the generator keeps as the field name."""
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _prepare(document: dict[str, Any], class_name: str) -> dict[str, Any]:
    """A copy of ``document`` ready for the generator: definitions prefixed with the class name,
    and ``x-metadata`` (which becomes the field's metadata) on properties it will rename."""
    prepared: dict[str, Any] = json.loads(json.dumps(document))
    renames: dict[str, str] = {}
    taken: set[str] = set()
    for key in ("$defs", "definitions"):
        definitions = prepared.get(key)
        if not isinstance(definitions, dict):
            continue
        renamed = {}
        for old, schema in definitions.items():
            new = class_name + class_name_for(old).removeprefix("Event")
            while new in taken:
                new += "_"
            taken.add(new)
            renamed[new] = schema
            renames[f"#/{key}/{_escape(old)}"] = f"#/{key}/{_escape(new)}"
        prepared[key] = renamed
    for schema in _schema_objects(prepared):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            schema["$ref"] = _rewrite_ref(ref, renames)
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name, child in list(properties.items()):
                if _plain_name(name):
                    continue
                if child is True:
                    child = properties[name] = {}
                if isinstance(child, dict):
                    child["x-metadata"] = {JSON_KEY: name}
    return prepared


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _rewrite_ref(ref: str, renames: Mapping[str, str]) -> str:
    for old, new in renames.items():
        if ref == old or ref.startswith(old + "/"):
            return new + ref[len(old) :]
    return ref


def _run_generator(document: dict[str, Any], class_name: str) -> str:
    generator = _generator()
    from datamodel_code_generator.format import Formatter, PythonVersion

    with warnings.catch_warnings():
        # Its notices about future defaults are for its own command line users, not ours.
        warnings.simplefilter("ignore", FutureWarning)
        text = generator.generate(
            document,
            input_file_type=generator.InputFileType.JsonSchema,
            output_model_type=generator.DataModelType.DataclassesDataclass,
            class_name=class_name,
            frozen_dataclasses=True,
            keyword_only=True,
            enum_field_as_literal=generator.LiteralType.All,
            strict_nullable=True,
            use_union_operator=True,
            use_standard_collections=True,
            use_generic_container_types=True,
            naming_strategy=generator.NamingStrategy.EnclosingModel,
            field_extra_keys_without_x_prefix={"x-metadata"},
            disable_timestamp=True,
            target_python_version=PythonVersion.PY_311,
            formatters=[Formatter.BUILTIN],
            builtin_format_line_length=_LINE,
        )
    if not isinstance(text, str):
        raise SchemaError(f"datamodel-code-generator wrote several modules for {class_name}")
    return text


# -- merging the generator's modules into one ------------------------------------------------------


@attrs.define
class _Part:
    """What the generator wrote for one schema: imports, and top-level statements as text."""

    imports: set[tuple[str, str, str | None]]
    statements: list[tuple[str, str]]  # (defined name, source text)


def _split(text: str) -> _Part:
    tree = ast.parse(text)
    lines = text.splitlines()
    imports: set[tuple[str, str, str | None]] = set()
    statements: list[tuple[str, str]] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                imports.add((node.module or "", alias.name, alias.asname))
            continue
        if isinstance(node, ast.Import):
            raise SchemaError(f"unexpected import in the generated code: {ast.unparse(node)}")
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a module docstring
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        source = "\n".join(lines[start - 1 : node.end_lineno])
        statements.append((_defined_name(node), source))
    return _Part(imports, statements)


def _defined_name(node: ast.stmt) -> str:
    if isinstance(node, ast.ClassDef):
        return node.name
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    raise SchemaError(f"unexpected statement in the generated code: {ast.unparse(node)}")


def _root_class(source: str, message: str, document: dict[str, Any]) -> str:
    """The root class with Polyn's docstring and class variables, the generator's fields kept."""
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.ClassDef):
        raise SchemaError(f"the generator wrote no class for {message}")
    lines = source.splitlines()
    header = lines[: node.lineno]  # the decorators and the class line
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the generator's docstring: ours replaces it
    fields = [] if all(isinstance(s, ast.Pass) for s in body) else lines[body[0].lineno - 1 :]
    out = [*header, *_docstring(message, document), "", *_class_vars(message, document)]
    return "\n".join([*out, "", *fields] if fields else out)


def _docstring(message: str, document: dict[str, Any]) -> list[str]:
    title = document.get("title")
    description = document.get("description")
    summary = f"The data of {message}"
    if isinstance(title, str) and title.strip():
        summary += ": " + title.strip()
    paragraphs = [summary.rstrip(".") + "."]
    if isinstance(description, str):
        paragraphs.extend(p for p in re.split(r"\n\s*\n", description) if p.strip())
    wrapped: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            wrapped.append("")
        text = " ".join(paragraph.split()).replace("\\", "\\\\").replace('"', '\\"')
        wrapped.extend(textwrap.wrap(text, _LINE - 8, break_long_words=False))
    if len(wrapped) == 1 and len(wrapped[0]) <= _LINE - 10:
        return [f'    """{wrapped[0]}"""']
    wrapped[0] = '"""' + wrapped[0]
    return [f"    {line}" if line else "" for line in wrapped] + ['    """']


def _class_vars(message: str, document: dict[str, Any]) -> list[str]:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return [
        f"    __polyn_message__: ClassVar[str] = {json.dumps(message)}",
        "    __polyn_schema_hash__: ClassVar[str] = (",
        f"        {json.dumps(schema_hash(document))}",
        "    )",
        "    __polyn_schema__: ClassVar[str] = (",
        *(f"        {literal}" for chunk in _chunks(text) for literal in _literals(chunk)),
        "    )",
    ]


def _chunks(text: str) -> list[str]:
    """``text`` in pieces of at most ``_CHUNK`` characters, cut after a comma where one is near."""
    chunks = []
    while len(text) > _CHUNK:
        cut = text.rfind(",", _CHUNK // 2, _CHUNK) + 1 or _CHUNK
        chunks.append(text[:cut])
        text = text[cut:]
    return [*chunks, text]


def _literals(text: str) -> list[str]:
    """String literals for ``text``, split further where escapes make one too long."""
    literal = _literal(text)
    if len(literal) <= _LINE - 8 or len(text) < 2:
        return [literal]
    half = len(text) // 2
    return [*_literals(text[:half]), *_literals(text[half:])]


def _literal(text: str) -> str:
    """A Python string literal for ``text``, double-quoted unless that needs more escapes."""
    single = repr(text)
    if '"' in text:
        return single
    return '"' + single[1:-1].replace("\\'", "'") + '"'


_IMPORT_GROUPS = ("__future__",)


def _render_imports(imports: set[tuple[str, str, str | None]]) -> list[str]:
    by_module: dict[str, list[tuple[str, str | None]]] = {}
    for module, name, asname in imports:
        by_module.setdefault(module, []).append((name, asname))
    out: list[str] = []
    for group in (sorted(m for m in by_module if m == "__future__"), _others(by_module)):
        if not group:
            continue
        if out:
            out.append("")
        for module in group:
            names = sorted(set(by_module[module]), key=_import_order)
            shown = [name if asname is None else f"{name} as {asname}" for name, asname in names]
            line = f"from {module} import {', '.join(shown)}"
            if len(line) <= _LINE:
                out.append(line)
            else:
                out.extend([f"from {module} import (", *(f"    {s}," for s in shown), ")"])
    return out


def _others(by_module: Mapping[str, object]) -> list[str]:
    return sorted(m for m in by_module if m != "__future__")


def _import_order(item: tuple[str, str | None]) -> tuple[int, str]:
    # ruff's isort (order-by-type): CONSTANTS, then Classes, then functions and modules.
    name = item[0]
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _module_docstring(source: str) -> list[str]:
    return [
        f'"""Typed events: one frozen class per message schema, generated from {source}.',
        "",
        "Written by ``polyn schemas codegen`` (datamodel-code-generator): do not edit; regenerate",
        "after a schema changes. ``polyn schemas check --codegen`` tells whether this module is",
        "stale against the schemas, and whether it can still read them.",
        '"""',
    ]


# -- the entry point -------------------------------------------------------------------------------


def generate_module(schemas: Mapping[str, Any], *, source: str) -> GeneratedModule:
    """The text of a module with one frozen dataclass per message schema of ``schemas``.

    ``schemas`` maps message names to JSON Schema documents (dicts; booleans and non-object
    roots are skipped); ``source`` says where they came from, for the module's docstring
    (``"the schemas folder schemas/"``). Raises :class:`MissingExtraError` without the
    ``codegen`` extra and :class:`~polyn.SchemaError` when two messages would share a class
    name or the generator's output cannot be used.

    Example::

        files = polyn.schema_loader.read_schemas("schemas")
        module = generate_module({n: f.document for n, f in files.items()}, source="schemas/")
        Path("events.py").write_text(module.text)
    """
    imports: set[tuple[str, str, str | None]] = set()
    blocks: list[tuple[str, str]] = []
    classes: dict[str, str] = {}
    skipped: dict[str, str] = {}
    owners: dict[str, str] = {}
    for message in sorted(schemas):
        document = schemas[message]
        class_name = class_name_for(message)
        if not isinstance(document, dict) or not _is_object_schema(document):
            skipped[message] = "the schema's root is not an object, so there is no class"
            continue
        part = _split(_run_generator(_prepare(document, class_name), class_name))
        names = dict(part.statements)
        root = names.get(class_name, "")
        if not root.lstrip().startswith(("@", "class ")):
            skipped[message] = "the generator did not write a class for the schema's root"
            continue
        problem = _check_part(part, message, document, class_name)
        if problem is not None:
            skipped[message] = problem
            continue
        for name, _ in part.statements:
            if name in owners:
                raise SchemaError(
                    f"Both {owners[name]} and {message} would define the class {name} in one "
                    "module; generate them into separate modules"
                )
            owners[name] = message
        imports |= part.imports
        for name, text in part.statements:
            if name == class_name:
                text = _root_class(text, message, document)
            blocks.append((name, text))
        classes[message] = class_name
    if classes:
        imports.add(("typing", "ClassVar", None))
    imports.add(("__future__", "annotations", None))
    exported = sorted(name for name, _ in blocks)
    lines = [*_module_docstring(source), "", *_render_imports(imports), ""]
    lines.extend(_render_all(exported))
    lines.extend(["", "__polyn_generated__ = True", ""])
    if skipped:
        lines.extend(f"# No class for {m}: {reason}." for m, reason in sorted(skipped.items()))
        lines.append("")
    for _, text in blocks:
        lines.extend(["", text, ""])
    text = "\n".join(lines).rstrip("\n") + "\n"
    compile(text, "<generated>", "exec")
    return GeneratedModule(text, classes, skipped)


def _render_all(names: list[str]) -> list[str]:
    line = f"__all__ = [{', '.join(json.dumps(n) for n in names)}]"
    if len(line) <= _LINE:
        return [line]
    return ["__all__ = [", *(f"    {json.dumps(n)}," for n in names), "]"]


def _is_object_schema(document: Mapping[str, Any]) -> bool:
    kind = document.get("type")
    if kind == "object":
        return True
    return kind is None and ("properties" in document or "required" in document)


def _check_part(
    part: _Part, message: str, document: dict[str, Any], class_name: str
) -> str | None:
    """Load the generator's classes for one schema and check what Polyn relies on: cattrs can
    build the root class, and every field's JSON key is a property name of the schema."""
    from polyn.typed._convert import _fields, _renamed, is_record, structure_hook

    imports = _render_imports(part.imports | {("typing", "ClassVar", None)})
    code = "\n".join([*imports, "__polyn_generated__ = True", *(t for _, t in part.statements)])
    module = types.ModuleType(f"_polyn_codegen_check_{class_name}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, module.__name__, "exec"), module.__dict__)
        properties = {
            name
            for schema in _schema_objects(document)
            if isinstance(schema.get("properties"), dict)
            for name in schema["properties"]
        }
        for value in list(module.__dict__.values()):
            if not is_record(value) or value.__module__ != module.__name__:
                continue
            renamed = _renamed(value)
            for field, _, _ in _fields(value):
                if renamed.get(field, field) not in properties:
                    return (
                        f"the generator named a field {value.__name__}.{field}, which is no "
                        "property of the schema"
                    )
        try:
            structure_hook(module.__dict__[class_name])
        except Exception as exc:  # whatever cattrs objects to, the class is unusable
            reason = str(exc).replace(f"{module.__name__}.", "")
            return f"cattrs cannot build {class_name}: {reason}"
    finally:
        del sys.modules[module.__name__]
    return None
