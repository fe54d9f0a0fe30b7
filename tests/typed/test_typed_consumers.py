"""Typed consumers, typed publishing and typed request / reply on a real nats-server (issue 23).

Each test generates the example's classes under message names of its own (``typed_support.
token_module``), loads the schemas into a bucket of its own (so a test can change one while the
service runs), and runs a real App: what it checks is what a handler receives, what reaches the
wire, and how a schema revision the classes cannot read is treated.
"""

from __future__ import annotations

import copy
import json
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from _support import Names, Shared
from typed_support import token_module

import polyn
from polyn import naming, typed
from polyn.app import App
from polyn.config import Config
from polyn.consumers import (
    DEADLETTER_PREFIX,
    Ack,
    BatchInfo,
    Pipeline,
    PipelineMessage,
    PullConsumer,
    Responder,
    Subscriber,
)
from polyn.errors import IncompatibleSchemaError, OptionError, ResponderError
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport
from polyn.publish import pub, request
from polyn.schema_store import SchemaStore


@attrs.define
class Shop:
    """One test's generated classes, names, bucket, stream and config on the real server."""

    names: Names
    module: types.ModuleType
    transport: NatsTransport
    config: Config
    bucket: str
    stream: str
    dead_stream: str
    schemas: dict[str, Any]

    def message(self, name: str) -> str:
        return f"{self.names.token}.{name}"

    def cls(self, name: str) -> type[Any]:
        return typed.generated_classes(self.module)[self.message(name)]

    def consumer(self, name: str) -> str:
        return naming.consumer_name(self.message(name), self.config)

    def order(self, order_id: str = "A-1", customer: str = "ada") -> Any:
        item = getattr(self.module, self.cls("order.placed.v1").__name__ + "Item")
        return self.cls("order.placed.v1")(
            order_id=order_id,
            customer=customer,
            items=[item(sku="kettle", quantity=2, price=19.5)],
            total=39.0,
        )

    async def put_schema(self, name: str, schema: Any) -> None:
        await self.transport.kv_put(self.bucket, self.message(name), json.dumps(schema).encode())

    def app(self, *children: Any) -> App:
        return App(self.config, [NatsConnection(), SchemaStore(), *children])

    async def dead_letters(self) -> int:
        return int((await self.transport.stream_info(self.dead_stream)).state["messages"])


@attrs.frozen
class Generated:
    """One test's generated classes, without a server."""

    names: Names
    module: types.ModuleType

    def message(self, name: str) -> str:
        return f"{self.names.token}.{name}"

    def cls(self, name: str) -> type[Any]:
        return typed.generated_classes(self.module)[self.message(name)]


@pytest.fixture
def generated(names: Names, tmp_path: Path) -> Generated:
    return Generated(names, token_module(names.token, tmp_path))


@pytest.fixture
async def shop(nats_url: str, generated: Generated) -> AsyncIterator[Shop]:
    names, module = generated.names, generated.module
    transport = await NatsTransport.connect(nats_url)
    bucket = names.bucket("schemas")
    config = Config(
        domain="com.test",
        source_root=f"typed.{names.token}",
        servers=[nats_url],
        schema_store=bucket,
    )
    shop = Shop(
        names,
        module,
        transport,
        config,
        bucket,
        names.stream(),
        names.stream("dead"),
        {},
    )
    await transport.kv_create(bucket)
    for cls in typed.generated_classes(module).values():
        name = typed.message_name_of(cls)
        assert name is not None
        shop.schemas[name] = typed.schema_of(cls)
        await transport.kv_put(bucket, name, json.dumps(shop.schemas[name]).encode())
    order, payment = shop.message("order.placed.v1"), shop.message("payment.captured.v1")
    await transport.create_stream(
        {"name": shop.stream, "subjects": [order, payment], "storage": "memory"}
    )
    await transport.create_stream(
        {
            "name": shop.dead_stream,
            "subjects": [f"{DEADLETTER_PREFIX}{names.token}.>"],
            "storage": "memory",
        }
    )
    for name in ("order.placed.v1", "payment.captured.v1"):
        await transport.create_consumer(
            shop.stream,
            {
                "durable_name": shop.consumer(name),
                "filter_subject": shop.message(name),
                "ack_policy": "explicit",
            },
        )
    try:
        yield shop
    finally:
        for stream in (shop.stream, shop.dead_stream):
            await transport.delete_stream(stream)
        await transport.kv_delete_bucket(bucket)
        await transport.close()


async def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state other tasks change
            await trio.sleep(0.02)


