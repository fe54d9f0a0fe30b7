"""The codec: conformance cases §13.4 (#51-70) adapted to Python, the wire shape, the lenient
envelope formats, payloads a fast JSON codec cannot carry, and the Schemas snapshot."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from polyn import SchemaError, ValidationError, __version__
from polyn.codec import Schemas, decode, encode
from polyn.config import Config
from polyn.errors import SchemaNotFoundError
from polyn.event import Event

CONFIG = Config(domain="com.test", source_root="user.backend")
SCHEMAS = Schemas.from_dict(
    {
        "foo.created.v1": {"type": "null"},
        "user.xml.v1": {"type": "string"},
        "user.created.v1": {"type": "object", "properties": {"foo": {"type": "string"}}},
        "calc.mult.v1": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
        "any.thing.v1": True,
    }
)
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
NAIVE_TIME = "2022-10-20T16:59:58.123456"


def body(**fields: Any) -> bytes:
    return json.dumps(
        {"id": "foo", "specversion": "1.0.1", "source": "test", "time": NAIVE_TIME, **fields}
    ).encode()


def decode_error(raw: bytes | str) -> str:
    with pytest.raises(ValidationError) as caught:
        decode(raw, SCHEMAS, CONFIG)
    return str(caught.value)


def encode_error(event: Event) -> str:
    with pytest.raises(ValidationError) as caught:
        encode(event, SCHEMAS, CONFIG)
    return str(caught.value)


def event(event_type: str = "user.created.v1", data: Any = None, **fields: Any) -> Event:
    values = {"source": "test", "type": f"com.test.{event_type}", "data": data, **fields}
    return Event(**values)


# -- decode (§13.4 #51-58, #68-70) ---------------------------------------------------------------


def test_decodes_a_naive_time_unchanged() -> None:
    received = decode(body(type="com.test.foo.created.v1", data=None), SCHEMAS, CONFIG)
    assert received.type == "com.test.foo.created.v1"
    assert received.data is None
    assert received.time == NAIVE_TIME
    assert received.id == "foo"


def test_decodes_data_with_string_keys() -> None:
    received = decode(body(type="com.test.user.created.v1", data={"foo": "bar"}), SCHEMAS, CONFIG)
    assert received.data == {"foo": "bar"}


def test_decode_without_a_schema_fails() -> None:
    message = decode_error(body(type="com.test.not.a.schema.v1", data={"foo": "bar"}))
    assert message.startswith("Polyn event foo from test is not valid\n")
    assert (
        "\nSchema for not.a.schema.v1 does not exist. Make sure it's been added to your `schemas` "
        "codebase and has been loaded into the schema store on your NATS server\n" in message
    )
    assert "\nEvent data: {'id': 'foo'" in message


def test_decode_of_data_breaking_its_schema_lists_each_problem() -> None:
    message = decode_error(body(type="com.test.user.created.v1", data={"foo": 1}))
    lines = message.split("\n")
    assert lines[0] == "Polyn event foo from test is not valid"
    assert lines[1] == "Property: `#/foo` - 1 is not of type 'string'"
    assert lines[2].startswith("Event data: {")
    assert len(lines) == 3


def test_decode_of_an_invalid_type_fails_with_the_naming_text() -> None:
    message = decode_error(body(type="user created v1", data=None))
    assert "Event names must be lowercase, alphanumeric and dot separated" in message
    assert message.startswith("Polyn event foo from test is not valid")


def test_decode_of_a_json_non_object_is_not_a_cloud_event() -> None:
    assert decode_error(b"123").split("\n") == [
        "Polyn events need to follow the CloudEvent spec",
        "Property: `#` - 123 is not of type 'object'",
        "Message received: 123",
    ]


@pytest.mark.parametrize("raw", [b"foo", "foo", bytearray(b"foo"), memoryview(b"foo")])
def test_decode_of_non_json_says_so(raw: bytes | str) -> None:
    message = decode_error(raw)
    assert message.startswith("Polyn was unable to decode the following message: \nfoo \n")
    assert "There were errors at position 0." in message


def test_decodes_a_ruby_shaped_event() -> None:
    raw = (
        b'{"specversion":"1.0","id":"foo","type":"com.test.calc.mult.v1",'
        b'"source":"calculation.engine","time":"2022-10-20T16:59:58Z","data":{"a":1,"b":2},'
        b'"datacontenttype":"application/json","polyndata":{"clientlang":"ruby",'
        b'"clientlangversion":"3.1.2","clientversion":"0.4.0"}}'
    )
    received = decode(raw, SCHEMAS, CONFIG)
    assert received.type == "com.test.calc.mult.v1"
    assert received.data == {"a": 1, "b": 2}
    # Kept as sent (Ruby would rewrite them; Elixir keeps them).
    assert received.specversion == "1.0"
    assert received.source == "calculation.engine"
    assert received.time == "2022-10-20T16:59:58Z"
    assert received.polyndata["clientlang"] == "ruby"
    assert received.dataschema is None


def test_decode_of_a_minimal_event_fills_what_elixir_fills() -> None:
    raw = (
        b'{"id":"foo","specversion":"1.0","type":"com.test.calc.mult.v1","source":"x",'
        b'"data":{"a":1,"b":2},"ext":1}'
    )
    received = decode(raw, SCHEMAS, CONFIG)
    assert received.time is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", received.time)
    assert received.polyndata["clientlang"] == "python"
    assert received.datacontenttype == "application/json"
    assert not hasattr(received, "ext")


def test_decode_keeps_a_url_source_and_an_explicit_null_time() -> None:
    raw = body(type="com.test.foo.created.v1", source="https://example.com/orders", time=None)
    received = decode(raw, SCHEMAS, CONFIG)
    assert received.source == "https://example.com/orders"
    assert received.time is None


@pytest.mark.parametrize(
    "raw",
    [
        body(type="com.test.calc.mult.v1", data={"a": None, "b": "2"}),
        body(type="com.test.calc.mult.v1", id="", data={"a": 1, "b": 2}),
        b'{"id":"","data":"foo","type":"calc.mult.v1"}',
        body(type="com.test.foo.bar", data=None),
    ],
)
def test_invalid_ruby_cases_fail(raw: bytes) -> None:
    decode_error(raw)


# -- the envelope's formats are exactly as lenient as Elixir's (§1.2) -----------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"source": "com:test:user:backend"},
        {"source": "com.test.foo"},
        {"source": "https://example.com/a?b=c#d"},
        {"time": "2022-10-20T16:59:58"},
        {"time": "2022-10-20T16:59:58+02:00"},
        {"time": "2022-10-20T16:59:58.1Z"},
        {"time": "-12022-10-20T16:59:58Z"},
        {"dataschema": "https://example.com/schema"},
        {"dataschema": "urn:example:schema"},
        {"dataschema": None},
        {"datacontenttype": None},
        {"subject": "x"},
    ],
)
def test_lenient_envelope_values_are_accepted(fields: dict[str, Any]) -> None:
    decode(body(type="com.test.foo.created.v1", **fields), SCHEMAS, CONFIG)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"source": "com test"}, "Property: `#/source` - 'com test' is not a 'uri-reference'"),
        ({"source": "\\foo"}, "Property: `#/source` - '\\\\foo' is not a 'uri-reference'"),
        ({"source": ""}, "Property: `#/source` - '' should be non-empty"),
        ({"time": "2022-10-20 16:59:58"}, "is not a 'date-time'"),
        ({"time": "2022-13-20T16:59:58Z"}, "is not a 'date-time'"),
        ({"time": "2022-10-20T16:59:58z"}, "is not a 'date-time'"),
        ({"dataschema": "schema.json"}, "Property: `#/dataschema` - 'schema.json' is not a 'uri'"),
        ({"specversion": 1}, "Property: `#/specversion` - 1 is not of type 'string'"),
        ({"polyndata": {"clientlang": "go"}}, "'clientlangversion' is a required property"),
        ({"polyndata": None}, "Property: `#/polyndata` - None is not of type 'object'"),
    ],
)
def test_invalid_envelope_values_are_refused(fields: dict[str, Any], problem: str) -> None:
    assert problem in decode_error(body(type="com.test.foo.created.v1", **fields))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"polyndata": None}, "Property: `#/polyndata` - None is not of type 'object'"),
        ({"polyndata": {"clientlang": 1}}, "1 is not of type 'string'"),
        ({"time": "2022-10-20T16:59:58.12345xZ"}, "is not a 'date-time'"),
        ({"time": "2022-10-20T16:59:58.123456z"}, "is not a 'date-time'"),
        ({"source": "com test"}, "is not a 'uri-reference'"),
        ({"specversion": ""}, "should be non-empty"),
        ({"datacontenttype": ""}, "should be non-empty"),
        ({"type": "com.test.Foo.created.v1"}, "Foo.created.v1"),
    ],
)
def test_what_decode_remembers_of_valid_events_never_lets_an_invalid_one_through(
    fields: dict[str, Any], problem: str
) -> None:
    """decode() remembers checked envelope values (the type, source, specversion and content
    type together, the time's second, the last polyndata): an event differing from a valid one
    in one attribute is still refused, however often the valid one was decoded before, and a
    receiver changing a decoded event's polyndata changes nothing for the next one."""
    valid = encode(
        Event.new(CONFIG, "foo.created.v1", None, time="2022-10-20T16:59:58.123456Z"),
        SCHEMAS,
        CONFIG,
    )
    for _ in range(3):
        received = decode(valid, SCHEMAS, CONFIG)
    received.polyndata["clientlang"] = 1
    received.polyndata.pop("clientversion")
    document = {**json.loads(valid), **fields}
    assert problem in decode_error(json.dumps(document).encode())
    changed = {**json.loads(valid), "polyndata": dict(received.polyndata)}
    assert "is not of type 'string'" in decode_error(json.dumps(changed).encode())
    assert decode(valid, SCHEMAS, CONFIG) == Event(**{**json.loads(valid), "data": None})


def test_a_missing_required_attribute_is_named() -> None:
    message = decode_error(b'{"id":"1","source":"x","specversion":"1.0"}')
    assert "Property: `#` - 'type' is a required property" in message
    assert message.startswith("Polyn event 1 from x is not valid")


# -- encode (§13.4 #59-67) -----------------------------------------------------------------------


def test_encodes_the_elixir_wire_shape() -> None:
    sent = Event.new(CONFIG, "foo.created.v1", None, time="2022-10-20T16:59:58.123456Z")
    raw = encode(sent, SCHEMAS, CONFIG)
    wire = json.loads(raw)
    assert list(wire) == [
        "id",
        "specversion",
        "type",
        "source",
        "time",
        "data",
        "datacontenttype",
        "dataschema",
        "polyndata",
    ]
    assert UUID4.fullmatch(wire["id"])
    assert wire["specversion"] == "1.0.1"
    assert wire["type"] == "com.test.foo.created.v1"
    assert wire["source"] == "com:test:user:backend"
    assert wire["time"] == "2022-10-20T16:59:58.123456Z"
    assert wire["data"] is None
    assert wire["datacontenttype"] == "application/json"
    assert wire["dataschema"] is None
    assert wire["polyndata"]["clientlang"] == "python"
    assert wire["polyndata"]["clientversion"] == __version__
    assert b" " not in raw  # compact, as Jason.encode! writes it


def test_encode_then_decode_gives_the_event_back() -> None:
    sent = Event.new(CONFIG, "calc.mult.v1", {"a": 1, "b": 2}, source="calc")
    raw = encode(sent, SCHEMAS, CONFIG)
    assert json.loads(raw)["data"] == {"a": 1, "b": 2}
    assert decode(raw, SCHEMAS, CONFIG) == sent


def test_encode_keeps_another_content_type() -> None:
    sent = event("user.xml.v1", '<much wow="xml"/>', datacontenttype="application/xml")
    wire = json.loads(encode(sent, SCHEMAS, CONFIG))
    assert wire["data"] == '<much wow="xml"/>'
    assert wire["datacontenttype"] == "application/xml"
    assert (
        json.loads(encode(event("user.xml.v1", "x", datacontenttype=None), SCHEMAS, CONFIG))[
            "datacontenttype"
        ]
        == "application/json"
    )


def test_encode_without_a_schema_fails() -> None:
    assert "Schema for not.a.schema.v1 does not exist" in encode_error(event("not.a.schema.v1"))


def test_encode_of_a_null_id_names_the_attribute() -> None:
    message = encode_error(event("foo.created.v1", id=None))
    assert "Property: `#/id` - None is not of type 'string'" in message
    assert message.startswith("Polyn event  from test is not valid")


def test_encode_of_data_breaking_its_schema() -> None:
    message = encode_error(event("user.created.v1", None, id="abc"))
    assert message.split("\n")[:2] == [
        "Polyn event abc from test is not valid",
        "Property: `#` - None is not of type 'object'",
    ]
    assert "'b' is a required property" in encode_error(event("calc.mult.v1", {"a": 1}))
    assert "'foo' is not of type 'object'" in encode_error(event("calc.mult.v1", "foo"))
    assert "should be non-empty" in encode_error(event("calc.mult.v1", {"a": 1, "b": 2}, id=""))


def test_encode_of_an_invalid_type() -> None:
    assert "Event names must be lowercase" in encode_error(event("user created v1"))


def test_encode_takes_only_events() -> None:  # §13 case 66
    expected = r"^Can only serialize `polyn\.Event` instances\. got 'foo'$"
    with pytest.raises(ValidationError, match=expected):
        encode("foo", SCHEMAS, CONFIG)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # what Python code catches for a wrong argument type
        encode({"id": "1"}, SCHEMAS, CONFIG)  # type: ignore[arg-type]


# -- payloads a fast JSON codec cannot carry -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        2**64,
        -(2**63) - 1,
        123456789012345678901234567890,
        {"n": [2**100, -(2**100), 2**64 - 1, 1.5e300]},
        "𝄞 ünïcödé \u2028",
    ],
)
def test_large_integers_and_unicode_round_trip(data: Any) -> None:
    raw = encode(event("any.thing.v1", data), SCHEMAS, CONFIG)
    assert decode(raw, SCHEMAS, CONFIG).data == data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("a\ud800b", "Property: `#/data` - 'a\\ud800b' holds a lone surrogate"),
        ({"x": ["ok", "\udfff"]}, "Property: `#/data/x/1` - '\\udfff' holds a lone surrogate"),
        ({"k\ud800": 1}, "with a lone surrogate"),
        (float("nan"), "Property: `#/data` - nan is not a JSON number"),
        ([float("inf")], "Property: `#/data/0` - inf is not a JSON number"),
        ({"p": (1, 2)}, "Property: `#/data/p` - (1, 2) is a tuple, not a JSON value"),
        ({1: "a"}, "has the key 1; JSON object keys are strings"),
        ({"s": {1}}, "is a set, not a JSON value"),
    ],
)
def test_payloads_json_cannot_carry_are_refused(data: Any, problem: str) -> None:
    assert problem in encode_error(event("any.thing.v1", data))


