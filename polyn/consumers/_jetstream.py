"""What :class:`~polyn.PullConsumer` and :class:`~polyn.Pipeline` share: the JetStream side.

Both read a durable pull consumer that ``polyn migrate`` created (Polyn never creates consumers
at run time). This module holds their common options, the start-up checks of stream and
consumer, fetching, decoding in a receive span, and three guards:

- **Missing schema.** An event whose schema is not in the store is a configuration fault, never
  a poison message: it is never terminated. It is naked with :func:`backoff` and that delivery
  is not counted towards ``max_failures`` (counted in memory, per consumer process). When
  naking would make the server drop it — its delivery count has reached the consumer's
  ``max_deliver`` — the consumer instead **holds** it: it stops fetching, keeps the messages in
  hand alive (``+WPI``) and retries every :data:`SCHEMA_RETRY` seconds until the schema is back,
  then handles it. (Stopped while holding, it dead-letters the held message first, so that
  ``polyn deadletters replay`` can bring it back.) Either way the consumer logs it at ERROR and
  :meth:`problem` (so ``running.health()``) reports it until the schema is back.
- **A schema revision the data class cannot read** (typed consumers, ``data_type``: another
  team made a breaking change, :class:`~polyn.errors.IncompatibleSchemaError`) is the same kind
  of fault and goes the same way: naked with backoff, not counted, held at ``max_deliver``,
  never terminated, reported by :meth:`problem` until the store's revision fits the class again
  (or the service runs a class regenerated for it).
- **Messages in hand stay alive.** Every fetched message not yet settled — waiting in the
  prefetch buffer, held in a batch, or being handled — gets ``+WPI`` (in progress) every third
  of the consumer's ``ack_wait``, so a slow handler or a long batch does not make the server
  redeliver messages that are still in hand. A handler running longer than ``ack_wait`` is
  logged (once per message) with a warning.
- **Stalls and dead loops.** :meth:`problem` reports a consumer that has settled nothing for
  ``stall_timeout`` seconds (default 300; None: never) while messages are in hand (a hung
  handler). A fetch loop that ends while the consumer is not stopping crashes the consumer for
  its supervisor (never a zombie that looks alive).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio
from opentelemetry.trace import Span

from polyn import codec, naming, tracing
from polyn.consumers._base import (
    Consumer,
    ConsumerOptions,
    being_cancelled,
    connection_trouble,
    monotonic,
)
from polyn.consumers._options import integer, seconds, text
from polyn.consumers._settlement import (
    DEFAULT_MAX_FAILURES,
    backoff,
    dead_letter,
    delivery_count,
    settle_failure,
    settle_invalid,
)
from polyn.errors import (
    ConsumerError,
    IncompatibleSchemaError,
    JetStreamError,
    PolynError,
    SchemaNotFoundError,
    StreamError,
    ValidationError,
)
from polyn.event import DataT, Event
from polyn.nats import ConsumerInfo, Message, Transport

__all__ = ["JetStreamConsumer", "JetStreamOptions", "check_consumer", "fetch_some", "find_stream"]

log = logging.getLogger("polyn.consumer")

SCHEMA_RETRY = 0.5
"""Seconds between two looks for a missing schema while a message is held for it."""


async def find_stream(transport: Transport, event_type: str, stream_name: str | None) -> str:
    """The stream holding ``event_type``: ``stream_name`` when given, else the one stream whose
    subjects capture it (fact sheet §2.4)."""
    if stream_name is not None:
        return stream_name
    text = f"Could not find any streams for type {event_type}"
    try:
        names = await transport.stream_names(event_type)
    except JetStreamError as exc:
        raise StreamError(f"{text}. {exc}") from exc
    if len(names) != 1:
        raise StreamError(text)
    return names[0]


async def check_consumer(transport: Transport, stream: str, consumer: str) -> ConsumerInfo:
    """The consumer's info; the protocol's error when it does not exist.

    A consumer that does not take an acknowledgement per message (``ack_policy`` ``none`` or
    ``all``) is refused: with it, naks, terms and redelivery silently do nothing (``none``, the
    server's default for a consumer made without Polyn's migrations, which default to
    ``explicit``), or one ack settles messages still being handled (``all``).
    """
    try:
        info = await transport.consumer_info(stream, consumer)
    except JetStreamError as exc:
        if exc.err_code == 10014 or (exc.code == 404 and exc.err_code != 10059):
            raise ConsumerError(
                f"Consumer {consumer} does not exist. Use polyn-cli to create it before "
                "attempting to subscribe (with Polyn for Python: add a create_consumer "
                "migration and run `polyn migrate`)"
            ) from exc
        raise
    policy = str(info.config.get("ack_policy") or "none").lower()
    if policy != "explicit":
        raise ConsumerError(
            f"Consumer {consumer} on stream {stream} has ack_policy {policy!r}; Polyn consumers "
            "acknowledge every message: create it with ack_policy='explicit' (in its "
            "create_consumer migration)"
        )
    return info


_TRANSIENT_409 = ("maxackpending", "leadership", "maxrequest", "interest")


async def fetch_some(
    transport: Transport,
    stream: str,
    consumer: str,
    batch: int,
    expires: float,
    *,
    idle: bool = False,
) -> list[Message]:
    """Up to ``batch`` messages: what is there now, else wait up to ``expires`` for the next one.

    ``idle``: the previous call found nothing, so skip straight to waiting (an idle consumer
    then costs one pull request per ``expires``, not two: with a hundred idle consumers on one
    connection the difference shows).

    A pull request the server refuses for a passing reason (too many messages awaiting acks, a
    leadership change in a cluster) gives an empty list after a short pause; a deleted consumer
    raises :class:`~polyn.errors.ConsumerError`, which crashes the consumer for its supervisor.
    """
    try:
        messages = [] if idle else await transport.fetch(stream, consumer, batch, no_wait=True)
        if not messages:
            messages = await transport.fetch(stream, consumer, 1, expires=expires)
    except ConsumerError as exc:
        text = str(exc).lower().replace(" ", "")
        if exc.code == 409 and any(reason in text for reason in _TRANSIENT_409):
            log.debug("pull request on %s/%s refused for now: %s", stream, consumer, exc)
            await trio.sleep(0.05)
            return []
        raise
    return messages


@attrs.frozen(kw_only=True)
class JetStreamOptions(ConsumerOptions):
    """The options of both JetStream consumers (see :class:`JetStreamConsumer`)."""

    type: str | None = text(None)
    source: str | None = text(None)
    stream_name: str | None = text(None)
    max_failures: int = integer(DEFAULT_MAX_FAILURES, at_least=1)
    fetch_expires: float = seconds(1.0)
    stall_timeout: float | None = seconds(300.0, optional=True)


class JetStreamConsumer(Consumer[DataT]):
    """What :class:`~polyn.PullConsumer` and :class:`~polyn.Pipeline` share (module doc).

    Options, as class attributes or keyword arguments: ``type`` (required), ``source``,
    ``stream_name``, ``store``, ``connection``, ``max_failures`` (default 5), ``fetch_expires``
    (1 s), ``handler_timeout`` (None), ``stall_timeout`` (300 s). After start, ``consumer_name``
    and ``stream`` name what it reads, and ``failure_limit`` is the delivery at which a failing
    message is dead-lettered: ``min(max_failures, max_deliver)``.
    """

    Options = JetStreamOptions

    type: str
    source: str | None
    stream_name: str | None
    max_failures: int
    fetch_expires: float
    stall_timeout: float | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not self.type:
            raise ConsumerError(f"{type(self).__name__} needs a `type`: the event type it consumes")
        self._set_up_data_type(self.type)
        self._consumer_name = ""
        self.stream = ""
        self.ack_wait = 30.0
        self.max_deliver: int | None = None
        self._stopping = False
        self._stopped = trio.Event()  # set by the subclass's loop when it has finished
        self._in_hand: dict[Message, float] = {}  # message -> when it was fetched
        self._alive: dict[Message, float] = {}  # message -> last +WPI sent (the keeper's)
        self._warned_slow: set[Message] = set()
        self._excused: dict[int, int] = {}  # stream seq -> deliveries that were not failures
        self._holding = 0
        self._fetch_open = trio.Event()
        self._fetch_open.set()
        self._last_progress = monotonic()

    @property
    def consumer_name(self) -> str:
        """The durable consumer's name (once started), which dead letters carry."""
        return self._consumer_name or type(self).__name__

    @property
    def failure_limit(self) -> int:
        """The delivery at which a failing message is dead-lettered."""
        if self.max_deliver is not None and self.max_deliver > 0:
            return min(self.max_failures, self.max_deliver)
        return self.max_failures

    def stop_requested(self) -> bool:
        """Whether a stop was requested: no more fetching; work in hand finishes."""
        return self._stopping

    async def _attach(self) -> ConsumerInfo:
        """Resolve the connection, find the stream and check the durable consumer."""
        resolved = self._resolve()
        config = resolved.config
        self.type = self._strip_domain(self.type)
        self._set_up_data_type(self.type, exact=True)
        self._consumer_name = naming.consumer_name(self.type, config, self.source)
        self.stream = await find_stream(resolved.transport, self.type, self.stream_name)
        info = await check_consumer(resolved.transport, self.stream, self._consumer_name)
        self.ack_wait = float(info.config.get("ack_wait") or 30.0)
        # The server reports an unlimited max_deliver as -1: None here, so that no check
        # mistakes it for a limit already reached (a missing schema would be held at once).
        max_deliver = int(info.config.get("max_deliver") or 0)
        self.max_deliver = max_deliver if max_deliver > 0 else None
        if self.max_deliver is not None and 0 < self.max_deliver < self.max_failures:
            log.info(
                "consumer %s: max_deliver %d is below max_failures %d: failing messages are "
                "dead-lettered at delivery %d",
                self._consumer_name,
                self.max_deliver,
                self.max_failures,
                self.max_deliver,
            )
        self.nursery.start_soon(self._keep_alive)
        return info

    async def terminate(self, reason: object) -> None:
        # Let the work in hand finish and the pull request in flight end by itself.
        self._stopping = True
        self._fetch_open.set()
        if self._resolved is not None:
            self._watch_stop(self._stopped)
            await self._stopped.wait()

    # -- the fetch loop and the connection -----------------------------------------------------

    async def _serve(self) -> None:
        """Run the fetch loop (``_run``); when the connection (or the schema store) goes away
        under it, wait for its successor, check the durable consumer again and run anew.

        What was in hand is dropped: its acknowledgements died with the old connection, so the
        server redelivers it after ``ack_wait``, as after a crash. No restart of the actor, so
        no restart intensity is spent and any supervision strategy works.
        """
        try:
            while True:
                try:
                    await self._run()
                    return
                except BaseException as exc:
                    if self._stopping or not connection_trouble(exc):
                        raise
                    error = exc
                self._in_hand.clear()
                self._alive.clear()
                self._holding = 0
                self._fetch_open.set()
                self._new_run()
                resolved = await self._reconnect(error)
                if resolved is None:
                    return
                info = await check_consumer(resolved.transport, self.stream, self._consumer_name)
                self.ack_wait = float(info.config.get("ack_wait") or 30.0)
        finally:
            self._stopped.set()

    def _new_run(self) -> None:
        """Reset what one run of the fetch loop counts (a subclass's in-flight state)."""

    async def _run(self) -> None:
        raise NotImplementedError

    async def _loop_ended(self, error: BaseException | None) -> None:
        """Called when a fetch loop ended: crash unless the consumer is stopping."""
        if self._stopping:
            return
        if error is not None and await being_cancelled():
            return
        raise ConsumerError(
            f"the fetch loop of consumer {self.consumer_name} ended while the consumer was not "
            "stopping"
        ) from error

    # -- in hand ------------------------------------------------------------------------------

    def _took(self, messages: list[Message]) -> None:
        self._in_hand.update(dict.fromkeys(messages, trio.current_time()))

    def _done(self, msg: Message) -> None:
        """``msg`` left our hands (settled, or handed to the user to settle later)."""
        self._in_hand.pop(msg, None)
        self._last_progress = monotonic()

    def _progressed(self) -> None:
        self._last_progress = monotonic()

    async def _keep_alive(self) -> None:
        period = max(0.05, self.ack_wait / 3)
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            in_hand = self._in_hand
            for gone in [m for m in self._alive if m not in in_hand]:
                del self._alive[gone]
                self._warned_slow.discard(gone)
            for msg, fetched in list(in_hand.items()):
                if msg.acked is not None:
                    in_hand.pop(msg, None)
                    continue
                if now - self._alive.get(msg, fetched) < period * 0.9:
                    continue
                if now - fetched > self.ack_wait and msg not in self._warned_slow:
                    self._warned_slow.add(msg)
                    log.warning(
                        "consumer %s: a message on %s has been in hand for %.0f s, longer than "
                        "the consumer's ack_wait of %.0f s (a slow handler, or a long batch); "
                        "Polyn keeps it in progress (+WPI)",
                        self.consumer_name,
                        msg.subject,
                        now - fetched,
                        self.ack_wait,
                    )
                try:
                    await msg.in_progress()
                except PolynError as exc:
                    log.debug("consumer %s: in progress not sent: %s", self.consumer_name, exc)
                    in_hand.pop(msg, None)
                    continue
                self._alive[msg] = now

    # -- decoding -----------------------------------------------------------------------------

    def _decode_now(self, msg: Message) -> Event[DataT]:
        """``msg``'s event, validated (and typed, with ``data_type``), with the store's current
        snapshot; raises what :func:`polyn.codec.decode` and the decoder raise."""
        assert self._resolved is not None
        schemas = self._schemas()
        event = codec.decode(msg.data, schemas, self._resolved.config)
        return event if self._decoder is None else self._typed(event, schemas)

    async def _decode(self, msg: Message, span: Span) -> Event[DataT] | None:
        """``msg``'s event, validated; None when it was settled instead (invalid: dead-lettered
        and terminated; schema missing or unreadable by ``data_type``: naked, or held until
        it is back)."""
        resolved = self._resolved
        assert resolved is not None
        schemas = self._schemas()
        try:
            event = codec.decode(msg.data, schemas, resolved.config)
        except SchemaNotFoundError as exc:
            tracing.record_error(span, exc)
            return await self._excuse(msg, self._schema_missing(msg, exc))
        except ValidationError as exc:
            tracing.record_error(span, exc)
            await settle_invalid(resolved.transport, msg, exc, self.consumer_name)
            self._done(msg)
            return None
        if self._decoder is not None:
            try:
                event = self._typed(event, schemas)
            except IncompatibleSchemaError as exc:
                tracing.record_error(span, exc)
                return await self._excuse(msg, self._schema_unreadable(event, exc))
        tracing.set_receive_attributes(span, event, msg, resolved.transport)
        return event

    async def _excuse(self, msg: Message, name: str) -> Event[DataT] | None:
        """A fault of the configuration, not of ``msg`` (its schema missing, or unreadable by
        ``data_type``): nak it with backoff without counting the delivery towards
        ``max_failures``, or hold it when naking would make the server drop it."""
        metadata = msg.metadata
        count = delivery_count(msg)
        if metadata is not None:
            seq = metadata.stream_sequence
            self._excused[seq] = self._excused.get(seq, 0) + 1
            if len(self._excused) > 100_000:  # bound the memory; oldest first
                self._excused.pop(next(iter(self._excused)))
        if self.max_deliver is None or count < self.max_deliver:
            await msg.nak(delay=backoff(count))
            self._done(msg)
            return None
        return await self._hold_for_schema(msg, name)

    async def _hold_for_schema(self, msg: Message, name: str) -> Event[DataT] | None:
        assert self._resolved is not None
        self._holding += 1
        if self._fetch_open.is_set():
            # Only the first hold closes fetching: a second one replacing the event would leave
            # a fetch loop waiting on the first event, which nothing sets again (a Pipeline's
            # processors hold several messages at once).
            self._fetch_open = trio.Event()
        log.error(
            "consumer %s: holding a %s event at its last delivery (max_deliver %s) and "
            "fetching nothing more until its schema is back (or its data class reads it)",
            self.consumer_name,
            name,
            self.max_deliver,
        )
        try:
            while True:
                await trio.sleep(SCHEMA_RETRY)
                try:
                    event = self._decode_now(msg)
                except (SchemaNotFoundError, IncompatibleSchemaError) as exc:
                    if self._stopping:
                        # The server drops it after this delivery: keep a record to replay.
                        await dead_letter(
                            self._resolved.transport, msg, exc, self.consumer_name, jetstream=True
                        )
                        await msg.nak()
                        self._done(msg)
                        return None
                    continue
                except ValidationError as exc:
                    await settle_invalid(self._resolved.transport, msg, exc, self.consumer_name)
                    self._done(msg)
                    return None
                self._schema_back(name)
                return event
        finally:
            self._holding -= 1
            if self._holding == 0:
                self._fetch_open.set()

    async def _wait_fetch_open(self) -> None:
        while not self._fetch_open.is_set():
            await self._fetch_open.wait()

    # -- failures -----------------------------------------------------------------------------

    async def _settle_failure(
        self, msg: Message, error: BaseException, *, term: bool = False, delay: float | None = None
    ) -> None:
        """Nak ``msg`` with backoff, or dead-letter and terminate it at the limit."""
        assert self._resolved is not None
        metadata = msg.metadata
        excused = self._excused.get(metadata.stream_sequence, 0) if metadata else 0
        count = delivery_count(msg)
        failures = count - excused
        at_limit = failures >= self.max_failures or (
            self.max_deliver is not None and 0 < self.max_deliver <= count
        )
        await settle_failure(
            self._resolved.transport,
            msg,
            error,
            self.consumer_name,
            give_up=term or at_limit,
            delay=delay,
        )
        self._forget(msg)

    def _forget(self, msg: Message) -> None:
        if self._excused and msg.acked in ("+ACK", "+TERM") and msg.metadata is not None:
            self._excused.pop(msg.metadata.stream_sequence, None)
        self._done(msg)

    # -- health -------------------------------------------------------------------------------

    def problem(self) -> str | None:
        found = super().problem()
        if found is not None:
            return found
        if self._holding:
            return f"{self.consumer_name}: holding messages until their schema is back"
        if self.stall_timeout is not None and self._in_hand:
            quiet = monotonic() - self._last_progress
            if quiet > self.stall_timeout:
                return (
                    f"{self.consumer_name}: no progress for {quiet:.0f} s with "
                    f"{len(self._in_hand)} messages in hand (a hung handler?)"
                )
        return None
