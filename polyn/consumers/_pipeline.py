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

Typed (``Pipeline[PaymentCapturedV1]``, or ``data_type = PaymentCapturedV1``), each
``message.event`` is an ``Event[PaymentCapturedV1]`` and ``message.event.data.amount`` is known
to mypy (see :mod:`polyn.consumers`)::

    class Ledger(polyn.Pipeline[PaymentCapturedV1]):
        type = "payment.captured.v1"
        batchers = {"db": {"batch_size": 100}}

        async def handle_message(self, processor, message):
            return message.put_batcher("db")

        async def handle_batch(self, batcher, messages, batch_info):
            await db.insert_many([(m.event.data.order_id, m.event.data.amount) for m in messages])

Stages, each a set of trio tasks inside the actor:

1. **producer**: pulls from the durable consumer ``naming.consumer_name(type, config, source)``
   as many messages as the stages have room for (at most ``fetch_batch`` per pull request), and
   pulls again as soon as room frees up, while the stages work on earlier messages. Messages in
   flight (fetched, not yet settled) never exceed ``max_in_flight`` (default: enough to keep
   every stage busy) nor the consumer's ``max_ack_pending``.
2. **processors** (``processors = {"default": ProcessorSpec(concurrency=N)}``, or the dict form
   ``{"default": {"concurrency": N}}``): decode and validate each message, then
   ``handle_message(processor, message)``, which returns the message (maybe sent to a batcher
   with ``message.put_batcher(name)``, given a batch key with ``put_batch_key(key)``, or failed
   with ``message.fail(reason)``).
3. **batchers** (optional, ``BatcherSpec`` or dict): group messages per batcher **and batch
   key** until ``batch_size`` messages or ``batch_timeout`` seconds after the first, then
   ``handle_batch(batcher, messages, batch_info)`` in one of ``concurrency`` tasks;
   ``batch_info.batch_key`` is the key all the batch's messages share.
4. **acknowledgement**: a message that went through is settled as its ``on_success`` says
   (default ``Ack.ACK``) after its processor (no batcher) or its batch; a failed one as its
   ``on_failure`` says — by default naked with a backoff growing with its delivery count, or
   dead-lettered and terminated when ``fail(reason, term=True)`` or at its limit
   (``min(max_failures, max_deliver)``). An exception in ``handle_message`` fails that message;
   one in ``handle_batch`` fails the whole batch. A message already settled by hand
   (``message.msg``) is left alone.

Broadway's other knobs:

- ``partition_by`` (a function of the :class:`PipelineMessage`, in a ``ProcessorSpec`` or a
  ``BatcherSpec``): messages with equal keys go to the same processor task (or batcher
  partition) and are handled in the order they were fetched. With partitioned processors the
  producer decodes the messages (it needs the event to compute the key). Ordering holds within
  one delivery of the messages, **not across redeliveries**: a message naked and redelivered
  later comes after the ones fetched meanwhile (JetStream redelivers on its own schedule). For
  order per key end to end, partition processors and batchers by the same key.
- Acknowledgement choices (Broadway's ``configure_ack``): pipeline options ``on_success`` and
  ``on_failure``, and per message ``message.configure_ack(on_success=..., on_failure=...)``;
  each is ``Ack.ACK``, ``Ack.NAK``, ``Ack.TERM`` or ``Nak(delay=seconds)`` (``on_failure=None``,
  the default: nak with backoff, dead letter at the limit). A failure acked (or termed) by
  choice is still logged and counted (``failed_count``); one termed by choice is dead-lettered.
- ``handle_failed(messages)``: called with every failed message (one from a processor, the
  failed ones of a batch), also those at their dead-letter limit (``message.final`` is True),
  before they are naked or terminated; it returns the messages (it may ``configure_ack`` them).
  An exception in it is logged and the messages are settled as they were.

An invalid event (bad JSON, not a CloudEvent, ``data`` against its schema) is terminated,
dead-lettered and logged by its processor; the valid events of the same fetched batch go on.
(The Elixir producer naks the whole batch and crashes, redelivering the valid events for
nothing: a deliberate difference.) An event whose schema is missing is never terminated (see
:mod:`polyn.consumers`). Handler failures never stop the pipeline; only infrastructure failures
(connection closed for good, consumer or stream deleted) crash it. Messages held by a batcher or
in a running ``handle_batch`` are kept alive with ``+WPI``, so a ``batch_timeout`` or a batch
handler longer than the consumer's ``ack_wait`` does not make the server redeliver them (a batch
handler running past ``ack_wait`` is logged).

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
from collections.abc import Callable, Hashable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Generic, Self, TypeAlias

