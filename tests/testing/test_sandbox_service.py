"""One service's test suite, run sandboxed (virtual time) and against the real server.

The same four tests a user would write for a small service (a Subscriber, a PullConsumer that
naks with a delay and relies on redelivery after ``ack_wait``, a Pipeline whose batches close
on ``batch_timeout``, a Responder answering ``polyn.request``) run twice:

- ``sandbox``: through the ``polyn_sandbox`` MockNats on ``MockClock(autojump_threshold=0)``,
  with the service's real timings (30 s nak delay, 30 s ``ack_wait``, 5 s batch timeout);
- ``real``: through the real nats-server, where every wait is real. In CI it runs with small
  waits (:data:`SMALL`) to stay fast; ``benchmarks/sandbox.py`` runs it with the service's real
  timings too (``POLYN_SERVICE_WAITS=service``) to measure what the sandbox saves.

Both variants assert the same observable behaviour: what was handled, when (in the test's own
clock), what was dead-lettered, what the reply was.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import pytest
import trio
from _support import Names, Shared

from polyn import naming
from polyn.app import App, Running
from polyn.config import Config
from polyn.consumers import (
    Ack,
    BatchInfo,
    Nak,
    Pipeline,
    PipelineMessage,
    PullConsumer,
    Responder,
    Subscriber,
)
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport, Transport
from polyn.publish import pub, request
from polyn.schema_store import SchemaStore
from polyn.testing import Sandbox

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


@attrs.frozen
class Waits:
    """The service's timings: how long JetStream and the pipeline wait."""

    nak_delay: float
    ack_wait: float
    batch_timeout: float
    fetch_expires: float


SERVICE = Waits(nak_delay=30.0, ack_wait=30.0, batch_timeout=5.0, fetch_expires=1.0)
"""The service's own timings (what the sandbox always runs, on virtual time)."""
SMALL = Waits(nak_delay=0.3, ack_wait=1.0, batch_timeout=0.2, fetch_expires=0.2)
"""Scaled down for the real-server variant in CI."""


def real_waits() -> Waits:
    return SERVICE if os.environ.get("POLYN_SERVICE_WAITS") == "service" else SMALL


class Harness:
    """What the tests need from either world: a config, the transport to define streams and
    publish raw bodies, how to run the App, and the dead letters."""

    def __init__(
        self, mode: str, names: Names, transport: Transport, url: str, waits: Waits
    ) -> None:
        self.mode = mode
        self.names = names
        self.transport = transport
        self.waits = waits
        self.config = Config(domain="com.test", source_root=f"svc.{names.token}", servers=[url])
        self.sandbox: Sandbox | None = None
        self.letters: list[Message] = []
        self.streams: list[str] = []

    def type(self, name: str) -> str:
        return self.names.subject(name)

    async def define(self, event_type: str, **consumer: Any) -> None:
        stream = self.names.stream(event_type.split(".")[1])
        self.streams.append(stream)
        await self.transport.create_stream({"name": stream, "subjects": [event_type]})
        await self.transport.create_consumer(
            stream,
            {
                "durable_name": naming.consumer_name(event_type, self.config),
                "ack_policy": "explicit",
                "ack_wait": self.waits.ack_wait,
                **consumer,
            },
        )

    def run(self, *children: Any) -> AbstractAsyncContextManager[Running]:
        schemas = {self.type(name): SCHEMA for name in ("paid.v1", "quote.v1", "quoted.v1")}
        schemas.update({self.type(n): SCHEMA for n in ("greeted.v1", "shipped.v1")})
        app = App(self.config, [NatsConnection(), SchemaStore(schemas=schemas), *children])
        return self.sandbox.run(app) if self.sandbox is not None else app.run()

    def dead_letters(self) -> list[Message]:
        if self.sandbox is not None:
            return self.sandbox.dead_letters(self.names.subject(">"))
        return self.letters


@pytest.fixture(params=["sandbox", "real"])
async def harness(
    request: pytest.FixtureRequest, nats_server: str, names: Names
) -> AsyncIterator[Harness]:
    """The sandbox variant runs on virtual time (tests/testing/conftest.py marks it)."""
    if request.param == "sandbox":
        async with Sandbox.start(nats_server) as sandbox:
            harness = Harness("sandbox", names, sandbox.transport, nats_server, SERVICE)
            harness.sandbox = sandbox
            try:
                yield harness
            finally:
                await delete_streams(harness)
        return
    real = await NatsTransport.connect(nats_server)
    harness = Harness("real", names, real, nats_server, real_waits())
    try:
        async with trio.open_nursery() as nursery:
            letters = await real.subscribe("polyn.deadletter." + names.subject(">"))

            async def collect() -> None:
                async for msg in letters:
                    harness.letters.append(msg)

            nursery.start_soon(collect)
            yield harness
            nursery.cancel_scope.cancel()
    finally:
        await delete_streams(harness)
        await real.close()


