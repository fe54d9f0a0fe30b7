"""The real transport: nats-py on an asyncio loop of its own, driven from trio in batches.

See :mod:`polyn.nats._bridge` for the crossing mechanism and why it batches. What goes where:

- core publishes, acknowledgements, requests, JetStream publishes and pull requests are all
  *publishes*: their PUB frames are encoded in trio (:func:`polyn.nats._wire.encode_publish`),
  queued into one :class:`~polyn.nats._bridge.Outbox` and written in the order they were queued,
  by the trio thread itself when the socket is idle (no thread wake-up at all), else by the
  loop;
- replies of every kind (requests, JetStream publish acks, JetStream API answers, pulled messages)
  arrive on one wildcard inbox subscription and are routed by token to the trio task waiting for
  them; many replies share one wake-up of trio;
- subscriptions and key-value watches deliver into :class:`~polyn.nats._bridge.Inbox` channels;
- JetStream management and key-value operations, which are not hot, run as one coroutine each on
  the loop (:meth:`~polyn.nats._bridge.LoopThread.run`).

The other concerns live in modules of their own, mixed into :class:`NatsTransport`: JetStream
publish with ack (:mod:`~polyn.nats._js_publish`), pull (:mod:`~polyn.nats._pull`), key-value
(:mod:`~polyn.nats._kv`), the JetStream API client (:mod:`~polyn.nats.jsapi`); connect options
and TLS (:mod:`~polyn.nats.options`), errors (:mod:`~polyn.nats._errors`) and every use of
nats-py internals (:mod:`~polyn.nats._wire`).

Nothing from nats-py or asyncio leaves this module: messages are :class:`~polyn.nats.Message`,
results are plain values, and errors are translated into :mod:`polyn.errors`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import nats
import nats.errors
import nats.js.errors
import outcome
import trio
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg

from polyn.config import redact_url
from polyn.errors import (
    NatsConnectionError,
    NoRespondersError,
    PermissionDeniedError,
    PolynError,
    RequestTimeout,
)
from polyn.nats import _wire
from polyn.nats._bridge import Inbox, InboxSubscription, LoopThread, Outbox, Waiter
from polyn.nats._connect import FirstConnect
from polyn.nats._errors import PERMISSION_RE, translate
from polyn.nats._js_publish import JetStreamPublisher
from polyn.nats._kv import KeyValueClient
from polyn.nats._pull import PullClient, Puller
from polyn.nats.jsapi import JetStreamApi
from polyn.nats.limits import PayloadTooLargeError, check_subject, checked_headers
from polyn.nats.message import Message
from polyn.nats.transport import Subscription

__all__ = ["ConnectionState", "NatsTransport", "PayloadTooLargeError"]

log = logging.getLogger("polyn.nats")
T = TypeVar("T")




@attrs.define
class ConnectionState:
    """The connection's health, kept current by nats-py's callbacks."""

    connected: bool = False
    url: str | None = None
    disconnects: int = 0
    reconnects: int = 0
    last_error: str | None = None
    closed: bool = False
    dropped: int = 0  # core NATS messages dropped because a subscriber fell too far behind


class NatsTransport(JetStreamApi, JetStreamPublisher, PullClient, KeyValueClient):
    """The real :class:`~polyn.nats.Transport`: one nats-py connection on its own thread.

    Create it inside a trio run with :meth:`connect` and close it with :meth:`close`; the
    ``NatsConnection`` actor does both for a Polyn app. ``options`` pass through to
    ``nats.connect`` (``user``, ``password``, ``token``, ``user_credentials``, ``nkeys_seed``,
    ``tls``, ``name``, ``max_reconnect_attempts``, ``reconnect_time_wait``, ...).

    Example::

        transport = await NatsTransport.connect(["nats://127.0.0.1:4222"])
        try:
            await transport.publish("greetings", b"hello")
        finally:
            await transport.close()
    """

    def __init__(self, servers: Sequence[str], options: Mapping[str, Any]) -> None:
        JetStreamApi.__init__(self, self._jsapi_request)
        self._servers = list(servers)
        self._options = dict(options)
        self.state = ConnectionState()
        self._bridge = LoopThread(name=f"polyn-nats-{id(self):x}")
        self._nc: Client | None = None
        self._fast = bool(self._options.pop("fast", True))
        self._first = FirstConnect(self._servers, self._options, self._fast)
        self._writer: _wire.DirectWriter | None = None
        self._outbox = Outbox(
            self._bridge,
            write_one=self._write,
            write_batch=self._write_batch,
            can_write_batch=self._can_write_batch,
            direct=self._direct_writer,
        )
        self._replies: dict[str, Waiter[Message]] = {}
        self._acks_in_flight: set[str] = set()
        self._pullers: dict[tuple[str, str], Puller] = {}
        self._tokens = itertools.count(1)
        self._reply_prefix = ""
        self._closed = False
        self._closed_event = trio.Event()
        self._close_reason: str | None = None
        self._denied: dict[str, str] = {}  # subject -> server's permission error text
        self._kv_cache: dict[str, Any] = {}
        self._max_payload = 1024 * 1024

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, servers: str | Sequence[str] = "nats://127.0.0.1:4222", **options: Any
    ) -> NatsTransport:
        """Connect to ``servers`` and return the running transport.

        Raises :class:`~polyn.errors.NatsConnectionError` when no server can be reached or the
        server refuses the credentials.
        """
        transport = cls([servers] if isinstance(servers, str) else servers, options)
        transport._bridge.start()
        try:
            await transport._bridge.run(transport._connect, translate)
        except BaseException:
            await transport._bridge.stop()
            raise
        return transport

    async def _connect(self) -> None:  # loop thread
        callbacks = {
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }
        nc = await self._first.connect(callbacks, lambda: self.state.last_error)
        self._nc = nc
        self._fast = self._fast and _wire.supported(nc)
        self._max_payload = nc.max_payload
        prefix = nc.new_inbox()
        self._reply_prefix = prefix + "."
        await self._nats_subscribe(prefix + ".*", None, self._on_reply)
        self._install_writer()
        self._drainer = self._outbox.start()
        self.state.connected = True
        self.state.url = _url_of(nc)

    async def close(self) -> None:
        """Flush what is queued, close the connection and end the loop thread."""
        if self._closed:
            await self._bridge.stop()
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            try:
                if self._nc is not None and not self._nc.is_closed:
                    with trio.move_on_after(5):
                        await self._outbox.drained()
                        await self._bridge.run(self._close_nc, translate)
            except PolynError as exc:
                log.debug("closing the NATS connection: %s", exc)
            finally:
                await self._bridge.stop()
                self.state.connected = False
                self.state.closed = True
                self._closed_event.set()

    async def _close_nc(self) -> None:  # loop thread
        assert self._nc is not None
        try:
            await self._nc.flush(timeout=2)
        except Exception:
            pass
        await self._nc.close()

    @property
    def closed(self) -> bool:
        return self._closed or self.state.closed

    async def wait_closed(self) -> str:
        """Wait until the connection is closed for good; return why."""
        await self._closed_event.wait()
        return self._close_reason or "closed"

    @property
    def loop_thread(self) -> threading.Thread:
        """The thread running nats-py (for tests and diagnostics)."""
        return self._bridge.thread

    @property
    def connected_url(self) -> str | None:
        return self.state.url if self.state.connected else None

    @property
    def max_payload(self) -> int:
        return self._max_payload

    def __repr__(self) -> str:
        where = self.state.url or ", ".join(redact_url(s) for s in self._servers)
        return f"<NatsTransport {where} connected={self.state.connected}>"

    # -- nats-py callbacks (loop thread) ------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        self.state.last_error = text or type(exc).__name__
        self._first.on_error(exc, self.state.last_error)
        match = PERMISSION_RE.search(text)
        if match:
            subject = match.group(2)
            self._bridge.to_trio(self._record_denied, subject, text)
        elif not isinstance(exc, nats.errors.SlowConsumerError):
            # While the first connect tries, its final error says it all (once): each try's
            # error is a detail for debugging.
            level = logging.WARNING if self._first.done else logging.DEBUG
            log.log(level, "NATS connection error: %s", self.state.last_error)
        else:
            log.warning("slow consumer, messages dropped on %s", getattr(exc, "subject", "?"))

    def _record_denied(self, subject: str, text: str) -> None:  # trio thread
        # nats-py 2.x lowercases the server's whole error text, subject included, so subjects
        # are compared in lower case (a subject differing only in case would be refused too).
        subject = subject.lower()
        self._denied[subject] = text
        error = PermissionDeniedError(f"the NATS server refused access to {subject!r}: {text}")
        for token, entry in list(self._replies.items()):
            if (
                isinstance(entry, Waiter)
                and isinstance(entry.tag, str)
                and (entry.tag.lower() == subject)
            ):
                self._replies.pop(token, None)
                entry._set(outcome.Error(error))

    async def _on_disconnected(self) -> None:
        if self.state.connected:
            self.state.disconnects += 1
        self.state.connected = False
        self._outbox.pause(True)
        self._bridge.to_trio(self._fail_acks_in_flight)

    async def _on_reconnected(self) -> None:
        self.state.reconnects += 1
        self.state.connected = True
        if self._nc is not None:
            self.state.url = _url_of(self._nc)
        self._install_writer()
        self._outbox.pause(False)

    async def _on_closed(self) -> None:
        self.state.connected = False
        self.state.closed = True
        if not self._closed:
            reason = f"the NATS connection closed for good: {self.state.last_error or 'closed'}"
            self._close_reason = reason
            self._bridge.to_trio(self._closed_event.set)

    # -- the outgoing pump -------------------------------------------------------------------

    def _op(
        self, subject: str, data: bytes, reply: str, headers: Mapping[str, str] | None
    ) -> tuple[Any, ...]:
        """A publish as the outbox queues it (trio thread): the encoded frame when the internals
        are used, else the arguments of nats-py's ``publish``."""
        if self._fast:
            return (_wire.encode_publish(subject, reply, data, headers), len(data))
        return (subject, data, reply, headers)

    def _install_writer(self) -> None:  # loop thread, on (re)connect
        writer = _wire.DirectWriter.install(self._nc) if self._fast and self._nc else None
        self._writer = writer
        self._outbox.use_lock(writer.lock if writer is not None else None)

    def _direct_writer(self) -> _wire.DirectWriter | None:  # trio thread
        writer = self._writer
        return writer if writer is not None and writer.current() else None

    def _can_write_batch(self) -> bool:  # loop thread
        return self._fast and self._nc is not None and _wire.writable_now(self._nc)

    def _write_batch(self, ops: list[tuple[Any, ...]]) -> None:  # loop thread
        assert self._nc is not None
        frames = [op[0] for op in ops]
        _wire.write_frames(self._nc, frames, len(ops), sum(op[1] for op in ops))

    async def _nats_subscribe(
        self, subject: str, queue: str | None, deliver: Callable[[NatsMsg], None]
    ) -> Any:  # loop thread
        """Subscribe with nats-py, delivering each message to ``deliver`` on the loop thread."""
        assert self._nc is not None
        return await _wire.direct_subscribe(self._nc, subject, queue, deliver, direct=self._fast)

    async def _write(self, op: tuple[Any, ...]) -> None:  # loop thread
        nc = self._nc
        assert nc is not None
        try:
            if self._fast:
                await _wire.queue_frame(nc, op[0], op[1])
            else:
                subject, data, reply, headers = op
                await nc.publish(subject, data, reply, headers)
        except nats.errors.Error as exc:
            self.state.last_error = f"publish failed: {exc!r}"
            log.warning("%s", self.state.last_error)

    # -- checks (trio thread) -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self.state.closed:
            raise NatsConnectionError(
                self._close_reason or "the NATS connection is closed; start a new one"
            )

    def _check_publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None
    ) -> dict[str, str] | None:
        self._check_open()
        check_subject(subject)
        denied = self._denied.get(subject.lower()) if self._denied else None
        if denied is not None:
            raise PermissionDeniedError(
                f"the NATS server refused publishing to {subject!r}: {denied}"
            )
        return checked_headers(subject, data, headers, self._max_payload) or None

    def _new_token(self) -> str:
        return str(next(self._tokens))

    # -- core NATS ----------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Queue a core publish; returns once queued (waits only while the queue is full)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        hdrs = self._check_publish(subject, data, headers)
        if reply_to is not None:
            check_subject(reply_to, "reply subject")
        if self._outbox.full:
            await self._outbox.wait_for_room()
        self._outbox.put(self._op(subject, data, reply_to or "", hdrs))

    def enqueue_ack(self, subject: str, body: bytes) -> None:
        """Queue a JetStream acknowledgement (used by :class:`~polyn.nats.Message`)."""
        self._check_open()
        self._outbox.put(self._op(subject, body, "", None))

    async def ack_and_wait(self, subject: str, body: bytes, timeout: float) -> None:
        await self._request(subject, body, None, timeout)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Message:
        hdrs = self._check_publish(subject, data, headers)
        reply = await self._request(subject, data, hdrs, timeout)
        if reply.headers.get("Status") == "503":
            raise NoRespondersError(f"no responders are subscribed to {subject!r}")
        return reply

    async def _request(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        ack: bool = False,
    ) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        token = self._new_token()
        waiter: Waiter[Message] = Waiter(tag=subject)
        self._replies[token] = waiter
        if ack:
            self._acks_in_flight.add(token)
        try:
            if self._outbox.full:
                await self._outbox.wait_for_room()
            self._outbox.put(self._op(subject, data, self._reply_prefix + token, headers))
            with trio.fail_after(timeout):
                return await waiter.wait()
        except trio.TooSlowError:
            raise RequestTimeout(
                f"no reply to the request on {subject!r} within {timeout} s"
            ) from None
        finally:
            self._replies.pop(token, None)
            if ack:
                self._acks_in_flight.discard(token)

    async def subscribe(
        self, subject: str, *, queue: str | None = None, max_pending: int = 65_536
    ) -> Subscription:
        self._check_open()
        check_subject(subject)
        inbox: Inbox[Message] = Inbox(self._bridge, limit=max_pending)
        convert = self._convert
        state = self.state

        def deliver(msg: NatsMsg) -> None:
            if not inbox.offer(convert(msg)):
                # A core NATS subscriber that falls this far behind loses messages, as with the
                # server's own slow-consumer limit; say so rather than drop silently.
                state.dropped += 1
                if state.dropped == 1 or state.dropped % 10_000 == 0:
                    log.warning(
                        "slow consumer on %r: %d messages waiting, %d dropped so far",
                        subject,
                        len(inbox),
                        state.dropped,
                    )

        async def start() -> Any:
            sub = await self._nats_subscribe(subject, queue, deliver)
            assert self._nc is not None
            # Interest is registered on the server before subscribe() returns, so a message
            # published after it (by anyone) is received.
            await self._nc.flush()
            return sub

        sub = await self._bridge.run(start, translate)

        async def unsubscribe() -> None:
            if not self._bridge.alive:
                return

            async def stop() -> None:
                try:
                    await sub.unsubscribe()
                except nats.errors.Error:
                    pass

            try:
                await self._bridge.run(stop, translate)
            except NatsConnectionError:
                pass

        inbox._on_close = unsubscribe
        return InboxSubscription(inbox, subject, queue)

    async def flush(self, timeout: float = 5.0) -> None:
        self._check_open()
        await self._outbox.drained()

        async def flush() -> None:
            assert self._nc is not None
            await self._nc.flush(timeout=max(1, int(timeout)))

        await self._bridge.run(flush, translate)

    # -- replies (loop thread) ----------------------------------------------------------------

    def _convert(self, msg: NatsMsg) -> Message:
        return Message(msg.subject, msg.data, msg.reply or None, msg.headers or {}, self)

    def _on_reply(self, msg: NatsMsg) -> None:
        entry = self._replies.pop(msg.subject[len(self._reply_prefix) :], None)
        if entry is not None:  # else the waiter gave up (timeout or cancellation)
            self._bridge.resolve(entry, outcome.Value(self._convert(msg)))

def _url_of(nc: Client) -> str | None:
    url = nc.connected_url
    if url is None:
        return None
    scheme = url.scheme or "nats"
    return f"{scheme}://{url.hostname}:{url.port}"
