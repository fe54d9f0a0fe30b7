"""Hostile and careless schemas and payloads (issue 21, items 4, 6, 7 and 9).

- Nothing is ever retrieved: schemas whose references leave the document (``$ref``,
  ``$dynamicRef``, ``$recursiveRef``, draft 3's ``extends``; http://, file://, relative) are
  refused when loaded, and a local secret file's content appears nowhere.
- A schema that loads never makes validation raise anything but ``ValidationError``.
- Validation takes bounded time: a backtracking-prone pattern and ``uniqueItems`` over 6,001
  objects return within seconds, on the yes/no path and the wording path alike.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from polyn import SchemaError, ValidationError
from polyn.codec import Schemas, _compile, decode, encode
from polyn.config import Config
from polyn.event import Event

CONFIG = Config(domain="com.test", source_root="user.backend")
DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_2019 = "https://json-schema.org/draft/2019-09/schema"


def body(event_type: str, data: Any) -> bytes:
    return json.dumps(
        {
            "id": "1",
            "specversion": "1.0.1",
            "type": f"com.test.{event_type}",
            "source": "t",
            "data": data,
        }
    ).encode()


def refusal(schema: Any) -> str:
    with pytest.raises(SchemaError) as caught:
        Schemas.from_dict({"x.v1": schema})
    message = str(caught.value)
    assert message.startswith("Schemas must be valid JSONSchema documents, got ")
    return message


# -- nothing is retrieved ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"$dynamicRef": "http://169.254.169.254/latest/meta-data/"},
        {"$schema": DRAFT_2020, "$dynamicRef": "http://169.254.169.254/latest/meta-data/"},
        {"$schema": DRAFT_2020, "properties": {"a": {"$dynamicRef": "https://example.com/x#n"}}},
        {"$ref": "http://169.254.169.254/latest/meta-data/"},
        {"properties": {"a": {"$ref": "https://example.com/money.json"}}},
        {"$schema": DRAFT_2019, "$recursiveRef": "http://169.254.169.254/"},
        {"extends": "http://169.254.169.254/latest/meta-data/"},
        {"$schema": "http://json-schema.org/draft-03/schema#", "extends": {"$ref": "http://x/y"}},
        {"items": {"$ref": "money.json"}},
        {"$schema": "http://169.254.169.254/latest/meta-data/"},
    ],
)
def test_references_that_leave_the_schema_are_refused(schema: dict[str, Any]) -> None:
    message = refusal(schema)
    assert (
        "fetches nothing" in message
        or "no meta-schema is ever fetched" in message
        or ("extends" in message)
    )


def test_a_file_reference_is_refused_and_the_file_read_by_nobody(tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text('"-----BEGIN PRIVATE KEY----- s3cr3t-k3y-c0nt3nt"')
    for keyword in ("$ref", "$dynamicRef"):
        schema = {"$schema": DRAFT_2020, "properties": {"a": {keyword: secret.as_uri()}}}
        message = refusal(schema)
        assert "s3cr3t" not in message
        assert "does not resolve inside the schema" in message


def test_a_reference_typo_or_an_unreachable_anchor_is_refused_with_the_reason() -> None:
    typo = {
        "$schema": DRAFT_2020,
        "$defs": {"address": {"$anchor": "address", "type": "object"}},
        "properties": {"home": {"$ref": "#adress"}},
    }
    assert "does not resolve inside the schema" in refusal(typo)
    assert "adress" in refusal(typo)
    unreachable = {"$schema": DRAFT_2020, "properties": {"a": {"$dynamicRef": "#nowhere"}}}
    assert "does not resolve inside the schema" in refusal(unreachable)
    assert "does not resolve" in refusal({"properties": {"a": {"$ref": "#/definitions/no"}}})


# -- careless documents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$schema": 5}, "$schema 5 is not a string naming a draft"),
        ({"$schema": "http://example.com/custom"}, "is not a draft Polyn validates"),
        ("{not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (5, "a schema is a JSON object or a boolean"),
        ({"type": "not-a-valid-type"}, "not-a-valid-type"),
        ({"pattern": "(?<=a)b"}, "cannot be compiled by Polyn's linear-time"),
        ({"patternProperties": {"(a)\\1": {}}}, "cannot be compiled by Polyn's linear-time"),
        ({"pattern": "(?i)abc"}, "no inline flags such as (?i)"),
        ({"$schema": DRAFT_2020, "$defs": {"a": {"$schema": DRAFT_2019}}}, "another draft"),
        ({"minimum": float("nan")}, "is not JSON"),
    ],
)
def test_careless_documents_are_refused_with_the_reason(schema: Any, reason: str) -> None:
    assert reason in refusal(schema)


def test_a_deeply_nested_schema_is_refused_not_a_crash() -> None:
    schema: Any = {"type": "string"}
    for _ in range(300):
        schema = {"properties": {"a": schema}}
    assert "nests objects and arrays too deeply" in refusal(schema)
    assert "nests objects and arrays too deeply" in refusal(json.dumps(schema))


def test_a_bare_recursive_reference_validates_without_recursing_forever() -> None:
    schemas = Schemas.from_dict({"loop.v1": {"$ref": "#"}, "items.v1": {"items": {"$ref": "#"}}})
    assert decode(body("loop.v1", {"a": 1}), schemas, CONFIG).data == {"a": 1}
    deep: Any = []
    for _ in range(900):
        deep = [deep]
    assert decode(body("items.v1", deep), schemas, CONFIG).data == deep


def test_only_validation_errors_come_out_whatever_the_validators_raise() -> None:
    schemas = Schemas.from_dict({"f.v1": {"type": "string", "minLength": 3}})
    compiled = schemas._lookup("f.v1")
    assert compiled is not None

    def broken(instance: object) -> bool:
        raise KeyError("boom")  # a library bug, met by one event

    compiled._fast = broken
    with pytest.raises(ValidationError) as caught:
        decode(body("f.v1", "abc"), schemas, CONFIG)
    assert "could not be validated: KeyError: 'boom'" in str(caught.value)
    with pytest.raises(ValidationError):
        encode(Event.new(CONFIG, "f.v1", "abc"), schemas, CONFIG)
    with pytest.raises(ValidationError):
        schemas.check_data("f.v1", "abc")

    class BrokenWording:
        def iter_errors(self, instance: object) -> Any:
            raise RecursionError

    compiled._fast = None
    compiled._wording = BrokenWording()
    with pytest.raises(ValidationError) as caught:  # worded by the fast validator instead
        decode(body("f.v1", "ab"), schemas, CONFIG)
    assert "Property: `#` - " in str(caught.value)
    assert "ab" in str(caught.value).split("\n")[1]


# -- bounded time --------------------------------------------------------------------------------

NAIVE_EMAIL = r"^([a-zA-Z0-9_.-]+)*@example\.com$"


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


@pytest.mark.parametrize("draft", [None, DRAFT_2020])
def test_a_backtracking_pattern_is_judged_and_worded_in_bounded_time(draft: str | None) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"email": {"pattern": NAIVE_EMAIL}}}
    if draft:
        schema["$schema"] = draft
    schemas = Schemas.from_dict({"p.v1": schema})
    value = {"email": "a" * 30 + "!"}  # no match; Python's re takes tens of seconds
    compiled = _compile("p.v1", schema)
    assert _timed(lambda: compiled.is_valid(value)) < 5
    with pytest.raises(ValidationError, match="does not match") as caught:
        started = time.perf_counter()
        decode(body("p.v1", value), schemas, CONFIG)
    assert time.perf_counter() - started < 5
    assert NAIVE_EMAIL.replace("\\", "\\\\") in str(caught.value)
    assert decode(body("p.v1", {"email": "a.b@example.com"}), schemas, CONFIG)


def test_a_backtracking_pattern_property_is_judged_and_worded_in_bounded_time() -> None:
    schema = {
        "$schema": DRAFT_2020,
        "type": "object",
        "patternProperties": {NAIVE_EMAIL: {"type": "integer"}},
        "unevaluatedProperties": False,
    }
    schemas = Schemas.from_dict({"p.v1": schema})
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="Unevaluated properties are not allowed"):
        decode(body("p.v1", {"a" * 30 + "!": 1}), schemas, CONFIG)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("draft", [None, DRAFT_2019])
def test_unique_items_over_6001_objects_is_judged_and_worded_in_bounded_time(
    draft: str | None,
) -> None:
    schema: dict[str, Any] = {"type": "array", "uniqueItems": True}
    if draft:
        schema["$schema"] = draft
    schemas = Schemas.from_dict({"u.v1": schema})
    items = [{"n": n, "k": "v"} for n in range(6000)]
    duplicated = [*items, {"k": "v", "n": 5999}]  # equal to the last one, keys reordered
    assert len(json.dumps(duplicated)) > 60_000
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="has non-unique elements"):
        decode(body("u.v1", duplicated), schemas, CONFIG)
    assert decode(body("u.v1", [*items, {"n": 6000, "k": "v"}]), schemas, CONFIG)
    assert time.perf_counter() - started < 5


def test_unique_items_follows_json_equality() -> None:
    schemas = Schemas.from_dict({"u.v1": {"uniqueItems": True}})
    for same in ([1, 1.0], [{"a": [1]}, {"a": [1.0]}], [[], []], ["a", "a"]):
        assert not schemas.is_valid("u.v1", same)
    for different in ([1, True], [0, False], [[1, 2], [2, 1]], [{"a": 1}, {"a": True}], [None, 0]):
        assert schemas.is_valid("u.v1", different)
    with pytest.raises(ValidationError, match="has non-unique elements"):
        schemas.check_data("u.v1", [{"a": [1]}, {"a": [1.0]}])


@pytest.mark.parametrize("name", ["email", "hostname", "uri-reference", "date-time", "uri"])
def test_format_checks_take_bounded_time_on_long_adversarial_strings(name: str) -> None:
    schemas = Schemas.from_dict({"f.v1": {"format": name}})
    for value in (
        "a" * 20_000 + "@" + "a." * 10_000 + "!",
        "a-" * 20_000 + "!",
        "a:" * 20_000 + " ",
        "1" * 20_000,
    ):
        assert _timed(lambda value=value: schemas.is_valid("f.v1", value)) < 5
