"""OpenTelemetry spans and trace propagation with the Polyn protocol's names (fact sheet §10).

Spans (kinds are OpenTelemetry's real ``PRODUCER`` / ``CONSUMER``):

======================================================= ========================== ==========
operation                                               span name                  kind
======================================================= ========================== ==========
``pub`` / ``request``                                   ``<event_type> send``      PRODUCER
``reply``                                               ``(temporary) send``       PRODUCER
handling a received message (every consumer)            ``<event_type> receive``   CONSUMER
handling a request's reply                              ``(temporary) receive``    CONSUMER
a fetched batch (Pipeline)                              ``<event_type> process``   CONSUMER
======================================================= ========================== ==========

Send and receive spans carry ``messaging.system = "NATS"``, ``messaging.destination``,
``messaging.protocol = "Polyn"``, ``messaging.url`` (the connected server's URL),
``messaging.message_id`` (the CloudEvent id) and ``messaging.message_payload_size_bytes`` (the
whole serialized message body). These names predate OpenTelemetry's current messaging semantic
conventions; Polyn keeps them so that traces join those of the Elixir and Ruby clients. Receive
spans get their attributes only once the message has validated.

Propagation: every published message carries a W3C ``traceparent`` header, injected with the
global text-map propagator from the send span, its flags cut to the sampled bit (``00`` or
``01``, what the Elixir client accepts; see :func:`wire_traceparent`); a receive span's parent
is the context extracted from the received message's headers (whatever its flags). Receive
spans of a batch link to its process span.

Exceptions raised inside a span are recorded on it (an ``exception`` event) and set its status to
ERROR, then re-raised. A request that times out is recorded on its send span.

Only ``opentelemetry-api`` is needed. **While no SDK tracer provider is installed, Polyn makes no
spans and sends no ``traceparent`` at all**, so tracing costs one check per message. Install one
(``opentelemetry.trace.set_tracer_provider(TracerProvider())``) to turn tracing on.

Example::

    headers: dict[str, str] = {}
    with tracing.send_span("user.created.v1", headers) as span:
        body = codec.encode(event, schemas, config)
        tracing.set_send_attributes(span, "user.created.v1", event.id, body, transport)
        await transport.publish("user.created.v1", body, headers=headers)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
)

from polyn._version import __version__

if TYPE_CHECKING:
    from polyn.event import Event
    from polyn.nats import Message, Transport

__all__ = [
    "TEMPORARY",
    "enabled",
    "extract",
    "link_to",
    "process_span",
    "receive_span",
    "record_error",
    "send_span",
    "set_receive_attributes",
    "set_send_attributes",
    "wire_traceparent",
]

TEMPORARY = "(temporary)"
"""The destination name of replies (their subjects are throwaway inboxes)."""

_NO_TRACING = (ProxyTracerProvider, NoOpTracerProvider)
_tracer_cache: list[Any] = [None, None]  # [provider, tracer]


# OpenTelemetry's get_tracer_provider() reads os.environ on every call while no provider is set
# (about 1 µs, on every message): its global, set once per process, says it without that.
# Should a future opentelemetry-api drop the global, the public call decides.
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def enabled() -> bool:
    """Whether an OpenTelemetry SDK tracer provider is installed (so spans are recorded).

    A provider named by ``OTEL_PYTHON_TRACER_PROVIDER`` counts when the variable is set before
    Polyn is imported (or once something has called ``get_tracer_provider()``).
    """
    if not _ENV_PROVIDER and getattr(trace, "_TRACER_PROVIDER", True) is None:
        return False
    return not isinstance(trace.get_tracer_provider(), _NO_TRACING)


def _tracer() -> trace.Tracer:
    provider = trace.get_tracer_provider()
    if _tracer_cache[0] is not provider:
        _tracer_cache[1] = provider.get_tracer("polyn", __version__)
        _tracer_cache[0] = provider
    tracer: trace.Tracer = _tracer_cache[1]
    return tracer


def extract(headers: Mapping[str, str] | None) -> Context | None:
    """The trace context carried by message ``headers`` (``traceparent``), or None.

    Header names are matched without regard to case (Elixir senders lower-case them).
    """
    if not headers:
        return None
    carrier: Mapping[str, str] = headers
    if "traceparent" not in headers:
        carrier = {key.lower(): value for key, value in headers.items()}
        if "traceparent" not in carrier:
            return None
    return propagate.extract(carrier)


def record_error(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` (an ``exception`` event) and mark the span as failed."""
    if span.is_recording():
        span.record_exception(exc)
        first = str(exc).split("\n", 1)[0]
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {first}"))