async def test_typed_pull_consumer_responder_and_pipeline_hand_their_handlers_instances(
    shop: Shop,
) -> None:
    Order = shop.cls("order.placed.v1")
    Payment = shop.cls("payment.captured.v1")
    StockRequested = shop.cls("stock.requested.v1")
    StockReported = shop.cls("stock.reported.v1")
    seen: list[Any] = Shared()

    class Billing(PullConsumer[Order]):  # type: ignore[valid-type]  # the generic form
        type = shop.message("order.placed.v1")

        async def handle_message(self, event: Event[Any], msg: Message) -> Ack:
            order = event.data
            seen.append(("billing", event))
            stock = await request(
                "nats",
                StockRequested(sku=order.items[0].sku, quantity=order.items[0].quantity),
                reply_type=StockReported,
            )
            seen.append(("stock", stock))
            await pub(
                "nats",
                Payment(
                    order_id=order.order_id,
                    customer=order.customer,
                    amount=order.total,
                    currency="EUR",
                ),
                ack=True,
            )
            return Ack.ACK

    class Inventory(Responder[StockRequested]):  # type: ignore[valid-type]
        subject = shop.message("stock.requested.v1")

        async def handle_request(self, event: Event[Any], msg: Message) -> object:
            seen.append(("inventory", event))
            return StockReported(sku=event.data.sku, available=5, reserved=True)

    class Ledger(Pipeline):  # the option form
        type = shop.message("payment.captured.v1")
        data_type = Payment
        batchers = {"books": {"batch_size": 1}}  # noqa: RUF012

        async def handle_message(
            self, processor: str, message: PipelineMessage[Any]
        ) -> PipelineMessage[Any]:
            return message.put_batcher("books")

        async def handle_batch(
            self, batcher: str, messages: list[PipelineMessage[Any]], batch_info: BatchInfo
        ) -> None:
            seen.extend(("ledger", m.event) for m in messages)

    async with shop.app(Inventory(), Billing(), Ledger()).run() as running:
        await pub(running, shop.order())
        await wait_until(lambda: any(kind == "ledger" for kind, _ in seen))
        assert running.health()
    events = dict(seen)
    assert isinstance(events["billing"].data, Order)
    assert events["billing"].data == shop.order()
    assert events["billing"].type == f"com.test.{shop.message('order.placed.v1')}"
    assert events["inventory"].data == StockRequested(sku="kettle", quantity=2)
    assert events["stock"].data == StockReported(sku="kettle", available=5, reserved=True)
    assert events["stock"].type == f"com.test.{shop.message('stock.reported.v1')}"
    assert events["ledger"].data == Payment(
        order_id="A-1", customer="ada", amount=39.0, currency="EUR"
    )


async def test_pub_infers_the_event_type_and_writes_the_json_the_schema_takes(
    shop: Shop,
) -> None:
    order_type = shop.message("order.placed.v1")
    sub = await shop.transport.subscribe(order_type)
    async with shop.app().run() as running:
        await pub(running, shop.order("A-7"))
        await pub(running, order_type, shop.order("A-8"))  # a type and an instance: as before
        first, second = await sub.__anext__(), await sub.__anext__()
        with pytest.raises(TypeError, match="needs its data"):
            await pub(running, order_type)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="Cannot tell the event type"):
            await pub(running, shop.cls("order.placed.v1"))  # the class, not an instance
        with pytest.raises(TypeError, match="either an instance"):
            await pub(running, shop.order(), {"order_id": "x"})  # type: ignore[call-overload]
    await sub.aclose()
    for msg, order_id in ((first, "A-7"), (second, "A-8")):
        document = json.loads(msg.data)
        assert msg.subject == order_type
        assert document["type"] == f"com.test.{order_type}"
        assert document["data"] == {
            "order_id": order_id,
            "customer": "ada",
            "items": [{"sku": "kettle", "quantity": 2, "price": 19.5}],
            "total": 39.0,
        }


async def test_a_typed_request_returns_an_instance_and_refuses_a_reply_class_of_another_message(
    shop: Shop,
) -> None:
    StockRequested = shop.cls("stock.requested.v1")
    StockReported = shop.cls("stock.reported.v1")

    class Inventory(Responder):  # untyped: answers with (type, dict), as before
        subject = shop.message("stock.requested.v1")

        async def handle_request(self, event: Event, msg: Message) -> object:
            reply = {"sku": event.data["sku"], "available": 3, "reserved": False}
            return shop.message("stock.reported.v1"), reply

    async with shop.app(Inventory()).run() as running:
        stock, msg = await request(
            running,
            StockRequested(sku="mug", quantity=1),
            reply_type=StockReported,
            with_message=True,
        )
        plain = await request(running, StockRequested(sku="mug", quantity=1))
        with pytest.raises(IncompatibleSchemaError, match=f"not {shop.message('stock.reported')}"):
            await request(
                running, StockRequested(sku="mug", quantity=1), reply_type=StockRequested
            )
    assert stock.data == StockReported(sku="mug", available=3, reserved=False)
    assert json.loads(msg.data)["data"] == {"sku": "mug", "available": 3, "reserved": False}
    assert plain.data == {"sku": "mug", "available": 3, "reserved": False}


