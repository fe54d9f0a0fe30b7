"""Reading a catalogue's inputs and deriving its pages: server, migrations, Apps, schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from catalog_support import ROOT, SHOP_APP, SHOP_EVENTS, read_shop_catalog

from polyn import naming
from polyn.actors import Actor, Supervisor
from polyn.app import App
from polyn.catalog import (
    Catalog,
    Durable,
    build_catalog,
    event_views,
    inspect_app,
    load_app,
    write_catalog,
)
from polyn.catalog._schema_view import example_of, schema_rows
from polyn.config import Config
from polyn.consumers import Pipeline, Subscriber
from polyn.errors import PolynError
from polyn.event import Event
from polyn.nats import Message, NatsConnection


def test_the_shop_catalogue_reads_the_servers_schemas_streams_and_consumers(
    shop_catalog: Catalog,
) -> None:
    assert list(shop_catalog.schemas) == SHOP_EVENTS
    assert shop_catalog.schema_source == "schema bucket POLYN_SCHEMAS"
    assert [stream.name for stream in shop_catalog.streams] == ["DEADLETTERS", "ORDERS", "PAYMENTS"]
    assert shop_catalog.durables == (
        Durable("ORDERS", "shop_order_placed_v1", ("order.placed.v1",)),
        Durable("PAYMENTS", "shop_payment_captured_v1", ("payment.captured.v1",)),
    )
    views = {view.name: view for view in event_views(shop_catalog)}
    placed = views["order.placed.v1"]
    assert [stream.name for stream in placed.streams] == ["ORDERS"]
    assert [(use.durable.name, [r.actor for r in use.used_by]) for use in placed.durables] == [
        ("shop_order_placed_v1", ["Billing"])
    ]
    assert [sender.who for sender in placed.senders] == ["shop"]
    captured = views["payment.captured.v1"]
    assert [s.who for s in captured.senders] == ["shop (Billing)"]
    assert [(r.actor, r.kind) for r in captured.receivers] == [
        ("Ledger", "pipeline"),
        ("Receipts", "subscriber"),
    ]
    assert [r.queue_group for r in captured.subscribers] == ["receipts"]
    reported = views["stock.reported.v1"]
    assert [(s.who, s.how) for s in reported.senders] == [("shop (Inventory)", "replies")]
    assert reported.reply_to == ("stock.requested.v1",)
    assert reported.streams == () and reported.durables == ()


def test_the_migrations_folder_gives_what_the_server_has(shop_catalog: Catalog) -> None:
    config = Config(domain="com.acme", source_root="shop")
    offline = trio.run(
        lambda: build_catalog(
            config,
            schemas_dir=ROOT / "schemas",
            migrations_dir=ROOT / "migrations",
            apps=[SHOP_APP],
        )
    )
    assert offline.schemas == shop_catalog.schemas
    assert offline.durables == shop_catalog.durables
    assert offline.streams == shop_catalog.streams
    assert offline.services == shop_catalog.services
    assert offline.jetstream_source.startswith("the migrations in")


def test_pages_are_the_same_bytes_for_the_same_inputs(
    shop_url: str, shop_catalog: Catalog, tmp_path: Path
) -> None:
    first = write_catalog(shop_catalog, tmp_path / "one")
    again = trio.run(read_shop_catalog, shop_url)  # read from the server a second time
    second = write_catalog(again, tmp_path / "two")
    assert [p.relative_to(tmp_path / "one") for p in first] == [
        p.relative_to(tmp_path / "two") for p in second
    ]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.name
    names = sorted(p.name for p in (tmp_path / "one" / "events").iterdir())
    assert names == [f"{name}.html" for name in SHOP_EVENTS]


def test_pages_of_events_that_are_gone_are_removed(tmp_path: Path) -> None:
    write_catalog(Catalog(schemas={"a.done.v1": True, "b.done.v1": True}), tmp_path)
    write_catalog(Catalog(schemas={"a.done.v1": True}), tmp_path)
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == ["a.done.v1.html"]


# -- services ----------------------------------------------------------------------------------


class Started(Exception):
    """An actor's init ran: inspecting must never get there."""


class Watcher(Subscriber):
    subject = "order.*.v1"
    publishes = "order.seen.v1"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    async def init(self) -> None:
        raise Started

    async def handle_message(self, event: Event, msg: Message) -> None: ...


class Books(Pipeline):
    type = "com.acme.payment.captured.v1"
    source = "ledger"
    stream_name = "PAYMENTS"

    async def init(self) -> None:
        raise Started


class Helper(Actor):
    publishes = ("order.placed.v1", "com.acme.order.cancelled.v1")


def test_an_app_is_read_from_its_declarations_without_starting_anything() -> None:
    config = Config(domain="com.acme", source_root="orders.web")
    nested = Supervisor([Books(), Helper()])
    app = App(config, [NatsConnection(), Watcher(), nested], publishes="order.placed.v1")
    service = inspect_app(app)
    assert service.name == "orders.web"
    assert [(r.actor, r.kind, r.subject, r.durable, r.stream) for r in service.receivers] == [
        (
            "Books",
            "pipeline",
            "payment.captured.v1",
            "orders_web_ledger_payment_captured_v1",
            "PAYMENTS",
        ),
        ("Watcher", "subscriber", "order.*.v1", None, None),
    ]
    # The durable name is the one the Pipeline looks up when it starts.
    assert service.receivers[0].durable == naming.consumer_name(
        Books.type or "", config, Books.source
    )
    assert [(s.message, s.actor) for s in service.senders] == [  # sorted, the App first
        ("order.cancelled.v1", "Helper"),
        ("order.placed.v1", None),
        ("order.placed.v1", "Helper"),
        ("order.seen.v1", "Watcher"),
    ]