async def delete_streams(harness: Harness) -> None:
    for stream in harness.streams:
        await harness.transport.delete_stream(stream)


async def eventually(predicate: Callable[[], object]) -> None:
    # Virtual or real: an hour of virtual time is an instant; the real variant never gets near.
    with trio.fail_after(3600):
        while not predicate():  # noqa: ASYNC110 - polls what the service's tasks change
            await trio.sleep(0.01)


# -- the service ---------------------------------------------------------------------------


class Greeter(Subscriber):
    def __init__(self, seen: list[int], **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen

    async def handle_message(self, event: Event, msg: Message) -> None:
        self.seen.append(event.data["n"])


class Payments(PullConsumer):
    """Naks a payment once with a delay when the bank is busy (odd n); leaves even ones
    unsettled on their first delivery (a crash, say), so ``ack_wait`` redelivers them."""

    def __init__(self, seen: list[tuple[int, int, float]], nak_delay: float, **options: Any):
        super().__init__(**options)
        self.seen = seen
        self.nak_delay = nak_delay

    async def handle_message(self, event: Event, msg: Message) -> Any:
        delivered = msg.metadata.num_delivered if msg.metadata else 0
        self.seen.append((event.data["n"], delivered, trio.current_time()))
        if delivered > 1:
            return Ack.ACK
        return Nak(delay=self.nak_delay) if event.data["n"] % 2 else None


class Shipping(Pipeline):
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012

    def __init__(self, batches: list[tuple[list[int], str, float]], **options: Any) -> None:
        super().__init__(**options)
        self.batches = batches

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("labels")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        numbers = sorted(m.event.data["n"] for m in messages)
        self.batches.append((numbers, batch_info.trigger, trio.current_time()))


class Quotes(Responder):
    def __init__(self, reply_type: str, **options: Any) -> None:
        super().__init__(**options)
        self.reply_type = reply_type

    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any]:
        return self.reply_type, {"n": event.data["n"] * 10}


# -- the tests -----------------------------------------------------------------------------


async def test_the_greeter_handles_valid_events_and_dead_letters_invalid_ones(
    harness: Harness,
) -> None:
    event_type = harness.type("greeted.v1")
    seen: list[int] = Shared()
    async with harness.run(Greeter(seen, subject=event_type, name="greeter")) as running:
        await pub(running, event_type, {"n": 1})
        await harness.transport.publish(event_type, b"not an event")
        await pub(running, event_type, {"n": 2})
        await eventually(lambda: len(seen) == 2 and harness.dead_letters())
    assert seen == [1, 2]
    (letter,) = harness.dead_letters()
    assert (letter.data, letter.headers["Polyn-Consumer"]) == (b"not an event", "greeter")


async def test_payments_are_redelivered_after_a_nak_delay_or_ack_wait(harness: Harness) -> None:
    event_type = harness.type("paid.v1")
    await harness.define(event_type)
    waits = harness.waits
    seen: list[tuple[int, int, float]] = Shared()
    consumer = Payments(seen, waits.nak_delay, type=event_type, fetch_expires=waits.fetch_expires)
    async with harness.run(consumer) as running:
        await pub(running, event_type, {"n": 1}, ack=True)
        await pub(running, event_type, {"n": 2}, ack=True)
        await eventually(lambda: len(seen) == 4)
    first = {n: when for n, delivered, when in seen if delivered == 1}
    again = {n: when for n, delivered, when in seen if delivered == 2}
    assert sorted(again) == [1, 2]
    assert again[1] - first[1] >= waits.nak_delay * 0.95
    assert again[2] - first[2] >= waits.ack_wait * 0.95


async def test_shipping_labels_are_batched_until_the_batch_timeout(harness: Harness) -> None:
    event_type = harness.type("shipped.v1")
    await harness.define(event_type)
    waits = harness.waits
    batches: list[tuple[list[int], str, float]] = Shared()
    pipeline = Shipping(
        batches,
        type=event_type,
        batchers={"labels": {"batch_size": 10, "batch_timeout": waits.batch_timeout}},
        fetch_expires=waits.fetch_expires,
    )
    async with harness.run(pipeline) as running:
        start = trio.current_time()
        for n in range(3):
            await pub(running, event_type, {"n": n}, ack=True)
        await eventually(lambda: batches)
    ((numbers, trigger, when),) = batches
    assert (numbers, trigger) == ([0, 1, 2], "timeout")
    assert when - start >= waits.batch_timeout * 0.95


async def test_quotes_answer_requests(harness: Harness) -> None:
    request_type, reply_type = harness.type("quote.v1"), harness.type("quoted.v1")
    async with harness.run(Quotes(reply_type, subject=request_type)) as running:
        answers = [await request(running, request_type, {"n": n}) for n in range(3)]
    assert [a.data["n"] for a in answers] == [0, 10, 20]
    assert {a.type for a in answers} == {f"com.test.{reply_type}"}
