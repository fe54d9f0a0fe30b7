"""Responder: answers requests (``polyn.request``) with validated events.

Subclass :class:`Responder`, set ``subject`` (the request's event type) and optionally
``queue_group`` (so several instances share the requests), and write
``handle_request(event, msg)`` returning ``(reply_type, data)``; return ``None`` to send no
answer.

- The request is validated before the handler sees it; the reply is built, validated and sent
  to the request's reply subject with :func:`polyn.reply` (span ``(temporary) send``, a child of
  the request's ``receive`` span, so a trace reads send, receive, (temporary) send,
  (temporary) receive).
- An invalid request, an exception in the handler, an invalid reply, or a request with no reply
  subject is answered with **nothing**: it is logged, recorded on the span and dead-lettered,
  and the requester times out with :class:`~polyn.errors.RequestTimeout`. The responder goes on.
- Requests are handled one at a time; run more instances in a ``queue_group`` for more.

Class attributes / keyword arguments as :class:`~polyn.Subscriber`: ``subject``,
``queue_group``, ``connection``, ``store``.

Example::

    class Quotes(polyn.Responder):
        subject = "quote.requested.v1"

        async def handle_request(self, event, msg):
            return "quote.given.v1", {"sku": event.data["sku"], "price": 10}
"""

from __future__ import annotations

from typing import Any

from polyn import tracing
from polyn.errors import ConsumerError
from polyn.event import Event
from polyn.nats import Message
from polyn.publish import publish_event, to_json_data
from polyn.subscriber import _CoreConsumer

__all__ = ["Responder"]


class Responder(_CoreConsumer):
    """Answers core NATS requests with validated events (see the module doc)."""

    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        """Answer one valid request: return ``(reply event type, data)``, or None for no reply."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_request")

    async def _handle(self, msg: Message) -> None:
        resolved = self._resolved
        assert resolved is not None
        with tracing.receive_span(msg.subject, msg) as span:
            event = await self._decode(msg, span)
            if event is None:
                return
            try:
                answer = await self.handle_request(event, msg)
                if answer is None:
                    return
                if not msg.reply_to:
                    raise ConsumerError(
                        f"a request on {msg.subject!r} has no reply subject; nothing to answer"
                    )
                reply_type, data = answer
                reply_event = Event.new(resolved.config, reply_type, to_json_data(data))
                await publish_event(
                    resolved,
                    reply_event,
                    store=self.store,
                    subject=msg.reply_to,
                    destination=tracing.TEMPORARY,
                )
            except Exception as exc:
                await self._report(msg, exc, span)
