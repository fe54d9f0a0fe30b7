"""Dead letters: how a consumer reports a message it could not handle, without losing it.

An invalid message, a handler that failed, or a JetStream message past its ``max_failures`` is
terminated (JetStream) or dropped (core NATS) by its consumer, and **recorded** with
:func:`dead_letter`: logged with the full error, and published for anyone to subscribe to.

- Subject: ``polyn.deadletter.<the message's own subject>`` (never a wildcard pattern), so
  ``polyn.deadletter.>`` receives them all and ``polyn.deadletter.order.placed.v1`` one type's.
- Body: the original body, unchanged. If body and headers would exceed the server's
  ``max_payload``, the body is cut to fit and ``Polyn-Truncated: true`` is set.
- Headers: ``Polyn-Error`` (the error's first line, at most 512 characters),
  ``Polyn-Error-Type`` (the error's class name), ``Polyn-Consumer``, ``Polyn-Original-Subject``,
  ``Polyn-Original-Id`` (the original ``Nats-Msg-Id``), the original ``traceparent``, and
  ``Nats-Msg-Id: <original id>:<consumer>``, so two consumers' dead letters of one event are not
  deduplicated into one. A message without a ``Nats-Msg-Id`` gets neither id header.
- JetStream consumers (``jetstream=True``) publish with an ack when a stream captures the
  dead-letter subject (the example's migrations create one on ``polyn.deadletter.>``); which
  subjects are captured is looked up once and remembered for :data:`LOOKUP_TTL` seconds per
  transport. Otherwise, or if that publish fails, it is a core publish: a core subscriber sees it,
  nothing stores it.

Failing to publish a dead letter is logged, never raised, except when the connection is closed
for good (the consumer then crashes and its supervisor restarts it).

Example::

    async with polyn.App(config, [...]).run() as running:
        sub = await resolve(running).transport.subscribe("polyn.deadletter.>")
"""

from __future__ import annotations

import logging
import weakref
from typing import Final

import trio

from polyn.errors import NatsConnectionError, PolynError
from polyn.nats import Message, Transport

__all__ = ["LOOKUP_TTL", "PREFIX", "dead_letter", "dead_letter_headers"]

log = logging.getLogger("polyn.deadletter")

PREFIX: Final = "polyn.deadletter."
LOOKUP_TTL: Final = 30.0
"""Seconds a "does a stream capture this dead-letter subject" answer is reused."""
_MAX_ERROR: Final = 512

# transport -> {dead-letter subject: (captured, looked up at)}
_captured: weakref.WeakKeyDictionary[Transport, dict[str, tuple[bool, float]]] = (
    weakref.WeakKeyDictionary()
)


def _get_header(headers: dict[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lower:
                return candidate
    return value


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.replace("\r", " ")[:_MAX_ERROR]


def dead_letter_headers(msg: Message, error: BaseException, consumer: str) -> dict[str, str]:
    """The headers of ``msg``'s dead letter (see the module doc)."""
    headers = {
        "Polyn-Error": _one_line(str(error)) or type(error).__name__,
        "Polyn-Error-Type": type(error).__name__,
        "Polyn-Consumer": consumer,
        "Polyn-Original-Subject": msg.subject,
    }
    original_id = _get_header(msg.headers, "Nats-Msg-Id")
    if original_id:
        headers["Polyn-Original-Id"] = original_id
        headers["Nats-Msg-Id"] = f"{original_id}:{consumer}"
    traceparent = _get_header(msg.headers, "traceparent")
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


def _fit(body: bytes, headers: dict[str, str], max_payload: int) -> bytes:
    # The transport's own size rule (nats_transport._check_publish), with room to spare.
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
        log.warning("dead letters: cannot look up a stream for %r: %s", subject, exc)
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
    """
    subject = PREFIX + msg.subject
    log.error(
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
                log.warning("dead letter to %r not stored (%s); publishing it anyway", subject, exc)
        await transport.publish(subject, body, headers=headers)
    except NatsConnectionError:
        if getattr(transport, "closed", False):
            raise
        log.exception("could not publish the dead letter of a message on %r", msg.subject)
    except PolynError:
        log.exception("could not publish the dead letter of a message on %r", msg.subject)
