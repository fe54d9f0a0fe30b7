"""What the JetStream consumers share: acknowledgement values, start-up checks, failure policy.

:class:`~polyn.PullConsumer` and :class:`~polyn.Pipeline` both read a durable pull consumer that
``polyn migrate`` created (Polyn never creates consumers at run time), and both settle every
message they fetch exactly one way:

- a valid event that was handled: ``+ACK`` (or what the handler asked for);
- an invalid event (bad JSON, not a CloudEvent, no schema, ``data`` against its schema): ``+TERM``
  at once, dead-lettered, logged; it never reaches a handler;
- a handler that raised: ``-NAK`` with a delay growing with the delivery count
  (:func:`backoff`), until the delivery count reaches ``max_failures``, when the message is
  terminated and dead-lettered instead, so a poison message cannot loop forever.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, ClassVar

import attrs
import trio
from opentelemetry.trace import Span

from polyn import codec, naming, tracing
from polyn._resolve import Resolved, resolve, schemas_for
from polyn.actors import Actor
from polyn.deadletter import dead_letter
from polyn.errors import ConsumerError, JetStreamError, StreamError, ValidationError
from polyn.event import Event
from polyn.nats import ConsumerInfo, Message, Transport

__all__ = [
    "Ack",
    "JetStreamConsumer",
    "Nak",
    "apply",
    "backoff",
    "check_consumer",
    "fetch_some",
    "find_stream",
    "settle_failure",
    "settle_invalid",
]

log = logging.getLogger("polyn.consumer")

DEFAULT_MAX_FAILURES = 5
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


class Ack(enum.Enum):
    """How a handler settles a JetStream message: ``ACK``, ``NAK`` (redeliver) or ``TERM``."""

    ACK = "ack"
    NAK = "nak"
    TERM = "term"


@attrs.frozen
class Nak:
    """A nak with a redelivery delay in seconds: ``return polyn.Nak(delay=30)``."""

    delay: float | None = None


def backoff(num_delivered: int) -> float:
    """Seconds to wait before redelivering a message whose handler failed on delivery ``n``.

    1 s, 2 s, 4 s ... doubling with each delivery, at most 60 s.
    """
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, num_delivered - 1))


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
    ``all``) is refused: with it, naks, terms and redelivery silently do nothing (``none`` is
    the server's default when a migration leaves ``ack_policy`` out), or one ack settles
    messages still being handled (``all``).
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


def delivery_count(msg: Message) -> int:
    metadata = msg.metadata
    return metadata.num_delivered if metadata is not None else 1


async def settle_invalid(
    transport: Transport, msg: Message, error: BaseException, consumer: str
) -> None:
    """Terminate an event that can never be valid and dead-letter it."""
    log.warning("consumer %s terminated an invalid event on %s: %s", consumer, msg.subject, error)
    # Dead-letter first: a crash in between then redelivers (a second dead letter) rather than
    # losing the only record of the event.
    await dead_letter(transport, msg, error, consumer, jetstream=True)
    await msg.term()


async def settle_failure(
    transport: Transport,
    msg: Message,
    error: BaseException,
    consumer: str,
    *,
    max_failures: int,
    term: bool = False,
) -> None:
    """A handler failed on ``msg``: nak it with backoff, or, at its ``max_failures``-th delivery
    (or when ``term``), terminate and dead-letter it."""
    count = delivery_count(msg)
    if term or count >= max_failures:
        log.error(
            "consumer %s gave up on a message on %s after %d deliveries: %s",
            consumer,
            msg.subject,
            count,
            error,
            exc_info=error if not term else None,
        )
        await dead_letter(transport, msg, error, consumer, jetstream=True)
        await msg.term()
    else:
        delay = backoff(count)
        log.warning(
            "consumer %s failed on a message on %s (delivery %d), redelivering in %.0f s: %r",
            consumer,
            msg.subject,
            count,
            delay,
            error,
        )
        await msg.nak(delay=delay)


async def apply(msg: Message, result: Any) -> None:
    """Settle ``msg`` as a handler's return value says (None: the handler settles it later)."""
    if result is None or msg.acked:  # None: the handler settles it (or already did)
        return
    if result is Ack.ACK:
        await msg.ack()
    elif result is Ack.NAK:
        await msg.nak()
    elif result is Ack.TERM:
        await msg.term()
    elif isinstance(result, Nak):
        await msg.nak(delay=result.delay)
    else:
        raise TypeError(
            "handle_message must return polyn.Ack.ACK / NAK / TERM, polyn.Nak(delay=...) or "
            f"None, not {result!r}"
        )


