"""Responder: answers requests (``polyn.request``) with validated events.

Subclass :class:`Responder`, set ``subject`` (the request's event type) and optionally
``queue_group`` (so several instances share the requests), and write
``handle_request(event, msg)`` returning ``(reply_type, data)`` — or just an instance of a class
``polyn schemas codegen`` wrote, whose message is the reply type; return ``None`` to send no
answer. ``data`` is converted as :func:`polyn.pub` converts it.

- The request is validated before the handler sees it; the reply is built, validated and sent
  to the request's reply subject with :func:`polyn.reply` (span ``(temporary) send``, a child of
  the request's ``receive`` span, so a trace reads send, receive, (temporary) send,
  (temporary) receive).
- **A failure reaches the requester as an error reply**, not as a timeout: an invalid request,
  a handler failure (anything its code raises) or an invalid reply is answered with an empty
  body and the headers ``Polyn-Error-Type`` (the error's class name) and ``Polyn-Error`` (its
  first line, at most 512 characters, URLs' user info removed); :func:`polyn.request` raises
  :class:`~polyn.errors.ResponderError` carrying both. The option ``error_replies`` chooses
  what is sent: ``"full"`` (the default), ``"type"`` (the class name only, for services whose
  error texts may hold data the requester must not see) or ``"off"`` (no answer: the requester
  times out, as before and as with the Elixir and Ruby clients, whose requesters do not read
  these headers — they see an event that does not decode). The failure is also logged, recorded
  on the span and dead-lettered. A request with no reply subject is only dead-lettered.
- Requests are handled one at a time; run more instances in a ``queue_group`` for more.

Options as :class:`~polyn.Subscriber` (``subject``, ``queue_group``, ``connection``, ``store``,
``handler_timeout``, ``data_type``) plus ``error_replies``. A request of a schema revision its
``data_type`` cannot read gets an error reply of type ``IncompatibleSchemaError``.

Example::

    class Quotes(polyn.Responder[QuoteRequestedV1]):
        subject = "quote.requested.v1"

        async def handle_request(self, event: polyn.Event[QuoteRequestedV1], msg):
            return QuoteGivenV1(sku=event.data.sku, price=10)   # reply type: quote.given.v1

    class UntypedQuotes(polyn.Responder):
        subject = "quote.requested.v1"

        async def handle_request(self, event, msg):
            return "quote.given.v1", {"sku": event.data["sku"], "price": 10}
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import attrs

from polyn import tracing
from polyn.consumers._base import Failed
from polyn.consumers._options import choice
from polyn.consumers._settlement import get_header, one_line
from polyn.consumers._subscriber import CoreConsumer, CoreOptions
from polyn.errors import ConsumerError, PolynError, ResponderError
from polyn.event import DataT, Event
from polyn.nats import Message

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from polyn.consumers._kwargs import ResponderKwargs

__all__ = [
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "Responder",
    "ResponderOptions",
    "raise_if_error_reply",
]

log = logging.getLogger("polyn.subscriber")

ERROR_HEADER: Final = "Polyn-Error"
ERROR_TYPE_HEADER: Final = "Polyn-Error-Type"


@attrs.frozen(kw_only=True)
class ResponderOptions(CoreOptions):
    """:class:`Responder`'s options: the core ones plus ``error_replies``."""

    error_replies: str = choice("full", ("full", "type", "off"))


def raise_if_error_reply(msg: Message, subject: str | None = None) -> None:
    """Raise :class:`~polyn.errors.ResponderError` when ``msg`` is a Responder's error reply.

    Used by :func:`polyn.request` on every reply before decoding it; ``subject`` (the request's
    subject) names the responder in the error.

    Example::

        answer = await transport.request(subject, body)
        raise_if_error_reply(answer)
    """
    error_type = get_header(msg.headers, ERROR_TYPE_HEADER)
    if not error_type:
        return
    reason = get_header(msg.headers, ERROR_HEADER) or ""
    text = f"the responder on {subject or 'the request subject'} failed: {error_type}"
    raise ResponderError(
        f"{text}: {reason}" if reason else text, error_type=error_type, reason=reason
    )


class Responder(CoreConsumer[DataT]):
    """Answers core NATS requests with validated events (see the module doc)."""

    Options = ResponderOptions
    options: ResponderOptions
    error_replies: str

    def __init__(self, **options: Unpack[ResponderKwargs]) -> None:
        super().__init__(**options)

    async def handle_request(self, event: Event[DataT], msg: Message) -> object:
        """Answer one valid request: return ``(reply event type, data)``, an instance of a
        generated class (its message is the reply type), or None for no reply."""
        raise NotImplementedError(f"{type(self).__name__} must define handle_request")

    async def _handle(self, msg: Message) -> None:
        resolved = self._resolved
        assert resolved is not None
        with tracing.receive_span(msg.subject, msg) as span:
            event = await self._decode(msg, span)
            if not isinstance(event, Event):
                await self._error_reply(msg, event)
                return
            answer = await self._call_handler("handle_request", self.handle_request, event, msg)
            if isinstance(answer, Failed):
                await self._failed(msg, answer.error, span)
                await self._error_reply(msg, answer.error)
                return
            try:
                await self._reply(msg, answer)
            except PolynError as exc:
                await self._failed(msg, exc, span)
                await self._error_reply(msg, exc)

    async def _reply(self, msg: Message, answer: object) -> None:
        # Imported here: polyn.publish imports this package for raise_if_error_reply.
        from polyn.publish import event_type_and_data, publish_event

        resolved = self._resolved
        assert resolved is not None
        if answer is None:
            return
        if not msg.reply_to:
            raise ConsumerError(
                f"a request on {msg.subject!r} has no reply subject; nothing to answer"
            )
        try:
            if type(answer) is tuple and len(answer) == 2:
                reply_type, data = event_type_and_data(*answer)
            else:
                reply_type, data = event_type_and_data(answer)
        except TypeError as exc:
            raise ConsumerError(
                f"handle_request of {self.consumer_name} must return (reply type, data), an "
                f"instance of a class generated by `polyn schemas codegen`, or None: {exc}"
            ) from None
        reply_event = Event.new(resolved.config, reply_type, data)
        await publish_event(
            resolved,
            reply_event,
            store=self.store,
            subject=msg.reply_to,
            destination=tracing.TEMPORARY,
        )

    async def _error_reply(self, msg: Message, error: BaseException) -> None:
        if not msg.reply_to or self.error_replies == "off":
            return
        assert self._resolved is not None
        headers = {ERROR_TYPE_HEADER: type(error).__name__}
        if self.error_replies == "full":
            headers[ERROR_HEADER] = one_line(str(error))
        try:
            await self._resolved.transport.publish(msg.reply_to, b"", headers=headers)
        except PolynError:
            log.exception("responder %s: could not send the error reply", self.consumer_name)