def test_json_subclasses_are_what_they_extend() -> None:
    import enum
    from collections import OrderedDict

    class Colour(enum.StrEnum):
        RED = "red"

    data = OrderedDict(colour=Colour.RED, n=True)
    raw = encode(event("any.thing.v1", data), SCHEMAS, CONFIG)
    assert decode(raw, SCHEMAS, CONFIG).data == {"colour": "red", "n": True}


def test_lone_surrogates_and_non_json_numbers_in_a_body_are_refused() -> None:
    for data in ('"\\ud800"', "NaN", "1e400"):
        raw = b'{"id":"1","specversion":"1","type":"com.test.any.thing.v1","source":"x","data":'
        assert "unable to decode" in decode_error(raw + data.encode() + b"}")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    assert "nested too deeply" in encode_error(event("any.thing.v1", deep))
    assert "unable to decode" in decode_error(b"[" * 5000 + b"]" * 5000)
    raw = b'{"id":"1","specversion":"1","type":"com.test.any.thing.v1","source":"x","data":'
    data = decode(raw + b"[" * 1000 + b"]" * 1000 + b"}", SCHEMAS, CONFIG).data
    depth = 0
    while data:
        data, depth = data[0], depth + 1
    assert (data, depth) == ([], 999)  # a deep but valid body decodes


