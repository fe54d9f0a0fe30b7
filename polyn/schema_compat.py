"""Is a new version of a payload schema backwards compatible with the stored one?

Every service shares the schema bucket, so a schema change reaches producers and consumers
written against the old one, and events already in streams. :func:`breaking_changes` lists what
would break them; ``polyn schemas load`` refuses such a change unless ``--allow-breaking``. The
protocol says a client SHOULD check this; no other Polyn client does. The rules, applied at
every level of nesting (``properties``, ``items``, ``additionalProperties``):

- a property removed (a rename is a removal plus an addition) breaks consumers that read it;
- a ``type`` changed, added or removed (widening included: ``integer`` to ``number``, or
  ``string`` to ``["string", "null"]``, hands consumers values they do not expect);
- a property newly ``required`` breaks producers and stored events without it; a required
  property made optional breaks consumers that rely on it;
- ``additionalProperties`` closed (``false``) or restricted where it was open, which rejects
  events that were valid;
- ``enum`` values removed, or an ``enum`` / ``const`` added or changed;
- a schema that accepted something (``true``, ``{}``) now accepting nothing (``false``).

Adding an optional property, or changing only annotations (``description``, ``title``,
``examples``, ``$comment``, ``format``), is compatible. ``$ref`` targets are compared as text, not
resolved; ``allOf`` / ``anyOf`` / ``oneOf`` / ``not`` are compared as a whole (a change there is
reported as one "changed" line). To make a breaking change, publish a new version of the message
(``user.created.v2``) beside the old one.

Example::

    breaking_changes({"type": "object", "properties": {"a": {"type": "string"}}},
                     {"type": "object", "properties": {}})
    # ['#/properties/a: property removed']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["breaking_changes", "is_compatible"]

_COMBINATORS = ("allOf", "anyOf", "oneOf", "not", "$ref", "if", "then", "else")


def is_compatible(old: Any, new: Any) -> bool:
    """Whether ``new`` can replace ``old`` without breaking anyone (no :func:`breaking_changes`)."""
    return not breaking_changes(old, new)


def breaking_changes(old: Any, new: Any) -> list[str]:
    """Why replacing schema ``old`` by ``new`` breaks producers, consumers or stored events.

    One line per problem, ``<JSON pointer>: <what>``; empty when the change is compatible.
    """
    problems: list[str] = []
    _compare(_normal(old), _normal(new), "#", problems)
    return problems


def _normal(schema: Any) -> Any:
    if schema is True:
        return {}
    if schema is False:
        return False
    return schema


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    return frozenset([kind] if isinstance(kind, str) else kind)


def _shown(types: frozenset[str] | None) -> str:
    if types is None:
        return "any type"
    return " or ".join(sorted(types))


def _compare(old: Any, new: Any, path: str, out: list[str]) -> None:
    if old == new or old is False:
        return  # unchanged, or nothing was valid before: nothing can break
    if new is False:
        out.append(f"{path}: the schema now accepts nothing (false)")
        return
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        if old != new:
            out.append(f"{path}: schema changed from {_text(old)} to {_text(new)}")
        return
    old_types, new_types = _types(old), _types(new)
    if old_types != new_types:
        out.append(f"{path}: type changed from {_shown(old_types)} to {_shown(new_types)}")
    _compare_properties(old, new, path, out)
    _compare_additional(old, new, path, out)
    if isinstance(old.get("items"), Mapping | bool) and isinstance(
        new.get("items"), Mapping | bool
    ):
        _compare(_normal(old["items"]), _normal(new["items"]), f"{path}/items", out)
    elif _text(old.get("items")) != _text(new.get("items")):
        out.append(f"{path}/items: changed")
    _compare_values(old, new, path, out)
    for keyword in _COMBINATORS:
        if _text(old.get(keyword)) != _text(new.get(keyword)):
            out.append(f"{path}/{keyword}: changed")


def _compare_properties(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[str]
) -> None:
    old_properties = _mapping(old.get("properties"))
    new_properties = _mapping(new.get("properties"))
    for name, schema in old_properties.items():
        where = f"{path}/properties/{name}"
        if name not in new_properties:
            out.append(f"{where}: property removed")
        else:
            _compare(_normal(schema), _normal(new_properties[name]), where, out)
    old_required = {n for n in old.get("required") or () if isinstance(n, str)}
    new_required = {n for n in new.get("required") or () if isinstance(n, str)}
    for name in sorted(new_required - old_required):
        out.append(f"{path}/properties/{name}: property is now required")
    for name in sorted(old_required - new_required):
        out.append(f"{path}/properties/{name}: property is no longer required")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _compare_additional(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[str]
) -> None:
    old_extra = _normal(old.get("additionalProperties", True))
    new_extra = _normal(new.get("additionalProperties", True))
    where = f"{path}/additionalProperties"
    if old_extra is False:
        return
    if new_extra is False:
        out.append(f"{where}: closed (additional properties are no longer allowed)")
    elif old_extra == {} and new_extra != {}:
        out.append(f"{where}: restricted (additional properties were allowed)")
    else:
        _compare(old_extra, new_extra, where, out)


def _compare_values(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[str]
) -> None:
    if "enum" in new:
        if "enum" not in old:
            out.append(f"{path}/enum: values restricted to {_text(new['enum'])}")
        else:
            removed = [value for value in old["enum"] if value not in new["enum"]]
            if removed:
                out.append(f"{path}/enum: values removed: {_text(removed)}")
    if "const" in new and _text(old.get("const")) != _text(new["const"]):
        out.append(f"{path}/const: changed to {_text(new['const'])}")
