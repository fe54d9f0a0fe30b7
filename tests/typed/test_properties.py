"""For every schema of the example (and the rich test schemas): any valid event's data becomes an
instance, the instance becomes JSON the codec accepts, and that JSON becomes the same instance."""

from __future__ import annotations

import copy
import types
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typed_support import CONFIG, RICH_SCHEMAS, example_schemas

from polyn import codec, typed
from polyn.event import Event
from polyn.testing.strategies import events

EXAMPLE = example_schemas()
EXAMPLE_SCHEMAS = codec.Schemas.from_dict(EXAMPLE)
RICH = {name: schema for name, schema in RICH_SCHEMAS.items() if isinstance(schema, dict)}
RICH_COMPILED = codec.Schemas.from_dict(RICH)


# hypothesis-jsonschema resolves $ref in the schema it is given, in place (and
# polyn.testing.strategies.events passes ours through): each draw gets a copy.


def round_trip(cls: type[Any], name: str, data: Any, schemas: codec.Schemas) -> None:
    instance = typed.structure(cls, data)

    body = codec.encode(Event.new(CONFIG, name, typed.unstructure(instance)), schemas, CONFIG)
    again = typed.structure(cls, codec.decode(body, schemas, CONFIG).data)

    assert again == instance
    assert typed.message_name_of(again) == name


@given(data=st.data())
def test_example_events_round_trip_through_their_class(
    shop_events: types.ModuleType, data: st.DataObject
) -> None:
    # One test over all schemas (drawn), so the default run stays short.
    name = data.draw(st.sampled_from(sorted(EXAMPLE)))
    event = data.draw(events(name, copy.deepcopy(EXAMPLE), config=CONFIG))
    cls = typed.generated_classes(shop_events)[name]

    round_trip(cls, name, event.data, EXAMPLE_SCHEMAS)


# hypothesis-jsonschema takes ~0.1 s to draw one shipment (14 properties, closed objects):
# fewer examples keep the default run short, and its draws are not "too slow" by accident.
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rich_events_round_trip_through_their_class(
    rich: types.ModuleType, data: st.DataObject
) -> None:
    # folder.created.v2 refers to itself ("$ref": "#"), which hypothesis-jsonschema cannot
    # draw from; test_runtime covers it with a recursive example.
    name = "shipment.sent.v1"
    event = data.draw(events(name, copy.deepcopy(RICH), config=CONFIG))
    cls = typed.generated_classes(rich)[name]

    round_trip(cls, name, event.data, RICH_COMPILED)