import attrs
import trio

from polyn import tracing
from polyn.consumers._base import Failed
from polyn.consumers._jetstream import JetStreamConsumer, JetStreamOptions, fetch_some
from polyn.consumers._options import _validator, integer, seconds
from polyn.consumers._settlement import Ack, Nak, dead_letter, delivery_count
from polyn.errors import IncompatibleSchemaError, OptionError, PolynError, ValidationError
from polyn.event import DataT, Event
from polyn.nats import Message

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from polyn.consumers._kwargs import PipelineKwargs

__all__ = [
    "AckChoice",
    "BatchInfo",
    "BatcherSpec",
    "MessageFailed",
    "Pipeline",
    "PipelineMessage",
    "PipelineOptions",
    "ProcessorSpec",
]

log = logging.getLogger("polyn.consumer")

AckChoice: TypeAlias = "Ack | Nak"
"""How to settle a message: ``Ack.ACK``, ``Ack.NAK``, ``Ack.TERM`` or ``Nak(delay=seconds)``."""

PartitionBy: TypeAlias = "Callable[[PipelineMessage], Hashable]"


class MessageFailed(PolynError):
    """The reason a handler gave to ``message.fail(reason)``, as an error (logs, dead letters)."""


def _ack_choice(value: object, *, optional: bool, what: str) -> Ack | Nak | None:
    if value is None and optional:
        return None
    if isinstance(value, Ack | Nak):
        return value
    if isinstance(value, str):
        try:
            return Ack(value.lower())
        except ValueError:
            pass
    raise OptionError(
        f"{what} must be polyn.Ack.ACK / NAK / TERM or polyn.Nak(delay=...)"
        f"{' or None' if optional else ''}, not {value!r}"
    )


@attrs.define(eq=False)
class PipelineMessage(Generic[DataT]):
    """A validated event moving through a :class:`Pipeline`, with its JetStream message.

    ``PipelineMessage[X]`` in a ``Pipeline[X]``: ``event`` is an ``Event[X]``.
    """

    event: Event[DataT]
    msg: Message
    batcher: str | None = None
    batch_key: Hashable = "default"
    failure: BaseException | None = None
    term: bool = False
    on_success: Ack | Nak | None = None
    on_failure: Ack | Nak | None = None
    final: bool = False
    """Set before ``handle_failed``: this failure ends the message (dead letter + ``+TERM``)."""

    def put_batcher(self, name: str) -> Self:
        """Send this message to the batcher ``name`` after its processor."""
        self.batcher = name
        return self

    def put_batch_key(self, key: Hashable) -> Self:
        """Batch this message only with messages of the same ``key`` (within its batcher)."""
        self.batch_key = key
        return self

    def configure_ack(
        self,
        *,
        on_success: Ack | Nak | str | None = None,
        on_failure: Ack | Nak | str | None = None,
    ) -> Self:
        """Choose how this message is settled when it succeeds / fails (Broadway's
        ``configure_ack``): ``Ack.ACK``, ``Ack.NAK``, ``Ack.TERM`` or ``Nak(delay=...)``."""
        if on_success is not None:
            self.on_success = _ack_choice(on_success, optional=False, what="on_success")
        if on_failure is not None:
            self.on_failure = _ack_choice(on_failure, optional=False, what="on_failure")
        return self

    def fail(self, reason: str | BaseException, *, term: bool = False) -> Self:
        """Mark the message failed: it is naked with backoff, or dead-lettered and terminated
        with ``term=True`` (or once it reaches its limit)."""
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
    batch_key: Hashable = "default"
    partition: int | None = None


def _callable_or_none(value: object) -> str | None:
    return None if value is None or callable(value) else "a function of the message or None"


@attrs.frozen(kw_only=True)
class ProcessorSpec:
    """A processor stage: ``concurrency`` tasks; ``partition_by`` routes equal keys to one."""

    concurrency: int = integer(10, at_least=1)
    partition_by: PartitionBy | None = attrs.field(
        default=None, validator=_validator(_callable_or_none)
    )


@attrs.frozen(kw_only=True)
class BatcherSpec:
    """A batcher: batches of ``batch_size`` or after ``batch_timeout`` s, ``concurrency``
    handlers; ``partition_by`` sends equal keys to the same partition (handled in order)."""

    batch_size: int = integer(100, at_least=1)
    batch_timeout: float = seconds(1.0)
    concurrency: int = integer(1, at_least=1)
    partition_by: PartitionBy | None = attrs.field(
        default=None, validator=_validator(_callable_or_none)
    )


