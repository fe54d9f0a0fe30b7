"""Polyn's consumers: actors that receive validated events and settle every message.

=========================  =====================  ==========================================
class                      transport              for
=========================  =====================  ==========================================
:class:`Subscriber`        core NATS              fire-and-forget events, at most once
:class:`Responder`         core NATS              request / reply (``polyn.request``)
:class:`PullConsumer`      JetStream durable      one event at a time, in stream order
:class:`Pipeline`          JetStream durable      Broadway's model: concurrent, batched
=========================  =====================  ==========================================

All four are built on one base, :class:`Consumer`, with declared, typed options that are
checked when the spec is built (``_options``), one door for calling handlers (anything a
handler raises fails its message, never the consumer or the App), and health reporting
(:meth:`Consumer.problem`). Settlement — :class:`Ack`, :class:`Nak`, :func:`backoff`, dead
letters — lives in one module (``_settlement``); the JetStream consumers share
:class:`JetStreamConsumer` (start-up checks, fetching, missing schemas, keeping messages in hand
alive, stall detection).

Modules: ``_options`` (the option mechanism), ``_base`` (:class:`Consumer`), ``_settlement``,
``_jetstream``, ``_subscriber``, ``_responder``, ``_pull_consumer``, ``_pipeline``,
``_deadletters`` (``polyn deadletters list`` / ``replay``), ``_kwargs`` (typing mirrors).
"""

from __future__ import annotations

from polyn.consumers._base import (
    PROBLEM,
    Consumer,
    ConsumerOptions,
    HandlerTimeout,
    set_handler_observer,
    set_stuck_hook,
)
from polyn.consumers._jetstream import JetStreamConsumer, JetStreamOptions
from polyn.consumers._pipeline import (
    BatcherSpec,
    BatchInfo,
    MessageFailed,
    Pipeline,
    PipelineMessage,
    PipelineOptions,
    ProcessorSpec,
)
from polyn.consumers._pull_consumer import DEFAULT_PREFETCH, PullConsumer, PullConsumerOptions
from polyn.consumers._responder import (
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    Responder,
    ResponderOptions,
    raise_if_error_reply,
)
from polyn.consumers._settlement import (
    BACKOFF_CAP,
    DEADLETTER_PREFIX,
    LOOKUP_TTL,
    Ack,
    Nak,
    backoff,
    dead_letter,
    dead_letter_headers,
)
from polyn.consumers._subscriber import CoreOptions, Subscriber

__all__ = [
    "BACKOFF_CAP",
    "DEADLETTER_PREFIX",
    "DEFAULT_PREFETCH",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "LOOKUP_TTL",
    "PROBLEM",
    "Ack",
    "BatchInfo",
    "BatcherSpec",
    "Consumer",
    "ConsumerOptions",
    "CoreOptions",
    "HandlerTimeout",
    "JetStreamConsumer",
    "JetStreamOptions",
    "MessageFailed",
    "Nak",
    "Pipeline",
    "PipelineMessage",
    "PipelineOptions",
    "ProcessorSpec",
    "PullConsumer",
    "PullConsumerOptions",
    "Responder",
    "ResponderOptions",
    "Subscriber",
    "backoff",
    "dead_letter",
    "dead_letter_headers",
    "raise_if_error_reply",
    "set_handler_observer",
    "set_stuck_hook",
]

# Public names show their public home in reprs and tracebacks, as trio's do.
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith("polyn.consumers._"):
        try:
            _value.__module__ = __name__
        except (AttributeError, TypeError):  # pragma: no cover - not settable
            pass
del _name, _value