def test_a_publishes_declaration_that_is_not_a_message_name_is_refused() -> None:
    class Sloppy(Actor):
        publishes = ("order placed",)

    app = App(Config(domain="com.acme", source_root="x"), [Sloppy()])
    with pytest.raises(PolynError, match=r"Sloppy.publishes declares .*'order placed'"):
        inspect_app(app)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples.shop.service", "MODULE:ATTRIBUTE"),
        ("no_such_module_here:app", "Cannot import 'no_such_module_here'"),
        ("examples.shop.service:nope", "has no attribute 'nope'"),
        ("examples.shop.service:STOCK", "is dict, not a polyn.App"),
    ],
)
def test_a_bad_app_target_says_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(PolynError, match=message):
        load_app(target)


def test_an_app_factory_is_called() -> None:
    app = load_app(SHOP_APP)
    assert isinstance(app, App) and app.config.source_root == "shop"
    assert app.publishes == ("order.placed.v1",)


# -- schemas: tables, examples, versions ------------------------------------------------------


def test_nested_objects_arrays_and_refs_become_readable_rows() -> None:
    schema = {
        "type": "object",
        "required": ["customer"],
        "properties": {
            "customer": {"$ref": "#/definitions/person"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}},
            "when": {"type": ["string", "null"], "format": "date-time", "description": "Due"},
        },
        "definitions": {
            "person": {
                "type": "object",
                "title": "A person",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": ["ann", "bob"]},
                    "friends": {"type": "array", "items": {"$ref": "#/definitions/person"}},
                },
            }
        },
    }
    rows = [(r.path, r.type, r.required, r.format, r.constraints) for r in schema_rows(schema)]
    assert rows == [
        ("customer", "object", True, None, ()),
        ("customer.name", "string", True, None, ('one of "ann", "bob"',)),
        ("customer.friends", "array of person (recursive)", False, None, ()),
        ("tags", "array of string", False, None, ()),
        ("tags[]", "string", True, None, ("max length 8",)),
        ("when", "string or null", False, "date-time", ()),
    ]
    assert schema_rows(schema)[0].description == "A person"


def test_examples_come_from_the_schema_else_from_its_types() -> None:
    assert example_of({"type": "object", "examples": [{"a": 1}], "default": {"a": 2}}) == (
        {"a": 1},
        True,
    )
    assert example_of({"type": "string", "default": "x"}) == ("x", True)
    built, given = example_of(
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "count": {"type": "integer", "minimum": 5, "maximum": 9},
                "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                "kind": {"enum": ["b", "a"]},
                "items": {"type": "array", "minItems": 2, "items": {"type": "boolean"}},
            },
        }
    )
    assert not given
    assert built == {
        "when": "2024-01-01T12:00:00Z",
        "code": "ABC",
        "count": 5,
        "ratio": 0.5,
        "kind": "b",
        "items": [True, True],
    }


def test_the_shop_examples_are_valid_events(shop_catalog: Catalog) -> None:
    for view in event_views(shop_catalog):
        assert view.example_valid, view.name
        assert view.example == example_of(view.schema)[0]


def test_versions_show_the_compatibility_verdict_of_schemas_check() -> None:
    v1 = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    v2 = {"type": "object", "properties": {"a": {"type": "integer"}}}
    v3 = {"type": "object", "properties": {"a": {"type": "integer"}, "c": {"type": "string"}}}
    catalog = Catalog(schemas={"x.done.v1": v1, "x.done.v2": v2, "x.done.v3": v3, "y.v1": True})
    views = {view.name: view for view in event_views(catalog)}
    assert views["x.done.v1"].versions == ("x.done.v1", "x.done.v2", "x.done.v3")
    assert views["x.done.v1"].verdict is None
    verdict = views["x.done.v2"].verdict
    assert verdict is not None and not verdict.compatible
    assert verdict.breaking == (
        "#/properties/a: type changed from string to integer",
        "#/properties/b: property removed",
    )
    third = views["x.done.v3"].verdict
    assert third is not None and third.compatible and third.old == "x.done.v2"
    assert views["y.v1"].versions == ("y.v1",)


def test_a_version_page_shows_both_tables_and_the_verdict(tmp_path: Path) -> None:
    v1 = {"type": "object", "properties": {"gone": {"type": "string"}}}
    v2 = {"type": "object", "properties": {"new": {"type": "string"}}}
    write_catalog(Catalog(schemas={"x.done.v1": v1, "x.done.v2": v2}), tmp_path)
    for name in ("x.done.v1", "x.done.v2"):
        page = (tmp_path / "events" / f"{name}.html").read_text()
        assert page.count('<table class="schema"') == 3  # its own, and both side by side
        assert "<code>#/properties/gone: property removed</code>" in page
        assert "is <strong>not</strong> backwards compatible" in page
        assert "Built from the schema's types. The whole CloudEvent" in page


def test_the_index_warns_about_declarations_without_schemas(tmp_path: Path) -> None:
    app = App(Config(domain="com.acme", source_root="web"), [Helper()])
    catalog = trio.run(lambda: build_catalog(app.config, schemas_dir=ROOT / "schemas", apps=[app]))
    write_catalog(catalog, tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert "web (Helper) declares that it sends order.cancelled.v1, which has no schema" in index
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    assert "web.Helper.send.order.placed.v1" in asyncapi["operations"]
    assert not any("cancelled" in key for key in asyncapi["operations"])
