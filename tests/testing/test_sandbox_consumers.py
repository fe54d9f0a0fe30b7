"""Sandboxed JetStream consumers: a ``PullConsumer``, a ``Pipeline`` and a ``Responder`` in an App.

Events published by the test with ``polyn.pub(..., ack=True)`` reach the consumer through the
test's MockNats only (the real stream stays empty). Acks, naks, delayed naks, terms, redelivery
after ``ack_wait``, backoff up to ``max_failures`` and batch timeouts run on virtual time
(pytest-trio's ``autojump_clock``, switched on from the start): minutes of JetStream timing take
no real time, and nothing crosses into the real server meanwhile.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from _support import Names, Shared
from hypothesis import given, settings

from polyn import naming
from polyn.app import App, Running
from polyn.config import Config
from polyn.consumers import Ack, BatchInfo, Nak, Pipeline, PipelineMessage, PullConsumer, Responder
from polyn.errors import ResponderError
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport, transport_for
from polyn.publish import pub, request
from polyn.schema_store import SchemaStore
from polyn.testing import Sandbox, real_time

ORDER_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}},
}


class Service:
    """One test's service: an event type, its stream and durable consumer on the real server
    (created through the sandbox, which passes definitions on to the server), an App config."""

    def __init__(self, sandbox: Sandbox, names: Names) -> None:
        self.sandbox = sandbox
        self.type = names.subject("order.placed.v1")
        self.stream = names.stream()
        self.deadletter_stream = names.stream("deadletters")
        self.config = sandbox.config(Config(domain="com.test", source_root=f"svc.{names.token}"))
        self.consumer = naming.consumer_name(self.type, self.config)
        self.schemas: dict[str, Any] = {self.type: ORDER_SCHEMA}

    async def create(self, **consumer_config: Any) -> None:
        transport = self.sandbox.transport
        await transport.create_stream({"name": self.stream, "subjects": [self.type]})
        await transport.create_consumer(
            self.stream,
            {"durable_name": self.consumer, "ack_policy": "explicit", **consumer_config},
        )

    async def create_deadletter_stream(self) -> None:
        subject = "polyn.deadletter." + self.type
        config = {"name": self.deadletter_stream, "subjects": [subject]}
        await self.sandbox.transport.create_stream(config)

    async def delete(self) -> None:
        for stream in (self.stream, self.deadletter_stream):
            try:
                await self.sandbox.transport.delete_stream(stream)
            except Exception:  # never created
                pass

    @asynccontextmanager
    async def app(self, *children: Any) -> AsyncIterator[Running]:
        app = App(self.config, [NatsConnection(), SchemaStore(schemas=self.schemas), *children])
        async with self.sandbox.run(app) as running:
            yield running

    async def real_stream_messages(self, stream: str | None = None) -> int:
        """How many messages the *server's* stream holds."""
        real = self.sandbox.real
        assert isinstance(real, NatsTransport)
        with real_time():
            info = await real.stream_info(stream or self.stream)
        return int(info.state["messages"])

    async def settled(self) -> dict[str, int]:
        info = await self.sandbox.transport.consumer_info(self.stream, self.consumer)
        return {"pending": info.num_pending, "ack_pending": info.num_ack_pending}


@pytest.fixture
async def service(polyn_sandbox: Sandbox, names: Names) -> AsyncIterator[Service]:
    service = Service(polyn_sandbox, names)
    try:
        yield service
    finally:
        await service.delete()


Decide = Callable[[Event, Message], Any]


