"""``Pipeline``: a batching, concurrent JetStream consumer in Broadway's model.

The job of the seed's ``OffBroadway.Polyn.Producer`` plus Broadway, as one actor::

    class Ledger(polyn.Pipeline):
        type = "order.placed.v1"
        processors = {"default": {"concurrency": 10}}
        batchers = {"db": {"batch_size": 100, "batch_timeout": 1.0, "concurrency": 2}}

        async def handle_message(self, processor, message):
            message.event.data["total"]            # a validated polyn.Event
            return message.put_batcher("db")

        async def handle_batch(self, batcher, messages, batch_info):
            await db.insert_many([m.event.data for m in messages])

Stages, each a set of trio tasks inside the actor:

1. **producer**: pulls from the durable consumer ``naming.consumer_name(type, config, source)``
   as many messages as the stages have room for (at most ``fetch_batch`` per pull request), and
   pulls again as soon as room frees up, while the stages work on earlier messages. Messages in
   flight (fetched, not yet settled) never exceed ``max_in_flight`` (default: enough to keep
   every stage busy) nor the consumer's ``max_ack_pending``.
2. **processors** (``processors = {"default": {"concurrency": N}}``): decode and validate each
   message, then ``handle_message(processor, message)``, which returns the message (maybe sent to
   a batcher with ``message.put_batcher(name)``, or failed with ``message.fail(reason)``).
3. **batchers** (optional): group messages per batcher until ``batch_size`` messages or
   ``batch_timeout`` seconds after the first, then ``handle_batch(batcher, messages,
   batch_info)`` in one of ``concurrency`` tasks.
4. **acknowledgement**: a message that went through is acked (``+ACK``) after its processor
   (no batcher) or its batch; a failed one is naked with a backoff growing with its delivery
   count, or terminated and dead-lettered when ``fail(reason, term=True)`` or when its delivery
   count reaches ``max_failures``. An exception in ``handle_message`` fails that message; one in
   ``handle_batch`` fails the whole batch. A message already settled by hand (``message.msg``)
   is left alone.

An invalid event (bad JSON, not a CloudEvent, no schema, ``data`` against its schema) is
terminated, dead-lettered and logged by its processor; the valid events of the same fetched
batch go on. (The Elixir producer naks the whole batch and crashes, redelivering the valid
events for nothing: a deliberate difference.) Handler failures never stop the pipeline; only
infrastructure failures (connection closed for good, consumer or stream deleted) crash it.

Graceful stop: the producer stops pulling (a pull request in flight is let finish, at most
``fetch_expires`` seconds, rather than cancelled), naks what it fetched but did not hand to a
processor, the processors finish their messages, the batchers flush what they hold (trigger
``"flush"``), the batches are handled and acknowledged, then the actor stops. Give it a
``shutdown`` long enough for that (default 30 s).

Tracing: a ``<type> process`` span per fetched batch and a ``<type> receive`` span per message
(parent from its ``traceparent``, linked to the process span), the fact sheet's names.
"""

from __future__ import annotations

import logging
import math
from contextlib import AsyncExitStack
from typing import Any, Self

import attrs
import trio

from polyn import tracing
from polyn.consumer import JetStreamConsumer, fetch_some, settle_failure
from polyn.errors import ConsumerError, PolynError
from polyn.event import Event
from polyn.nats import Message

__all__ = ["BatchInfo", "MessageFailed", "Pipeline", "PipelineMessage"]

log = logging.getLogger("polyn.consumer")


class MessageFailed(PolynError):
    """The reason a handler gave to ``message.fail(reason)``, as an error (logs, dead letters)."""