async def redelivered(shop: Shop) -> int:
    info = await shop.transport.consumer_info(shop.stream, shop.consumer("order.placed.v1"))
    return info.num_redelivered


def no_longer_requires_customer(schema: Any) -> Any:
    """A breaking revision (``polyn schemas check``: "property is no longer required") under
    which the events the test publishes are still valid, before and after."""
    revised = copy.deepcopy(schema)
    revised["required"].remove("customer")
    return revised


@pytest.mark.parametrize(
    "max_deliver",
    [None, pytest.param(2, marks=pytest.mark.slow)],
    ids=["naked", "held-at-max-deliver"],
)
async def test_an_incompatible_schema_revision_naks_shows_in_health_and_never_dead_letters(
    shop: Shop, max_deliver: int | None
) -> None:
    Order = shop.cls("order.placed.v1")
    order_type = shop.message("order.placed.v1")
    if max_deliver is not None:
        await shop.transport.delete_consumer(shop.stream, shop.consumer("order.placed.v1"))
        await shop.transport.create_consumer(
            shop.stream,
            {
                "durable_name": shop.consumer("order.placed.v1"),
                "filter_subject": order_type,
                "ack_policy": "explicit",
                "max_deliver": max_deliver,
            },
        )
    handled: list[Any] = Shared()

    class Billing(PullConsumer[Order]):  # type: ignore[valid-type]
        type = order_type
        max_failures = 1  # one counted failure would dead-letter at the first delivery

        async def handle_message(self, event: Event[Any], msg: Message) -> Ack:
            handled.append((event.data, msg.metadata.num_delivered if msg.metadata else 0))
            return Ack.ACK

    async with shop.app(Billing(name="billing")).run() as running:
        store = running.ref(shop.bucket).running_actor()
        assert isinstance(store, SchemaStore)
        original = shop.schemas[order_type]
        # Another team loads a breaking revision while the typed service runs.
        await shop.put_schema("order.placed.v1", no_longer_requires_customer(original))
        await wait_until(lambda: store.schemas.get(order_type) != original)
        await pub(running, order_type, typed.unstructure(shop.order("A-9")))
        await wait_until(lambda: not running.health())
        billing = running.ref("billing").running_actor()
        assert isinstance(billing, Billing)
        problem = billing.problem() or ""
        assert "cannot read" in problem and "no longer required" in problem, problem
        assert Order.__name__ in problem
        # Delivered again although one counted failure would have been its last (max_failures
        # 1); with max_deliver 2, held at that last delivery. Never handled, terminated or
        # dead-lettered.
        with trio.fail_after(10):
            while (await redelivered(shop)) == 0:  # noqa: ASYNC110 - the server's state
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        info = await shop.transport.consumer_info(shop.stream, shop.consumer("order.placed.v1"))
        assert info.num_ack_pending == 1 and info.num_pending == 0
        assert handled == []
        assert await shop.dead_letters() == 0
        assert not running.health()
        # The other team restores a revision the class reads: the event is handled.
        await shop.put_schema("order.placed.v1", original)
        await wait_until(lambda: handled, timeout=30)
        await wait_until(running.health)
    assert [data for data, _ in handled] == [shop.order("A-9")]
    assert handled[0][1] >= 2
    assert await shop.dead_letters() == 0


async def test_a_typed_subscriber_gets_instances_and_records_an_unreadable_revision(
    shop: Shop,
) -> None:
    Payment = shop.cls("payment.captured.v1")
    payment_type = shop.message("payment.captured.v1")
    seen: list[Any] = Shared()

    class Receipts(Subscriber[Payment]):  # type: ignore[valid-type]
        subject = payment_type

        async def handle_message(self, event: Event[Any], msg: Message) -> None:
            seen.append(event.data)

    payment = Payment(order_id="A-1", customer="ada", amount=39.0, currency="EUR")
    dead = await shop.transport.subscribe(f"{DEADLETTER_PREFIX}{payment_type}")
    async with shop.app(Receipts(name="receipts")).run() as running:
        await pub(running, payment)
        await wait_until(lambda: seen)
        store = running.ref(shop.bucket).running_actor()
        assert isinstance(store, SchemaStore)
        original = shop.schemas[payment_type]
        revised = copy.deepcopy(original)
        revised["required"].remove("customer")
        await shop.put_schema("payment.captured.v1", revised)
        await wait_until(lambda: store.schemas.get(payment_type) != original)
        await pub(running, payment)
        letter = await dead.__anext__()  # core NATS keeps nothing: the record to replay
        assert not running.health()
        receipts = running.ref("receipts").running_actor()
        assert isinstance(receipts, Receipts)
        assert "cannot read" in (receipts.problem() or "")
        await shop.put_schema("payment.captured.v1", original)
        await wait_until(running.health)
    await dead.aclose()
    assert seen == [payment]
    assert letter.headers["Polyn-Error-Type"] == "IncompatibleSchemaError"


