"""The real transport: nats-py on an asyncio loop of its own, driven from trio in batches.

See :mod:`polyn.nats._bridge` for the crossing mechanism and why it batches. What goes where:

- core publishes, acknowledgements, requests, JetStream publishes and pull requests are all
  *publishes*, queued into one :class:`~polyn.nats._bridge.Outbox` and written by one drainer task
  on the loop, in the order they were queued;
- replies of every kind (requests, JetStream publish acks, JetStream API answers, pulled messages)
  arrive on one wildcard inbox subscription and are routed by token to the trio task waiting for
  them; many replies share one wake-up of trio;
- subscriptions and key-value watches deliver into :class:`~polyn.nats._bridge.Inbox` channels;
- JetStream management and key-value operations, which are not hot, run as one coroutine each on
  the loop (:meth:`~polyn.nats._bridge.LoopThread.run`).

Nothing from nats-py or asyncio leaves this module: messages are :class:`~polyn.nats.Message`,
results are plain values, and errors are translated into :mod:`polyn.errors`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import json
import logging
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import attrs
import nats
import nats.errors
import nats.js.errors
import outcome
import trio
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.js.api import KeyValueConfig

from polyn.errors import (
    BucketNotFoundError,
    ConfigError,
    ConsumerError,
    JetStreamError,
    NamingError,
    NatsConnectionError,
    NoRespondersError,
    PermissionDeniedError,
    PolynError,
    RequestTimeout,
    StreamError,
)
from polyn.nats import _wire, kv_cas
from polyn.nats._bridge import Inbox, LoopThread, Outbox, Waiter
from polyn.nats.message import Message
from polyn.nats.transport import ConsumerInfo, KvEntry, KvWatch, PubAck, StreamInfo, Subscription

__all__ = ["ConnectionState", "NatsTransport", "PayloadTooLargeError"]

log = logging.getLogger("polyn.nats")
T = TypeVar("T")

_STREAM_DURATIONS = ("max_age", "duplicate_window", "subject_delete_marker_ttl")
_CONSUMER_DURATIONS = ("ack_wait", "idle_heartbeat", "inactive_threshold", "max_expires")
# nats-server says "Permissions Violation for Publish to ..."; nats-py 2.x lowercases it.
_PERMISSION_RE = re.compile(
    r"Permissions Violation for (Publish|Subscription) to \"?([^\"\s]+)", re.IGNORECASE
)
_BAD_SUBJECT_CHARS = re.compile(r"[\s]")
_KV_OPERATIONS: dict[str, Literal["PUT", "DEL", "PURGE"]] = {
    "PUT": "PUT",
    "DEL": "DEL",
    "PURGE": "PURGE",
}
# How much longer than a pull request's own expiry we wait for the server's answer before
# assuming the request was lost (for example in a reconnect).
_FETCH_GRACE = 2.0


class PayloadTooLargeError(NatsConnectionError):
    """A message is larger than the server's ``max_payload``."""


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


@functools.lru_cache(maxsize=4096)  # a pure check, memoised: subjects repeat on the hot path
def _subject_ok(subject: str) -> bool:
    return not (
        not subject
        or _BAD_SUBJECT_CHARS.search(subject)
        or ".." in subject
        or subject[0] == "."
        or subject[-1] == "."
    )


def _check_subject(subject: str, what: str = "subject") -> None:
    if type(subject) is not str or not _subject_ok(subject):
        raise NamingError(f"{subject!r} is not a valid NATS {what}")


def _checked_headers(
    subject: str, data: bytes, headers: Mapping[str, str] | None, max_payload: int
) -> dict[str, str]:
    """A copy of ``headers`` after checking that the message fits ``max_payload`` (as nats-py
    counts it); shared with the sandbox's MockNats so both refuse the same messages."""
    size = len(data)
    hdrs = dict(headers) if headers else {}
    if hdrs:
        size += sum(len(k) + len(v) + 4 for k, v in hdrs.items()) + 12
    if size > max_payload:
        raise PayloadTooLargeError(
            f"a message of {size} bytes on {subject!r} exceeds the server's max_payload of "
            f"{max_payload} bytes"
        )
    return hdrs


