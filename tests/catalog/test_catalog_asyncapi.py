"""The AsyncAPI 3.0 document: valid against the vendored AsyncAPI JSON Schema, and what it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from polyn import naming
from polyn.app import App
from polyn.catalog import Catalog, asyncapi_document, asyncapi_schema, build_catalog, write_catalog
from polyn.config import Config
from polyn.consumers import PullConsumer, Responder, Subscriber
from polyn.event import Event
from polyn.nats import Message, NatsConnection

ROOT = Path(__file__).resolve().parents[2]


def validator() -> jsonschema.Draft7Validator:
    schema = asyncapi_schema()
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.Draft7Validator(schema)


def assert_valid_asyncapi(document: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    shown = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]
    assert not shown, "\n".join(shown)


def test_the_shop_document_is_valid_asyncapi_3(shop_catalog: Catalog) -> None:
    document = asyncapi_document(shop_catalog)
    assert document["asyncapi"] == "3.0.0"
    assert_valid_asyncapi(document)
    addresses = [channel["address"] for channel in document["channels"].values()]
    assert sorted(address for address in addresses if address) == [
        "order.placed.v1",
        "payment.captured.v1",
        "stock.reported.v1",
        "stock.requested.v1",
    ]


def test_the_vendored_schema_rejects_what_asyncapi_3_forbids(shop_catalog: Catalog) -> None:
    # The check above could pass by accepting anything: these are refused.
    good = asyncapi_document(shop_catalog)
    for breakage in (
        lambda d: d.update(asyncapi="2.6.0"),
        lambda d: d["servers"]["nats"].pop("protocol"),
        lambda d: d["operations"][next(iter(d["operations"]))].update(action="publish"),
        lambda d: d["channels"]["order.placed.v1"].update(subscribe={}),
    ):
        document = json.loads(json.dumps(good))
        breakage(document)
        assert list(validator().iter_errors(document)), breakage


def test_messages_are_cloud_events_with_the_payload_schema(shop_catalog: Catalog) -> None:
    document = asyncapi_document(shop_catalog)
    message = document["components"]["messages"]["order.placed.v1"]
    assert message["contentType"] == "application/cloudevents+json"
    payload = message["payload"]
    assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
    envelope = payload["schema"]
    assert envelope["properties"]["type"]["const"] == "com.acme.order.placed.v1"
    assert {"id", "source", "specversion", "type", "data"} <= set(envelope["required"])
    stored = json.loads((ROOT / "schemas" / "order.placed.v1.json").read_text())
    stored.pop("$schema")
    assert envelope["properties"]["data"] == stored
    # The example is a real event: it passes Polyn's own envelope and payload checks.
    example = message["examples"][0]["payload"]
    jsonschema.Draft7Validator(envelope).validate(example)


def test_operations_are_each_services_sends_and_receives(shop_catalog: Catalog) -> None:
    operations = asyncapi_document(shop_catalog)["operations"]
    config = Config(domain="com.acme", source_root="shop")
    billing = operations["shop.Billing.receive.order.placed.v1"]
    assert billing["action"] == "receive"
    assert billing["x-polyn-durable"] == naming.consumer_name("order.placed.v1", config)
    assert operations["shop.Billing.send.payment.captured.v1"]["action"] == "send"
    assert operations["shop.app.send.order.placed.v1"]["action"] == "send"
    receipts = operations["shop.Receipts.receive.payment.captured.v1"]
    assert receipts["bindings"]["nats"]["queue"] == "receipts"
    inventory = operations["shop.Inventory.receive.stock.requested.v1"]
    assert inventory["reply"]["messages"] == [
        {"$ref": "#/channels/stock.requested.v1.reply/messages/stock.reported.v1"}
    ]


# -- a catalogue with versions, a 2020-12 schema, patterns and credentials ------------------

PASSWORD = "p@ss/w@rd"
TOKEN = "t0k/en@42"


class Audit(Subscriber):
    subject = "invoice.>"

    async def handle_message(self, event: Event, msg: Message) -> None: ...


class Quotes(Responder):
    subject = "quote.requested.v1"
    reply_type = "quote.given.v1"
    publishes = ("invoice.sent.v2",)

    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any]:
        return "quote.given.v1", {}


class Books(PullConsumer):
    type = "invoice.sent.v1"
    source = "books"

    async def handle_message(self, event: Event, msg: Message) -> None: ...


def write_schemas(folder: Path, schemas: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (folder / f"{name}.json").write_text(json.dumps(schema))
    return folder


INVOICE_V1 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}, "lines": {"$ref": "#/definitions/lines"}},
    "definitions": {"lines": {"type": "array", "items": {"type": "integer"}}},
}
INVOICE_V2 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "customer"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "customer": {"$ref": "#/$defs/customer"},
    },
    "$defs": {"customer": {"type": "object", "properties": {"name": {"type": "string"}}}},
}


async def build_mixed(tmp_path: Path) -> Catalog:
    folder = write_schemas(
        tmp_path / "schemas",
        {
            "invoice.sent.v1": INVOICE_V1,
            "invoice.sent.v2": INVOICE_V2,
            "quote.requested.v1": {"type": "object", "examples": [{"sku": "mug"}]},
            "quote.given.v1": {"type": "object", "properties": {"price": {"type": "number"}}},
        },
    )
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20240101000000_invoices.py").write_text(
        "def change(m):\n"
        "    m.create_stream(name='INVOICES', subjects=['invoice.>'])\n"
        "    m.create_consumer(stream_name='INVOICES', ack_policy='explicit',\n"
        "        durable_name='billing_books_invoice_sent_v1', filter_subject='invoice.sent.v1')\n"
    )
    config = Config(
        domain="com.acme",
        source_root="billing",
        servers=[f"nats://alice:{PASSWORD}@nats-1.internal:4222", f"tls://{TOKEN}@nats-2:4443"],
        user="alice",
        password=PASSWORD,
        token=TOKEN,
    )
    children = [NatsConnection(), Audit(), Quotes(), Books()]
    app = App(config, children, publishes=["quote.requested.v1"])
    return await build_catalog(config, schemas_dir=folder, migrations_dir=migrations, apps=[app])


async def test_versions_dialects_patterns_and_replies_make_a_valid_document(
    tmp_path: Path,
) -> None:
    document = asyncapi_document(await build_mixed(tmp_path))
    assert_valid_asyncapi(document)
    messages = document["components"]["messages"]
    v1 = messages["invoice.sent.v1"]["payload"]
    v2 = messages["invoice.sent.v2"]["payload"]
    assert v1["schemaFormat"] == "application/schema+json;version=draft-07"
    assert v2["schemaFormat"] == "application/schema+json;version=2020-12"
    assert v2["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # Local $refs still resolve inside the envelope: the payload is its own resource.
    cases = (
        (v1, {"id": "a", "lines": [1]}, {"id": "a", "lines": ["one"]}),
        (v2, {"id": "x", "customer": {"name": "Ann"}}, {"id": "x", "customer": {"name": 5}}),
    )
    for payload, good, bad in cases:
        envelope = payload["schema"]
        checker = jsonschema.validators.validator_for(envelope)(envelope)
        event = {"id": "1", "source": "s", "specversion": "1.0"}
        event["type"] = envelope["properties"]["type"]["const"]
        assert checker.is_valid({**event, "data": good})
        assert not checker.is_valid({**event, "data": bad})
    operations = document["operations"]
    # A core subscriber on a pattern receives every event it matches.
    assert "billing.Audit.receive.invoice.sent.v1" in operations
    assert "billing.Audit.receive.invoice.sent.v2" in operations
    books = operations["billing.Books.receive.invoice.sent.v1"]
    assert books["x-polyn-durable"] == "billing_books_invoice_sent_v1"
    assert operations["billing.Quotes.send.invoice.sent.v2"]["action"] == "send"
    assert "reply" in operations["billing.Quotes.receive.quote.requested.v1"]


async def test_no_credentials_reach_the_published_document_or_pages(tmp_path: Path) -> None:
    catalog = await build_mixed(tmp_path)
    document = asyncapi_document(catalog)
    assert document["servers"] == {
        "nats-1": {"host": "nats-1.internal:4222", "protocol": "nats"},
        "nats-2": {"host": "nats-2:4443", "protocol": "nats"},
    }
    files = write_catalog(catalog, tmp_path / "out")
    published = "\n".join(path.read_text("utf-8") for path in files)
    for secret in (PASSWORD, TOKEN, "p@ss", "w@rd", "t0k", "en@42", "alice", "%40"):
        assert secret not in published, secret
    for secret in (PASSWORD, TOKEN, "p@ss", "w@rd", "t0k", "en@42"):
        assert secret not in repr(catalog), secret


def test_a_document_without_servers_or_services_is_valid(tmp_path: Path) -> None:
    catalog = Catalog(schemas={"ping.v1": True, "pong.v1": {"type": "string"}})
    document = asyncapi_document(catalog)
    assert_valid_asyncapi(document)
    assert "servers" not in document and "operations" not in document


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (None, "draft-07"),
        ("http://json-schema.org/draft-04/schema#", "draft-04"),
        ("http://json-schema.org/draft-06/schema#", "draft-06"),
        ("https://json-schema.org/draft/2019-09/schema", "2019-09"),
        ("https://json-schema.org/draft/2020-12/schema", "2020-12"),
    ],
)
def test_schema_format_follows_the_payload_schemas_dialect(
    declared: str | None, expected: str
) -> None:
    schema: dict[str, Any] = {"type": "object"}
    if declared:
        schema["$schema"] = declared
    document = asyncapi_document(Catalog(schemas={"thing.done.v1": schema}))
    payload = document["components"]["messages"]["thing.done.v1"]["payload"]
    assert payload["schemaFormat"] == f"application/schema+json;version={expected}"
