"""Properties of the codec that hold for all inputs (Hypothesis).

- Any JSON payload round-trips through encode -> decode unchanged under a permissive schema.
- A payload decodes if and only if jsonschema (with Polyn's format checks) accepts it, so one that
  violates its schema never decodes, and encode refuses it too.
- The fast validator (jsonschema-rs) and the wording one (jsonschema with Polyn's keywords) agree
  on every JSON value, for random schemas built from the keywords where they could differ
  (regular expressions, float multiples, enum/const equality of 1, 1.0 and true, uniqueness,
  formats, content keywords). ``test_codec_differential.py`` does the same over a corpus of
  real-world schemas of every draft.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from polyn import SchemaError, ValidationError
from polyn._json_formats import FORMATS
from polyn._validator import FORMAT_CHECKER, CompiledSchema
from polyn._wording import REGISTRY
from polyn.codec import Schemas, _compile, decode, encode
from polyn.config import Config
from polyn.event import Event

CONFIG = Config(domain="com.test", source_root="user.backend")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(data=json_values)
def test_any_json_payload_round_trips(data: Any) -> None:
    schemas = Schemas.from_dict({"any.thing.v1": {}})
    sent = Event.new(CONFIG, "any.thing.v1", data)
    received = decode(encode(sent, schemas, CONFIG), schemas, CONFIG)
    assert received == sent
    assert json.dumps(received.data) == json.dumps(data)  # -0.0 and 1.0 vs 1 stay themselves


# -- random schemas and instances around the keywords where validators differ ---------------------

_KEYS = st.sampled_from(["a", "b", "c"])
_STRINGS = st.sampled_from(
    [
        "",
        "a",
        "a\n",
        "abc",
        "ABC",
        "\u0663",
        "é",
        "\x1c",
        "a\rb",
        "2022-10-20T16:59:58",
        "2022-10-20T16:59:58.5Z",
        "2022-10-20T16:59:58z",
        "com:test:user",
        "https://x.y/z",
        "http://a b",
        "\\x",
        "ada@example.com",
        "10.0.0.1",
        "::1",
        "1.2.3.256",
        "2022-10-20",
        "12:00:00Z",
        "/a~1b",
        "host-name.com",
        "e30=",
        "{}",
        "not base64!",
    ]
) | st.text(max_size=4)
_NUMBERS = (
    st.sampled_from(
        [
            0,
            1,
            -1,
            2,
            3,
            7,
            1.0,
            -0.0,
            0.3,
            0.5,
            2.5,
            4.5,
            19.01,
            0.1,
            1e308,
            1e20,
            2**64,
            2**70,
            3 * 2**80,
        ]
    )
    | st.integers(-10, 10)
    | st.floats(-100, 100, allow_nan=False)
)
_SCALARS = st.none() | st.booleans() | _NUMBERS | _STRINGS
instances = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=10,
)
_PATTERNS = st.sampled_from(
    ["^a$", "a$", "\\d", "^\\w+$", "\\s", "^.$", "(?i)abc", "^[a-z]*$", "b", "^(?:a|b)+$", "\\Z"]
)
_FORMAT_NAMES = st.sampled_from([*FORMATS, "uuid", "regex", "made-up"])
_TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])

_leaf_keywords = st.fixed_dictionaries(
    {},
    optional={
        "type": _TYPES | st.lists(_TYPES, min_size=1, max_size=3, unique=True),
        "enum": st.lists(instances, min_size=1, max_size=4),
        "const": instances,
        "minimum": _NUMBERS,
        "maximum": _NUMBERS,
        "exclusiveMinimum": _NUMBERS,
        "multipleOf": st.sampled_from([1, 2, 3, 0.1, 0.01, 0.5, 2.5, 1e-3]),
        "minLength": st.integers(0, 3),
        "maxLength": st.integers(0, 3),
        "pattern": _PATTERNS,
        "format": _FORMAT_NAMES,
        "minItems": st.integers(0, 2),
        "uniqueItems": st.booleans(),
        "maxProperties": st.integers(0, 2),
        "required": st.lists(_KEYS, max_size=3, unique=True),
        "contentEncoding": st.just("base64"),
        "contentMediaType": st.just("application/json"),
    },
)


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda leaf, nested: {**leaf, **nested},
        _leaf_keywords,
        st.fixed_dictionaries(
            {},
            optional={
                "properties": st.dictionaries(_KEYS, inner, max_size=3),
                "additionalProperties": inner,
                "items": inner | st.lists(inner, max_size=2),
                "additionalItems": inner,
                "contains": inner,
                "propertyNames": inner,
                "not": inner,
                "anyOf": st.lists(inner, min_size=1, max_size=3),
                "oneOf": st.lists(inner, min_size=1, max_size=3),
                "if": inner,
                "then": inner,
                "dependencies": st.dictionaries(
                    _KEYS, inner | st.lists(_KEYS, max_size=2, unique=True), max_size=2
                ),
            },
        ),
    )


schemas = st.recursive(st.booleans() | _leaf_keywords, _nested, max_leaves=6)


# One keyword at a time meets the inputs where the libraries differ far more often.
single_keyword_schemas = st.one_of(
    _PATTERNS.map(lambda p: {"pattern": p}),
    st.sampled_from([1, 2, 3, 0.1, 0.01, 0.5, 2.5, 1e-3]).map(lambda m: {"multipleOf": m}),
    _FORMAT_NAMES.map(lambda f: {"format": f}),
    st.lists(_SCALARS, min_size=1, max_size=3).map(lambda e: {"enum": e}),
    _SCALARS.map(lambda c: {"const": c}),
    st.just({"uniqueItems": True}),
    st.just({"contentEncoding": "base64", "contentMediaType": "application/json"}),
    _TYPES.map(lambda t: {"type": t}),
    _NUMBERS.map(lambda n: {"maximum": n}),
)


def _worded(compiled: CompiledSchema, value: Any) -> bool:
    """The wording validator's verdict on ``value``."""
    wording = compiled.draft.wording(
        compiled.document(), registry=REGISTRY, format_checker=FORMAT_CHECKER
    )
    return bool(wording.is_valid(value))