def _seconds_to_ns(config: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if v is not None}
    for field in fields:
        if field in out:
            out[field] = int(float(out[field]) * 1_000_000_000)
    if "backoff" in out:
        out["backoff"] = [int(float(b) * 1_000_000_000) for b in out["backoff"]]
    return out


def _ns_to_seconds(config: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    out = dict(config)
    for field in fields:
        if isinstance(out.get(field), int):
            out[field] = out[field] / 1_000_000_000
    if isinstance(out.get("backoff"), list):
        out["backoff"] = [b / 1_000_000_000 for b in out["backoff"]]
    return out


def _stream_info(raw: Mapping[str, Any]) -> StreamInfo:
    config = _ns_to_seconds(raw.get("config") or {}, _STREAM_DURATIONS)
    return StreamInfo(
        name=config.get("name", ""),
        config=config,
        state=raw.get("state") or {},
        cluster=raw.get("cluster"),
    )


def _consumer_info(raw: Mapping[str, Any]) -> ConsumerInfo:
    config = _ns_to_seconds(raw.get("config") or {}, _CONSUMER_DURATIONS)
    return ConsumerInfo(
        stream=raw.get("stream_name", ""),
        name=raw.get("name", ""),
        config=config,
        num_pending=raw.get("num_pending", 0),
        num_ack_pending=raw.get("num_ack_pending", 0),
        num_redelivered=raw.get("num_redelivered", 0),
        num_waiting=raw.get("num_waiting", 0),
        raw=raw,
    )


def translate(exc: BaseException) -> BaseException:
    """Turn a nats-py or asyncio exception into a Polyn error (others pass through)."""
    if isinstance(exc, PolynError | trio.Cancelled):
        return exc
    if isinstance(exc, nats.js.errors.BucketNotFoundError):
        err: PolynError = BucketNotFoundError(f"key-value bucket not found: {exc}")
    elif isinstance(exc, nats.js.errors.NotFoundError):
        err = StreamError(
            str(exc) or "not found", code=404, err_code=getattr(exc, "err_code", None)
        )
    elif isinstance(exc, nats.js.errors.APIError):
        err = JetStreamError(
            exc.description or str(exc), code=exc.code, err_code=getattr(exc, "err_code", None)
        )
    elif isinstance(exc, nats.errors.NoRespondersError):
        err = NoRespondersError("no responders")
    elif isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError | TimeoutError):
        err = RequestTimeout(f"NATS operation timed out: {type(exc).__name__}")
    elif isinstance(exc, nats.errors.AuthorizationError):
        err = NatsConnectionError(f"the NATS server refused the credentials: {exc}")
    elif isinstance(exc, nats.errors.Error | OSError | asyncio.CancelledError):
        err = NatsConnectionError(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
    else:
        return exc
    err.__cause__ = exc if not isinstance(exc, asyncio.CancelledError) else None
    return err


def _api_error(raw: Mapping[str, Any], what: str, kind: type[JetStreamError]) -> JetStreamError:
    error = raw.get("error") or {}
    description = error.get("description") or "unknown error"
    err_code = error.get("err_code")
    code = error.get("code")
    if err_code == 10059 or (kind is StreamError and code == 404):
        return StreamError(f"{what}: {description}", code=code, err_code=err_code)
    if err_code == 10014:
        return ConsumerError(f"{what}: {description}", code=code, err_code=err_code)
    return kind(f"{what}: {description}", code=code, err_code=err_code)


class _Fetch:
    """One pull request in flight: its reply subject and the messages delivered for it."""

    __slots__ = ("batch", "error", "messages", "reply", "waiter")

    def __init__(self, batch: int, reply: str) -> None:
        self.batch = batch
        self.reply = reply
        self.waiter: Waiter[None] = Waiter()
        self.messages: list[Message] = []
        self.error: BaseException | None = None


class _Puller:
    """The pull inbox of one durable consumer; its fetches run one at a time.

    Pulled messages arrive with their original subject, so they cannot be told apart by reply
    token: they belong to the fetch in flight. Messages arriving when none is in flight (late
    deliveries for a request that was cancelled) are stashed and returned by the next fetch, so
    they are not left waiting for ``ack_wait``. Status messages (no messages, expired, errors)
    do carry the request's reply subject and end only their own request.
    """

    def __init__(self, inbox: str) -> None:
        self.inbox = inbox
        self.lock = trio.Lock()  # trio side: one fetch at a time
        self.mutex = threading.Lock()  # guards current and stash across the two threads
        self.current: _Fetch | None = None
        self.stash: collections.deque[Message] = collections.deque()
        self.subscription: Any = None


class _SubscriptionChannel(Subscription):
    def __init__(self, inbox: Inbox[Message], subject: str, queue: str | None) -> None:
        self._inbox = inbox
        self.subject = subject
        self.queue = queue

    async def receive(self) -> Message:
        return await self._inbox.receive()

    async def receive_batch(self, max_items: int) -> list[Message]:
        return await self._inbox.receive_batch(max_items)

    def receive_nowait(self) -> Message:
        return self._inbox.receive_nowait()

    @property
    def pending(self) -> int:
        return len(self._inbox)

    async def aclose(self) -> None:
        await self._inbox.aclose()


class _KvWatchChannel(KvWatch):
    def __init__(self, inbox: Inbox[KvEntry], initial: dict[str, bytes]) -> None:
        self._inbox = inbox
        self.initial = initial

    async def receive(self) -> KvEntry:
        return await self._inbox.receive()

    async def aclose(self) -> None:
        await self._inbox.aclose()


class NatsTransport:
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
        self._servers = list(servers)
        self._options = dict(options)
        self.state = ConnectionState()
        self._bridge = LoopThread(name=f"polyn-nats-{id(self):x}")
        self._nc: Client | None = None
        self._fast = bool(self._options.pop("fast", True))
        self._outbox = Outbox(
            self._bridge,
            write_one=self._write,
            write_batch=self._write_batch,
            can_write_batch=self._can_write_batch,
        )
        self._replies: dict[str, Waiter[Message]] = {}
        self._pullers: dict[tuple[str, str], _Puller] = {}
        self._tokens = itertools.count(1)
        self._reply_prefix = ""
        self._closed = False
        self._closed_event = trio.Event()
        self._close_reason: str | None = None
        self._denied: dict[str, str] = {}  # subject -> server's permission error text
        self._kv_cache: dict[str, Any] = {}
        # Set when the server refuses us during the first connect (TLS handshake, credentials):
        # trying again cannot help. Bound to the loop on first use.
        self._refused = asyncio.Event()
        self._refusal: str | None = None
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
        options = dict(self._options)
        options.setdefault("name", "polyn-python")
        options.setdefault("reconnect_time_wait", 0.5)
        options.setdefault("connect_timeout", 2)
        # Once connected, reconnect forever by default (health() shows the outage); but the
        # first connection is tried only a few times, so a wrong URL or credentials fail the
        # start with a clear error instead of hanging.
        reconnect_attempts = options.pop("max_reconnect_attempts", -1)
        options["max_reconnect_attempts"] = options.pop("connect_attempts", 2)
        nc = Client()
        servers = ", ".join(redact_url(s) for s in self._servers)
        connecting = asyncio.ensure_future(
            nc.connect(
                servers=self._servers,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                **options,
            )
        )
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            if not connecting.done():
                # Refused: wrong credentials or a failed TLS handshake (wrong CA, no client
                # certificate) will not succeed on the next attempt; and nats-py 2.x never
                # returns from connect after a failed handshake: it waits forever for the
                # broken socket to close (nats-io/nats.py#718).
                connecting.cancel()
        try:
            await connecting
        except (TimeoutError, nats.errors.Error, OSError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not self._refused.is_set():
                raise  # the caller was cancelled
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(nc.close(), 2)
            # The refusal, not the connection reset that follows it, is what the user must see.
            reason = self._refusal or self.state.last_error or f"{type(exc).__name__} {exc}".strip()
            raise NatsConnectionError(f"could not connect to NATS at {servers}: {reason}") from None
        nc.options["max_reconnect_attempts"] = reconnect_attempts
        self._nc = nc
        self._fast = self._fast and _wire.supported(nc)
        self._max_payload = nc.max_payload
        prefix = nc.new_inbox()
        self._reply_prefix = prefix + "."
        await self._nats_subscribe(prefix + ".*", None, self._on_reply)
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
        if self._nc is None and self._refusal is None:  # during the first connect
            if isinstance(exc, ssl.SSLError):
                self._refusal = f"TLS handshake failed: {self.state.last_error}"
            elif isinstance(exc, nats.errors.AuthorizationError) or (
                "authorization violation" in text.lower()
            ):
                self._refusal = f"the server refused the credentials: {self.state.last_error}"
            if self._refusal is not None:
                self._refused.set()
        match = _PERMISSION_RE.search(text)
        if match:
            subject = match.group(2)
            self._bridge.to_trio(self._record_denied, subject, text)
        elif not isinstance(exc, nats.errors.SlowConsumerError):
            log.warning("NATS connection error: %s", self.state.last_error)
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

    async def _on_reconnected(self) -> None:
        self.state.reconnects += 1
        self.state.connected = True
        if self._nc is not None:
            self.state.url = _url_of(self._nc)
        self._outbox.pause(False)

    async def _on_closed(self) -> None:
        self.state.connected = False
        self.state.closed = True
        if not self._closed:
            reason = f"the NATS connection closed for good: {self.state.last_error or 'closed'}"
            self._close_reason = reason
            self._bridge.to_trio(self._closed_event.set)

    # -- the outgoing pump (loop thread) ------------------------------------------------------

    def _can_write_batch(self) -> bool:
        return self._fast and self._nc is not None and _wire.writable_now(self._nc)

    def _write_batch(self, ops: list[tuple[Any, ...]]) -> None:
        nc = self._nc
        assert nc is not None
        encode = _wire.encode_publish
        transport = nc._transport
        assert transport is not None
        transport.writelines([encode(op[0], op[2] or "", op[1], op[3]) for op in ops])
        nc.stats["out_msgs"] += len(ops)
        nc.stats["out_bytes"] += sum(len(op[1]) for op in ops)

    async def _nats_subscribe(
        self, subject: str, queue: str | None, deliver: Callable[[NatsMsg], None]
    ) -> Any:  # loop thread
        """Subscribe with nats-py, delivering each message to ``deliver`` on the loop thread."""
        nc = self._nc
        assert nc is not None
        if self._fast:
            sub = await nc.subscribe(subject, queue=queue or "")
            earlier = sub._pending_queue
            sub._pending_queue = cast(Any, _wire.DirectQueue(sub, deliver))
            while not earlier.empty():  # delivered before the swap (rare): keep their order
                deliver(earlier.get_nowait())
            return sub

        async def callback(msg: NatsMsg) -> None:
            deliver(msg)

        return await nc.subscribe(
            subject, queue=queue or "", cb=callback, pending_msgs_limit=1_000_000
        )

    async def _write(self, op: tuple[Any, ...]) -> None:
        subject, data, reply, headers = op
        nc = self._nc
        assert nc is not None
        try:
            await nc.publish(subject, data, reply, headers)
        except nats.errors.Error as exc:
            self.state.last_error = f"publish to {subject!r} failed: {exc!r}"
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
        _check_subject(subject)
        denied = self._denied.get(subject.lower()) if self._denied else None
        if denied is not None:
            raise PermissionDeniedError(
                f"the NATS server refused publishing to {subject!r}: {denied}"
            )
        return _checked_headers(subject, data, headers, self._max_payload) or None

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
            _check_subject(reply_to, "reply subject")
        if self._outbox.full:
            await self._outbox.wait_for_room()
        self._outbox.put((subject, data, reply_to or "", hdrs))

    def enqueue_ack(self, subject: str, body: bytes) -> None:
        """Queue a JetStream acknowledgement (used by :class:`~polyn.nats.Message`)."""
        self._check_open()
        self._outbox.put((subject, body, "", None))

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
        self, subject: str, data: bytes, headers: dict[str, str] | None, timeout: float
    ) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        token = self._new_token()
        waiter: Waiter[Message] = Waiter(tag=subject)
        self._replies[token] = waiter
        try:
            if self._outbox.full:
                await self._outbox.wait_for_room()
            self._outbox.put((subject, data, self._reply_prefix + token, headers))
            with trio.fail_after(timeout):
                return await waiter.wait()
        except trio.TooSlowError:
            raise RequestTimeout(
                f"no reply to the request on {subject!r} within {timeout} s"
            ) from None
        finally:
            self._replies.pop(token, None)

    async def subscribe(
        self, subject: str, *, queue: str | None = None, max_pending: int = 65_536
    ) -> Subscription:
        self._check_open()
        _check_subject(subject)
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
        return _SubscriptionChannel(inbox, subject, queue)

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

    def _on_pulled(self, puller: _Puller, msg: NatsMsg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        with puller.mutex:
            current = puller.current
            if status is None:
                message = self._convert(msg)
                if current is None:
                    puller.stash.append(message)
                    return
                current.messages.append(message)
                if len(current.messages) < current.batch:
                    return
            elif current is None or msg.subject != current.reply or status == "100":
                return  # the end of an earlier request, or an idle heartbeat
            elif status not in ("404", "408"):
                description = (msg.headers or {}).get("Description", "")
                if status == "503":
                    current.error = ConsumerError(
                        "the consumer does not exist (no responders)", code=503
                    )
                else:
                    current.error = ConsumerError(
                        f"pull request ended: {status} {description}".strip(), code=int(status)
                    )
            puller.current = None
        self._bridge.resolve(current.waiter, outcome.Value(None))

    # -- JetStream ----------------------------------------------------------------------------

    async def js_publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> PubAck:
        hdrs = self._check_publish(subject, data, headers)
        reply = await self._request(subject, data, hdrs, timeout)
        if reply.headers.get("Status") == "503":
            raise StreamError(f"no JetStream stream captures the subject {subject!r}", code=503)
        try:
            raw = json.loads(reply.data)
        except ValueError as exc:
            raise StreamError(f"unexpected reply to a JetStream publish: {reply.data!r}") from exc
        if "error" in raw:
            raise _api_error(raw, f"publishing to {subject!r}", StreamError)
        return PubAck(
            stream=raw["stream"],
            seq=raw["seq"],
            duplicate=bool(raw.get("duplicate", False)),
            domain=raw.get("domain"),
        )

    async def _api(
        self,
        subject: str,
        payload: Mapping[str, Any] | None,
        what: str,
        kind: type[JetStreamError],
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            reply = await self._request("$JS.API." + subject, data, None, timeout)
        except RequestTimeout as exc:
            raise kind(f"{what}: JetStream did not answer within {timeout} s") from exc
        if reply.headers.get("Status") == "503":
            raise NatsConnectionError(
                f"{what}: JetStream is not enabled on the NATS server (no responders)"
            )
        raw: dict[str, Any] = json.loads(reply.data)
        if "error" in raw:
            raise _api_error(raw, what, kind)
        return raw

    async def stream_names(self, subject: str | None = None) -> list[str]:
        names: list[str] = []
        offset = 0
        while True:
            payload: dict[str, Any] = {"offset": offset}
            if subject is not None:
                payload["subject"] = subject
            raw = await self._api("STREAM.NAMES", payload, "listing streams", StreamError)
            page = raw.get("streams") or []
            names.extend(page)
            offset += len(page)
            if not page or offset >= raw.get("total", 0):
                return names

    async def stream_info(self, name: str) -> StreamInfo:
        raw = await self._api(f"STREAM.INFO.{name}", None, f"stream {name!r}", StreamError)
        return _stream_info(raw)

    async def create_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        name = _required_name(config, "name", "stream")
        body = _seconds_to_ns(config, _STREAM_DURATIONS)
        raw = await self._api(
            f"STREAM.CREATE.{name}", body, f"creating stream {name!r}", StreamError
        )
        return _stream_info(raw)

    async def update_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        name = _required_name(config, "name", "stream")
        body = _seconds_to_ns(config, _STREAM_DURATIONS)
        raw = await self._api(
            f"STREAM.UPDATE.{name}", body, f"updating stream {name!r}", StreamError
        )
        return _stream_info(raw)

    async def delete_stream(self, name: str) -> None:
        await self._api(f"STREAM.DELETE.{name}", None, f"deleting stream {name!r}", StreamError)

    async def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        raw = await self._api(
            f"CONSUMER.INFO.{stream}.{consumer}",
            None,
            f"consumer {consumer!r} of stream {stream!r}",
            ConsumerError,
        )
        return _consumer_info(raw)

    async def create_consumer(self, stream: str, config: Mapping[str, Any]) -> ConsumerInfo:
        name = config.get("durable_name") or config.get("name")
        if not name:
            raise ConsumerError("a consumer configuration needs a durable_name")
        body = {"stream_name": stream, "config": _seconds_to_ns(config, _CONSUMER_DURATIONS)}
        raw = await self._api(
            f"CONSUMER.CREATE.{stream}.{name}",
            body,
            f"creating consumer {name!r} on stream {stream!r}",
            ConsumerError,
        )
        return _consumer_info(raw)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        await self._api(
            f"CONSUMER.DELETE.{stream}.{consumer}",
            None,
            f"deleting consumer {consumer!r} of stream {stream!r}",
            ConsumerError,
        )

    async def fetch(
        self,
        stream: str,
        consumer: str,
        batch: int,
        *,
        expires: float | None = None,
        no_wait: bool = False,
    ) -> list[Message]:
        """Pull up to ``batch`` messages (see :meth:`polyn.nats.Transport.fetch`).

        Without ``no_wait`` the request expires after ``expires`` seconds (5 when not given), so
        no pull request outlives its caller for long. If the calling task is cancelled, the
        messages already delivered for the request are naked at once, to be redelivered without
        waiting for ``ack_wait``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if not self.state.connected:
            # During an outage the request would wait in the paused outbox and reach the
            # server only after it, long after this fetch gave up; every such stale request
            # then delivers a batch that no fetch waits for, beyond the caller's in-flight
            # bound. So wait for the connection instead, and send nothing.
            with trio.move_on_after(1.0 if no_wait or expires is None else expires):
                while not self.state.connected and not self.closed:  # noqa: ASYNC110 (loop thread)
                    await trio.sleep(0.05)
            return []
        puller = self._pullers.get((stream, consumer))
        if puller is None:
            puller = await self._new_puller(stream, consumer)
        request: dict[str, Any] = {"batch": batch}
        if no_wait:
            request["no_wait"] = True
        else:
            expires = 5.0 if expires is None else expires
            request["expires"] = int(expires * 1_000_000_000)
        async with puller.lock:
            with puller.mutex:
                if puller.stash:
                    stash = puller.stash
                    return [stash.popleft() for _ in range(min(batch, len(stash)))]
                fetch = _Fetch(batch, f"{puller.inbox}.{self._new_token()}")
                puller.current = fetch
            finished = False
            try:
                self._outbox.put(
                    (
                        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                        json.dumps(request).encode(),
                        fetch.reply,
                        None,
                    )
                )
                with trio.move_on_after((expires or 0.0) + _FETCH_GRACE):
                    await fetch.waiter.wait()
                finished = True
            finally:
                with puller.mutex:
                    if puller.current is fetch:
                        puller.current = None
                    messages = fetch.messages
                if not finished and not self.closed:
                    # Cancelled: hand back what was delivered so it need not wait for ack_wait.
                    for message in messages:
                        if message.reply_to:
                            self.enqueue_ack(message.reply_to, b"-NAK")
        if fetch.error is not None and not messages:
            raise fetch.error
        return messages

    async def _new_puller(self, stream: str, consumer: str) -> _Puller:
        puller = _Puller(f"{self._reply_prefix}pull{self._new_token()}")

        async def subscribe() -> None:
            assert self._nc is not None

            puller.subscription = await self._nats_subscribe(
                puller.inbox + ".*", None, lambda msg: self._on_pulled(puller, msg)
            )

        await self._bridge.run(subscribe, translate)
        # Another task may have created one meanwhile: keep the first.
        return self._pullers.setdefault((stream, consumer), puller)

    # -- key-value ----------------------------------------------------------------------------

    async def _kv(self, bucket: str) -> Any:  # loop thread
        kv = self._kv_cache.get(bucket)
        if kv is None:
            assert self._nc is not None
            kv = await self._nc.jetstream().key_value(bucket)
            self._kv_cache[bucket] = kv
        return kv

    def _bucket_denied(self, bucket: str, error: PolynError) -> PolynError:
        """``error``, or why: the server refused a subject of the bucket meanwhile.

        Key-value operations run inside nats-py, which waits out its timeout when the server
        refuses one of its requests; the refusal itself arrives as an asynchronous error.
        """
        stream, prefix = f".kv_{bucket}".lower(), f"$kv.{bucket}.".lower()
        for subject, text in self._denied.items():
            if stream in subject or subject.startswith(prefix):
                return PermissionDeniedError(
                    f"the NATS server refused access to the key-value bucket {bucket!r}: {text}"
                )
        return error

    async def _run_kv(self, fn: Callable[[Any], Awaitable[T]], bucket: str) -> T:
        self._check_open()

        async def op() -> T:
            return await fn(await self._kv(bucket))

        try:
            return await self._bridge.run(op, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

    async def kv_create(
        self,
        bucket: str,
        *,
        replicas: int = 1,
        history: int = 1,
        description: str | None = None,
    ) -> None:
        self._check_open()

        async def create() -> None:
            assert self._nc is not None
            js = self._nc.jetstream()
            try:
                await js.key_value(bucket)
                return  # an existing bucket is kept as it is
            except nats.js.errors.BucketNotFoundError:
                pass
            config = KeyValueConfig(
                bucket=bucket, replicas=replicas, history=history, description=description
            )
            try:
                self._kv_cache[bucket] = await js.create_key_value(config)
            except nats.js.errors.APIError as exc:
                if getattr(exc, "err_code", None) != 10058:  # created meanwhile by someone else
                    raise

        try:
            await self._bridge.run(create, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

    async def kv_delete_bucket(self, bucket: str) -> None:
        self._check_open()

        async def delete() -> None:
            assert self._nc is not None
            self._kv_cache.pop(bucket, None)
            await self._nc.jetstream().delete_key_value(bucket)

        await self._bridge.run(delete, translate)

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        async def get(kv: Any) -> KvEntry | None:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return KvEntry(bucket, key, entry.value, entry.revision or 0, "PUT")

        return await self._run_kv(get, bucket)

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        async def put(kv: Any) -> int:
            revision: int = await kv.put(key, value)
            return revision

        return await self._run_kv(put, bucket)

    async def kv_create_key(self, bucket: str, key: str, value: bytes) -> int:
        """Store ``value`` only if ``key`` is missing; see :func:`polyn.nats.kv_cas.create_key`."""
        return await self._run_kv(lambda kv: kv_cas.create_key(kv, bucket, key, value), bucket)

    async def kv_update(self, bucket: str, key: str, value: bytes, last_revision: int) -> int:
        """Store ``value`` only if ``key`` is still at ``last_revision``; see
        :func:`polyn.nats.kv_cas.update_key`."""
        return await self._run_kv(
            lambda kv: kv_cas.update_key(kv, bucket, key, value, last_revision), bucket
        )

    async def kv_delete(self, bucket: str, key: str) -> None:
        async def delete(kv: Any) -> None:
            await kv.delete(key)

        await self._run_kv(delete, bucket)

    async def kv_keys(self, bucket: str) -> list[str]:
        async def keys(kv: Any) -> list[str]:
            try:
                return list(await kv.keys())
            except nats.js.errors.NoKeysError:
                return []

        return await self._run_kv(keys, bucket)

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        watch = await self.kv_watch(bucket)
        await watch.aclose()
        return watch.initial

    async def kv_watch(self, bucket: str) -> KvWatch:
        """The bucket's current contents and a channel of every later change."""
        self._check_open()
        inbox: Inbox[KvEntry] = Inbox(self._bridge, limit=10_000)
        initial: dict[str, bytes] = {}
        ready: asyncio.Future[None] | None = None

        async def start() -> Any:
            nonlocal ready
            kv = await self._kv(bucket)
            # nats-py can announce the end of the initial contents before it delivered them
            # (its ordered consumer sometimes starts with no pending count). The bucket's last
            # sequence, read first, says when they are all in: the newest entry of the stream is
            # always among the latest-per-key entries a watch starts with.
            assert self._nc is not None
            info = await self._nc.jetstream().stream_info(f"KV_{bucket}")
            last_seq = info.state.last_seq or 0
            watcher = await kv.watchall()
            ready = asyncio.get_running_loop().create_future()
            seen = 0
            marker = False

            async def forward() -> None:
                nonlocal seen, marker
                assert ready is not None
                try:
                    async for entry in watcher:
                        if entry is None:
                            marker = True
                            if not ready.done():
                                if seen >= last_seq:
                                    ready.set_result(None)
                                else:  # the newest entry may have expired (a bucket's TTL)
                                    loop = asyncio.get_running_loop()
                                    loop.call_later(_KV_INITIAL_GRACE, _settle, ready)
                            continue
                        op = _KV_OPERATIONS.get(entry.operation or "PUT", "PUT")
                        value = entry.value if op == "PUT" else None
                        if not ready.done():
                            seen = max(seen, entry.revision or 0)
                            if value is None:
                                initial.pop(entry.key, None)
                            else:
                                initial[entry.key] = value
                            if marker and seen >= last_seq:
                                ready.set_result(None)
                            continue
                        await inbox.put(KvEntry(bucket, entry.key, value, entry.revision or 0, op))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not ready.done():
                        ready.set_exception(exc)
                    inbox.finish(translate(exc))
                    return
                inbox.finish()

            task = asyncio.get_running_loop().create_task(forward())
            await ready
            return watcher, task

        try:
            watcher, task = await self._bridge.run(start, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

        async def stop() -> None:
            if not self._bridge.alive:
                return

            async def stop_watch() -> None:
                task.cancel()
                try:
                    await watcher.stop()
                except nats.errors.Error:
                    pass

            try:
                await self._bridge.run(stop_watch, translate)
            except NatsConnectionError:
                pass

        inbox._on_close = stop
        return _KvWatchChannel(inbox, initial)


_KV_INITIAL_GRACE = 1.0


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _required_name(config: Mapping[str, Any], field: str, what: str) -> str:
    name = config.get(field)
    if not name or not isinstance(name, str):
        raise StreamError(f"a {what} configuration needs a {field!r}, got {config!r}")
    return name


def redact_url(url: str) -> str:
    """``url`` without the user name, password or token it may carry."""
    return re.sub(r"//[^@/]*@", "//", url)


def _url_of(nc: Client) -> str | None:
    url = nc.connected_url
    if url is None:
        return None
    scheme = url.scheme or "nats"
    return f"{scheme}://{url.hostname}:{url.port}"


def build_tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext | None:
    """An SSL context for nats-py from file paths, or ``None`` when no TLS file is given.

    Raises :class:`~polyn.errors.ConfigError` naming the file when one cannot be read or is not
    a PEM certificate or key.
    """
    if not (ca_file or cert_file):
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS CA file {ca_file!r}: {_reason(exc)}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use the TLS client certificate {cert_file!r} with key {key_file!r}: "
                f"{_reason(exc)}"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
