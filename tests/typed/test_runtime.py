"""polyn.typed's runtime: instances from validated data, JSON from instances, and the judgement of
schema revisions that a typed consumer naks on."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import types
from typing import Any

import attrs
import pydantic
import pytest
from typed_support import CONFIG, FOLDER, SHIPMENT

from polyn import codec, typed
from polyn.errors import SchemaError, ValidationError
from polyn.event import Event
from polyn.typed import Decoder, IncompatibleSchemaError

ORDER = {
    "order_id": "o-1",
    "customer": "ada",
    "items": [{"sku": "kettle", "quantity": 2, "price": 19.5}],
    "total": 39,
}

SHIPMENT_DATA: dict[str, Any] = {
    "id": "s-1",
    "address": {"street": "Main St 1", "zip": None},
    "status": "sent",
    "kind": "parcel",
    "lines": [{"sku": "mug", "qty": 2}, {"sku": "tea"}],
    "note": None,
    "tracking-code": "TR-9",
    "class": 2,
    "_internal": True,
    "tags": {"fragile": "yes"},
}


def test_structure_builds_nested_frozen_instances(shop_events: types.ModuleType) -> None:
    order = typed.structure(shop_events.OrderPlacedV1, ORDER)

    # Built by hand as a user writes it (arrays as lists): the same instance.
    assert order == shop_events.OrderPlacedV1(
        order_id="o-1",
        customer="ada",
        items=[shop_events.OrderPlacedV1Item(sku="kettle", quantity=2, price=19.5)],
        total=39,
    )
    assert type(order.total) is int  # a JSON integer in a number field is not rounded to float
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.total = 1  # type: ignore[misc]


def test_structure_follows_json_keys_and_defaults(rich: types.ModuleType) -> None:
    shipment = typed.structure(rich.ShipmentSentV1, SHIPMENT_DATA)

    assert shipment.tracking_code == "TR-9"
    assert shipment.class_ == 2
    assert shipment.field_internal is True
    assert shipment.address == rich.ShipmentSentV1Address(street="Main St 1", zip=None)
    assert shipment.lines[1] == rich.ShipmentSentV1Line(sku="tea", qty=None)
    assert shipment.priority == 3  # the schema's default for a missing property
    assert shipment.labels == []  # an array default
    assert shipment.tags == {"fragile": "yes"} and shipment.tags is not SHIPMENT_DATA["tags"]
    assert shipment.billing is None and shipment.weight is None


def test_recursive_classes_from_2020_12_defs_round_trip(rich: types.ModuleType) -> None:
    data = {
        "name": "root",
        "owner": {"login": "ada"},
        "visibility": None,
        "children": [{"name": "leaf", "children": []}],
    }

    folder = typed.structure(rich.FolderCreatedV2, data)
    written = typed.unstructure(folder)

    assert folder.children == [rich.FolderCreatedV2(name="leaf", children=[])]
    assert folder.owner == rich.FolderCreatedV2Owner(login="ada")
    # An optional null is left out: the same instance, and the schema accepts both.
    assert written == {key: value for key, value in data.items() if key != "visibility"}
    schemas = codec.Schemas.from_dict({"folder.created.v2": FOLDER})
    body = codec.encode(Event.new(CONFIG, "folder.created.v2", written), schemas, CONFIG)
    again = codec.decode(body, schemas, CONFIG).data
    assert typed.structure(rich.FolderCreatedV2, again) == folder


def test_unstructure_writes_the_json_the_schema_accepts(rich: types.ModuleType) -> None:
    shipment = typed.structure(rich.ShipmentSentV1, SHIPMENT_DATA)

    data = typed.unstructure(shipment)

    # JSON keys restored; optional fields left unset are left out (the schema does not allow
    # null for billing or weight); a required nullable field keeps its null; the default is kept.
    assert data == {
        **SHIPMENT_DATA,
        "address": {"street": "Main St 1"},
        "priority": 3,
        "labels": [],
    }
    assert "note" in data and data["note"] is None
    schemas = codec.Schemas.from_dict({"shipment.sent.v1": SHIPMENT})
    body = codec.encode(Event.new(CONFIG, "shipment.sent.v1", data), schemas, CONFIG)
    assert codec.decode(body, schemas, CONFIG).data == data


@attrs.frozen
class Mine:
    """A hand-written class (module level: cattrs resolves its annotations by name)."""

    name: str
    nickname: str | None = None
    tags: tuple[str, ...] = ()
    renamed: int = attrs.field(default=0, metadata={typed.JSON_KEY: "re-named"})


@dataclasses.dataclass
class Plain:
    mine: Mine


class User(pydantic.BaseModel):
    name: str
    age: int = 0


def test_unstructure_keeps_every_field_of_hand_written_classes() -> None:
    assert typed.unstructure(Plain(Mine("ada", tags=("a",)))) == {
        "mine": {"name": "ada", "nickname": None, "tags": ["a"], "re-named": 0}
    }
    assert typed.structure(Mine, {"name": "ada", "re-named": 4, "tags": ["x"]}) == Mine(
        "ada", tags=("x",), renamed=4
    )


def test_pydantic_models_are_dumped_and_validated() -> None:
    assert typed.unstructure(User(name="ada")) == {"name": "ada", "age": 0}
    assert typed.structure(User, {"name": "ada", "age": 3}) == User(name="ada", age=3)


def test_json_values_are_returned_unchanged() -> None:
    for value in ({"a": [1, 2]}, [1], "x", 1, 1.5, True, None):
        assert typed.unstructure(value) is value


def test_message_name_and_schema_hash_of_a_generated_class(shop_events: types.ModuleType) -> None:
    order = typed.structure(shop_events.OrderPlacedV1, ORDER)
    assert typed.message_name_of(shop_events.OrderPlacedV1) == "order.placed.v1"
    assert typed.message_name_of(order) == "order.placed.v1"
    assert typed.message_name_of(shop_events.OrderPlacedV1Item) is None
    assert typed.message_name_of(dict) is None
    own = typed.schema_of(shop_events.OrderPlacedV1)
    assert typed.schema_hash_of(shop_events.OrderPlacedV1) == typed.schema_hash(own)
    assert typed.schema_hash_of(dict) is None and typed.schema_of(dict) is None


def test_event_type_and_data_for_publishing(shop_events: types.ModuleType) -> None:
    order = typed.structure(shop_events.OrderPlacedV1, ORDER)

    assert typed.event_type_and_data(order) == ("order.placed.v1", ORDER)
    assert typed.event_type_and_data("order.placed.v1", order) == ("order.placed.v1", ORDER)
    assert typed.event_type_and_data("user.created.v1", {"a": 1}) == ("user.created.v1", {"a": 1})
    with pytest.raises(TypeError, match="pass the event type"):
        typed.event_type_and_data(Mine("ada"))
    with pytest.raises(TypeError, match="pass the event type"):
        typed.event_type_and_data(shop_events.OrderPlacedV1)  # the class, not an instance
    with pytest.raises(TypeError, match="not both"):
        typed.event_type_and_data(order, ORDER)


def test_schema_hash_ignores_key_order_and_whitespace_only() -> None:
    a = json.loads('{"type": "object", "required": ["a"]}')
    b = json.loads('{ "required" : ["a"], "type":"object" }')

    assert typed.schema_hash(a) == typed.schema_hash(b)
    assert typed.schema_hash(a).startswith("sha256:")
    assert typed.schema_hash(a) != typed.schema_hash({**a, "required": ["b"]})


def _without(schema: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    del changed["properties"][name]
    changed["required"] = [n for n in changed.get("required", []) if n != name]
    return changed


def test_compatibility_follows_the_schemas_check_rules(shop_events: types.ModuleType) -> None:
    own = typed.schema_of(shop_events.OrderPlacedV1)
    added = copy.deepcopy(own)
    added["properties"]["coupon"] = {"type": "string"}

    same = typed.compatibility(shop_events.OrderPlacedV1, own)
    stale = typed.compatibility(shop_events.OrderPlacedV1, added)
    broken = typed.compatibility(shop_events.OrderPlacedV1, _without(own, "customer"))

    assert (same.judged, same.stale, same.compatible) == (True, False, True)
    assert (stale.stale, stale.compatible) == (True, True)
    assert typed.is_stale(shop_events.OrderPlacedV1, added)
    assert not typed.is_stale(shop_events.OrderPlacedV1, own)
    assert not broken.compatible
    assert "#/properties/customer: property removed" in broken.problems
    assert "property removed" in broken.describe()


def test_hand_written_classes_are_not_judged() -> None:
    verdict = typed.compatibility(Mine, {"type": "string"})

    assert (verdict.judged, verdict.stale, verdict.compatible) == (False, False, True)
    assert not typed.is_stale(Mine, {"type": "string"})


def test_decoder_builds_instances_of_a_compatible_revision(shop_events: types.ModuleType) -> None:
    own = typed.schema_of(shop_events.OrderPlacedV1)
    added = copy.deepcopy(own)
    added["properties"]["coupon"] = {"type": "string"}
    schemas = codec.Schemas.from_dict({"order.placed.v1": added})
    decoder = Decoder(shop_events.OrderPlacedV1)

    order = decoder.decode({**ORDER, "coupon": "X"}, name="order.placed.v1", schemas=schemas)

    assert order == typed.structure(shop_events.OrderPlacedV1, ORDER)  # the new property is ignored
    assert decoder.compatibility(schemas, "order.placed.v1").stale


def test_decoder_refuses_an_incompatible_revision_without_calling_it_invalid(
    shop_events: types.ModuleType,
) -> None:
    broken = _without(typed.schema_of(shop_events.OrderPlacedV1), "customer")
    schemas = codec.Schemas.from_dict({"order.placed.v1": broken})
    decoder = Decoder(shop_events.OrderPlacedV1)
    data = {key: value for key, value in ORDER.items() if key != "customer"}

    with pytest.raises(IncompatibleSchemaError) as raised:
        decoder.decode(data, name="order.placed.v1", schemas=schemas)

    # Consumers dead-letter ValidationErrors; this one must be naked instead.
    assert not isinstance(raised.value, ValidationError)
    assert isinstance(raised.value, SchemaError)
    assert raised.value.compatibility is not None
    assert "#/properties/customer: property removed" in raised.value.compatibility.problems


def test_an_enum_value_the_class_does_not_know_is_naked_not_mistyped(
    rich: types.ModuleType,
) -> None:
    # Adding an enum value is compatible by the check rules (the class is only stale), but a
    # value outside its Literal cannot be represented: that event is refused, not mistyped.
    grown = copy.deepcopy(SHIPMENT)
    grown["properties"]["status"]["enum"].append("returned")
    schemas = codec.Schemas.from_dict({"shipment.sent.v1": grown})
    decoder = Decoder(rich.ShipmentSentV1)

    assert decoder.compatibility(schemas, "shipment.sent.v1").compatible
    with pytest.raises(IncompatibleSchemaError, match="'returned' is not one of"):
        decoder.decode(
            {**SHIPMENT_DATA, "status": "returned"}, name="shipment.sent.v1", schemas=schemas
        )


def test_decoder_judges_each_snapshot_once_and_logs_once(
    shop_events: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _without(typed.schema_of(shop_events.OrderPlacedV1), "customer")
    schemas = codec.Schemas.from_dict({"order.placed.v1": broken})
    decoder = Decoder(shop_events.OrderPlacedV1)
    caplog.set_level(logging.WARNING, logger="polyn.typed")

    first = decoder.compatibility(schemas, "order.placed.v1")
    for _ in range(3):
        with pytest.raises(IncompatibleSchemaError):
            decoder.decode(ORDER, name="order.placed.v1", schemas=schemas)
    fixed = codec.Schemas.from_dict({"order.placed.v1": typed.schema_of(shop_events.OrderPlacedV1)})

    assert decoder.compatibility(schemas, "order.placed.v1") is first
    assert len([r for r in caplog.records if "property removed" in r.getMessage()]) == 1
    assert decoder.decode(ORDER, name="order.placed.v1", schemas=fixed).customer == "ada"


def test_decoder_refuses_events_of_another_message(shop_events: types.ModuleType) -> None:
    schemas = codec.Schemas.from_dict(
        {"payment.captured.v1": typed.schema_of(shop_events.PaymentCapturedV1)}
    )

    expected = r"stands for order\.placed\.v1, not payment\.captured\.v1"
    with pytest.raises(IncompatibleSchemaError, match=expected):
        decoder = Decoder(shop_events.OrderPlacedV1)
        decoder.decode(ORDER, name="payment.captured.v1", schemas=schemas)


def test_data_that_does_not_fit_a_hand_written_class_is_incompatible() -> None:
    with pytest.raises(IncompatibleSchemaError, match="Could not build"):
        Decoder(Mine).decode({"nom": "ada"}, name="user.created.v1", schemas={})
    with pytest.raises(IncompatibleSchemaError, match="Could not build"):
        typed.structure(Mine, {"nom": "ada"})


def test_a_class_cattrs_cannot_build_is_refused_when_the_decoder_is_made() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="cannot build"):
        Decoder(Opaque)


def test_generated_classes_of_a_module(shop_events: types.ModuleType) -> None:
    assert typed.generated_classes(shop_events) == {
        "order.placed.v1": shop_events.OrderPlacedV1,
        "payment.captured.v1": shop_events.PaymentCapturedV1,
        "stock.reported.v1": shop_events.StockReportedV1,
        "stock.requested.v1": shop_events.StockRequestedV1,
    }
