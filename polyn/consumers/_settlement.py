"""Settlement: how every message a consumer receives ends — acknowledgement, backoff, dead letters.

Every JetStream message a Polyn consumer fetches is settled exactly one way:

- a valid event that was handled: ``+ACK`` (or what the handler asked for: :class:`Ack`,
  :class:`Nak`);
- an invalid event (bad JSON, not a CloudEvent, ``data`` against its schema): dead-lettered, then
  ``+TERM`` at once (:func:`settle_invalid`); it never reaches a handler;
- an event whose schema is **missing** from the store: not the event's fault (another team's
  ``polyn schemas load --prune``, a schema not loaded yet), so never terminated. The consumer
  naks it with :func:`backoff` without counting it towards ``max_failures``; see
  :class:`~polyn.consumers.JetStreamConsumer` for what happens at the consumer's ``max_deliver``;
- a handler that failed: ``-NAK`` with a delay growing with the delivery count (:func:`backoff`),
  until the delivery count reaches the **limit** — ``min(max_failures, max_deliver)``, the
  consumer's ``max_deliver`` when it is set — when the message is dead-lettered and terminated
  instead (:func:`settle_failure`), so a poison message cannot loop forever, and the server's own
  ``max_deliver`` never abandons a message without a dead letter.

**Dead letters** (:func:`dead_letter`) record a message a consumer gave up on:

- Subject: ``polyn.deadletter.<the message's own subject>`` (never a wildcard pattern), so
  ``polyn.deadletter.>`` receives them all and ``polyn.deadletter.order.placed.v1`` one type's.
- Body: the original body, unchanged. If body and headers would exceed the server's
  ``max_payload``, the body is cut to fit and ``Polyn-Truncated: true`` is set.
- Headers: ``Polyn-Error`` (the error's first line, at most 512 characters, URLs' user info
  removed), ``Polyn-Error-Type`` (the error's class name), ``Polyn-Consumer``,
  ``Polyn-Original-Subject``, ``Polyn-Original-Id`` (the original ``Nats-Msg-Id``), the original
  ``traceparent`` (its flags cut to the sampled bit, as everything Polyn sends), and
  ``Nats-Msg-Id: <original id>:<consumer>``, so two consumers' dead letters of one event are not
  deduplicated into one. A message without a ``Nats-Msg-Id`` gets neither
  id header.
- JetStream consumers (``jetstream=True``) publish with an ack when a stream captures the
  dead-letter subject (the example's migrations create one on ``polyn.deadletter.>``); which
  subjects are captured is looked up once and remembered for :data:`LOOKUP_TTL` seconds per
  transport. Otherwise, or if that publish fails, it is a core publish: a core subscriber sees
  it, nothing stores it. ``polyn deadletters list`` / ``replay`` read stored ones back.

Failing to publish a dead letter is logged, never raised, except when the connection is closed
for good (the consumer then crashes and its supervisor restarts it).
"""

from __future__ import annotations

import enum
import logging
import weakref
from typing import Any, Final

import attrs
import trio

from polyn.config import redact_urls_in
from polyn.errors import NatsConnectionError, PolynError
from polyn.nats import Message, Transport
from polyn.tracing import wire_traceparent

__all__ = [
    "BACKOFF_CAP",
    "DEADLETTER_PREFIX",
    "LOOKUP_TTL",
    "Ack",
    "Nak",
    "apply",
    "backoff",
    "dead_letter",
    "dead_letter_headers",
    "delivery_count",
    "one_line",
    "settle_failure",
    "settle_invalid",
]

log = logging.getLogger("polyn.consumer")
_dead_log = logging.getLogger("polyn.deadletter")

DEFAULT_MAX_FAILURES: Final = 5
BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 60.0

DEADLETTER_PREFIX: Final = "polyn.deadletter."
"""Dead letters of a message on subject ``s`` are published to ``polyn.deadletter.<s>``."""
LOOKUP_TTL: Final = 30.0
"""Seconds a "does a stream capture this dead-letter subject" answer is reused."""
_MAX_ERROR: Final = 512


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


def delivery_count(msg: Message) -> int:
    """How many times JetStream has delivered ``msg`` to this consumer (1 for core NATS)."""
    metadata = msg.metadata
    return metadata.num_delivered if metadata is not None else 1