def test_error_messages_stay_short_for_huge_payloads() -> None:
    message = encode_error(event("user.created.v1", {"foo": ["x" * 1_000_000]}, id="big"))
    assert len(message) < 5000
    assert "more characters)" in message
    assert len(decode_error(b"not json " * 100_000)) < 5000


# -- Schemas -------------------------------------------------------------------------------------


def test_schemas_refuse_documents_that_are_not_json_schema() -> None:
    with pytest.raises(SchemaError) as caught:
        Schemas.from_dict({"foo.bar": {"type": "not-a-valid-type"}})
    assert str(caught.value).startswith(
        "Schemas must be valid JSONSchema documents, got {'type': 'not-a-valid-type'}"
    )
    assert "'foo.bar'" in str(caught.value)
    for document in (5, "bar", '{"type": 3}', {"minLength": -1}, {"pattern": "("}):
        with pytest.raises(SchemaError, match="Schemas must be valid JSONSchema documents, got"):
            Schemas.from_dict({"foo.bar": document})


def test_schemas_refuse_references_they_cannot_resolve() -> None:
    for ref in ("https://example.com/money.json", "money.json", "#/definitions/missing"):
        with pytest.raises(SchemaError, match="does not resolve inside the schema"):
            Schemas.from_dict({"foo.bar": {"properties": {"a": {"$ref": ref}}}})


