"""Messages as every layer above the transport sees them.

A :class:`Message` is plain data (subject, reply subject, headers, body) plus the JetStream
acknowledgements. It holds no nats-py or asyncio object: the acknowledgements go through a small
:class:`Acknowledger` interface that the real transport and the sandbox's ``MockNats`` both
implement, so a consumer behaves the same on either.

On the real transport ``ack``, ``nak``, ``term`` and ``in_progress`` only *enqueue* the
acknowledgement into the connection's outgoing pump (no thread crossing per message) and return
once it is queued; the pump is flushed before the connection closes. ``ack_sync`` waits for the
server's confirmation. A message's transport dies with its connection: acknowledging it
afterwards raises :class:`~polyn.errors.NatsConnectionError`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Protocol

import attrs

from polyn.errors import ConsumerError

__all__ = ["ACK", "NAK", "PROGRESS", "TERM", "Acknowledger", "Message", "Metadata"]

ACK = b"+ACK"
NAK = b"-NAK"
TERM = b"+TERM"
PROGRESS = b"+WPI"

_TERMINAL = {ACK: "+ACK", NAK: "-NAK", TERM: "+TERM"}


class Acknowledger(Protocol):
    """What a :class:`Message` needs from its transport to acknowledge itself."""

    def enqueue_ack(self, subject: str, body: bytes) -> None:
        """Queue ``body`` for publishing on the ack subject ``subject``; raise if closed."""

    async def ack_and_wait(self, subject: str, body: bytes, timeout: float) -> None:
        """Publish ``body`` on ``subject`` and wait for the server's confirmation."""


@attrs.frozen
class Metadata:
    """What JetStream says about a delivered message (parsed from its ``$JS.ACK`` subject).

    ``num_delivered`` counts deliveries of this message to this consumer, starting at 1: it is
    the delivery count that backoff and ``max_failures`` use.
    """

    stream: str
    consumer: str
    num_delivered: int
    stream_sequence: int
    consumer_sequence: int
    timestamp: datetime
    num_pending: int
    domain: str | None = None

    @classmethod
    def from_reply(cls, reply: str) -> Metadata | None:
        """Parse a ``$JS.ACK...`` reply subject (v1 or v2 form); ``None`` for any other subject."""
        if not reply.startswith("$JS.ACK."):
            return None
        tokens = reply.split(".")
        domain: str | None = None
        if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
            fields = tokens[2:]
        elif len(tokens) >= 11:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...[.<rand>]
            domain = None if tokens[2] == "_" else tokens[2]
            fields = tokens[4:11]
        else:
            return None
        try:
            stream, consumer, delivered, sseq, cseq, ts, pending = fields
            return cls(
                stream=stream,
                consumer=consumer,
                num_delivered=int(delivered),
                stream_sequence=int(sseq),
                consumer_sequence=int(cseq),
                timestamp=datetime.fromtimestamp(int(ts) / 1e9, UTC),
                num_pending=int(pending),
                domain=domain,
            )
        except ValueError:
            return None


def _js_reply(reply: str) -> bool:
    """Whether ``reply`` has the shape of a ``$JS.ACK`` subject :meth:`Metadata.from_reply`
    parses (without parsing its numbers)."""
    if not reply.startswith("$JS.ACK."):
        return False
    dots = reply.count(".")
    return dots == 8 or dots >= 10


class Message:
    """A message delivered by NATS: core (``metadata is None``) or JetStream.

    Attributes:
        subject: the subject it was published to.
        reply_to: the reply subject (for JetStream, the ``$JS.ACK...`` subject), or ``None``.
        headers: header names to values (empty when the message had none).
        data: the body.
        metadata: JetStream delivery facts, or ``None`` for core NATS.

    Example::

        async for msg in subscription:
            if msg.metadata and msg.metadata.num_delivered > 3:
                await msg.term()
            else:
                await msg.ack()
    """

    __slots__ = ("_acked", "_acker", "_metadata", "data", "headers", "reply_to", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        reply_to: str | None = None,
        headers: dict[str, str] | None = None,
        acker: Acknowledger | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.reply_to = reply_to or None
        self.headers = headers if headers is not None else {}
        self._acker = acker
        self._acked: str | None = None
        self._metadata: Metadata | bool | None = False  # False: not parsed yet

    def __repr__(self) -> str:
        return (
            f"<Message subject={self.subject!r} reply_to={self.reply_to!r} "
            f"bytes={len(self.data)} acked={self._acked}>"
        )

    @property
    def metadata(self) -> Metadata | None:
        """JetStream delivery facts, parsed on first use; ``None`` for a core NATS message."""
        if self._metadata is False:
            self._metadata = Metadata.from_reply(self.reply_to) if self.reply_to else None
        assert self._metadata is not True
        return self._metadata

    @property
    def acked(self) -> str | None:
        """The terminal acknowledgement sent (``"+ACK"``, ``"-NAK"``, ``"+TERM"``), or ``None``."""
        return self._acked

    def json(self) -> object:
        """The body decoded as JSON."""
        return json.loads(self.data)

    async def ack(self) -> None:
        """Acknowledge: JetStream will not redeliver this message."""
        self._terminal(ACK)

    async def nak(self, delay: float | None = None) -> None:
        """Negative acknowledgement: redeliver, after ``delay`` seconds when given."""
        if delay is None or delay <= 0:
            self._terminal(NAK)
        else:
            body = NAK + b" " + json.dumps({"delay": int(delay * 1e9)}).encode()
            self._terminal(NAK, body)

    async def term(self) -> None:
        """Terminate: JetStream never redelivers this message (used for invalid events)."""
        self._terminal(TERM)

    async def in_progress(self) -> None:
        """Tell JetStream the message is still being worked on (resets its ``ack_wait``)."""
        subject, acker = self._js_target()
        if self._acked is not None:
            raise ConsumerError(f"message on {self.subject!r} was already acknowledged")
        acker.enqueue_ack(subject, PROGRESS)

    async def ack_sync(self, timeout: float = 5.0) -> None:
        """Acknowledge and wait until the server confirms it has recorded the ack."""
        subject, acker = self._js_target()
        self._check_not_acked(ACK)
        await acker.ack_and_wait(subject, ACK, timeout)
        self._acked = "+ACK"

    def _terminal(self, kind: bytes, body: bytes | None = None) -> None:
        subject, acker = self._js_target()
        self._check_not_acked(kind)
        acker.enqueue_ack(subject, body if body is not None else kind)
        self._acked = _TERMINAL[kind]

    def _check_not_acked(self, kind: bytes) -> None:
        if self._acked is not None:
            raise ConsumerError(
                f"message on {self.subject!r} was already acknowledged with {self._acked}; "
                f"it cannot also be acknowledged with {_TERMINAL[kind]}"
            )

    def _js_target(self) -> tuple[str, Acknowledger]:
        reply = self.reply_to
        if (
            self._acker is None
            or reply is None
            # Settling needs no metadata: the reply subject's shape says it is JetStream's
            # (parsing it all, timestamp included, cost a tenth of a Pipeline's message).
            or not (_js_reply(reply) if self._metadata is False else self._metadata is not None)
        ):
            raise ConsumerError(
                f"message on {self.subject!r} is not a JetStream message and cannot be acknowledged"
            )
        return reply, self._acker
