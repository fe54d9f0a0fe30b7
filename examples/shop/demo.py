"""The demo run: set NATS up, start the shop, send it orders, report what happened.

:func:`run` is the whole run inside trio (schemas, migrations, the tree, the orders, the
summary, the trace). :func:`place_orders` and :func:`wait_until_done` are the part the tests
reuse inside the sandbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from examples.shop.events import OrderPlacedV1, OrderPlacedV1Item
from examples.shop.service import (
    CURRENCY,
    DECLINED_CUSTOMERS,
    MIGRATIONS_DIR,
    ORDER_PLACED,
    PAYMENT_CAPTURED,
    SCHEMAS_DIR,
    STOCK_REQUESTED,
    Journal,
    build_app,
    utf8_output,
)
from polyn import codec
from polyn.app import Running
from polyn.config import Config
from polyn.event import Event
from polyn.migration import open_transport, run_async
from polyn.nats import Message, transport_for
from polyn.publish import pub
from polyn.schema_loader import load_schemas, read_schemas
from polyn.typed import unstructure

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DEADLETTER_STREAM = "DEADLETTERS"
STREAMS = ("ORDERS", "PAYMENTS", DEADLETTER_STREAM)
SHOP_SUBJECTS = frozenset({ORDER_PLACED, PAYMENT_CAPTURED, STOCK_REQUESTED})

# (order id, customer, [(sku, quantity, unit price)])
ORDERS: Sequence[tuple[str, str, list[tuple[str, int, float]]]] = (
    ("A-1001", "alice", [("kettle", 1, 39.00)]),
    ("A-1002", "bob", [("teapot", 1, 24.50), ("mug", 2, 8.00)]),
    ("A-1003", "carol", [("mug", 4, 8.00)]),
    ("A-1004", "dave", [("tea-sampler", 1, 15.00)]),
    ("A-1005", "mallory", [("kettle", 2, 39.00)]),
    ("A-1006", "erin", [("teapot", 2, 24.50)]),
    ("A-1007", "frank", [("mug", 6, 8.00), ("kettle", 1, 39.00)]),
    ("A-1008", "grace", [("tea-sampler", 3, 15.00)]),
    ("A-1009", "heidi", [("teapot", 1, 24.50)]),
)
INVALID_AFTER = {"A-1002": "schema", "A-1004": "json", "A-1007": "envelope"}
"""After which order each invalid message is sent, and how it is broken."""

INVALID_REASONS = {
    "schema": "its data breaks order.placed.v1's schema",
    "json": "it is not JSON",
    "envelope": "it is not a CloudEvent (no id, no source)",
}


def new_order(order_id: str, customer: str, items: list[tuple[str, int, float]]) -> OrderPlacedV1:
    """An order as the storefront publishes it: an instance of the generated class."""
    return OrderPlacedV1(
        order_id=order_id,
        customer=customer,
        items=[OrderPlacedV1Item(sku=sku, quantity=qty, price=price) for sku, qty, price in items],
        total=round(sum(qty * price for _, qty, price in items), 2),
    )


def order_data(order_id: str, customer: str, items: list[tuple[str, int, float]]) -> dict[str, Any]:
    """The same order as the JSON ``data`` of its event."""
    data: dict[str, Any] = unstructure(new_order(order_id, customer, items))
    return data


def invalid_body(kind: str, config: Config, schemas: codec.Schemas) -> bytes:
    """A message on order.placed.v1 that ``polyn.pub`` would refuse to send."""
    if kind == "json":
        return b'{"order_id": "A-1004b", "customer": '
    good = order_data("A-9999", "eve", [("kettle", 1, 39.00)])
    document = json.loads(codec.encode(Event.new(config, ORDER_PLACED, good), schemas, config))
    if kind == "schema":
        document["data"]["items"][0]["quantity"] = 0
        document["data"]["total"] = -39.0
    else:
        del document["id"], document["source"]
    return json.dumps(document).encode()


@attrs.frozen
class Expected:
    """What the shop must have done once every order is handled."""

    published: int
    invalid: int
    charged: int
    declined: int

    @property
    def dead_letters(self) -> int:
        return self.invalid + self.declined


async def place_orders(running: Running, say: Callable[[str], None] = print) -> Expected:
    """Publish :data:`ORDERS` with ``polyn.pub`` (typed: ``pub(running, OrderPlacedV1(...))``)
    and the invalid messages raw, in between.

    The invalid ones go through the transport directly (``js_publish``), as a buggy service or
    another client could send them: ``polyn.pub`` validates first and would refuse them.
    """
    config = running.config
    schemas = codec.Schemas.from_dict(
        {name: file.document for name, file in read_schemas(SCHEMAS_DIR).items()}
    )
    transport = transport_for(running)
    say(
        f"  sending    {len(ORDERS)} orders with polyn.pub, "
        f"{len(INVALID_AFTER)} invalid messages raw"
    )
    invalid = 0
    for order_id, customer, items in ORDERS:
        await pub(running, new_order(order_id, customer, items), ack=True)
        kind = INVALID_AFTER.get(order_id)
        if kind is not None:
            await transport.js_publish(ORDER_PLACED, invalid_body(kind, config, schemas))
            say(f"  {'sent':<10} an invalid {ORDER_PLACED}: {INVALID_REASONS[kind]}")
            invalid += 1
    declined = sum(1 for _, customer, _ in ORDERS if customer in DECLINED_CUSTOMERS)
    expected = Expected(
        published=len(ORDERS) + invalid,
        invalid=invalid,
        charged=len(ORDERS) - declined,
        declined=declined,
    )
    return expected


class DeadLetters:
    """Collects the shop's dead letters (a core subscription to ``polyn.deadletter.>``)."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.letters: list[Message] = []

    async def collect(
        self, running: Running, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        sub = await transport_for(running).subscribe("polyn.deadletter.>")
        task_status.started()
        async for msg in sub:
            if msg.headers.get("Polyn-Original-Subject") not in SHOP_SUBJECTS:
                continue  # another service's, on a shared server
            self.letters.append(msg)
            error_type = msg.headers.get("Polyn-Error-Type", "?").rsplit(".", 1)[-1]
            self.say(f"  {'dead':<10} {msg.subject} ({error_type})")


def describe_dead_letter(msg: Message, width: int = 100) -> str:
    """``<error type>: <Polyn-Error>``, cut to ``width`` characters."""
    error_type = msg.headers.get("Polyn-Error-Type", "?").rsplit(".", 1)[-1]
    text = f"{error_type}: {msg.headers.get('Polyn-Error', '')}".rstrip(" :")
    return text if len(text) <= width else text[: width - 3] + "..."


async def wait_until_done(
    journal: Journal, letters: DeadLetters, expected: Expected, timeout: float = 20
) -> list[str]:
    """Wait until every order is handled; return what is still missing (empty: all done)."""

    def missing() -> list[str]:
        gaps = [
            (f"{ORDER_PLACED} charged", len(journal.charged), expected.charged),
            ("receipts mailed", len(journal.receipts), expected.charged),
            ("payments booked", journal.booked, expected.charged),
            ("dead letters", len(letters.letters), expected.dead_letters),
        ]
        return [f"{what}: {got} of {want}" for what, got, want in gaps if got < want]

    with trio.move_on_after(timeout):
        while missing():  # noqa: ASYNC110 - the actors change the journal
            await trio.sleep(0.02)
    return missing()


def summary(
    journal: Journal, letters: DeadLetters, expected: Expected, streams: dict[str, int]
) -> list[str]:
    """The summary lines: one per consumer, then the dead letters and the streams."""
    amount = sum(a for _, _, a in journal.batches)
    sizes = " + ".join(str(size) for size, _, _ in journal.batches)
    declined = sorted(set(journal.declines))
    billing = f"{len(journal.charged)} orders charged"
    if declined:
        billing += f", {', '.join(declined)} declined {len(journal.declines)} times"
    rows = [
        ("actor", "kind", "handled"),
        ("Billing", "PullConsumer", billing),
        ("Inventory", "Responder", f"{journal.stock_checks} stock requests answered"),
        ("Receipts", "Subscriber", f"{len(journal.receipts)} receipts mailed"),
        (
            "Ledger",
            "Pipeline",
            f"{journal.booked} payments booked in {len(journal.batches)} batches ({sizes}), "
            f"{amount:.2f} {CURRENCY}",
        ),
    ]
    lines = [
        f"  in         {expected.published} messages on {ORDER_PLACED}: "
        f"{expected.published - expected.invalid} orders, {expected.invalid} invalid"
    ]
    lines += [f"  {who:<10} {kind:<13} {what}" for who, kind, what in rows]
    lines.append(f"  dead       {len(letters.letters)} dead letters")
    by_consumer: dict[str, list[Message]] = {}
    for msg in letters.letters:
        by_consumer.setdefault(msg.headers.get("Polyn-Consumer", "?"), []).append(msg)
    for consumer, msgs in by_consumer.items():
        lines.append(f"    from {consumer}, of {msgs[0].headers.get('Polyn-Original-Subject')}:")
        lines += [f"      {describe_dead_letter(msg, 98)}" for msg in msgs]
    if streams:
        counts = ", ".join(f"{name} {count}" for name, count in streams.items())
        lines.append(f"  streams    messages stored: {counts}")
    return lines


async def stream_counts(running: Running) -> dict[str, int]:
    """Messages in each of the shop's streams (on a shared server: every run's)."""
    transport = transport_for(running)
    counts = {}
    for name in STREAMS:
        info = await transport.stream_info(name)
        counts[name] = int(info.state.get("messages", 0))
    return counts


# -- tracing ---------------------------------------------------------------------------------


def install_tracing() -> InMemorySpanExporter | None:
    """An OpenTelemetry SDK with an in-memory exporter (None without the SDK: no tracing).

    The global tracer provider can be set once per process, so an SDK provider already there
    is reused; the exporter is added to it once, and cleared at every later call.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None  # another kind of provider was installed first: leave it alone
    exporter = getattr(provider, "_shop_exporter", None)
    if not isinstance(exporter, InMemorySpanExporter):
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider._shop_exporter = exporter  # type: ignore[attr-defined]
    exporter.clear()
    return exporter


def first_order_trace(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """Every span of the trace that the first ``order.placed.v1 send`` span started."""
    roots = [s for s in spans if s.parent is None and s.name == f"{ORDER_PLACED} send"]
    if not roots:
        return []
    root = min(roots, key=lambda s: s.start_time or 0)
    trace_id = root.context.trace_id if root.context else None
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def trace_tree(
    spans: Sequence[ReadableSpan], *, utf8: bool | None = None, timings: bool = True
) -> list[str]:
    """An indented tree of span names with their kinds (and durations), children in start
    order."""
    if utf8 is None:
        utf8 = utf8_output()
    tee, elbow, pipe = ("├─ ", "└─ ", "│  ") if utf8 else ("|- ", "`- ", "|  ")
    ids = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, branch: str, below: str) -> None:
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        text = f"{prefix}{branch}{span.name}  [{span.kind.name}]"
        if timings:
            text += f"  {took:.1f} ms"
        if span.links:
            text += "  (linked to its batch's process span)"
        lines.append(text)
        kids = children.get(span.context.span_id if span.context else None, [])
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            walk(kid, prefix + below, elbow if last else tee, "   " if last else pipe)

    for root in children.get(None, []):
        walk(root, "  ", "", "")
    return lines


# -- the whole run ---------------------------------------------------------------------------


@attrs.define
class Outcome:
    """What :func:`run` saw: the journal, the dead letters and what was missing (if anything)."""

    journal: Journal
    letters: DeadLetters
    expected: Expected
    missing: list[str]


async def prepare_nats(config: Config, say: Callable[[str], None] = print) -> None:
    """Load the schemas (never pruning other services' keys) and run the migrations."""
    files = read_schemas(SCHEMAS_DIR)
    async with open_transport(config) as transport:
        report = await load_schemas(
            transport, files, bucket=config.schema_store, replicas=config.kv_replicas
        )
    say(f"  schemas    {report.summary()}")
    result = await run_async(config, MIGRATIONS_DIR)
    ran = [step.migration.path.name for step in result.steps]
    say(f"  migrations {len(ran)} run" + (f": {', '.join(ran)}" if ran else " (all up to date)"))


async def run(
    config: Config,
    *,
    say: Callable[[str], None] = print,
    keep_running: bool = False,
    exporter: InMemorySpanExporter | None = None,
    timeout: float = 20,
) -> Outcome:
    """The demo inside trio, against the NATS server of ``config`` (see the package doc)."""
    started = time.monotonic()
    say("== setting up NATS")
    await prepare_nats(config, say)
    journal = Journal(say=say)
    letters = DeadLetters(say)
    app = build_app(config, journal)
    say("== starting the service tree")
    async with app.run() as running, trio.open_nursery() as nursery:
        say("  started    " + ", ".join(_child_names(app)))
        await nursery.start(letters.collect, running)
        say("== placing orders")
        expected = await place_orders(running, say)
        missing = await wait_until_done(journal, letters, expected, timeout)
        streams = await stream_counts(running)
        elapsed = time.monotonic() - started
        say(f"== summary ({elapsed:.1f} s)")
        for line in summary(journal, letters, expected, streams):
            say(line)
        if missing:
            say("  MISSING    " + "; ".join(missing))
        say("== trace of order A-1001 (a request / reply inside its handling)")
        if exporter is None:
            say("  (no OpenTelemetry SDK installed: pip install -e '.[dev]')")
        else:
            for line in trace_tree(first_order_trace(exporter.get_finished_spans())):
                say(line)
        if keep_running:
            say(f"== running at {config.servers[0]}; Ctrl-C stops it")
            await _wait_for_ctrl_c()
        nursery.cancel_scope.cancel()
        say("== stopping the service tree")
    say("  stopped    every actor finished")
    return Outcome(journal, letters, expected, missing)


def _child_names(app: Any) -> list[str]:
    return [type(child).__name__ for child in app.supervisor.children]


async def _wait_for_ctrl_c() -> None:
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


__all__ = [
    "DeadLetters",
    "Expected",
    "Outcome",
    "install_tracing",
    "place_orders",
    "run",
    "summary",
    "trace_tree",
    "wait_until_done",
]
