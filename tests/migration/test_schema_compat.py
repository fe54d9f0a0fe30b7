"""The backwards-compatibility checker: examples of each rule, and properties over schemas."""

from __future__ import annotations

import copy
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from polyn.schema_compat import breaking_changes, is_compatible

TYPES = ["string", "integer", "number", "boolean", "null"]
NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(TYPES).map(lambda t: {"type": t})


def objects(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        properties = draw(st.dictionaries(NAMES, children, max_size=4))
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if properties:
            required = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
            if required:
                schema["required"] = required
        return schema

    return build()


schemas = st.recursive(
    leaf(),
    lambda children: st.one_of(
        objects(children), children.map(lambda c: {"type": "array", "items": c})
    ),
    max_leaves=8,
)
object_schemas = objects(schemas)


def property_paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths (as keys to walk) of every property at every depth."""
    found = []
    for name, child in schema.get("properties", {}).items():
        here = (*path, "properties", name)
        found.append(here)
        found += property_paths(child, here)
    if isinstance(schema.get("items"), dict):
        found += property_paths(schema["items"], (*path, "items"))
    return found


def walk(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        schema = schema[key]
    return schema


@settings(max_examples=150)
@given(old=object_schemas, name=NAMES, added=schemas, data=st.data())
def test_adding_an_optional_property_anywhere_is_compatible(
    old: dict[str, Any], name: str, added: dict[str, Any], data: st.DataObject
) -> None:
    targets = [(), *(p for p in property_paths(old) if walk(old, p).get("type") == "object")]
    target = data.draw(st.sampled_from(targets))
    new = copy.deepcopy(old)
    properties = walk(new, target).setdefault("properties", {})
    if name in properties:
        return  # not an addition
    properties[name] = added
    assert breaking_changes(old, new) == []


@settings(max_examples=150)
@given(old=object_schemas, data=st.data())
def test_removing_any_property_is_breaking(old: dict[str, Any], data: st.DataObject) -> None:
    paths = property_paths(old)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    new = copy.deepcopy(old)
    parent = walk(new, path[:-2])
    del parent["properties"][path[-1]]
    if path[-1] in parent.get("required", []):
        parent["required"].remove(path[-1])
    problems = breaking_changes(old, new)
    assert f"#/{'/'.join(path)}: property removed" in problems


@settings(max_examples=150)
@given(old=object_schemas, data=st.data())
def test_changing_any_type_is_breaking(old: dict[str, Any], data: st.DataObject) -> None:
    paths = property_paths(old)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    new = copy.deepcopy(old)
    target = walk(new, path)
    other = data.draw(st.sampled_from([t for t in [*TYPES, "object"] if t != target["type"]]))
    target["type"] = other
    assert any(
        line.startswith(f"#/{'/'.join(path)}: type changed") for line in breaking_changes(old, new)
    )


@given(schema=schemas)
def test_a_schema_is_compatible_with_itself(schema: dict[str, Any]) -> None:
    assert is_compatible(schema, copy.deepcopy(schema))


BASE: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "kind": {"enum": ["a", "b"]}},
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"required": ["name", "kind"]}, "#/properties/kind: property is now required"),
        ({"additionalProperties": False}, "#/additionalProperties: closed"),
        (
            {"additionalProperties": {"type": "string"}},
            "#/additionalProperties: restricted (additional properties were allowed)",
        ),
        (
            {"properties": {"name": {"type": "string"}, "kind": {"enum": ["a"]}}},
            '#/properties/kind/enum: values removed: ["b"]',
        ),
        (
            {"properties": {"name": {"type": ["string", "null"]}, "kind": {"enum": ["a", "b"]}}},
            "#/properties/name: type changed from string to null or string",
        ),
        (
            {"properties": {"title": {"type": "string"}, "kind": {"enum": ["a", "b"]}}},
            "#/properties/name: property removed",
        ),
    ],
)
def test_each_rule(change: dict[str, Any], expected: str) -> None:
    problems = breaking_changes(BASE, {**BASE, **change})
    assert any(line.startswith(expected) for line in problems), problems


def test_annotations_and_open_additional_properties_are_compatible() -> None:
    new = {
        **BASE,
        "description": "who signed up",
        "properties": {**BASE["properties"], "name": {"type": "string", "format": "email"}},
        "additionalProperties": True,
    }
    assert breaking_changes(BASE, new) == []


def test_a_schema_that_accepted_nothing_can_become_anything() -> None:
    assert breaking_changes(False, BASE) == []
    assert breaking_changes(True, False) == ["#: the schema now accepts nothing (false)"]
