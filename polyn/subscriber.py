"""Subscriber: a core NATS subscription whose messages arrive as validated events.

Subclass :class:`Subscriber`, set ``subject`` (the event type, or a subject pattern) and
optionally ``queue_group``, and write ``handle_message(event, msg)``. Add an instance to the App
after the ``NatsConnection`` and the ``SchemaStore``.

- Messages are handled one at a time, in arrival order, each inside a ``<subject> receive``
  span whose parent is the sender's ``traceparent``.
- **An invalid message never reaches the handler**: it is logged with the validation error,
  recorded on the span and dead-lettered (:mod:`polyn.deadletter`); the subscriber goes on.
  (The Elixir subscriber crashes instead; with core NATS there is no redelivery to gain from
  that, so Polyn for Python keeps the subscription.)
- **An exception in the handler** is reported the same way, the event dead-lettered, and the
  subscriber goes on.
- Only infrastructure failures crash it (the connection closed for good, the schema store gone):
  its supervisor restarts it, and it subscribes again.
- On shutdown it unsubscribes, lets the message in hand finish (within its ``shutdown`` time),
  and stops. Core NATS keeps nothing for a subscriber that is not running.

Class attributes, each also a keyword argument: ``subject``, ``queue_group`` (None),
``connection`` (``"nats"``), ``store`` (the SchemaStore's name; default the config's).
Dead letters name the subscriber by its ``name``, else its class name.

Example::

    class Greeter(polyn.Subscriber):
        subject = "user.created.v1"
        queue_group = "greeters"

        async def handle_message(self, event, msg):
            print("hello", event.data["name"])

    app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(), Greeter()])
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from polyn import codec, tracing
from polyn._resolve import Resolved, resolve, schemas_for
from polyn.actors import Actor, ActorRef
from polyn.deadletter import dead_letter
from polyn.errors import ConsumerError, NatsConnectionError, ValidationError
from polyn.event import Event
from polyn.nats import Message, Subscription

__all__ = ["Subscriber"]

log = logging.getLogger("polyn.subscriber")


class _CoreConsumer(Actor):
    """What Subscriber and Responder share: subscribe, decode, report failures."""

    subject: str | None = None
    queue_group: str | None = None
    connection: str | ActorRef = "nats"
    store: str | None = None

    def __init__(
        self,
        *,
        subject: str | None = None,
        queue_group: str | None = None,
        connection: str | ActorRef | None = None,
        store: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if subject is not None:
            self.subject = subject
        if queue_group is not None:
            self.queue_group = queue_group
        if connection is not None:
            self.connection = connection
        if store is not None:
            self.store = store
        if not self.subject:
            raise ConsumerError(
                f"{type(self).__name__} needs a `subject`: the event type it subscribes to"
            )
        self._resolved: Resolved | None = None
        self._sub: Subscription | None = None
        self._stopping = False
        self._done = trio.Event()

    @property
    def consumer_name(self) -> str:
        """How dead letters and logs name this consumer: its ``name``, else its class name."""
        return self.name or type(self).__name__

    async def init(self) -> None:
        """Subscribe, then start handling. Subclasses that override it call ``super().init()``."""
        assert self.subject is not None
        self._resolved = resolve(self.connection)
        self._sub = await self._resolved.transport.subscribe(self.subject, queue=self.queue_group)
        self.nursery.start_soon(self._loop, self._sub)

    async def terminate(self, reason: object) -> None:
        self._stopping = True
        sub, self._sub = self._sub, None
        if sub is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await sub.aclose()
            await self._done.wait()  # the message in hand; bounded by our shutdown time

    async def _loop(self, sub: Subscription) -> None:
        try:
            async for msg in sub:
                await self._handle(msg)
                if self._stopping:
                    return
        except trio.ClosedResourceError:
            if not self._stopping:
                raise
        finally:
            self._done.set()
        if not self._stopping:
            raise NatsConnectionError(f"the subscription to {self.subject!r} ended")

    async def _decode(self, msg: Message, span: Any) -> Event | None:
        """``msg``'s event, validated; None when it is invalid (then reported: span, log, dead
        letter)."""
        resolved = self._resolved
        assert resolved is not None
        try:
            event = codec.decode(msg.data, schemas_for(resolved, self.store), resolved.config)
        except ValidationError as exc:
            await self._report(msg, exc, span)
            return None
        if span.is_recording():
            tracing.set_receive_attributes(span, event, msg, resolved.transport)
        return event

    async def _report(self, msg: Message, error: BaseException, span: Any) -> None:
        assert self._resolved is not None
        tracing.record_error(span, error)
        await dead_letter(self._resolved.transport, msg, error, self.consumer_name, jetstream=False)

    async def _handle(self, msg: Message) -> None:
        raise NotImplementedError


class Subscriber(_CoreConsumer):
    """A core NATS subscriber of validated events (see the module doc)."""

    async def handle_message(self, event: Event, msg: Message) -> None:
        """Handle one valid event; ``msg`` is the raw message (headers, subject, reply_to)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    async def _handle(self, msg: Message) -> None:
        assert self._resolved is not None
        with tracing.receive_span(msg.subject, msg) as span:
            event = await self._decode(msg, span)
            if event is None:
                return
            try:
                await self.handle_message(event, msg)
            except Exception as exc:
                await self._report(msg, exc, span)
