"""The example shop in the test sandbox: what its consumers do with orders, good and bad.

Each test runs the shop's own App tree (``examples.shop.build_app``) on the test's MockNats
(``polyn_sandbox``), on virtual time (``autojump_clock``: Billing's one-second backoff and the
Ledger's batch timeout take no real time). The streams and consumers come from the shop's
migrations, run on ``shop_server`` (see ``conftest.py``), and nothing the tests publish reaches
that server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.shop.demo import (
    INVALID_AFTER,
    ORDERS,
    DeadLetters,
    Expected,
    first_order_trace,
    invalid_body,
    order_data,
    place_orders,
    summary,
    trace_tree,
    wait_until_done,
)
from examples.shop.service import (
    BILLING_MAX_FAILURES,
    DECLINED_CUSTOMERS,
    ORDER_PLACED,
    STOCK,
    STOCK_REPORTED,
    STOCK_REQUESTED,
    Billing,
    Journal,
    Ledger,
    PaymentDeclinedError,
    build_app,
    make_config,
)
from polyn import codec, naming
from polyn.app import Running
from polyn.errors import ValidationError
from polyn.event import Event
from polyn.nats import NatsTransport
from polyn.publish import pub, request
from polyn.testing import Sandbox, real_time

CHARGED = [oid for oid, customer, _ in ORDERS if customer not in DECLINED_CUSTOMERS]
DECLINED = [oid for oid, customer, _ in ORDERS if customer in DECLINED_CUSTOMERS]


class Shop:
    """One test's running shop: its journal, its dead letters, the lines it printed."""

    def __init__(self, running: Running, journal: Journal, letters: DeadLetters) -> None:
        self.running = running
        self.journal = journal
        self.letters = letters


@asynccontextmanager
async def shop(shop_server: str, schemas: dict[str, Any]) -> AsyncIterator[Shop]:
    lines: list[str] = []
    journal = Journal(say=lines.append)
    letters = DeadLetters(lines.append)
    app = build_app(make_config(shop_server), journal, schemas=schemas)
    async with app.run() as running, trio.open_nursery() as nursery:
        await nursery.start(letters.collect, running)
        yield Shop(running, journal, letters)
        nursery.cancel_scope.cancel()