def test_schemas_resolve_local_references() -> None:
    schemas = Schemas.from_dict(
        {
            "money.v1": {
                "definitions": {"amount": {"type": "integer", "minimum": 0}},
                "type": "object",
                "properties": {"amount": {"$ref": "#/definitions/amount"}},
            }
        }
    )
    assert decode(body(type="com.test.money.v1", data={"amount": 5}), schemas, CONFIG)
    with pytest.raises(ValidationError, match=r"Property: `#/amount` - -1 is less than"):
        decode(body(type="com.test.money.v1", data={"amount": -1}), schemas, CONFIG)


def test_schemas_accept_json_text_as_stored_in_the_bucket() -> None:
    schemas = Schemas.from_dict({"user.xml.v1": '{"type":"string"}', "b.v1": b"true"})
    assert schemas.get("user.xml.v1") == {"type": "string"}
    assert schemas.get("b.v1") is True


def test_schemas_are_an_immutable_snapshot() -> None:
    source = {"a.v1": {"type": "object"}}
    schemas = Schemas.from_dict(source)
    source["a.v1"]["type"] = "string"
    source["b.v1"] = {}
    assert schemas.get("a.v1") == {"type": "object"}
    schemas.get("a.v1")["type"] = "array"
    assert schemas.get("a.v1") == {"type": "object"}
    assert schemas.names() == ("a.v1",)


