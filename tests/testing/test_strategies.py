"""The Hypothesis strategies hold what they promise, checked against the codec itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyn import codec
from polyn.codec import Schemas
from polyn.config import Config
from polyn.errors import SchemaError, ValidationError
from polyn.event import Event
from polyn.testing.strategies import events, invalid_events

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
