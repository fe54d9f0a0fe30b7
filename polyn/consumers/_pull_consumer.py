"""``PullConsumer``: a JetStream durable consumer handled one event at a time, in order.

The seed's ``Polyn.PullConsumer``. Subclass it, name the event type, and handle events::

    class ReceiptMailer(polyn.PullConsumer):
        type = "payment.captured.v1"

        async def handle_message(self, event, msg):
            await send_receipt(event.data)
            return polyn.Ack.ACK

    app = polyn.App(config, children=[polyn.NatsConnection(), polyn.SchemaStore(),
                                      ReceiptMailer()])

Typed, with the class ``polyn schemas codegen`` wrote for the message (mypy then knows
``event.data``'s fields)::

    class ReceiptMailer(polyn.PullConsumer[PaymentCapturedV1]):
        type = "payment.captured.v1"

        async def handle_message(self, event: polyn.Event[PaymentCapturedV1], msg):
            await send_receipt(event.data.customer, event.data.amount)
            return polyn.Ack.ACK

(``data_type = PaymentCapturedV1`` as a class attribute or keyword does the same at run time;
the generic form also lets mypy check the handler's annotation against it.)

The durable consumer ``naming.consumer_name(type, config, source)`` must exist (a
``create_consumer`` migration); its stream is the one capturing ``type`` unless ``stream_name``
is given. Options, as class attributes or keyword arguments (checked when the spec is built):
those of :class:`~polyn.consumers.JetStreamConsumer`, plus ``prefetch`` (messages fetched per
pull request, default :data:`DEFAULT_PREFETCH`).

``handle_message(event, msg)`` returns ``polyn.Ack.ACK``, ``Ack.NAK``, ``Ack.TERM``,
``polyn.Nak(delay=seconds)``, or ``None`` to settle later through ``msg`` (``await msg.ack()``).

Messages are fetched in batches (one crossing per batch), the next batch while this one is
handled, and handled strictly one at a time, in stream order. Prefetched messages waiting their
turn are kept alive with ``+WPI`` so a slow handler does not make the server redeliver them.
An invalid event is terminated, dead-lettered and logged; a handler failure is logged and the
message naked with backoff, until its limit (``min(max_failures, max_deliver)``), when it is
dead-lettered and terminated (:mod:`polyn.consumers`). Neither stops the consumer: only
infrastructure failures (the connection closed for good, the consumer or stream deleted) crash
it, for its supervisor to restart. At most three batches of ``prefetch`` are unacknowledged at
once.

Differences from Elixir, on purpose: an invalid event does not crash the consumer (Elixir
crashes and relies on the restart), and a missing consumer fails the start with the protocol's
text ("Consumer <name> does not exist. Use polyn-cli to create it before attempting to
subscribe").

On stop, the message being handled finishes and is settled, the prefetched ones not yet handled
are naked for immediate redelivery, and an idle pull request is left to expire rather than
cancelled (so the server delivers nothing into a closed consumer).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from polyn import tracing
from polyn.consumers._base import Failed
from polyn.consumers._jetstream import JetStreamConsumer, JetStreamOptions, fetch_some
from polyn.consumers._options import integer
from polyn.consumers._settlement import Ack, Nak, apply
from polyn.event import DataT, Event
from polyn.nats import Message

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from polyn.consumers._kwargs import PullConsumerKwargs

__all__ = ["DEFAULT_PREFETCH", "PullConsumer", "PullConsumerOptions"]

log = logging.getLogger("polyn.consumer")

DEFAULT_PREFETCH = 100
"""Messages a PullConsumer fetches per pull request unless told otherwise.

Chosen by measurement (``benchmarks/consume.py --only prefetch``): with an instant handler the
rate rises with ``prefetch`` up to about 100 (each pull request is a round trip and a thread
crossing, paid once per batch), and is flat beyond; with handlers of a millisecond or more the
handler sets the pace and ``prefetch`` hardly matters. A prefetched message waiting its turn
no longer risks redelivery (messages in hand get ``+WPI`` every third of ``ack_wait``), so the
remaining cost of a large ``prefetch`` is sharing: one process holds up to three batches, so
with slow handlers and several processes on one consumer, a smaller ``prefetch`` spreads the
work more evenly."""


@attrs.frozen(kw_only=True)
class PullConsumerOptions(JetStreamOptions):
    """:class:`PullConsumer`'s options: the JetStream ones plus ``prefetch``."""

    prefetch: int = integer(DEFAULT_PREFETCH, at_least=1)


class PullConsumer(JetStreamConsumer[DataT]):
    """Handle the events of one JetStream durable consumer, one at a time (see the module doc)."""

    Options = PullConsumerOptions
    options: PullConsumerOptions
    prefetch: int

    def __init__(self, **options: Unpack[PullConsumerKwargs]) -> None:
        super().__init__(**options)

    async def handle_message(self, event: Event[DataT], msg: Message) -> Ack | Nak | None:
        """Handle one event; return how to settle its message (see the module doc)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    # -- the actor ----------------------------------------------------------------------------

    async def init(self) -> None:
        """Check the stream and consumer, then start fetching. Subclasses that override it
        call ``await super().init()``."""
        await self._attach()
        self.nursery.start_soon(self._serve)

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        # The next batch is fetched while this one is handled: at most three batches are
        # unacknowledged at once (in hand, waiting, being fetched).
        batches_in, batches_out = trio.open_memory_channel[list[Message]](1)
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._fetcher, batches_in)
                async with batches_out:
                    async for messages in batches_out:
                        for index, msg in enumerate(messages):
                            if self.stop_requested():
                                for unhandled in messages[index:]:
                                    await unhandled.nak()
                                    self._done(unhandled)
                                break
                            await self._handle(msg)
        except trio.Cancelled as exc:
            error = exc
            raise
        await self._loop_ended(error)

    async def _fetcher(self, batches: trio.MemorySendChannel[list[Message]]) -> None:
        assert self._resolved is not None
        transport = self._resolved.transport
        idle = False
        async with batches:
            while not self.stop_requested():
                await self._wait_fetch_open()
                if self.stop_requested():
                    break
                messages = await fetch_some(
                    transport,
                    self.stream,
                    self.consumer_name,
                    self.prefetch,
                    self.fetch_expires,
                    idle=idle,
                )
                idle = not messages
                if messages:
                    self._took(messages)
                    await batches.send(messages)
                else:
                    self._progressed()  # nothing waiting: idle, not stalled

    async def _handle(self, msg: Message) -> None:
        assert self._resolved is not None
        name = self.consumer_name
        with tracing.receive_span(self.type, msg) as span:
            event = await self._decode(msg, span)
            if event is None:
                return
            result: Ack | Nak | Failed | None
            if self.handler_timeout is None:  # the hot path: no extra coroutine per message
                try:
                    result = await self.handle_message(event, msg)
                except BaseException as raised:
                    result = await self._handler_raised(raised)
            else:
                result = await self._call_handler("handle_message", self.handle_message, event, msg)
            if not isinstance(result, Failed):
                try:
                    await apply(msg, result)
                except TypeError as wrong:
                    result = Failed(wrong)
            if isinstance(result, Failed):
                exc = result.error
                tracing.record_error(span, exc)
                self._observe_failure(msg, exc)
                if msg.acked:  # it settled the message, then failed: nothing to redo
                    log.error(
                        "consumer %s: handler failed after settling %s",
                        name,
                        msg,
                        exc_info=exc,
                    )
                    self._forget(msg)
                    return
                await self._settle_failure(msg, exc)
                return
            if msg.acked is None:
                self._observe_unsettled(msg)
            self._forget(msg)