@attrs.define(eq=False)
class PipelineMessage:
    """A validated event moving through a :class:`Pipeline`, with its JetStream message."""

    event: Event
    msg: Message
    batcher: str | None = None
    failure: BaseException | None = None
    term: bool = False

    def put_batcher(self, name: str) -> Self:
        """Send this message to the batcher ``name`` after its processor."""
        self.batcher = name
        return self

    def fail(self, reason: str | BaseException, *, term: bool = False) -> Self:
        """Mark the message failed: it is naked with backoff, or terminated and dead-lettered
        with ``term=True`` (or once its delivery count reaches ``max_failures``)."""
        self.failure = reason if isinstance(reason, BaseException) else MessageFailed(reason)
        self.term = term
        return self

    @property
    def failed(self) -> bool:
        return self.failure is not None


@attrs.frozen
class BatchInfo:
    """What :meth:`Pipeline.handle_batch` is told about its batch."""

    batcher: str
    size: int
    trigger: str  # "size", "timeout" or "flush" (the pipeline is stopping)
    batch_key: str = "default"


@attrs.frozen
class _Batcher:
    name: str
    batch_size: int
    batch_timeout: float
    concurrency: int


def _batchers(spec: dict[str, dict[str, Any]]) -> dict[str, _Batcher]:
    out: dict[str, _Batcher] = {}
    for name, options in spec.items():
        unknown = set(options) - {"batch_size", "batch_timeout", "concurrency"}
        if unknown:
            raise ValueError(f"batcher {name!r}: unknown options {sorted(unknown)}")
        batcher = _Batcher(
            name,
            int(options.get("batch_size", 100)),
            float(options.get("batch_timeout", 1.0)),
            int(options.get("concurrency", 1)),
        )
        if batcher.batch_size < 1 or batcher.concurrency < 1 or not batcher.batch_timeout > 0:
            raise ValueError(
                f"batcher {name!r}: batch_size and concurrency must be at least 1 and "
                f"batch_timeout positive, got {options!r}"
            )
        out[name] = batcher
    return out