@contextmanager
def _span(
    name: str,
    kind: SpanKind,
    context: Context | None = None,
    links: Sequence[Link] | None = None,
) -> Iterator[Span]:
    span = _tracer().start_span(name, context=context, kind=kind, links=links)
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield span
        except Exception as exc:
            record_error(span, exc)
            raise


_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
"""What the span helpers return when tracing is off: no generator, no allocation per message."""


def send_span(destination: str, headers: dict[str, str]) -> AbstractContextManager[Span]:
    """The ``<destination> send`` span (PRODUCER), current inside the block.

    Injects ``traceparent`` for it into ``headers`` on entry. ``destination`` is the event type
    as passed by the caller, or :data:`TEMPORARY` for a reply.
    """
    if not enabled():
        return _NO_SPAN
    return _send_span(destination, headers)


@contextmanager
def _send_span(destination: str, headers: dict[str, str]) -> Iterator[Span]:
    with _span(f"{destination} send", SpanKind.PRODUCER) as span:
        propagate.inject(headers)
        parent = headers.get("traceparent")
        if parent is not None:
            headers["traceparent"] = wire_traceparent(parent)
        yield span


def wire_traceparent(value: str) -> str:
    """``value`` with its trace flags cut to the sampled bit: ``…-00`` or ``…-01``.

    OpenTelemetry SDKs from 1.3x on set W3C Trace Context level 2's "random trace id" flag
    (``0x02``), so a sampled span's header ends in ``-03``. The Elixir client's propagator
    (opentelemetry-erlang) accepts only ``00`` and ``01`` and drops anything else, starting a
    new trace instead of joining ours; so what Polyn sends keeps the sampled bit only. Received
    headers are read as they are (any flags are accepted). A value that is not a version-00
    ``traceparent`` is returned unchanged.

    Example::

        wire_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03")
        # '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    """
    if len(value) != 55 or value[52] != "-" or value[-2:] in ("00", "01"):
        return value
    try:
        sampled = int(value[53:], 16) & 0x01
    except ValueError:
        return value
    return f"{value[:53]}0{sampled}"


def receive_span(
    event_type: str,
    msg: Message | Mapping[str, str] | None,
    *,
    links: Sequence[Link] | None = None,
) -> AbstractContextManager[Span]:
    """The ``<event_type> receive`` span (CONSUMER), current inside the block.

    Its parent is the context in ``msg``'s headers (a :class:`~polyn.nats.Message` or the
    headers themselves), else the current span. ``links``: e.g. ``[link_to(process_span)]``.
    """
    if not enabled():
        return _NO_SPAN
    headers = msg if msg is None or isinstance(msg, Mapping) else msg.headers
    return _span(f"{event_type} receive", SpanKind.CONSUMER, extract(headers), links)


def process_span(event_type: str) -> AbstractContextManager[Span]:
    """The ``<event_type> process`` span (CONSUMER) around a fetched batch."""
    if not enabled():
        return _NO_SPAN
    return _span(f"{event_type} process", SpanKind.CONSUMER)


def link_to(span: Span) -> Link | None:
    """A link to ``span`` for the receive spans of its batch; None when not tracing."""
    context = span.get_span_context()
    return Link(context) if context.is_valid else None


def _attributes(
    span: Span, destination: str, message_id: str, size: int, transport: Transport | None
) -> None:
    span.set_attributes(
        {
            "messaging.system": "NATS",
            "messaging.destination": destination,
            "messaging.protocol": "Polyn",
            "messaging.url": (transport.connected_url if transport is not None else None) or "",
            "messaging.message_id": message_id,
            "messaging.message_payload_size_bytes": size,
        }
    )


def set_send_attributes(
    span: Span, destination: str, message_id: str, body: bytes, transport: Transport | None
) -> None:
    """Set the §10 attributes of a send span."""
    if span.is_recording():
        _attributes(span, destination, message_id, len(body), transport)


def set_receive_attributes(
    span: Span,
    event: Event,
    msg: Message,
    transport: Transport | None,
    *,
    destination: str | None = None,
) -> None:
    """Set the §10 attributes of a receive span, once ``msg`` has validated as ``event``.

    ``destination`` defaults to the message's subject.
    """
    if span.is_recording():
        _attributes(span, destination or msg.subject, event.id, len(msg.data), transport)
