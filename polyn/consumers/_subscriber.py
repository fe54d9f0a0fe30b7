"""Core NATS subscribers: :class:`Subscriber`, and what :class:`~polyn.Responder` shares with it.

A ``Subscriber`` receives the events published to its ``subject`` (core NATS: at most once, no
acks, no redelivery), validates each one and hands it to ``handle_message(event, msg)``.

- **Invalid events** (bad JSON, not a CloudEvent, ``data`` against its schema) never reach the
  handler: they are logged, recorded on the receive span and **dead-lettered** to
  ``polyn.deadletter.<subject>`` (see :mod:`polyn.consumers`), and the subscriber goes on.
  (Elixir's subscriber crashes on them; a deliberate difference.)
- An event whose **schema is missing** from the store is a configuration fault, not a bad event:
  it is logged at ERROR as such and dead-lettered (core NATS keeps nothing to retry; a stream on
  ``polyn.deadletter.>`` keeps it for ``polyn deadletters replay``), and :meth:`problem` reports
  it until the schema is back.
- An event of a schema revision its ``data_type`` cannot read (typed events: another team's
  breaking change) is treated as a missing schema is: logged at ERROR as a configuration fault,
  dead-lettered (core NATS keeps nothing to redeliver; the dead letter is the record to replay
  once the service runs a regenerated class), and reported by :meth:`problem` until the class
  reads the store's revision again.
- **Handler failures** — anything the handler's code raises (see :class:`~polyn.consumers.Consumer`)
  — are logged, recorded on the span and dead-lettered the same way; the subscriber never
  crashes because of a handler.
- A subscription that ends while the subscriber is not stopping (the connection closed for
  good) crashes the subscriber, so its supervisor restarts it.
- On stop the subscriber unsubscribes first (nothing new arrives), lets the message in hand
  finish (within its ``shutdown`` time), and stops. Core NATS keeps nothing for a subscriber that
  is not running.

Options, as class attributes or keyword arguments (checked when the spec is built):
``subject``, ``queue_group`` (None), ``connection`` (``"nats"``), ``store`` (the SchemaStore's
name; default the config's), ``handler_timeout`` (None), ``data_type`` (None: ``event.data`` is
the JSON value; or ``Subscriber[UserCreatedV1]``). Dead letters name the subscriber by its
``name``, else its class name. A subject given with the config's domain is stripped of it.

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
from typing import TYPE_CHECKING, Any

import attrs
import trio

from polyn import codec, tracing
from polyn.consumers._base import Consumer, ConsumerOptions, Failed, connection_trouble
from polyn.consumers._options import text
from polyn.consumers._settlement import dead_letter
from polyn.errors import (
    ConsumerError,
    IncompatibleSchemaError,
    NatsConnectionError,
    PolynError,
    SchemaNotFoundError,
    ValidationError,
)
from polyn.event import DataT, Event
from polyn.nats import Message, Subscription

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from polyn.consumers._kwargs import SubscriberKwargs

__all__ = ["CoreConsumer", "CoreOptions", "Subscriber"]

log = logging.getLogger("polyn.subscriber")


@attrs.frozen(kw_only=True)
class CoreOptions(ConsumerOptions):
    """The options of core NATS consumers: ``subject`` (required) and ``queue_group``."""

    subject: str | None = text(None)
    queue_group: str | None = text(None)


class CoreConsumer(Consumer[DataT]):
    """What Subscriber and Responder share: subscribe, decode, report failures."""

    Options = CoreOptions

    subject: str
    queue_group: str | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not self.subject:
            raise ConsumerError(
                f"{type(self).__name__} needs a `subject`: the event type it subscribes to"
            )
        self._set_up_data_type(self.subject)
        self._sub: Subscription | None = None
        self._stopping = False
        self._done = trio.Event()

    async def init(self) -> None:
        """Subscribe, then start handling. Subclasses that override it call ``super().init()``."""
        resolved = self._resolve()
        self.subject = self._strip_domain(self.subject)
        self._set_up_data_type(self.subject, exact=True)
        self._sub = await resolved.transport.subscribe(self.subject, queue=self.queue_group)
        self.nursery.start_soon(self._serve, self._sub)

    async def terminate(self, reason: object) -> None:
        self._stopping = True
        sub, self._sub = self._sub, None
        if sub is not None:
            self._watch_stop(self._done)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await sub.aclose()
            await self._done.wait()  # the message in hand; bounded by our shutdown time

    async def _serve(self, sub: Subscription) -> None:
        """Handle the subscription's messages; when the connection goes away under it,
        subscribe again on its successor (no restart of the actor, so any supervision strategy
        works). Core NATS keeps nothing: what was published meanwhile is not delivered."""
        try:
            while True:
                try:
                    await self._loop(sub)
                    return
                except BaseException as exc:
                    if self._stopping or not connection_trouble(exc):
                        raise
                    error = exc
                resolved = await self._reconnect(error)
                if resolved is None:
                    return
                sub = self._sub = await resolved.transport.subscribe(
                    self.subject, queue=self.queue_group
                )
        finally:
            self._done.set()

    async def _loop(self, sub: Subscription) -> None:
        try:
            async for msg in sub:
                await self._handle(msg)
                if self._stopping:
                    return
        except trio.ClosedResourceError:
            if not self._stopping:
                raise NatsConnectionError(
                    f"the subscription to {self.subject!r} was closed"
                ) from None
        if not self._stopping:
            raise NatsConnectionError(f"the subscription to {self.subject!r} ended")

    async def _decode(self, msg: Message, span: Any) -> Event[DataT] | PolynError:
        """``msg``'s event, validated (and typed, with ``data_type``); else the error, once
        reported (span, log, dead letter)."""
        resolved = self._resolved
        assert resolved is not None
        schemas = self._schemas()
        try:
            event = codec.decode(msg.data, schemas, resolved.config)
        except SchemaNotFoundError as exc:
            self._schema_missing(msg, exc)
            await self._report(msg, exc, span)
            return exc
        except ValidationError as exc:
            await self._report(msg, exc, span)
            return exc
        if self._decoder is not None:
            try:
                event = self._typed(event, schemas)
            except IncompatibleSchemaError as exc:
                self._schema_unreadable(event, exc)
                await self._report(msg, exc, span)
                return exc
        if span.is_recording():
            tracing.set_receive_attributes(span, event, msg, resolved.transport)
        return event

    async def _report(self, msg: Message, error: BaseException, span: Any) -> None:
        assert self._resolved is not None
        tracing.record_error(span, error)
        await dead_letter(self._resolved.transport, msg, error, self.consumer_name, jetstream=False)

    async def _failed(self, msg: Message, error: BaseException, span: Any) -> None:
        """A handler failed on ``msg``: tell the sandbox, then report it."""
        self._observe_failure(msg, error)
        await self._report(msg, error, span)

    async def _handle(self, msg: Message) -> None:
        raise NotImplementedError


class Subscriber(CoreConsumer[DataT]):
    """A core NATS subscriber of validated events (see the module doc)."""

    def __init__(self, **options: Unpack[SubscriberKwargs]) -> None:
        super().__init__(**options)

    async def handle_message(self, event: Event[DataT], msg: Message) -> None:
        """Handle one valid event; ``msg`` is the raw message (headers, subject, reply_to)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    async def _handle(self, msg: Message) -> None:
        with tracing.receive_span(msg.subject, msg) as span:
            event = await self._decode(msg, span)
            if not isinstance(event, Event):
                return
            result = await self._call_handler("handle_message", self.handle_message, event, msg)
            if isinstance(result, Failed):
                await self._failed(msg, result.error, span)