class Pipeline(JetStreamConsumer):
    """A batching, concurrent consumer of one event type (see the module doc)."""

    processors: dict[str, dict[str, Any]] = {"default": {"concurrency": 10}}  # noqa: RUF012
    batchers: dict[str, dict[str, Any]] = {}  # noqa: RUF012
    fetch_batch: int = 100
    max_in_flight: int | None = None
    shutdown: float = 30.0

    _OPTIONS = (
        *JetStreamConsumer._OPTIONS,
        "processors",
        "batchers",
        "fetch_batch",
        "max_in_flight",
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if len(self.processors) != 1:
            raise ValueError(
                f"processors must name exactly one processor, as in Broadway: {self.processors!r}"
            )
        [(self._processor_name, processor)] = self.processors.items()
        unknown = set(processor) - {"concurrency"}
        if unknown:
            raise ValueError(f"processor {self._processor_name!r}: unknown options {unknown}")
        self._concurrency = int(processor.get("concurrency", 10))
        if self._concurrency < 1:
            raise ValueError("a processor's concurrency must be at least 1")
        self._batcher_specs = _batchers(self.batchers)
        if self.fetch_batch < 1:
            raise ValueError(f"fetch_batch must be at least 1, not {self.fetch_batch!r}")
        self.limit = 0
        self._min_fetch = 1
        self.in_flight = 0
        self._room = trio.Event()
        self._handoff = trio.CancelScope()

    # -- callbacks for subclasses -------------------------------------------------------------

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        """Handle one validated event in a processor; return the message (see the module doc)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> Any:
        """Handle a batch of messages; raising fails them all."""
        raise NotImplementedError(f"{type(self).__name__} has batchers but no handle_batch")

    # -- the actor ----------------------------------------------------------------------------

    async def init(self) -> None:
        """Check the stream and consumer, then start the stages. Subclasses that override it
        call ``await super().init()``."""
        info = await self._attach()
        limit = self.max_in_flight
        if limit is None:
            limit = self.fetch_batch + self._concurrency
            limit += sum(b.batch_size * (b.concurrency + 1) for b in self._batcher_specs.values())
        ack_wait = float(info.config.get("ack_wait") or 30.0)
        for spec in self._batcher_specs.values():
            if spec.batch_timeout >= ack_wait:
                raise ConsumerError(
                    f"batcher {spec.name!r} of {type(self).__name__} waits up to "
                    f"{spec.batch_timeout} s for a batch, but consumer {self.consumer_name} "
                    f"redelivers unacknowledged messages after its ack_wait of {ack_wait} s: "
                    "make batch_timeout shorter than ack_wait"
                )
        max_ack_pending = int(info.config.get("max_ack_pending") or 0)
        if max_ack_pending > 0:
            limit = min(limit, max_ack_pending)
        self.limit = max(1, limit)
        self._min_fetch = max(1, min(self.fetch_batch, self.limit) // 4)
        self.nursery.start_soon(self._run)

    async def terminate(self, reason: object) -> None:
        self._handoff.cancel()  # what the producer still holds goes back, not to a processor
        await super().terminate(reason)

    # -- stages -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            # Buffered hand-offs: a fetched batch goes to the processors in one scheduling
            # round, not one per message (each round costs trio an epoll call, and each
            # system call may hand the GIL to the busy NATS thread).
            to_processors, from_producer = trio.open_memory_channel[tuple[Message, Any]](
                self.fetch_batch
            )
            async with trio.open_nursery() as nursery:
                batcher_inputs: dict[str, trio.MemorySendChannel[PipelineMessage]] = {}
                for spec in self._batcher_specs.values():
                    send, receive = trio.open_memory_channel[PipelineMessage](spec.batch_size)
                    batcher_inputs[spec.name] = send
                    nursery.start_soon(self._batcher, spec, receive)
                async with AsyncExitStack() as stack:
                    for send in batcher_inputs.values():
                        await stack.enter_async_context(send)
                    for _ in range(self._concurrency):
                        clones = {name: send.clone() for name, send in batcher_inputs.items()}
                        nursery.start_soon(self._processor, from_producer.clone(), clones)
                    await from_producer.aclose()
                    nursery.start_soon(self._producer, to_processors)
        finally:
            self._stopped.set()

    def _settled(self, count: int = 1) -> None:
        self.in_flight -= count
        if self.in_flight == 0 or self.limit - self.in_flight >= self._min_fetch:
            self._room.set()

    async def _producer(self, to_processors: trio.MemorySendChannel[tuple[Message, Any]]) -> None:
        assert self._resolved is not None and self.type is not None
        transport = self._resolved.transport
        async with to_processors:
            while not self.stop_requested():
                room = self.limit - self.in_flight
                if room < self._min_fetch and self.in_flight > 0:
                    # wait for room for a worthwhile fetch, not one message at a time
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                messages = await fetch_some(
                    transport,
                    self.stream,
                    self.consumer_name,
                    min(room, self.fetch_batch),
                    self.fetch_expires,
                )
                if not messages:
                    continue
                self.in_flight += len(messages)
                handed = 0
                with tracing.process_span(self.type) as span:
                    link = tracing.link_to(span)
                    self._handoff = trio.CancelScope()
                    if self.stop_requested():
                        self._handoff.cancel()
                    with self._handoff:
                        for msg in messages:
                            try:
                                to_processors.send_nowait((msg, link))
                            except trio.WouldBlock:
                                await to_processors.send((msg, link))
                            handed += 1
                for msg in messages[handed:]:  # stopping: give back what no processor started
                    await msg.nak()
                if handed < len(messages):
                    self._settled(len(messages) - handed)

    async def _processor(
        self,
        from_producer: trio.MemoryReceiveChannel[tuple[Message, Any]],
        to_batchers: dict[str, trio.MemorySendChannel[PipelineMessage]],
    ) -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(from_producer)
            for send in to_batchers.values():
                await stack.enter_async_context(send)
            while True:
                try:
                    msg, link = from_producer.receive_nowait()
                except trio.WouldBlock:
                    try:
                        msg, link = await from_producer.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                if self.stop_requested():  # fetched, not started: give it back at once
                    await msg.nak()
                    self._settled()
                    continue
                message = await self._process(msg, link)
                if message is None:
                    continue
                if message.failed:
                    await self._settle(message)
                    continue
                batcher = message.batcher
                if batcher is None and "default" in to_batchers:
                    batcher = "default"
                if batcher is None:
                    await self._settle(message)
                elif batcher in to_batchers:
                    try:
                        to_batchers[batcher].send_nowait(message)
                    except trio.WouldBlock:
                        await to_batchers[batcher].send(message)
                else:
                    message.fail(
                        MessageFailed(
                            f"put_batcher({batcher!r}) names no batcher of "
                            f"{type(self).__name__}; it has {sorted(to_batchers)}"
                        )
                    )
                    await self._settle(message)

    async def _process(self, msg: Message, link: Any) -> PipelineMessage | None:
        assert self.type is not None
        with tracing.receive_span(self.type, msg, links=[link] if link else None) as span:
            event = await self._decode(msg, span)
            if event is None:
                self._settled()
                return None
            message = PipelineMessage(event, msg)
            try:
                returned = await self.handle_message(self._processor_name, message)
                if isinstance(returned, PipelineMessage):
                    message = returned
            except Exception as exc:
                tracing.record_error(span, exc)
                message.fail(exc)
            return message

    async def _batcher(
        self, spec: _Batcher, from_processors: trio.MemoryReceiveChannel[PipelineMessage]
    ) -> None:
        to_workers, from_batcher = trio.open_memory_channel[tuple[list[PipelineMessage], str]](0)
        async with trio.open_nursery() as nursery:
            for _ in range(spec.concurrency):
                nursery.start_soon(self._batch_worker, spec, from_batcher.clone())
            await from_batcher.aclose()
            async with to_workers, from_processors:
                batch: list[PipelineMessage] = []
                deadline = math.inf
                while True:
                    try:
                        message = from_processors.receive_nowait()
                    except trio.WouldBlock:
                        with trio.move_on_at(deadline) as timer:
                            try:
                                message = await from_processors.receive()
                            except trio.EndOfChannel:
                                break
                        if timer.cancelled_caught:
                            await to_workers.send((batch, "timeout"))
                            batch, deadline = [], math.inf
                            continue
                    except trio.EndOfChannel:
                        break
                    batch.append(message)
                    if len(batch) == 1:
                        deadline = trio.current_time() + spec.batch_timeout
                    if len(batch) >= spec.batch_size:
                        await to_workers.send((batch, "size"))
                        batch, deadline = [], math.inf
                if batch:
                    await to_workers.send((batch, "flush"))

    async def _batch_worker(
        self,
        spec: _Batcher,
        batches: trio.MemoryReceiveChannel[tuple[list[PipelineMessage], str]],
    ) -> None:
        async with batches:
            async for messages, trigger in batches:
                info = BatchInfo(spec.name, len(messages), trigger)
                try:
                    await self.handle_batch(spec.name, messages, info)
                except Exception as exc:
                    log.warning(
                        "pipeline %s: handle_batch(%r) failed for %d messages: %r",
                        self.consumer_name,
                        spec.name,
                        len(messages),
                        exc,
                    )
                    for message in messages:
                        if not message.failed:
                            message.fail(exc)
                for message in messages:
                    await self._settle(message)

    async def _settle(self, message: PipelineMessage) -> None:
        assert self._resolved is not None
        msg = message.msg
        try:
            if msg.acked:
                return
            if message.failure is None:
                await msg.ack()
            else:
                await settle_failure(
                    self._resolved.transport,
                    msg,
                    message.failure,
                    self.consumer_name,
                    max_failures=self.max_failures,
                    term=message.term,
                )
        finally:
            self._settled()