class Recorder(PullConsumer):
    """Records ``(n, delivery, virtual time)`` of every event; settles as ``decide`` says."""

    def __init__(self, seen: list[tuple[int, int, float]], decide: Decide, **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen
        self.decide = decide

    async def handle_message(self, event: Event, msg: Message) -> Any:
        delivered = msg.metadata.num_delivered if msg.metadata else 0
        self.seen.append((event.data["n"], delivered, trio.current_time()))
        result = self.decide(event, msg)
        if isinstance(result, BaseException):
            raise result
        return result


async def wait_until(predicate: Callable[[], object], timeout: float = 3600) -> None:
    """Poll on (virtual) time: an hour of it passes in an instant under autojump."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state the consumer's tasks change
            await trio.sleep(0.1)


def ack(event: Event, msg: Message) -> Any:
    return Ack.ACK


async def test_events_published_with_ack_reach_the_sandboxed_consumer_and_never_the_server(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create()
    seen: list[tuple[int, int, float]] = Shared()
    async with service.app(Recorder(seen, ack, type=service.type)) as running:
        assert transport_for(running) is service.sandbox.transport
        acks = [await pub(running, service.type, {"n": n}, ack=True) for n in range(3)]
        await wait_until(lambda: len(seen) == 3)
        await wait_until_settled(service)
    assert [(a.stream, a.seq) for a in acks if a] == [(service.stream, s) for s in (1, 2, 3)]
    assert [(n, delivered) for n, delivered, _ in seen] == [(0, 1), (1, 1), (2, 1)]
    assert await service.real_stream_messages() == 0
    assert [json.loads(m.data)["data"] for m in service.sandbox.published(service.type)] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


async def wait_until_settled(service: Service) -> None:
    with trio.fail_after(3600):
        while (await service.settled()) != {"pending": 0, "ack_pending": 0}:  # noqa: ASYNC110
            await trio.sleep(0.1)


@pytest.mark.polyn_allow_unsettled  # the redelivery after ack_wait is the point
async def test_ack_nak_delayed_nak_term_and_redelivery_after_ack_wait_on_virtual_time(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create(ack_wait=30)
    late: list[Message] = []

    def decide(event: Event, msg: Message) -> Any:
        n, delivered = event.data["n"], msg.metadata.num_delivered if msg.metadata else 0
        if n == 0:  # nak: redelivered at once
            return Ack.NAK if delivered == 1 else Ack.ACK
        if n == 1:  # delayed nak: redelivered ten minutes later
            return Nak(delay=600) if delivered == 1 else Ack.ACK
        if n == 2:  # term: never again
            return Ack.TERM
        if delivered == 1:  # n == 3: left unsettled, redelivered after ack_wait
            return None
        late.append(msg)
        return Ack.ACK

    seen: list[tuple[int, int, float]] = Shared()
    mock = service.sandbox.transport
    wall = time.monotonic()
    async with service.app(Recorder(seen, decide, type=service.type)) as running:
        crossings = mock.crossings
        for n in range(4):
            await pub(running, service.type, {"n": n}, ack=True)
        start = trio.current_time()
        await wait_until(lambda: len(seen) == 7)
        await wait_until_settled(service)
        await trio.sleep(3600)  # an hour more: the terminated one never comes back
        assert mock.crossings == crossings  # nothing went to the real server meanwhile
    at = {(n, delivered): when - start for n, delivered, when in seen}
    assert sorted(at) == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (3, 1), (3, 2)]
    assert at[(0, 2)] < 1
    assert 600 <= at[(1, 2)] < 601
    assert 30 <= at[(3, 2)] < 31
    assert len(late) == 1
    assert time.monotonic() - wall < 10  # an hour and ten minutes of JetStream time


@pytest.mark.polyn_allow_handler_errors  # the failures are the point
async def test_a_failing_handler_reaches_max_failures_and_is_dead_lettered(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create()
    await service.create_deadletter_stream()

    def decide(event: Event, msg: Message) -> Any:
        return RuntimeError("the database is down") if event.data["n"] == 0 else Ack.ACK

    seen: list[tuple[int, int, float]] = Shared()
    consumer = Recorder(seen, decide, type=service.type, max_failures=4)
    async with service.app(consumer) as running:
        poison = await pub(running, service.type, {"n": 0}, ack=True)
        await pub(running, service.type, {"n": 1}, ack=True)
        await wait_until(lambda: service.sandbox.dead_letters(service.type))
        await wait_until_settled(service)
    deliveries = [(delivered, when) for n, delivered, when in seen if n == 0]
    assert [delivered for delivered, _ in deliveries] == [1, 2, 3, 4]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(deliveries)]
    assert [round(gap) for gap in gaps] == [1, 2, 4]  # backoff: 1 s, 2 s, 4 s
    assert (1, 1) in [(n, d) for n, d, _ in seen]  # the consumer went on meanwhile
    (letter,) = service.sandbox.dead_letters(service.type)
    assert letter.headers["Polyn-Error"] == "the database is down"
    assert letter.headers["Polyn-Error-Type"] == "RuntimeError"
    assert letter.headers["Polyn-Consumer"] == service.consumer
    assert poison is not None
    assert letter.headers["Polyn-Original-Id"] == json.loads(letter.data)["id"]
    # stored by the sandbox's dead-letter stream, not the server's
    mock = service.sandbox.transport
    assert (await mock.stream_info(service.deadletter_stream)).state["messages"] == 1
    assert await service.real_stream_messages(service.deadletter_stream) == 0


async def test_invalid_events_are_terminated_and_dead_lettered(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create()
    seen: list[tuple[int, int, float]] = Shared()
    mock = service.sandbox.transport
    async with service.app(Recorder(seen, ack, type=service.type)) as running:
        await mock.js_publish(service.type, b"definitely not json")
        good = await pub(running, service.type, {"n": 1}, ack=True)
        document = json.loads(service.sandbox.published(service.type)[-1].data)
        document["data"] = {"n": "not a number"}
        await mock.js_publish(service.type, json.dumps(document).encode())
        await wait_until(lambda: len(service.sandbox.dead_letters(service.type)) == 2)
        await wait_until_settled(service)
        await trio.sleep(3600)
    assert good is not None
    assert [(n, delivered) for n, delivered, _ in seen] == [(1, 1)]
    letters = service.sandbox.dead_letters(service.type)
    assert letters[0].data == b"definitely not json"
    assert json.loads(letters[1].data)["data"] == {"n": "not a number"}
    assert {m.headers["Polyn-Error-Type"] for m in letters} == {"ValidationError"}
    info = await mock.consumer_info(service.stream, service.consumer)
    assert info.num_redelivered == 0  # terminated, not naked


class Ledger(Pipeline):
    """Batches events into ``batches``; fails what ``decide`` says."""

    def __init__(
        self,
        batches: list[tuple[list[int], str, float]],
        fail: Callable[[PipelineMessage], Any] = lambda message: None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.batches = batches
        self.fail = fail

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        reason = self.fail(message)
        if reason is not None:
            return message.fail(reason, term=True)
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        numbers = [m.event.data["n"] for m in messages]
        self.batches.append((numbers, batch_info.trigger, trio.current_time()))
        if -1 in numbers:
            raise RuntimeError("the batch hit a bad row")


# batch_timeout well within the consumer's ack_wait (30 s), else JetStream redelivers (and so does
# the sandbox) the events a batch is still waiting for.
BATCHERS = {"db": {"batch_size": 5, "batch_timeout": 20.0, "concurrency": 1}}


async def test_a_pipeline_batches_by_size_and_by_timeout_on_virtual_time(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create(ack_wait=30)
    batches: list[tuple[list[int], str, float]] = Shared()
    wall = time.monotonic()
    async with service.app(Ledger(batches, type=service.type, batchers=BATCHERS)) as running:
        for n in range(7):
            await pub(running, service.type, {"n": n}, ack=True)
        start = trio.current_time()
        await wait_until(lambda: sum(len(b) for b, _, _ in batches) >= 7)
        await wait_until_settled(service)
        await trio.sleep(3600)
    assert len(batches) == 2
    by_trigger = {trigger: (sorted(numbers), when - start) for numbers, trigger, when in batches}
    assert sorted(by_trigger) == ["size", "timeout"]
    # ten processors: which five make the first batch is up to the scheduler
    assert [len(by_trigger["size"][0]), len(by_trigger["timeout"][0])] == [5, 2]
    assert sorted(by_trigger["size"][0] + by_trigger["timeout"][0]) == list(range(7))
    assert 20 <= by_trigger["timeout"][1] < 21  # batch_timeout after the batch's first event
    assert time.monotonic() - wall < 10
    assert await service.real_stream_messages() == 0


@pytest.mark.polyn_allow_handler_errors  # the failures are the point
async def test_a_pipeline_redelivers_a_failed_batch_and_dead_letters_a_failed_message(
    service: Service, autojump_clock: trio.testing.MockClock
) -> None:
    await service.create()
    batches: list[tuple[list[int], str, float]] = Shared()

    def fail(message: PipelineMessage) -> Any:
        return "n is 13" if message.event.data["n"] == 13 else None

    pipeline = Ledger(batches, fail, type=service.type, batchers=BATCHERS, max_failures=3)
    async with service.app(pipeline) as running:
        await pub(running, service.type, {"n": -1}, ack=True)  # fails its batch every time
        await pub(running, service.type, {"n": 13}, ack=True)  # failed with term=True
        await wait_until(lambda: len(service.sandbox.dead_letters(service.type)) == 2)
        await wait_until_settled(service)
    assert [numbers for numbers, _, _ in batches] == [[-1], [-1], [-1]]  # max_failures=3
    reasons = {
        json.loads(m.data)["data"]["n"]: m.headers["Polyn-Error"]
        for m in service.sandbox.dead_letters(service.type)
    }
    assert reasons == {-1: "the batch hit a bad row", 13: "n is 13"}


class Quotes(Responder):
    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        if event.data["n"] < 0:
            raise ValueError("no quote for negative numbers")
        return self.reply_type, {"n": event.data["n"] * 2}

    def __init__(self, reply_type: str, **options: Any) -> None:
        super().__init__(**options)
        self.reply_type = reply_type


@pytest.mark.polyn_allow_handler_errors  # the responder's failure is the point
async def test_request_and_reply_run_in_the_sandbox(
    service: Service, names: Names, autojump_clock: trio.testing.MockClock
) -> None:
    reply_type = names.subject("order.quoted.v1")
    service.schemas[reply_type] = ORDER_SCHEMA
    async with service.app(Quotes(reply_type, subject=service.type)) as running:
        answer = await request(running, service.type, {"n": 21}, timeout=5)
        assert (answer.type, answer.data) == (f"com.test.{reply_type}", {"n": 42})
        start = trio.current_time()
        # the responder failed: an error reply at once (and a dead letter), not a timeout
        with pytest.raises(ResponderError, match="no quote for negative numbers"):
            await request(running, service.type, {"n": -1}, timeout=30)
        assert trio.current_time() - start < 30
    (letter,) = service.sandbox.dead_letters(service.type)
    assert letter.headers["Polyn-Error"] == "no quote for negative numbers"
    requests = service.sandbox.published_json(service.type)
    assert [r["data"] for r in requests] == [{"n": 21}, {"n": -1}]
    reply, error = service.sandbox.published("_INBOX.>")
    assert error.headers["Polyn-Error-Type"] == "ValueError"
    assert json.loads(reply.data)["data"] == {"n": 42}


# -- the user-style property test ----------------------------------------------------------

PROPERTY_CONFIG = Config(domain="com.test", source_root="sandbox.pipeline")
PROPERTY_TYPE = Names().subject("pipeline.v1")  # unique to this run of the module
PROPERTY_SCHEMAS = {PROPERTY_TYPE: {**ORDER_SCHEMA, "required": ["n"]}}


def _mixes() -> Any:
    from hypothesis import strategies as st

    from polyn.testing.strategies import events, invalid_events

    valid = events(PROPERTY_TYPE, PROPERTY_SCHEMAS, config=PROPERTY_CONFIG, encoded=True)
    invalid = invalid_events(PROPERTY_TYPE, PROPERTY_SCHEMAS, config=PROPERTY_CONFIG)
    return st.lists(st.tuples(st.booleans(), valid, invalid), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def property_stream(nats_server: str) -> Iterator[str]:
    """The stream and durable consumer of the property test, on the real server for the
    module (each example's sandbox snapshots them; their contents are per sandbox)."""
    stream = Names().stream("property")
    consumer = naming.consumer_name(PROPERTY_TYPE, PROPERTY_CONFIG)

    async def define(create: bool) -> None:
        real = await NatsTransport.connect(nats_server)
        try:
            if create:
                try:  # left over from an interrupted run on a NATS_URL server
                    await real.delete_stream(stream)
                except Exception:
                    pass
                await real.create_stream({"name": stream, "subjects": [PROPERTY_TYPE]})
                config = {"durable_name": consumer, "ack_policy": "explicit", "ack_wait": 30}
                await real.create_consumer(stream, config)
            else:
                await real.delete_stream(stream)
        finally:
            await real.close()

    trio.run(define, True)
    try:
        yield stream
    finally:
        trio.run(define, False)


class Collector(Pipeline):
    """Counts every event that reaches a batch, by id."""

    processors = {"default": {"concurrency": 4}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 3, "batch_timeout": 5.0}}  # noqa: RUF012

    def __init__(self, handled: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.handled = handled

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        self.handled.extend(m.event.id for m in messages)


@pytest.fixture(scope="module")
def examples_clock() -> trio.testing.MockClock:
    """Virtual time for every Hypothesis example: pytest-trio runs each example in a trio run
    of its own, on the clock among the test's fixtures (a ``run=`` marker is not used there),
    and a module-scoped one passes Hypothesis's check on fixtures shared by examples."""
    return trio.testing.MockClock(autojump_threshold=0)


@settings(max_examples=15, deadline=None)
@given(mix=_mixes())
async def test_a_sandboxed_pipeline_handles_every_valid_event_once_and_dead_letters_the_rest(
    nats_server: str,
    property_stream: str,
    examples_clock: trio.testing.MockClock,
    mix: list[tuple[bool, bytes, bytes]],
) -> None:
    bodies = [good if ok else bad for ok, good, bad in mix]
    valid_ids = sorted(json.loads(good)["id"] for ok, good, _ in mix if ok)
    invalid = sorted(bad for ok, _, bad in mix if not ok)
    # A sandbox per example (Sandbox.start), not per test (the polyn_sandbox fixture): each
    # example starts from empty streams.
    async with Sandbox.start(nats_server) as sandbox:
        handled: list[str] = Shared()
        config = sandbox.config(PROPERTY_CONFIG)
        app = App(
            config,
            [
                NatsConnection(),
                SchemaStore(schemas=PROPERTY_SCHEMAS),
                Collector(handled, type=PROPERTY_TYPE),
            ],
        )
        async with sandbox.run(app) as running:
            for body in bodies:
                await transport_for(running).js_publish(PROPERTY_TYPE, body)
            await wait_until(
                lambda: (
                    len(handled) >= len(valid_ids)
                    and len(sandbox.dead_letters(PROPERTY_TYPE)) >= len(invalid)
                )
            )
            await trio.sleep(600)  # ten minutes more: ack_wait, backoff, batch timeouts pass
            consumer = naming.consumer_name(PROPERTY_TYPE, PROPERTY_CONFIG)
            info = await sandbox.transport.consumer_info(property_stream, consumer)
        assert sorted(handled) == valid_ids
        assert sorted(m.data for m in sandbox.dead_letters(PROPERTY_TYPE)) == invalid
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