def one_line(text: str) -> str:
    """``text``'s first line, at most 512 characters, with any URL's secret hidden
    (:func:`polyn.config.redact_urls_in`, the one redaction every output uses)."""
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    return redact_urls_in(first.replace("\r", " "))[:_MAX_ERROR]


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
    give_up: bool,
    delay: float | None = None,
) -> None:
    """A handler failed on ``msg``: nak it with :func:`backoff` (or ``delay``), or, when
    ``give_up`` (it reached its limit, or the handler asked for a term), dead-letter and
    terminate it."""
    count = delivery_count(msg)
    if give_up:
        log.error(
            "consumer %s gave up on a message on %s after %d deliveries: %s",
            consumer,
            msg.subject,
            count,
            error,
            exc_info=error,
        )
        await dead_letter(transport, msg, error, consumer, jetstream=True)
        await msg.term()
    else:
        wait = backoff(count) if delay is None else delay
        log.warning(
            "consumer %s failed on a message on %s (delivery %d), redelivering in %.0f s: %r",
            consumer,
            msg.subject,
            count,
            wait,
            error,
        )
        await msg.nak(delay=wait)


# -- dead letters ----------------------------------------------------------------------------

# transport -> {dead-letter subject: (captured, looked up at)}
_captured: weakref.WeakKeyDictionary[Transport, dict[str, tuple[bool, float]]] = (
    weakref.WeakKeyDictionary()
)


def get_header(headers: dict[str, str], name: str) -> str | None:
    """The header ``name`` (case-insensitive), or None."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lower:
                return candidate
    return value


def dead_letter_headers(msg: Message, error: BaseException, consumer: str) -> dict[str, str]:
    """The headers of ``msg``'s dead letter (see the module doc)."""
    headers = {
        "Polyn-Error": one_line(str(error)) or type(error).__name__,
        "Polyn-Error-Type": type(error).__name__,
        "Polyn-Consumer": consumer,
        "Polyn-Original-Subject": msg.subject,
    }
    original_id = get_header(msg.headers, "Nats-Msg-Id")
    if original_id:
        headers["Polyn-Original-Id"] = original_id
        headers["Nats-Msg-Id"] = f"{original_id}:{consumer}"
    traceparent = get_header(msg.headers, "traceparent")
    if traceparent:  # forwarded with the sampled bit only, as everything Polyn sends
        headers["traceparent"] = wire_traceparent(traceparent)
    return headers


def _fit(body: bytes, headers: dict[str, str], max_payload: int) -> bytes:
    # The transport's own size rule (headers and body under max_payload), with room to spare.
    overhead = sum(len(k) + len(v) + 4 for k, v in headers.items()) + 12 + 64
    if len(body) + overhead <= max_payload:
        return body
    headers["Polyn-Truncated"] = "true"
    overhead += len("Polyn-Truncated") + len("true") + 4
    return body[: max(0, max_payload - overhead)]


async def _stream_captures(transport: Transport, subject: str) -> bool:
    now = trio.current_time()
    try:
        cache = _captured.setdefault(transport, {})
    except TypeError:  # a transport that cannot be weakly referenced: no caching
        cache = {}
    known = cache.get(subject)
    if known is not None and now - known[1] < LOOKUP_TTL:
        return known[0]
    try:
        captured = bool(await transport.stream_names(subject))
    except PolynError as exc:
        _dead_log.warning("dead letters: cannot look up a stream for %r: %s", subject, exc)
        return False
    cache[subject] = (captured, now)
    return captured


async def dead_letter(
    transport: Transport,
    msg: Message,
    error: BaseException,
    consumer: str,
    *,
    jetstream: bool,
) -> None:
    """Log ``error`` in full and publish ``msg``'s dead letter (see the module doc).

    ``consumer`` names the consumer or subscriber; ``jetstream`` says whether it is a JetStream
    consumer (which then publishes with an ack when a stream captures the dead-letter subject).

    Example::

        except Exception as exc:
            await polyn.dead_letter(transport, msg, exc, "my-subscriber", jetstream=False)
    """
    subject = DEADLETTER_PREFIX + msg.subject
    _dead_log.error(
        "%s: message on %r dead-lettered to %r: %s",
        consumer,
        msg.subject,
        subject,
        error,
        exc_info=error if error.__traceback__ is not None else None,
    )
    headers = dead_letter_headers(msg, error, consumer)
    body = _fit(msg.data, headers, transport.max_payload)
    try:
        if jetstream and await _stream_captures(transport, subject):
            try:
                await transport.js_publish(subject, body, headers=headers)
                return
            except PolynError as exc:
                if getattr(transport, "closed", False):
                    raise
                _dead_log.warning(
                    "dead letter to %r not stored (%s); publishing it anyway", subject, exc
                )
        await transport.publish(subject, body, headers=headers)
    except NatsConnectionError:
        if getattr(transport, "closed", False):
            raise
        _dead_log.exception("could not publish the dead letter of a message on %r", msg.subject)
    except PolynError:
        _dead_log.exception("could not publish the dead letter of a message on %r", msg.subject)
