"""The shop service: orders come in, payments go out, a ledger books them in batches.

One :class:`polyn.app.App` tree, children started in this order (and stopped in reverse)::

    NatsConnection           the connection to NATS (its restart restarts everything below it)
    SchemaStore              the payload schemas of the POLYN_SCHEMAS bucket, kept current
    Inventory   Responder    answers stock.requested.v1 with stock.reported.v1
    Receipts    Subscriber   core NATS: mails a receipt for each payment.captured.v1
    Ledger      Pipeline     JetStream: books payment.captured.v1 in batches
    Billing     PullConsumer JetStream: for each order.placed.v1, asks Inventory for stock,
                             charges the card and publishes payment.captured.v1

Every handler is typed: its consumer is declared for the class ``polyn schemas codegen`` wrote
for its message (``Billing(PullConsumer[OrderPlacedV1])``, :mod:`examples.shop.events`), so
``event.data`` is an ``OrderPlacedV1`` whose fields mypy checks, and events are published as
instances (``pub("nats", PaymentCapturedV1(...))``: the class names the event type).

Everything the actors do is told to a :class:`Journal`, which prints a line per step and
keeps the counts the summary shows (and the tests check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from examples.shop.events import (
    OrderPlacedV1,
    PaymentCapturedV1,
    StockReportedV1,
    StockRequestedV1,
)
from polyn.app import App
from polyn.config import Config
from polyn.consumers import (
    Ack,
    BatchInfo,
    Pipeline,
    PipelineMessage,
    PullConsumer,
    Responder,
    Subscriber,
)
from polyn.event import Event
from polyn.nats import Message, NatsConnection
from polyn.publish import pub, request
from polyn.schema_store import SchemaStore

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = ROOT / "schemas"
MIGRATIONS_DIR = ROOT / "migrations"

DOMAIN = "com.acme"
SOURCE_ROOT = "shop"
CURRENCY = "EUR"

ORDER_PLACED = "order.placed.v1"
PAYMENT_CAPTURED = "payment.captured.v1"
STOCK_REQUESTED = "stock.requested.v1"
STOCK_REPORTED = "stock.reported.v1"

DECLINED_CUSTOMERS = frozenset({"mallory"})
"""Customers whose card is always declined: their orders fail until Billing gives up."""

BILLING_MAX_FAILURES = 2
"""Billing gives up on an order (terminates and dead-letters it) at its second failed delivery."""

STOCK = {"kettle": 40, "teapot": 25, "mug": 300, "tea-sampler": 60}


def make_config(url: str) -> Config:
    """The shop's config, built in code (the example has no ``[tool.polyn]`` section)."""
    return Config(
        domain=DOMAIN,
        source_root=SOURCE_ROOT,
        servers=[url],
        schemas_dir=str(SCHEMAS_DIR),
        migrations_dir=str(MIGRATIONS_DIR),
    )


class PaymentDeclinedError(Exception):
    """The payment provider refused the card."""


@attrs.define
class Journal:
    """What the shop's actors did, shared by all of them (and kept across their restarts).

    ``say`` prints one line of progress; the tests pass a list's ``append`` instead.
    """

    say: Callable[[str], None] = print
    charged: list[str] = attrs.field(factory=list)  # order ids
    declines: list[str] = attrs.field(factory=list)  # order ids, one per failed delivery
    stock_checks: int = 0
    receipts: list[str] = attrs.field(factory=list)  # order ids
    batches: list[tuple[int, str, float]] = attrs.field(factory=list)  # size, trigger, amount

    @property
    def booked(self) -> int:
        """Payments the ledger booked."""
        return sum(size for size, _, _ in self.batches)

    def line(self, who: str, text: str) -> None:
        self.say(f"  {who:<10} {text}")


class Inventory(Responder[StockRequestedV1]):
    """Answers stock requests, reserving what it reports (a Responder)."""

    subject = STOCK_REQUESTED
    reply_type = STOCK_REPORTED  # declared for `polyn catalog`

    def __init__(self, journal: Journal, **options: Any) -> None:
        super().__init__(**options)
        self.journal = journal
        self.stock = dict(STOCK)  # a fresh count at every (re)start

    async def handle_request(
        self, event: Event[StockRequestedV1], msg: Message
    ) -> StockReportedV1:
        wanted = event.data
        available = self.stock.get(wanted.sku, 0)
        reserved = available >= wanted.quantity
        if reserved:
            self.stock[wanted.sku] = available - wanted.quantity
        self.journal.stock_checks += 1
        # An instance of a generated class is the answer: its class names the reply type.
        return StockReportedV1(sku=wanted.sku, available=available, reserved=reserved)


