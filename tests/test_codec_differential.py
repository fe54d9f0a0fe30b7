"""The fast verdict equals jsonschema's, for real-world-shaped schemas of every draft (issue 17).

Every event's verdict comes from jsonschema-rs; jsonschema only words the errors. These tests
prove the two agree where it matters: over the schemas of ``schema_corpus`` in drafts 4, 6, 7,
2019-09 and 2020-12, on instances drawn from each schema and mutated off it (hypothesis-jsonschema
draws for drafts 4 to 7; for 2019-09 and 2020-12 the corpus brings hand-made instances, valid and
invalid, which are mutated the same way). For every instance the fast validator refuses, the
wording validator finds at least one problem, so every refusal is worded.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from schema_corpus import DRAFT_URIS, LEGACY, MODERN, RECURSIVE_EXAMPLES

from polyn._validator import FORMAT_CHECKER, CompiledSchema
from polyn._wording import REGISTRY
from polyn.codec import _compile

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 200),
    st.sampled_from([0.5, 1.0, 1.15, 1.13, -0.0, 1e9, 2**64, 0.05, 100.5]),
    st.sampled_from(
        [
            "",
            "a",
            "USD",
            "usd",
            "AB123456789CD",
            "ada@example.com",
            "team@startup.technology",
            "2022-10-20T16:59:58Z",
            "2022-10-20",
            "16:59:58",
            "https://example.com/a",
            "a b",
            "/a/b",
            "10.0.0.1",
            "::1",
            "host-name.example",
            "order-1",
            "x-note",
            "en-GB",
            "card",
            "bank",
            "placed",
            "percent",
            "header",
            "4111111111111111",
        ]
    ),
    st.text(max_size=5),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "name", "label", "x-n", "kind"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*path, index)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutations(draw: st.DrawFn, start: Any) -> Any:
    """``start`` changed in one to three places: a value replaced, a key removed or added, an
    array item removed, duplicated or appended."""
    value = copy.deepcopy(start)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(value)))
        target = _at(value, path)
        operations = ["replace"]
        if isinstance(target, dict):
            operations += ["add"] + (["remove"] if target else [])
        if isinstance(target, list):
            operations += ["append"] + (["remove", "duplicate"] if target else [])
        operation = draw(st.sampled_from(operations))
        if operation == "replace":
            if not path:
                value = draw(_VALUES)
                continue
            _at(value, path[:-1])[path[-1]] = draw(_VALUES)
        elif operation == "add":
            target[draw(st.sampled_from(["extra", "name", "kind", "x-y", "Bad", "state"]))] = draw(
                _VALUES
            )
        elif operation == "remove" and isinstance(target, dict):
            del target[draw(st.sampled_from(sorted(target)))]
        elif operation == "remove":
            del target[draw(st.integers(0, len(target) - 1))]
        elif operation == "duplicate":
            target.append(copy.deepcopy(target[draw(st.integers(0, len(target) - 1))]))
        else:
            target.append(draw(_VALUES))
    return value


def _compiled(draft: str, schema: dict[str, Any]) -> CompiledSchema:
    return _compile(f"{draft}.v1", {"$schema": DRAFT_URIS[draft], **schema})


def _agree(compiled: CompiledSchema, instance: Any) -> bool:
    wording = compiled.draft.wording(
        compiled.document(), registry=REGISTRY, format_checker=FORMAT_CHECKER
    )
    fast = compiled.is_valid(instance)
    worded = not list(wording.iter_errors(instance))
    assert fast == worded, (instance, fast, worded)
    if not fast:
        assert compiled.error_lines(instance)[0].startswith("Property: `#")
    return fast


_DRAWN: dict[tuple[str, str], st.SearchStrategy[Any]] = {}


def _drawn(name: str, draft: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of ``schema`` from hypothesis-jsonschema (made once: canonicalising is slow)."""
    key = (name, draft)
    if key not in _DRAWN:
        if name in RECURSIVE_EXAMPLES:
            _DRAWN[key] = st.sampled_from(RECURSIVE_EXAMPLES[name])
        else:
            _DRAWN[key] = from_schema({"$schema": DRAFT_URIS[draft], **schema})
    return _DRAWN[key]


_LEGACY_CASES = [
    pytest.param(name, draft, schema, id=f"{name}-{draft}")
    for name, drafts, schema in LEGACY
    for draft in drafts
]
_MODERN_CASES = [
    pytest.param(draft, schema, valid, invalid, id=f"{name}-{draft}")
    for name, drafts, schema, valid, invalid in MODERN
    for draft in drafts
]


@pytest.mark.parametrize(("name", "draft", "schema"), _LEGACY_CASES)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_drafts_4_to_7_agree_on_drawn_and_mutated_instances(
    name: str, draft: str, schema: dict[str, Any], data: st.DataObject
) -> None:
    compiled = _compiled(draft, schema)
    drawn = data.draw(_drawn(name, draft, schema), label="drawn")
    _agree(compiled, drawn)
    _agree(compiled, data.draw(mutations(drawn), label="mutated"))


@pytest.mark.parametrize(("draft", "schema", "valid", "invalid"), _MODERN_CASES)
def test_drafts_2019_and_2020_judge_the_hand_made_instances(
    draft: str, schema: dict[str, Any], valid: list[Any], invalid: list[Any]
) -> None:
    compiled = _compiled(draft, schema)
    assert [_agree(compiled, instance) for instance in valid] == [True] * len(valid)
    assert [_agree(compiled, instance) for instance in invalid] == [False] * len(invalid)


@pytest.mark.parametrize(("draft", "schema", "valid", "invalid"), _MODERN_CASES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_drafts_2019_and_2020_agree_on_mutated_instances(
    draft: str, schema: dict[str, Any], valid: list[Any], invalid: list[Any], data: st.DataObject
) -> None:
    compiled = _compiled(draft, schema)
    start = data.draw(st.sampled_from(valid + invalid), label="start")
    _agree(compiled, data.draw(mutations(start), label="mutated"))


def test_the_corpus_covers_every_draft_and_the_keywords_that_matter() -> None:
    drafts = {draft for _, drafts, _ in LEGACY for draft in drafts}
    drafts |= {draft for _, drafts, _, _, _ in MODERN for draft in drafts}
    assert drafts == set(DRAFT_URIS)
    text = repr(LEGACY) + repr(MODERN)
    for keyword in (
        "patternProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$defs",
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
        "$anchor",
        "format",
        "multipleOf",
        "uniqueItems",
        "dependentSchemas",
        "prefixItems",
    ):
        assert repr(keyword) in text, keyword
