"""A payload schema as people read it: table rows, a deterministic example, its format.

:func:`schema_rows` flattens a JSON Schema into rows (``items[].sku``: type, required, format,
constraints, description), following local ``$ref`` pointers (a recursive one is shown once, as
a link to itself). :func:`example_of` gives the schema's own example (``examples[0]``, else
``default``, else ``const``) or builds one from its types, the same for the same schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import jsonschema

__all__ = ["Row", "example_is_valid", "example_of", "schema_format", "schema_rows"]

_DIALECTS = {
    "draft-04": "draft-04",
    "draft-06": "draft-06",
    "draft-07": "draft-07",
    "draft/2019-09": "2019-09",
    "draft/2020-12": "2020-12",
}


def schema_format(schema: Any) -> str:
    """The AsyncAPI ``schemaFormat`` of a payload schema, from its ``$schema`` (draft-07, as
    the codec reads it, when it names none)."""
    declared = schema.get("$schema") if isinstance(schema, Mapping) else None
    version = "draft-07"
    if isinstance(declared, str):
        for marker, name in _DIALECTS.items():
            if marker in declared:
                version = name
    return f"application/schema+json;version={version}"


@attrs.frozen
class Row:
    """One line of a schema table."""

    path: str
    name: str
    depth: int
    type: str
    required: bool
    format: str | None = None
    constraints: tuple[str, ...] = ()
    description: str | None = None


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _resolve(root: Any, schema: Any, seen: tuple[str, ...]) -> tuple[Any, str | None]:
    """Follow local ``$ref`` pointers; returns the target and, when it loops, the ref."""
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if not ref.startswith("#") or ref in seen:
            return schema, ref
        seen = (*seen, ref)
        target: Any = root
        for token in filter(None, ref[1:].split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                return schema, ref
        schema = target
    return schema, None


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    for key in ("const", "enum"):
        if key in schema:
            values = [schema["const"]] if key == "const" else list(schema["enum"])
            return sorted({_json_type(v) for v in values})
    return []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_text(root: Any, schema: Any, seen: tuple[str, ...] = ()) -> str:
    schema, loop = _resolve(root, schema, seen)
    if loop is not None:
        return f"{loop.rsplit('/', 1)[-1] or 'data'} (recursive)"
    if schema is True or schema == {}:
        return "any"
    if schema is False:
        return "nothing"
    if not isinstance(schema, Mapping):
        return "?"
    for combinator, word in (("oneOf", "one of"), ("anyOf", "any of")):
        if isinstance(schema.get(combinator), list) and "type" not in schema:
            options = " | ".join(_type_text(root, option, seen) for option in schema[combinator])
            return f"{word}: {options}"
    parts = []
    for kind in _types(schema) or ["any"]:
        if kind == "array" and "items" in schema and isinstance(schema["items"], Mapping | bool):
            parts.append(f"array of {_type_text(root, schema['items'], seen)}")
        else:
            parts.append(kind)
    return " or ".join(parts)


_CONSTRAINTS = (
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("multipleOf", "multiple of"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("minProperties", "min properties"),
    ("maxProperties", "max properties"),
)


def _constraints(schema: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for key, label in _CONSTRAINTS:
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(f"{label} {_text(value)}")
    if schema.get("uniqueItems") is True:
        out.append("unique items")
    if isinstance(schema.get("pattern"), str):
        out.append(f"pattern {schema['pattern']}")
    if "const" in schema:
        out.append(f"always {_text(schema['const'])}")
    if isinstance(schema.get("enum"), list):
        out.append("one of " + ", ".join(_text(value) for value in schema["enum"]))
    if "default" in schema:
        out.append(f"default {_text(schema['default'])}")
    if schema.get("additionalProperties") is False and _types(schema) == ["object"]:
        out.append("no other properties")
    if schema.get("deprecated") is True:
        out.append("deprecated")
    return tuple(out)


def _description(schema: Mapping[str, Any]) -> str | None:
    parts = [schema.get("title"), schema.get("description")]
    text = " — ".join(str(p) for p in parts if isinstance(p, str) and p)
    return text or None


def schema_rows(schema: Any) -> list[Row]:
    """The rows of ``schema``'s table: an object's properties (nested ones indented, array
    items as ``name[]``), or one row ``(data)`` for a schema that is not an object."""
    resolved, _ = _resolve(schema, schema, ())
    if isinstance(resolved, Mapping) and _types(resolved) == ["object"]:
        return list(_properties(schema, resolved, "", 0, ()))
    return list(_row(schema, schema, "(data)", "(data)", 0, True, ()))


def _properties(
    root: Any, schema: Mapping[str, Any], prefix: str, depth: int, seen: tuple[str, ...]
) -> Iterator[Row]:
    required = {name for name in schema.get("required") or () if isinstance(name, str)}
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, child in properties.items():
            path = f"{prefix}.{name}" if prefix else name
            yield from _row(root, child, name, path, depth, name in required, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and extra:
        path = f"{prefix}.*" if prefix else "*"
        yield from _row(root, extra, "(any other key)", path, depth, False, seen)


def _row(
    root: Any, schema: Any, name: str, path: str, depth: int, required: bool, seen: tuple[str, ...]
) -> Iterator[Row]:
    target, loop = _resolve(root, schema, seen)
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        seen = (*seen, schema["$ref"])
    if not isinstance(target, Mapping) or loop is not None:
        shown = _type_text(root, schema, seen[:-1] if loop else seen)
        yield Row(path, name, depth, shown, required)
        return
    yield Row(
        path=path,
        name=name,
        depth=depth,
        type=_type_text(root, target, seen),
        required=required,
        format=target.get("format") if isinstance(target.get("format"), str) else None,
        constraints=_constraints(target),
        description=_description(target),
    )
    kinds = _types(target)
    if "object" in kinds:
        yield from _properties(root, target, path, depth + 1, seen)
    if "array" in kinds and isinstance(target.get("items"), Mapping):
        items, item_loop = _resolve(root, target["items"], seen)
        if item_loop is None and isinstance(items, Mapping):
            item_kinds = _types(items)
            if "object" in item_kinds or "array" in item_kinds or _constraints(items):
                yield from _row(
                    root, target["items"], f"{name}[]", f"{path}[]", depth + 1, True, seen
                )
    for combinator in ("oneOf", "anyOf"):
        options = target.get(combinator)
        if isinstance(options, list) and len(options) > 1:
            for number, option in enumerate(options, 1):
                resolved, _ = _resolve(root, option, seen)
                if isinstance(resolved, Mapping) and "object" in _types(resolved):
                    label, where = f"option {number}", f"{path}<{number}>"
                    yield from _row(root, option, label, where, depth + 1, False, seen)


# -- examples ----------------------------------------------------------------------------------

_FORMATS = {
    "date-time": "2024-01-01T12:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00Z",
    "duration": "PT1H",
    "email": "someone@example.com",
    "idn-email": "someone@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "/example",
    "iri": "https://example.com/",
    "iri-reference": "/example",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "regex": "^.*$",
    "json-pointer": "/example",
    "relative-json-pointer": "0",
    "uri-template": "https://example.com/{id}",
}
# Tried in order against a ``pattern``: the first that matches is used.
_PATTERN_CANDIDATES = ("string", "ABC", "abc", "EUR", "A1", "a1", "1", "123", "x", "a-b", "A")


def example_of(schema: Any) -> tuple[Any, bool]:
    """An example of ``schema``'s data and whether the schema gave it (False: built from its
    types). The same schema always gives the same example."""
    if isinstance(schema, Mapping):
        given = _given(schema)
        if given is not None:
            return given[0], True
    return _build(schema, schema, (), 0), False


def example_is_valid(schema: Any, example: Any) -> bool:
    """Whether ``example`` satisfies ``schema`` (a generated example may not: a ``pattern``
    or a combination of constraints can defeat the builder)."""
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        return bool(validator.is_valid(example))
    except (jsonschema.exceptions.SchemaError, jsonschema.exceptions.RefResolutionError):
        return False
    except Exception:  # an unresolvable remote $ref, say: no verdict rather than a crash
        return False


def _given(schema: Mapping[str, Any]) -> tuple[Any] | None:
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return (examples[0],)
    for key in ("default", "const"):
        if key in schema:
            return (schema[key],)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return (schema["enum"][0],)
    return None


def _build(root: Any, schema: Any, seen: tuple[str, ...], depth: int) -> Any:
    target, loop = _resolve(root, schema, seen)
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        seen = (*seen, schema["$ref"])
    if loop is not None or not isinstance(target, Mapping) or depth > 12:
        return None
    given = _given(target)
    if given is not None:
        return given[0]
    for combinator in ("oneOf", "anyOf", "allOf"):
        options = target.get(combinator)
        if isinstance(options, list) and options and "type" not in target:
            if combinator == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    part, _ = _resolve(root, option, seen)
                    if isinstance(part, Mapping):
                        merged = _merge(merged, part)
                return _build(root, merged, seen, depth + 1)
            return _build(root, options[0], seen, depth + 1)
    kinds = [kind for kind in _types(target) if kind != "null"] or _types(target)
    kind = kinds[0] if kinds else "object" if "properties" in target else None
    if kind == "object":
        properties = target.get("properties")
        out = {}
        if isinstance(properties, Mapping):
            for name, child in properties.items():
                out[name] = _build(root, child, seen, depth + 1)
        return out
    if kind == "array":
        items = target.get("items")
        count = target.get("minItems", 1)
        count = count if isinstance(count, int) and count > 1 else 1
        if isinstance(items, list):  # draft-07 tuple form
            return [_build(root, item, seen, depth + 1) for item in items]
        return [_build(root, items, seen, depth + 1) for _ in range(count)] if items else []
    if kind == "string":
        return _string(target)
    if kind in ("integer", "number"):
        return _number(target, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {} if "properties" in target else None


def _merge(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if key == "properties" and isinstance(value, Mapping):
            merged["properties"] = {**merged.get("properties", {}), **value}
        elif key == "required" and isinstance(value, list):
            merged["required"] = [*merged.get("required", []), *value]
        else:
            merged.setdefault(key, value)
    return merged


def _string(schema: Mapping[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), "string")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        for candidate in (text, *_PATTERN_CANDIDATES):
            try:
                if re.search(pattern, candidate):
                    text = candidate
                    break
            except re.error:
                break
    low = schema.get("minLength")
    high = schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _bound(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(schema: Mapping[str, Any], kind: str) -> int | float:
    value: float = 0
    low, low_open = _bound(schema, "minimum"), _bound(schema, "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum"), _bound(schema, "exclusiveMaximum")
    if low is not None and value < low:
        value = low
    if low_open is not None and value <= low_open:
        value = low_open + 1
    if high is not None and value > high:
        value = high
    if high_open is not None and value >= high_open:
        value = high_open - 1
    multiple = _bound(schema, "multipleOf")
    if multiple is not None and multiple > 0 and value % multiple:
        value = multiple * (value // multiple + 1)
    if kind == "integer" or float(value).is_integer():
        return int(value) if float(value).is_integer() else int(value) + 1
    return value