async def test_a_typed_responder_answers_an_unreadable_request_with_an_error_reply(
    shop: Shop,
) -> None:
    StockRequested = shop.cls("stock.requested.v1")
    StockReported = shop.cls("stock.reported.v1")
    request_type = shop.message("stock.requested.v1")

    class Inventory(Responder[StockRequested]):  # type: ignore[valid-type]
        subject = request_type

        async def handle_request(self, event: Event[Any], msg: Message) -> object:
            return StockReported(sku=event.data.sku, available=1, reserved=True)

    async with shop.app(Inventory()).run() as running:
        store = running.ref(shop.bucket).running_actor()
        assert isinstance(store, SchemaStore)
        revised = copy.deepcopy(shop.schemas[request_type])
        revised["properties"]["quantity"]["type"] = "number"  # a type widened: breaking
        await shop.put_schema("stock.requested.v1", revised)
        await wait_until(lambda: store.schemas.get(request_type) == revised)
        with pytest.raises(ResponderError) as failed:
            await request(running, request_type, {"sku": "mug", "quantity": 1.5})
    assert failed.value.error_type == "IncompatibleSchemaError"
    assert "cannot read" in failed.value.reason


# -- options --------------------------------------------------------------------------------


def test_the_generic_form_sets_the_data_type_option(generated: Generated) -> None:
    shop = generated
    Order = shop.cls("order.placed.v1")

    class Billing(PullConsumer[Order]):  # type: ignore[valid-type]
        type = shop.message("order.placed.v1")

    assert Billing().data_type is Order
    assert Billing().options.data_type is Order
    assert PullConsumer(type="x.v1").data_type is None


def test_a_data_type_for_another_message_or_unbuildable_is_refused_when_the_spec_is_built(
    generated: Generated,
) -> None:
    shop = generated
    Order = shop.cls("order.placed.v1")
    Payment = shop.cls("payment.captured.v1")
    order_type = shop.message("order.placed.v1")
    with pytest.raises(OptionError, match=r"generated for .*payment\.captured\.v1.* consumes"):
        PullConsumer(type=order_type, data_type=Payment)
    with pytest.raises(OptionError, match="generated for"):
        Subscriber(subject=order_type, data_type=Payment)
    with pytest.raises(OptionError, match="generated for"):
        Pipeline(type=order_type, data_type=Payment)
    with pytest.raises(OptionError, match="'data_type'"):
        Responder(subject=order_type, data_type=object)  # nothing cattrs can build from JSON
    with pytest.raises(OptionError, match="'data_type' must be a class"):
        PullConsumer(type=order_type, data_type="OrderPlacedV1")  # type: ignore[typeddict-item]
    # the domain may prefix the type; hand-written classes fit any message
    assert PullConsumer(type=f"com.test.{order_type}", data_type=Order).data_type is Order

    @attrs.frozen
    class Handmade:
        order_id: str

    assert Subscriber(subject=order_type, data_type=Handmade).data_type is Handmade

    class Billing(PullConsumer[Order]):  # type: ignore[valid-type]
        type = order_type

    with pytest.raises(OptionError, match="declared for"):
        Billing(data_type=Payment)
    with pytest.raises(OptionError, match="name one class"):

        class Confused(PullConsumer[Order]):  # type: ignore[valid-type]
            type = order_type
            data_type = Payment


async def test_a_typed_consumer_refuses_to_start_for_another_domains_type(shop: Shop) -> None:
    Order = shop.cls("order.placed.v1")
    consumer = PullConsumer(type=f"org.other.{shop.message('order.placed.v1')}", data_type=Order)
    with pytest.raises(polyn.ActorError) as failed:
        async with shop.app(consumer).run():
            pass  # pragma: no cover - the start fails
    assert isinstance(failed.value.__cause__, OptionError)
    assert "generated for" in str(failed.value.__cause__)