_TRANSIENT_409 = ("maxackpending", "leadership", "maxrequest", "interest")


async def fetch_some(
    transport: Transport, stream: str, consumer: str, batch: int, expires: float
) -> list[Message]:
    """Up to ``batch`` messages: what is there now, else wait up to ``expires`` for the next one.

    A pull request the server refuses for a passing reason (too many messages awaiting acks, a
    leadership change in a cluster) gives an empty list after a short pause; a deleted consumer
    raises :class:`~polyn.errors.ConsumerError`, which crashes the consumer for its supervisor.
    """
    try:
        messages = await transport.fetch(stream, consumer, batch, no_wait=True)
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


class JetStreamConsumer(Actor):
    """What :class:`~polyn.PullConsumer` and :class:`~polyn.Pipeline` share: their options,
    the start-up checks of stream and consumer, decoding in a receive span, and stopping.

    Options, as class attributes or keyword arguments: ``type``, ``source``, ``stream_name``,
    ``store``, ``connection``, ``max_failures``, ``fetch_expires``; subclasses add theirs to
    ``_OPTIONS``. After :meth:`_attach`, ``consumer_name`` and ``stream`` name what it reads.
    """

    type: str | None = None
    source: str | None = None
    stream_name: str | None = None
    store: str | None = None
    connection: str = "nats"
    max_failures: int = DEFAULT_MAX_FAILURES
    fetch_expires: float = 1.0

    _OPTIONS: ClassVar[tuple[str, ...]] = (
        "type",
        "source",
        "stream_name",
        "store",
        "connection",
        "max_failures",
        "fetch_expires",
    )

    def __init__(self, **options: Any) -> None:
        for key in self._OPTIONS:
            if key in options:
                setattr(self, key, options.pop(key))
        super().__init__(**options)
        if not self.type:
            raise ConsumerError(f"{type(self).__name__} needs a `type`: the event type it consumes")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, not {self.max_failures!r}")
        self.consumer_name = ""
        self.stream = ""
        self._stopping = False
        self._stopped = trio.Event()  # set by the subclass's loop when it has finished
        self._resolved: Resolved | None = None

    def stop_requested(self) -> bool:
        """Whether a stop was requested: no more fetching; work in hand finishes."""
        return self._stopping

    async def _attach(self) -> ConsumerInfo:
        """Resolve the connection, find the stream and check the durable consumer."""
        assert self.type is not None
        resolved = self._resolved = resolve(self.connection)
        config = resolved.config
        self.consumer_name = naming.consumer_name(self.type, config, self.source)
        subject = naming.trim_domain_prefix(self.type, config.domain)
        self.stream = await find_stream(resolved.transport, subject, self.stream_name)
        return await check_consumer(resolved.transport, self.stream, self.consumer_name)

    async def terminate(self, reason: object) -> None:
        # Let the work in hand finish and the pull request in flight end by itself.
        self._stopping = True
        if self._resolved is not None:
            await self._stopped.wait()

    async def _decode(self, msg: Message, span: Span) -> Event | None:
        """``msg``'s event, validated; None when it is invalid (it is then dead-lettered and
        terminated, and the error recorded on ``span``)."""
        resolved = self._resolved
        assert resolved is not None
        try:
            event = codec.decode(msg.data, schemas_for(resolved, self.store), resolved.config)
        except ValidationError as exc:
            tracing.record_error(span, exc)
            await settle_invalid(resolved.transport, msg, exc, self.consumer_name)
            return None
        tracing.set_receive_attributes(span, event, msg, resolved.transport)
        return event
