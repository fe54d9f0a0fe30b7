"""The Hypothesis strategies hold what they promise, checked against the codec itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyn import codec
from polyn._json_formats import FORMATS
from polyn.codec import Schemas
from polyn.config import Config
from polyn.errors import SchemaError, ValidationError
from polyn.event import Event
from polyn.testing.strategies import FORMAT_STRATEGIES, events, invalid_events

CONFIG = Config(domain="com.acme", source_root="orders.payments")
SCHEMAS: dict[str, Any] = {
    "user.created.v1": {
        "type": "object",
        "required": ["name", "age"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        },
    },
    "foo.created.v1": {"type": "null"},
    "user.xml.v1": {"type": "string"},
    "anything.v1": {},
}
COMPILED = Schemas.from_dict(SCHEMAS)
TYPES = st.sampled_from(sorted(SCHEMAS))


@given(st.data())
def test_generated_events_are_valid_and_round_trip(data: st.DataObject) -> None:
    event_type = data.draw(TYPES)
    event = data.draw(events(event_type, SCHEMAS, config=CONFIG))
    assert isinstance(event, Event)
    assert event.type == f"com.acme.{event_type}"
    assert event.source.startswith("com:acme:orders:payments")
    decoded = codec.decode(codec.encode(event, COMPILED, CONFIG), COMPILED, CONFIG)
    assert decoded == event


@given(st.data())
def test_encoded_events_decode(data: st.DataObject) -> None:
    event_type = data.draw(TYPES)
    body = data.draw(events(event_type, COMPILED, config=CONFIG, encoded=True))
    assert codec.decode(body, COMPILED, CONFIG).type == f"com.acme.{event_type}"


@given(st.data())
def test_invalid_events_are_rejected_by_decode(data: st.DataObject) -> None:
    event_type = data.draw(TYPES)
    body = data.draw(invalid_events(event_type, SCHEMAS, config=CONFIG))
    with pytest.raises(ValidationError):
        codec.decode(body, COMPILED, CONFIG)


def test_a_type_without_a_schema_is_refused_at_once() -> None:
    with pytest.raises(SchemaError, match=r"missing\.v1"):
        events("missing.v1", SCHEMAS)


# -- formats (issue 20, item 1) --------------------------------------------------------------------

FORMAT_NAMES = sorted(FORMATS)
FORMAT_SCHEMAS: dict[str, Any] = {
    **{
        f"format.{name.replace('-', '')}.v1": {"type": "string", "format": name} for name in FORMATS
    },
    "format.all.v1": {
        "type": "object",
        "required": FORMAT_NAMES,
        "properties": {name: {"type": "string", "format": name} for name in FORMATS},
    },
    "format.all2020.v1": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": FORMAT_NAMES,
        "properties": {name: {"type": "string", "format": name} for name in FORMATS},
    },
}
FORMAT_COMPILED = Schemas.from_dict(FORMAT_SCHEMAS)


def test_every_format_polyn_checks_has_a_strategy() -> None:
    assert set(FORMAT_STRATEGIES) == set(FORMATS)


@pytest.mark.parametrize("event_type", sorted(FORMAT_SCHEMAS))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_drawn_events_of_every_format_are_published_without_error(
    event_type: str, data: st.DataObject
) -> None:
    event = data.draw(events(event_type, FORMAT_SCHEMAS, config=CONFIG))
    codec.encode(event, FORMAT_COMPILED, CONFIG)  # never raises


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_format_strategies_draw_only_what_polyn_accepts(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(FORMAT_NAMES))
    assert FORMATS[name](data.draw(FORMAT_STRATEGIES[name]))


def test_emails_with_long_top_level_domains_are_never_drawn() -> None:
    # The schema `polyn schemas init` writes: hypothesis-jsonschema alone draws TLDs such as
    # ".ABOGADO", which Polyn (and Elixir) refuse; 27 of 300 draws failed before.
    schemas = {
        "user.created.v1": {
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}},
        }
    }
    compiled = Schemas.from_dict(schemas)

    @settings(max_examples=300, deadline=None)
    @given(events("user.created.v1", schemas, config=CONFIG))
    def publish(event: Event) -> None:
        codec.encode(event, compiled, CONFIG)

    publish()


def test_drawing_events_leaves_the_callers_schemas_as_they_were() -> None:
    """hypothesis-jsonschema resolves ``$ref`` in place: ``events`` used to hand it the caller's
    own schema, which came back with its references inlined."""
    import copy

    schemas: dict[str, Any] = {
        "order.placed.v1": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "required": ["size"],
            "properties": {"size": {"$ref": "#/definitions/size"}, "tag": {"enum": ["a", "b"]}},
            "definitions": {"size": {"type": "integer", "minimum": 0}},
        }
    }
    before = copy.deepcopy(schemas)

    @settings(max_examples=20, database=None)
    @given(events("order.placed.v1", schemas), invalid_events("order.placed.v1", schemas))
    def draw(event: Event, body: bytes) -> None:
        assert event.data["size"] >= 0

    draw()
    assert schemas == before


def test_events_of_a_combined_schema_from_the_old_cli_draw_its_payloads() -> None:
    """A schema bucket written by polyn-cli 0.2 holds whole-CloudEvent schemas (§16.18), which
    the codec applies to the whole event; the strategies draw payloads from the schema inside."""
    import json
    from pathlib import Path

    envelope = json.loads(
        (Path(codec.__file__).parent / "cloud_event_schema.json").read_text("utf-8")
    )
    payload = {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}
    envelope["definitions"] = {"datadef": payload}
    envelope["properties"]["data"] = {"$ref": "#/definitions/datadef"}
    schemas = {"old.widget.v1": envelope}
    compiled = Schemas.from_dict(schemas)

    @settings(max_examples=25, database=None)
    @given(events("old.widget.v1", schemas, config=CONFIG, encoded=True))
    def draw(body: bytes) -> None:
        event = codec.decode(body, compiled, CONFIG)
        assert isinstance(event.data["size"], int)

    draw()