def test_schemas_snapshots_derive_new_ones() -> None:
    empty = Schemas()
    assert (len(empty), empty.names(), empty.get("a.v1")) == (0, (), None)
    one = empty.with_schema("a.v1", {"type": "null"})
    two = one.with_schema("b.v1", {"type": "string"})
    assert (one.names(), two.names()) == (("a.v1",), ("a.v1", "b.v1"))
    assert "b.v1" in two and "b.v1" not in one
    assert two.without("a.v1").names() == ("b.v1",)
    assert two.without("zzz.v1").names() == two.names()
    assert repr(two) == "Schemas(['a.v1', 'b.v1'])"
    with pytest.raises(SchemaError):
        one.with_schema("c.v1", {"type": "nope"})


def test_payload_formats_are_checked_like_elixir() -> None:
    schemas = Schemas.from_dict(
        {
            "f.v1": {
                "type": "object",
                "properties": {
                    "when": {"format": "date-time"},
                    "mail": {"format": "email"},
                    "ip": {"format": "ipv4"},
                    "id": {"format": "uuid"},  # not asserted by Elixir, nor here
                },
            }
        }
    )
    ok = {"when": "2022-10-20T16:59:58", "mail": "ada@example.com", "ip": "10.0.0.1", "id": "x"}
    assert decode(body(type="com.test.f.v1", data=ok), schemas, CONFIG).data == ok
    bad = {"when": "yesterday", "mail": "ada", "ip": "10.0.0.256"}
    with pytest.raises(ValidationError) as caught:
        decode(body(type="com.test.f.v1", data=bad), schemas, CONFIG)
    message = str(caught.value)
    assert "Property: `#/when` - 'yesterday' is not a 'date-time'" in message
    assert "Property: `#/mail` - 'ada' is not a 'email'" in message
    assert "Property: `#/ip` - '10.0.0.256' is not a 'ipv4'" in message