class Billing(PullConsumer[OrderPlacedV1]):
    """For each order: check stock (request / reply), charge, publish the payment.

    A PullConsumer: one order at a time, in stream order, from the durable consumer
    ``shop_order_placed_v1`` (created by the migrations).
    """

    type = ORDER_PLACED
    max_failures = BILLING_MAX_FAILURES
    publishes = (PAYMENT_CAPTURED, STOCK_REQUESTED)  # declared for `polyn catalog`

    def __init__(self, journal: Journal, **options: Any) -> None:
        super().__init__(**options)
        self.journal = journal

    async def handle_message(self, event: Event[OrderPlacedV1], msg: Message) -> Ack:
        order = event.data
        for item in order.items:
            stock = await request(
                "nats",
                StockRequestedV1(sku=item.sku, quantity=item.quantity),
                reply_type=StockReportedV1,
            )
            if not stock.data.reserved:
                self.journal.line("Billing", f"{order.order_id}: {item.sku} out of stock")
        if order.customer in DECLINED_CUSTOMERS:
            self.journal.declines.append(order.order_id)
            self.journal.line(
                "Billing",
                f"{order.order_id} {order.customer:<8} card declined "
                f"(delivery {msg.metadata.num_delivered if msg.metadata else 1})",
            )
            # An exception naks the message with backoff; at max_failures it is dead-lettered.
            raise PaymentDeclinedError(f"card of {order.customer} declined")
        payment = PaymentCapturedV1(
            order_id=order.order_id,
            customer=order.customer,
            amount=order.total,
            currency=CURRENCY,
        )
        self.journal.line(
            "Billing",
            f"{order.order_id} {order.customer:<8} charged {order.total:7.2f} {CURRENCY}",
        )
        # ack=True: stored in the PAYMENTS stream before the order is acked. A crash between
        # the two redelivers the order; the payment's new event id would be a second payment,
        # so a real Billing would make the charge idempotent on the order id.
        await pub("nats", payment, ack=True)
        self.journal.charged.append(order.order_id)
        return Ack.ACK


class Receipts(Subscriber[PaymentCapturedV1]):
    """Mails a receipt for every payment (a core NATS Subscriber: no stream, no durability)."""

    subject = PAYMENT_CAPTURED
    queue_group = "receipts"

    def __init__(self, journal: Journal, **options: Any) -> None:
        super().__init__(**options)
        self.journal = journal

    async def handle_message(self, event: Event[PaymentCapturedV1], msg: Message) -> None:
        payment = event.data
        self.journal.receipts.append(payment.order_id)
        self.journal.line("Receipts", f"{payment.order_id} receipt mailed to {payment.customer}")


class Ledger(Pipeline[PaymentCapturedV1]):
    """Books payments in batches (a Pipeline: 4 concurrent processors, one batcher)."""

    type = PAYMENT_CAPTURED
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012 - Broadway-style class config
    batchers = {"books": {"batch_size": 4, "batch_timeout": 0.3, "concurrency": 1}}  # noqa: RUF012

    def __init__(self, journal: Journal, **options: Any) -> None:
        super().__init__(**options)
        self.journal = journal

    async def handle_message(
        self, processor: str, message: PipelineMessage[PaymentCapturedV1]
    ) -> PipelineMessage[PaymentCapturedV1]:
        return message.put_batcher("books")

    async def handle_batch(
        self,
        batcher: str,
        messages: list[PipelineMessage[PaymentCapturedV1]],
        batch_info: BatchInfo,
    ) -> None:
        amount = sum(m.event.data.amount for m in messages)
        self.journal.batches.append((len(messages), batch_info.trigger, amount))
        orders = ", ".join(m.event.data.order_id for m in messages)
        self.journal.line(
            "Ledger",
            f"booked {len(messages)} payments, {amount:.2f} {CURRENCY} "
            f"(trigger: {batch_info.trigger}) [{orders}]",
        )


def build_app(config: Config, journal: Journal, schemas: dict[str, Any] | None = None) -> App:
    """The shop's tree. ``schemas`` preloads the SchemaStore instead of reading the bucket."""
    return App(
        config,
        [
            NatsConnection(),
            SchemaStore(schemas=schemas),
            Inventory(journal),
            Receipts(journal),
            Ledger(journal, shutdown=10),
            Billing(journal),
        ],
        # The storefront publishes the orders through the running handle (see demo.py).
        publishes=[ORDER_PLACED],
    )


def app(url: str = "nats://127.0.0.1:4222") -> App:
    """The shop's tree with a fresh journal, for tools that inspect it without running it:
    ``polyn catalog --app examples.shop.service:app``."""
    return build_app(make_config(url), Journal())


def utf8_output() -> bool:
    """Whether stdout takes box-drawing characters (else the trace tree is drawn in ASCII)."""
    return (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
