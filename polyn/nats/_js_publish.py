"""JetStream publish with acknowledgement on the real transport, and its reconnect rule.

A JetStream publish is a request whose reply is the stream's acknowledgement (a
:class:`~polyn.nats.PubAck`). When the connection drops while a publish waits for its ack, the
ack is lost with the connection: the publish fails at once (:class:`AckLost`) instead of
waiting out its timeout, and one carrying a ``Nats-Msg-Id`` is sent again as soon as the
connection is back (the stream drops the duplicate if the first one was stored).

:class:`JetStreamPublisher` is a mixin of :class:`~polyn.nats.NatsTransport`; it uses the
transport's request machinery, declared below for the type checker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import outcome
import trio

from polyn.errors import AckLost, NatsConnectionError, RequestTimeout, StreamError
from polyn.nats._bridge import Waiter
from polyn.nats.jsapi import api_error
from polyn.nats.message import Message
from polyn.nats.transport import PubAck

if TYPE_CHECKING:
    from polyn.nats.nats_transport import ConnectionState

__all__ = ["AckLost", "JetStreamPublisher"]

log = logging.getLogger("polyn.nats")




class JetStreamPublisher:
    """``js_publish`` for :class:`~polyn.nats.NatsTransport` (a mixin: see the module doc)."""

    state: ConnectionState
    _replies: dict[str, Waiter[Message]]
    # JetStream publishes waiting for their ack: failed at once when the connection drops
    # (the ack is lost with it), then sent again on reconnect (see js_publish).
    _acks_in_flight: set[str]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _check_publish(
            self, subject: str, data: bytes, headers: Mapping[str, str] | None
        ) -> dict[str, str] | None: ...

        async def _request(
            self,
            subject: str,
            data: bytes,
            headers: dict[str, str] | None,
            timeout: float,
            *,
            ack: bool = False,
        ) -> Message: ...

    async def js_publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> PubAck:
        hdrs = self._check_publish(subject, data, headers)
        deadline = trio.current_time() + timeout
        msg_id = hdrs.get("Nats-Msg-Id") if hdrs else None
        while True:
            await self._wait_connected(deadline, subject)
            try:
                reply = await self._request(
                    subject, data, hdrs, max(0.0, deadline - trio.current_time()), ack=True
                )
                break
            except AckLost:
                # Whether the server stored it is unknown. With a Nats-Msg-Id, sending it again
                # once reconnected is safe (the stream drops a duplicate) and far quicker than
                # waiting out the timeout for an ack that can no longer come.
                if not msg_id:
                    raise NatsConnectionError(
                        f"the connection dropped before JetStream acknowledged the publish to "
                        f"{subject!r}; it may or may not be stored (send a Nats-Msg-Id header "
                        "to have it retried safely)"
                    ) from None
                log.info("connection lost before the ack of %s: sending it again", msg_id)
        if reply.headers.get("Status") == "503":
            raise StreamError(f"no JetStream stream captures the subject {subject!r}", code=503)
        try:
            raw = json.loads(reply.data)
        except ValueError as exc:
            raise StreamError(f"unexpected reply to a JetStream publish: {reply.data!r}") from exc
        if "error" in raw:
            raise api_error(raw, f"publishing to {subject!r}", StreamError)
        return PubAck(
            stream=raw["stream"],
            seq=raw["seq"],
            duplicate=bool(raw.get("duplicate", False)),
            domain=raw.get("domain"),
        )

    async def _jsapi_request(self, subject: str, data: bytes, *, timeout: float) -> Message:
        """One request of the JetStream API client (:class:`~polyn.nats.jsapi.JetStreamApi`)."""
        return await self._request(subject, data, None, timeout)

    async def _wait_connected(self, deadline: float, subject: str) -> None:
        """Wait (polling, off the hot path) until connected; RequestTimeout at ``deadline``."""
        while not self.state.connected:
            self._check_open()
            if trio.current_time() >= deadline:
                raise RequestTimeout(
                    f"no JetStream acknowledgement for the publish to {subject!r}: "
                    "disconnected from NATS until the timeout"
                )
            await trio.sleep(min(0.05, max(0.0, deadline - trio.current_time())))

    def _fail_acks_in_flight(self) -> None:  # trio thread
        error = AckLost("the connection dropped before JetStream acknowledged the publish")
        for token in list(self._acks_in_flight):
            waiter = self._replies.pop(token, None)
            if waiter is not None:
                waiter._set(outcome.Error(error))
        self._acks_in_flight.clear()