def test_orjson_and_encode_agree_on_the_bytes() -> None:
    sent = Event.new(CONFIG, "calc.mult.v1", {"a": 1, "b": 2})
    raw = encode(sent, SCHEMAS, CONFIG)
    assert orjson.loads(raw) == json.loads(raw)


# -- the publisher's entry points: Schemas.is_valid and Schemas.check_data -------------------------


def test_is_valid_is_the_bare_verdict() -> None:
    assert SCHEMAS.is_valid("calc.mult.v1", {"a": 1, "b": 2})
    assert not SCHEMAS.is_valid("calc.mult.v1", {"a": 1})
    assert not SCHEMAS.is_valid("not.a.schema.v1", {"a": 1})


def test_check_data_refuses_what_encode_refuses_with_the_same_texts() -> None:
    envelope = {"id": "abc", "source": "test", "type": "com.test.calc.mult.v1"}
    SCHEMAS.check_data("calc.mult.v1", {"a": 1, "b": 2}, event=envelope)
    with pytest.raises(ValidationError) as caught:
        SCHEMAS.check_data("calc.mult.v1", {"a": 1}, event=envelope)
    lines = str(caught.value).split("\n")
    assert lines[:2] == [
        "Polyn event abc from test is not valid",
        "Property: `#` - 'b' is a required property",
    ]
    assert lines[2].startswith("Event data: {'id': 'abc'")
    with pytest.raises(SchemaNotFoundError, match=r"Schema for not\.a\.schema\.v1 does not exist"):
        SCHEMAS.check_data("not.a.schema.v1", {"a": 1})
    with pytest.raises(ValidationError, match=r"Property: `#/data/p` - \(1, 2\) is a tuple"):
        SCHEMAS.check_data("any.thing.v1", {"p": (1, 2)})
    with pytest.raises(ValidationError, match="nan is not a JSON number"):
        SCHEMAS.check_data("any.thing.v1", [float("nan")])


def test_a_combined_schema_from_the_old_cli_validates_the_whole_event() -> None:
    envelope_schema = json.loads(
        (Path(__file__).parent.parent / "polyn" / "cloud_event_schema.json").read_text()
    )
    payload = {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}
    combined = {
        **envelope_schema,
        "definitions": {"datadef": payload},
        "properties": {**envelope_schema["properties"], "data": {"$ref": "#/definitions/datadef"}},
    }
    schemas = Schemas.from_dict({"old.widget.v1": combined})
    assert decode(body(type="com.test.old.widget.v1", data={"size": 1}), schemas, CONFIG)
    with pytest.raises(ValidationError, match=r"Property: `#/data/size` - 'x' is not of type"):
        decode(body(type="com.test.old.widget.v1", data={"size": "x"}), schemas, CONFIG)
    assert schemas.is_valid("old.widget.v1", {"size": 1})
    assert not schemas.is_valid("old.widget.v1", {"size": "x"})
    envelope = {"id": "1", "source": "x", "specversion": "1.0", "type": "com.test.old.widget.v1"}
    assert schemas.is_valid("old.widget.v1", {"size": 1}, event=envelope)
    assert not schemas.is_valid("old.widget.v1", {"size": 1}, event={"id": "1"})  # no source