# The declined card is the point: Billing raises PaymentDeclinedError until it gives up.
@pytest.mark.polyn_allow_handler_errors(types=PaymentDeclinedError)
async def test_orders_are_charged_receipted_and_booked_and_bad_ones_dead_lettered(
    polyn_sandbox: Sandbox,
    shop_server: str,
    polyn_schemas: dict[str, Any],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with shop(shop_server, polyn_schemas) as s:
        expected = await place_orders(s.running, lambda line: None)
        assert await wait_until_done(s.journal, s.letters, expected) == []
        orders = await polyn_sandbox.transport.stream_info("ORDERS")
        streams = {"ORDERS": orders.state["messages"]}
    journal = s.journal
    assert expected == Expected(published=12, invalid=3, charged=8, declined=1)
    assert journal.charged == CHARGED  # a PullConsumer handles orders one at a time, in order
    assert sorted(journal.receipts) == CHARGED
    assert journal.booked == 8
    totals = {oid: order_data(oid, c, items)["total"] for oid, c, items in ORDERS}
    assert sum(amount for _, _, amount in journal.batches) == sum(totals[o] for o in CHARGED)
    assert journal.declines == DECLINED * BILLING_MAX_FAILURES
    assert journal.stock_checks == sum(
        len(items) * (BILLING_MAX_FAILURES if c in DECLINED_CUSTOMERS else 1)
        for _, c, items in ORDERS
    )
    assert streams == {"ORDERS": 12}

    letters = polyn_sandbox.dead_letters(ORDER_PLACED)
    assert [m.data for m in letters] == [m.data for m in s.letters.letters]
    consumer = naming.consumer_name(ORDER_PLACED, make_config(shop_server))
    assert {m.headers["Polyn-Consumer"] for m in letters} == {consumer}
    kinds = [m.headers["Polyn-Error-Type"].rsplit(".", 1)[-1] for m in letters]
    assert kinds == ["ValidationError"] * len(INVALID_AFTER) + ["PaymentDeclinedError"]
    assert json.loads(letters[-1].data)["data"]["order_id"] == DECLINED[0]

    # The sandbox kept all of it away from the real server.
    real = polyn_sandbox.real
    assert isinstance(real, NatsTransport)
    with real_time():
        for stream in ("ORDERS", "PAYMENTS", "DEADLETTERS"):
            assert (await real.stream_info(stream)).state["messages"] == 0


async def test_inventory_answers_stock_requests_and_reserves_what_it_reports(
    polyn_sandbox: Sandbox,
    shop_server: str,
    polyn_schemas: dict[str, Any],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with shop(shop_server, polyn_schemas) as s:
        first = await request(s.running, STOCK_REQUESTED, {"sku": "kettle", "quantity": 3})
        second = await request(s.running, STOCK_REQUESTED, {"sku": "kettle", "quantity": 1000})
    assert first.type == f"com.acme.{STOCK_REPORTED}"
    assert first.data == {"sku": "kettle", "available": STOCK["kettle"], "reserved": True}
    assert second.data == {"sku": "kettle", "available": STOCK["kettle"] - 3, "reserved": False}


async def test_the_trace_of_an_order_holds_its_stock_request_and_reply(
    polyn_sandbox: Sandbox,
    shop_server: str,
    polyn_schemas: dict[str, Any],
    autojump_clock: trio.testing.MockClock,
    spans: InMemorySpanExporter,
) -> None:
    exporter = spans  # the session's SDK (install_tracing does the same in the demo's process)
    async with shop(shop_server, polyn_schemas) as s:
        oid, customer, items = ORDERS[0]
        await pub(s.running, ORDER_PLACED, order_data(oid, customer, items), ack=True)
        one = Expected(published=1, invalid=0, charged=1, declined=0)
        assert await wait_until_done(s.journal, s.letters, one) == []
    lines = trace_tree(first_order_trace(exporter.get_finished_spans()), utf8=False, timings=False)
    assert lines[:7] == [
        "  order.placed.v1 send  [PRODUCER]",
        "  `- order.placed.v1 receive  [CONSUMER]",
        "     |- stock.requested.v1 send  [PRODUCER]",
        "     |  `- stock.requested.v1 receive  [CONSUMER]",
        "     |     `- (temporary) send  [PRODUCER]",
        "     |        `- (temporary) receive  [CONSUMER]",
        "     `- payment.captured.v1 send  [PRODUCER]",
    ]
    # Receipts' receive span and the Ledger's (linked to its batch), in either order.
    branches = sorted(line[:11] for line in lines[7:])
    spans = sorted(line[11:] for line in lines[7:])
    assert branches == ["        `- ", "        |- "]
    assert spans == [
        "payment.captured.v1 receive  [CONSUMER]",
        "payment.captured.v1 receive  [CONSUMER]  (linked to its batch's process span)",
    ]


def test_the_sample_orders_are_valid_and_the_invalid_messages_are_refused(
    polyn_schemas: dict[str, Any],
) -> None:
    config = make_config("nats://unused")
    schemas = codec.Schemas.from_dict(polyn_schemas)
    for oid, customer, items in ORDERS:
        data = order_data(oid, customer, items)
        body = codec.encode(Event.new(config, ORDER_PLACED, data), schemas, config)
        assert codec.decode(body, schemas, config).data == data
    for kind in INVALID_AFTER.values():
        with pytest.raises(ValidationError):
            codec.decode(invalid_body(kind, config, schemas), schemas, config)


async def test_pub_refuses_an_invalid_order_so_nothing_is_sent(
    polyn_sandbox: Sandbox,
    shop_server: str,
    polyn_schemas: dict[str, Any],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with shop(shop_server, polyn_schemas) as s:
        with pytest.raises(ValidationError, match="minimum"):
            await pub(s.running, ORDER_PLACED, {**order_data(*ORDERS[0]), "total": -1})
    assert polyn_sandbox.published(ORDER_PLACED) == []


async def test_migrations_create_what_the_shop_looks_for_and_a_second_run_changes_nothing(
    shop_server: str,
) -> None:
    from examples.shop.demo import prepare_nats

    config = make_config(shop_server)
    transport = await NatsTransport.connect(shop_server)
    try:
        for consumer_class in (Billing, Ledger):
            stream = (await transport.stream_names(consumer_class.type))[0]
            name = naming.consumer_name(consumer_class.type, config)
            info = await transport.consumer_info(stream, name)
            assert info.config["filter_subject"] == consumer_class.type
        dead = await transport.stream_info("DEADLETTERS")
        assert dead.subjects == ["polyn.deadletter.>"]
    finally:
        await transport.close()
    lines: list[str] = []
    await prepare_nats(config, lines.append)
    assert lines == [
        "  schemas    4 schemas loaded into POLYN_SCHEMAS: 4 unchanged",
        "  migrations 0 run (all up to date)",
    ]


def test_the_summary_reads_at_a_glance() -> None:
    journal = Journal(say=lambda line: None)
    journal.charged[:] = CHARGED
    journal.declines[:] = DECLINED * 2
    journal.receipts[:] = CHARGED
    journal.stock_checks = 12
    journal.batches[:] = [(4, "size", 126.5), (4, "size", 205.5)]
    lines = summary(journal, DeadLetters(), Expected(12, 3, 8, 1), {"ORDERS": 12, "DEADLETTERS": 4})
    assert lines == [
        "  in         12 messages on order.placed.v1: 9 orders, 3 invalid",
        "  actor      kind          handled",
        "  Billing    PullConsumer  8 orders charged, A-1005 declined 2 times",
        "  Inventory  Responder     12 stock requests answered",
        "  Receipts   Subscriber    8 receipts mailed",
        "  Ledger     Pipeline      8 payments booked in 2 batches (4 + 4), 332.00 EUR",
        "  dead       0 dead letters",
        "  streams    messages stored: ORDERS 12, DEADLETTERS 4",
    ]
