"""``PullConsumer``: a JetStream durable consumer handled one event at a time, in order.

The seed's ``Polyn.PullConsumer``. Subclass it, name the event type, and handle events::

    class ReceiptMailer(polyn.PullConsumer):
        type = "payment.captured.v1"

        async def handle_message(self, event, msg):
            await send_receipt(event.data)
            return polyn.Ack.ACK

    app = polyn.App(config, children=[polyn.NatsConnection(), polyn.SchemaStore(),
                                      ReceiptMailer()])

The durable consumer ``naming.consumer_name(type, config, source)`` must exist (a
``create_consumer`` migration); its stream is the one capturing ``type`` unless ``stream_name``
is given. Options, as class attributes or keyword arguments: ``type``, ``source``,
``stream_name``, ``store`` (the SchemaStore, default the config's bucket), ``connection``
(default ``"nats"``), ``max_failures`` (default 5), ``prefetch`` (messages fetched per pull
request, default 10) and ``fetch_expires`` (how long an idle pull request waits, default 1 s:
also the longest a graceful stop waits for it).

``handle_message(event, msg)`` returns ``polyn.Ack.ACK``, ``Ack.NAK``, ``Ack.TERM``,
``polyn.Nak(delay=seconds)``, or ``None`` to settle later through ``msg`` (``await msg.ack()``).

Messages are fetched in batches (one crossing per batch), the next batch while this one is
handled, and handled strictly one at a time, in stream order. An invalid event is terminated,
dead-lettered and logged; a handler exception is logged and the message naked with backoff,
until ``max_failures`` deliveries, when it is terminated and dead-lettered
(:mod:`polyn.consumer`). Neither stops the consumer: only infrastructure failures (the
connection closed for good, the consumer or stream deleted) crash it, for its supervisor to
restart. At most three batches of ``prefetch`` are unacknowledged at once.

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
from typing import Any

import trio

from polyn import tracing
from polyn.consumer import (
    Ack,
    JetStreamConsumer,
    Nak,
    apply,
    fetch_some,
    settle_failure,
)
from polyn.event import Event
from polyn.nats import Message

__all__ = ["PullConsumer"]

log = logging.getLogger("polyn.consumer")


class PullConsumer(JetStreamConsumer):
    """Handle the events of one JetStream durable consumer, one at a time (see the module doc)."""

    prefetch: int = 10

    _OPTIONS = (*JetStreamConsumer._OPTIONS, "prefetch")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {self.prefetch!r}")

    async def handle_message(self, event: Event, msg: Message) -> Ack | Nak | None:
        """Handle one event; return how to settle its message (see the module doc)."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_message")

    # -- the actor ----------------------------------------------------------------------------

    async def init(self) -> None:
        """Check the stream and consumer, then start fetching. Subclasses that override it
        call ``await super().init()``."""
        await self._attach()
        self.nursery.start_soon(self._run)

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        # The next batch is fetched while this one is handled: at most three batches are
        # unacknowledged at once (in hand, waiting, being fetched).
        batches_in, batches_out = trio.open_memory_channel[list[Message]](1)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._fetcher, batches_in)
                async with batches_out:
                    async for messages in batches_out:
                        for index, msg in enumerate(messages):
                            if self.stop_requested():
                                for unhandled in messages[index:]:
                                    await unhandled.nak()
                                break
                            await self._handle(msg)
        finally:
            self._stopped.set()

    async def _fetcher(self, batches: trio.MemorySendChannel[list[Message]]) -> None:
        assert self._resolved is not None
        transport = self._resolved.transport
        async with batches:
            while not self.stop_requested():
                messages = await fetch_some(
                    transport, self.stream, self.consumer_name, self.prefetch, self.fetch_expires
                )
                if messages:
                    await batches.send(messages)

    async def _handle(self, msg: Message) -> None:
        assert self._resolved is not None and self.type is not None
        name = self.consumer_name
        with tracing.receive_span(self.type, msg) as span:
            event = await self._decode(msg, span)
            if event is None:
                return
            try:
                result = await self.handle_message(event, msg)
                await apply(msg, result)
            except Exception as exc:
                tracing.record_error(span, exc)
                if msg.acked:  # it settled the message, then failed: nothing to redo
                    log.exception("consumer %s: handler failed after settling %s", name, msg)
                    return
                await settle_failure(
                    self._resolved.transport, msg, exc, name, max_failures=self.max_failures
                )
