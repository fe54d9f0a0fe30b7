"""The keyword arguments of the consumers, as ``TypedDict``s for ``mypy --strict``.

A mirror of the ``Options`` attrs classes plus the actor options, so that
``WelcomeMailer(prefetch="ten")`` or a misspelt option is a type error; ``tests/consumers``
checks that each mirror lists exactly its class's options. Runtime checking is the attrs
classes' job (:mod:`polyn.consumers._options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from polyn.actors import ActorRef, Restart

if TYPE_CHECKING:
    from polyn.consumers._pipeline import BatcherSpec, ProcessorSpec
    from polyn.consumers._settlement import Ack, Nak

__all__ = [
    "ActorKwargs",
    "JetStreamKwargs",
    "PipelineKwargs",
    "PullConsumerKwargs",
    "ResponderKwargs",
    "SubscriberKwargs",
]


class ActorKwargs(TypedDict, total=False):
    """:class:`~polyn.actors.Actor`'s options."""

    name: str | None
    restart: Restart | str | None
    shutdown: float | None
    mailbox_size: int | None


class ConsumerKwargs(ActorKwargs, total=False):
    """:class:`~polyn.consumers.ConsumerOptions`."""

    connection: str | ActorRef
    store: str | None
    handler_timeout: float | None
    data_type: type[Any] | None


class SubscriberKwargs(ConsumerKwargs, total=False):
    """:class:`~polyn.Subscriber`'s options."""

    subject: str
    queue_group: str | None


class ResponderKwargs(SubscriberKwargs, total=False):
    """:class:`~polyn.Responder`'s options."""

    error_replies: str


class JetStreamKwargs(ConsumerKwargs, total=False):
    """The options of both JetStream consumers."""

    type: str
    source: str | None
    stream_name: str | None
    max_failures: int
    fetch_expires: float
    stall_timeout: float | None


class PullConsumerKwargs(JetStreamKwargs, total=False):
    """:class:`~polyn.PullConsumer`'s options."""

    prefetch: int


class PipelineKwargs(JetStreamKwargs, total=False):
    """:class:`~polyn.Pipeline`'s options."""

    processors: Mapping[str, ProcessorSpec | Mapping[str, Any]]
    batchers: Mapping[str, BatcherSpec | Mapping[str, Any]]
    fetch_batch: int
    max_in_flight: int | None
    on_success: Ack | Nak | str
    on_failure: Ack | Nak | str | None