def _reference(schema: Any) -> Any:
    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return _compile("x.v1", schema).draft.wording(schema, registry=REGISTRY, format_checker=checker)


@settings(max_examples=150)
@given(schema=schemas, values=st.lists(instances, min_size=1, max_size=6))
def test_fast_and_detailed_validators_agree(schema: Any, values: list[Any]) -> None:
    try:
        compiled = _compile("x.v1", schema)
    except SchemaError:
        assume(False)
    for value in values:
        assert compiled.is_valid(value) == _worded(compiled, value), value


@settings(max_examples=300)
@given(schema=single_keyword_schemas, values=st.lists(instances, min_size=1, max_size=8))
def test_fast_and_detailed_validators_agree_keyword_by_keyword(
    schema: dict[str, Any], values: list[Any]
) -> None:
    try:
        compiled = _compile("x.v1", schema)
    except SchemaError:
        assume(False)  # a pattern outside ECMA-262 ("(?i)...", "\\Z"): refused at load
    for value in values:
        assert compiled.is_valid(value) == _worded(compiled, value), value


@settings(max_examples=60)
@given(schema=schemas, value=instances)
def test_a_payload_decodes_exactly_when_jsonschema_accepts_it(schema: Any, value: Any) -> None:
    try:
        snapshot = Schemas.from_dict({"x.v1": schema})
    except SchemaError:
        assume(False)
    body = json.dumps(
        {"id": "1", "specversion": "1.0.1", "type": "com.test.x.v1", "source": "t", "data": value}
    )
    sent = Event.new(CONFIG, "x.v1", value)
    if _reference(schema).is_valid(value):
        assert decode(body, snapshot, CONFIG).data == value
        encode(sent, snapshot, CONFIG)
    else:
        with pytest.raises(ValidationError, match="Property: `#"):
            decode(body, snapshot, CONFIG)
        with pytest.raises(ValidationError, match="Property: `#"):
            encode(sent, snapshot, CONFIG)