def _specs(kind: type[Any], what: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise OptionError(f"option {what!r} must be a mapping of names to specs, not {value!r}")
    out: dict[str, Any] = {}
    for name, spec in value.items():
        if isinstance(spec, kind):
            out[name] = spec
        elif isinstance(spec, Mapping):
            fields = {field.name for field in attrs.fields(kind)}
            unknown = sorted(set(spec) - fields)
            if unknown:
                raise OptionError(
                    f"option {what!r}: {name!r} has unknown options {unknown}; "
                    f"a {kind.__name__} takes {sorted(fields)}"
                )
            try:
                out[name] = kind(**spec)
            except OptionError as exc:
                raise OptionError(f"option {what!r}: {name!r}: {exc}") from None
        else:
            raise OptionError(
                f"option {what!r}: {name!r} must be a {kind.__name__} or a dict, not {spec!r}"
            )
    return out


def _to_processors(value: object) -> dict[str, ProcessorSpec]:
    return _specs(ProcessorSpec, "processors", value)


def _to_batchers(value: object) -> dict[str, BatcherSpec]:
    return _specs(BatcherSpec, "batchers", value)


def _to_on_success(value: object) -> Ack | Nak:
    choice = _ack_choice(value, optional=False, what="option 'on_success'")
    assert choice is not None
    return choice


def _to_on_failure(value: object) -> Ack | Nak | None:
    return _ack_choice(value, optional=True, what="option 'on_failure'")


def _one_processor(instance: Any, attribute: Any, value: dict[str, Any]) -> None:
    if len(value) != 1:
        raise OptionError(
            f"option 'processors' must name exactly one processor, as in Broadway: {value!r}"
        )


@attrs.frozen(kw_only=True)
class PipelineOptions(JetStreamOptions):
    """:class:`Pipeline`'s options: the JetStream ones plus the stages and acknowledgement."""

    processors: dict[str, ProcessorSpec] = attrs.field(
        factory=lambda: {"default": ProcessorSpec()},
        converter=_to_processors,
        validator=_one_processor,
    )
    batchers: dict[str, BatcherSpec] = attrs.field(factory=dict, converter=_to_batchers)
    fetch_batch: int = integer(100, at_least=1)
    max_in_flight: int | None = integer(None, at_least=1, optional=True)
    on_success: Ack | Nak = attrs.field(default=Ack.ACK, converter=_to_on_success)
    on_failure: Ack | Nak | None = attrs.field(default=None, converter=_to_on_failure)


_Item: TypeAlias = "tuple[Message, Any, Event | None]"


class Pipeline(JetStreamConsumer[DataT]):
    """A batching, concurrent consumer of one event type (see the module doc)."""

    Options = PipelineOptions
    options: PipelineOptions

    processors: Mapping[str, ProcessorSpec | Mapping[str, Any]]
    batchers: Mapping[str, BatcherSpec | Mapping[str, Any]]
    fetch_batch: int
    max_in_flight: int | None
    on_success: Ack | Nak | str
    on_failure: Ack | Nak | str | None
    shutdown: float = 30.0

    def __init__(self, **options: Unpack[PipelineKwargs]) -> None:
        super().__init__(**options)
        [(self._processor_name, self._processor)] = self.options.processors.items()
        self._batcher_specs: dict[str, BatcherSpec] = dict(self.options.batchers)
        self.limit = 0
        self._min_fetch = 1
        self.in_flight = 0
        self.failed_count = 0
        self._ack_on_success = self.options.on_success is Ack.ACK
        self._room = trio.Event()
        self._handoff = trio.CancelScope()

    # -- callbacks for subclasses -------------------------------------------------------------

    async def handle_message(
        self, processor: str, message: PipelineMessage[DataT]
    ) -> PipelineMessage[DataT]:
        """Handle one validated event in a processor; return the message (see the module doc)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage[DataT]], batch_info: BatchInfo
    ) -> Any:
        """Handle a batch of messages; raising fails them all."""
        raise NotImplementedError(f"{type(self).__name__} has batchers but no handle_batch")

    async def handle_failed(
        self, messages: list[PipelineMessage[DataT]]
    ) -> list[PipelineMessage[DataT]]:
        """Called with failed messages before they are settled; return them (module doc)."""
        return messages

    # -- the actor ----------------------------------------------------------------------------

    async def init(self) -> None:
        """Check the stream and consumer, then start the stages. Subclasses that override it
        call ``await super().init()``."""
        info = await self._attach()
        limit = self.max_in_flight
        concurrency = self._processor.concurrency
        if limit is None:
            limit = self.fetch_batch + concurrency
            limit += sum(b.batch_size * (b.concurrency + 1) for b in self._batcher_specs.values())
        for spec_name, spec in self._batcher_specs.items():
            if spec.batch_timeout >= self.ack_wait:
                log.info(
                    "pipeline %s: batcher %r waits up to %s s for a batch, beyond the consumer's "
                    "ack_wait of %s s; its messages are kept in progress (+WPI) meanwhile",
                    self.consumer_name,
                    spec_name,
                    spec.batch_timeout,
                    self.ack_wait,
                )
        max_ack_pending = int(info.config.get("max_ack_pending") or 0)
        if max_ack_pending > 0:
            limit = min(limit, max_ack_pending)
        self.limit = max(1, limit)
        self._min_fetch = max(1, min(self.fetch_batch, self.limit) // 4)
        self.nursery.start_soon(self._serve)

    async def terminate(self, reason: object) -> None:
        self._handoff.cancel()  # what the producer still holds goes back, not to a processor
        await super().terminate(reason)

    # -- stages -------------------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            # Buffered hand-offs: a fetched batch goes to the processors in one scheduling
            # round, not one per message (each round costs trio an epoll call, and each
            # system call may hand the GIL to the busy NATS thread).
            concurrency = self._processor.concurrency
            partitioned = self._processor.partition_by is not None
            lanes = concurrency if partitioned else 1
            channels = [
                trio.open_memory_channel[_Item](max(1, self.fetch_batch // lanes))
                for _ in range(lanes)
            ]
            async with trio.open_nursery() as nursery:
                batcher_inputs: dict[str, trio.MemorySendChannel[PipelineMessage]] = {}
                for name, spec in self._batcher_specs.items():
                    send, receive = trio.open_memory_channel[PipelineMessage](spec.batch_size)
                    batcher_inputs[name] = send
                    nursery.start_soon(self._batcher, name, spec, receive)
                async with AsyncExitStack() as stack:
                    for send in batcher_inputs.values():
                        await stack.enter_async_context(send)
                    for index in range(concurrency):
                        clones = {name: send.clone() for name, send in batcher_inputs.items()}
                        receive_from = channels[index if partitioned else 0][1]
                        nursery.start_soon(self._processor_task, receive_from.clone(), clones)
                    for _, receive_from in channels:
                        await receive_from.aclose()
                    nursery.start_soon(self._producer, [send for send, _ in channels])
        except trio.Cancelled as exc:
            error = exc
            raise
        await self._loop_ended(error)

    def _new_run(self) -> None:
        # The messages of the run that ended died with its connection (module doc of
        # ``_jetstream``): nothing is in flight any more.
        self.in_flight = 0
        self._room = trio.Event()
        self._handoff = trio.CancelScope()

    def _settled(self, count: int = 1) -> None:
        self.in_flight -= count
        if self.in_flight == 0 or self.limit - self.in_flight >= self._min_fetch:
            self._room.set()

    async def _producer(self, lanes: list[trio.MemorySendChannel[_Item]]) -> None:
        assert self._resolved is not None
        transport = self._resolved.transport
        partition_by = self._processor.partition_by
        idle = False
        async with AsyncExitStack() as stack:
            for lane in lanes:
                await stack.enter_async_context(lane)
            while not self.stop_requested():
                await self._wait_fetch_open()
                if self.stop_requested():
                    break
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
                    idle=idle,
                )
                idle = not messages
                if not messages:
                    self._progressed()
                    continue
                self._took(messages)
                self.in_flight += len(messages)
                handed = 0
                with tracing.process_span(self.type) as span:
                    link = tracing.link_to(span)
                    self._handoff = trio.CancelScope()
                    if self.stop_requested():
                        self._handoff.cancel()
                    with self._handoff:
                        for msg in messages:
                            item: _Item = (msg, link, None)
                            lane = lanes[0]
                            if partition_by is not None:
                                event = await self._decode_for_partition(msg, link)
                                if event is None:
                                    handed += 1
                                    continue
                                key = partition_by(PipelineMessage(event, msg))
                                lane = lanes[hash(key) % len(lanes)]
                                item = (msg, link, event)
                            try:
                                lane.send_nowait(item)
                            except trio.WouldBlock:
                                await lane.send(item)
                            handed += 1
                for msg in messages[handed:]:  # stopping: give back what no processor started
                    await msg.nak()
                    self._done(msg)
                if handed < len(messages):
                    self._settled(len(messages) - handed)

    async def _decode_for_partition(self, msg: Message, link: Any) -> Event | None:
        """Decode in the producer (the key needs the event); settle it when invalid."""
        try:
            return self._decode_now(msg)
        except (ValidationError, IncompatibleSchemaError):
            pass
        with tracing.receive_span(self.type, msg, links=[link] if link else None) as span:
            event = await self._decode(msg, span)  # settles it, or holds it for its schema
        if event is None:
            self._settled()
        return event

    async def _processor_task(
        self,
        from_producer: trio.MemoryReceiveChannel[_Item],
        to_batchers: dict[str, trio.MemorySendChannel[PipelineMessage]],
    ) -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(from_producer)
            for send in to_batchers.values():
                await stack.enter_async_context(send)
            while True:
                try:
                    msg, link, event = from_producer.receive_nowait()
                except trio.WouldBlock:
                    try:
                        msg, link, event = await from_producer.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                if self.stop_requested():  # fetched, not started: give it back at once
                    await msg.nak()
                    self._done(msg)
                    self._settled()
                    continue
                message = await self._process(msg, link, event)
                if message is None:
                    continue
                if message.failed:
                    await self._settle([message])
                    continue
                batcher = message.batcher
                if batcher is None and "default" in to_batchers:
                    batcher = "default"
                if batcher is None:
                    if message.on_success is None and self._ack_on_success:
                        if not message.msg.acked:  # the common case: one ack, no lookups
                            await message.msg.ack()
                        self._forget(message.msg)
                        self._settled()
                    else:
                        await self._settle([message])
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
                    await self._settle([message])

    async def _process(
        self, msg: Message, link: Any, event: Event | None
    ) -> PipelineMessage | None:
        with tracing.receive_span(self.type, msg, links=[link] if link else None) as span:
            if event is None:
                event = await self._decode(msg, span)
                if event is None:
                    self._settled()
                    return None
            elif span.is_recording():
                assert self._resolved is not None
                tracing.set_receive_attributes(span, event, msg, self._resolved.transport)
            message = PipelineMessage(event, msg)
            returned: PipelineMessage | Failed
            if self.handler_timeout is None:  # the hot path: no extra coroutine per message
                try:
                    returned = await self.handle_message(self._processor_name, message)
                except BaseException as exc:
                    returned = await self._handler_raised(exc)
            else:
                returned = await self._call_handler(
                    "handle_message", self.handle_message, self._processor_name, message
                )
            if isinstance(returned, Failed):
                tracing.record_error(span, returned.error)
                self._observe_failure(msg, returned.error)
                message.fail(returned.error)
            elif isinstance(returned, PipelineMessage):
                message = returned
            return message

    async def _batcher(
        self,
        name: str,
        spec: BatcherSpec,
        from_processors: trio.MemoryReceiveChannel[PipelineMessage],
    ) -> None:
        partitions = spec.concurrency if spec.partition_by is not None else 1
        async with trio.open_nursery() as nursery:
            if partitions == 1:
                await self._batch_partition(nursery, name, spec, from_processors, None)
                return
            inputs = []
            for index in range(partitions):
                send, receive = trio.open_memory_channel[PipelineMessage](spec.batch_size)
                inputs.append(send)
                nursery.start_soon(self._batch_partition, nursery, name, spec, receive, index)
            assert spec.partition_by is not None
            async with from_processors, AsyncExitStack() as stack:
                for send in inputs:
                    await stack.enter_async_context(send)
                async for message in from_processors:
                    key = spec.partition_by(message)
                    await inputs[hash(key) % partitions].send(message)

    async def _batch_partition(
        self,
        nursery: trio.Nursery,
        name: str,
        spec: BatcherSpec,
        from_processors: trio.MemoryReceiveChannel[PipelineMessage],
        partition: int | None,
    ) -> None:
        # One batch per batch key, each with its own deadline.
        workers = 1 if partition is not None else spec.concurrency
        to_workers, from_batcher = trio.open_memory_channel[tuple[list[PipelineMessage], str]](0)
        for _ in range(workers):
            nursery.start_soon(self._batch_worker, name, from_batcher.clone(), partition)
        await from_batcher.aclose()
        async with to_workers, from_processors:
            batches: dict[Hashable, list[PipelineMessage]] = {}
            deadlines: dict[Hashable, float] = {}
            while True:
                try:
                    message = from_processors.receive_nowait()
                except trio.WouldBlock:
                    deadline = min(deadlines.values(), default=math.inf)
                    with trio.move_on_at(deadline) as timer:
                        try:
                            message = await from_processors.receive()
                        except trio.EndOfChannel:
                            break
                    if timer.cancelled_caught:
                        now = trio.current_time()
                        for key in [k for k, d in deadlines.items() if d <= now]:
                            del deadlines[key]
                            await to_workers.send((batches.pop(key), "timeout"))
                        continue
                except trio.EndOfChannel:
                    break
                key = message.batch_key
                batch = batches.setdefault(key, [])
                batch.append(message)
                if len(batch) == 1:
                    deadlines[key] = trio.current_time() + spec.batch_timeout
                if len(batch) >= spec.batch_size:
                    del batches[key], deadlines[key]
                    await to_workers.send((batch, "size"))
            for key in list(batches):
                await to_workers.send((batches.pop(key), "flush"))

    async def _batch_worker(
        self,
        name: str,
        batches: trio.MemoryReceiveChannel[tuple[list[PipelineMessage], str]],
        partition: int | None,
    ) -> None:
        async with batches:
            async for messages, trigger in batches:
                info = BatchInfo(name, len(messages), trigger, messages[0].batch_key, partition)
                result = await self._call_handler(
                    "handle_batch", self.handle_batch, name, messages, info
                )
                if isinstance(result, Failed):
                    exc = result.error
                    self._observe_failure(None, exc)
                    log.warning(
                        "pipeline %s: handle_batch(%r) failed for %d messages: %r",
                        self.consumer_name,
                        name,
                        len(messages),
                        exc,
                    )
                    for message in messages:
                        if not message.failed:
                            message.fail(exc)
                await self._settle(messages)

    # -- acknowledgement ----------------------------------------------------------------------

    async def _settle(self, messages: list[PipelineMessage]) -> None:
        """Settle ``messages`` (from one processor call or one batch), failed ones after
        :meth:`handle_failed`."""
        assert self._resolved is not None
        failed = [m for m in messages if m.failed and not m.msg.acked]
        if failed:
            for message in failed:
                message.final = message.term or self._at_limit(message.msg)
            returned = await self._call_handler("handle_failed", self.handle_failed, failed)
            if isinstance(returned, Failed):
                log.error(
                    "pipeline %s: handle_failed raised; settling the messages as they were",
                    self.consumer_name,
                    exc_info=returned.error,
                )
        for message in messages:
            try:
                await self._settle_one(message)
            finally:
                self._settled()

    def _at_limit(self, msg: Message) -> bool:
        metadata = msg.metadata
        excused = self._excused.get(metadata.stream_sequence, 0) if metadata else 0
        count = delivery_count(msg)
        return count - excused >= self.max_failures or (
            self.max_deliver is not None and 0 < self.max_deliver <= count
        )

    async def _settle_one(self, message: PipelineMessage) -> None:
        assert self._resolved is not None
        msg = message.msg
        if msg.acked:
            self._forget(msg)
            return
        if message.failure is None:
            await _apply_choice(msg, message.on_success or self.options.on_success)
            self._forget(msg)
            return
        self.failed_count += 1
        choice = message.on_failure or self.options.on_failure
        if choice is None or message.term or (message.final and choice not in (Ack.ACK, Ack.TERM)):
            await self._settle_failure(msg, message.failure, term=message.term)
            return
        log.warning(
            "pipeline %s: a message on %s failed (delivery %d), settled with %s by choice: %r",
            self.consumer_name,
            msg.subject,
            delivery_count(msg),
            choice,
            message.failure,
        )
        if choice is Ack.TERM:
            await dead_letter(
                self._resolved.transport, msg, message.failure, self.consumer_name, jetstream=True
            )
        await _apply_choice(msg, choice)
        self._forget(msg)


async def _apply_choice(msg: Message, choice: Ack | Nak) -> None:
    if choice is Ack.ACK:
        await msg.ack()
    elif choice is Ack.TERM:
        await msg.term()
    elif choice is Ack.NAK:
        await msg.nak()
    else:
        assert isinstance(choice, Nak)
        await msg.nak(delay=choice.delay)