_ENVELOPE_SCHEMA = json.loads(
    resources.files("polyn").joinpath("cloud_event_schema.json").read_text()
)
_maybe_text = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "a b", "x\n"]))
_ODD_VALUES = {
    "id": _maybe_text,
    "source": st.one_of(_maybe_text, st.sampled_from(["http://x/y#z", "a#\\b", "a b", "#"])),
    "specversion": _maybe_text,
    "type": _maybe_text,
    "datacontenttype": _maybe_text,
    "dataschema": st.one_of(_maybe_text, st.just("http://schemas/x")),
    "time": st.one_of(
        _maybe_text,
        st.sampled_from(["2024-13-02T03:04:05Z", "2024-01-02", "2024-01-02T03:04:05+25:00"]),
    ),
    "polyndata": st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["clientlang", "clientlangversion", "clientversion", "other"]),
            st.one_of(st.text(max_size=3), st.integers(), st.none()),
        ),
    ),
}


@given(
    changes=st.lists(st.sampled_from(sorted(_ODD_VALUES)), unique=True, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({key: _ODD_VALUES[key] for key in keys})
    )
)
def test_the_publish_fast_path_only_accepts_envelopes_the_schema_accepts(
    changes: dict[str, Any],
) -> None:
    """encode() skips the envelope validator when its plain check passes: that check must
    never accept what the validator (and jsonschema) would refuse. Envelopes start valid (as
    Event.new builds them) and get up to three odd attributes."""
    from polyn.codec import _ENVELOPE, _plain_envelope

    event = Event.new(Config(domain="com.test", source_root="svc"), "foo.bar.v1", {"x": 1})
    document = {
        "id": event.id,
        "specversion": event.specversion,
        "type": event.type,
        "source": event.source,
        "time": event.time,
        "data": event.data,
        "datacontenttype": event.datacontenttype,
        "dataschema": event.dataschema,
        "polyndata": event.polyndata,
    }
    document.update(changes)
    if _plain_envelope(document):
        assert _ENVELOPE.is_valid(document)
        assert _worded(_ENVELOPE, document)
        assert _reference(_ENVELOPE_SCHEMA).is_valid(document)
    elif not changes:
        raise AssertionError("an envelope as Event.new builds it must take the fast path")


@given(
    changes=st.lists(st.sampled_from(sorted(_ODD_VALUES)), unique=True, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({key: _ODD_VALUES[key] for key in keys})
    ),
    removed=st.lists(st.sampled_from(["time", "polyndata", "data", "datacontenttype"]), max_size=2),
    data=instances,
)
def test_the_decode_fast_path_gives_what_the_long_way_gives(
    changes: dict[str, Any], removed: list[str], data: Any
) -> None:
    """decode() first tries everything in one pass over the usual shape: whatever that pass
    accepts, the long way (envelope schema, naming rule, payload validator) accepts too, with the
    same event."""
    from polyn.codec import _decoded_quickly, _validate

    config = Config(domain="com.test", source_root="svc")
    schemas = Schemas.from_dict({"foo.bar.v1": {"type": ["object", "array", "string", "null"]}})
    event = Event.new(config, "foo.bar.v1", None)
    document = {
        "id": event.id,
        "specversion": event.specversion,
        "type": event.type,
        "source": event.source,
        "time": event.time,
        "data": data,
        "datacontenttype": event.datacontenttype,
        "dataschema": event.dataschema,
        "polyndata": event.polyndata,
    }
    document.update(changes)
    for key in removed:
        document.pop(key, None)
    # What decode() remembers of valid events is warm, as in a running consumer.
    decode(encode(event, schemas, config), schemas, config)
    try:
        _validate(document, schemas, config)  # also caches the name, as a first decode does
        valid = True
    except ValidationError:
        valid = False
    quick = _decoded_quickly(document, schemas, config.domain)
    if quick is not None:
        assert valid
        long_way = Event(
            id=document["id"],
            specversion=document["specversion"],
            type=document["type"],
            source=document["source"],
            time=document["time"] if "time" in document else quick.time,
            data=document.get("data"),
            datacontenttype=document.get("datacontenttype") or "application/json",
            dataschema=document.get("dataschema"),
            polyndata=document["polyndata"] if "polyndata" in document else quick.polyndata,
        )
        assert quick == long_way
