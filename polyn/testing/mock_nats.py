"""``MockNats``: the in-memory messaging of the test sandbox.

``MockNats`` implements :class:`~polyn.nats.Messaging`, the hot part of the transport seam, in
memory and private to one test: core publish / subscribe with NATS's own subject-token matching
(``*`` one token, ``>`` one or more, :func:`polyn.naming.subject_matches`), queue groups (each
message to one member of each group), request / reply, and JetStream messaging on the streams and
durable pull consumers of its :class:`~polyn.testing._jetstream.JetStreamMemory` (``js_publish``
with ``Nats-Msg-Id`` de-duplication within the stream's ``duplicate_window``; ``fetch`` with
``batch`` / ``expires`` / ``no_wait``; ``ack``, ``nak(delay)``, ``term``, ``in_progress``,
``ack_sync``; ``ack_wait`` redelivery with ``backoff``; ``max_deliver``; ``max_ack_pending``;
delivery counts and ``$JS.ACK`` metadata; ``filter_subject(s)``; the deliver policies ``all``,
``new``, ``last`` and ``by_start_sequence``; ``workqueue`` retention).

It never calls a real server. Which streams and consumers exist is the sandbox's business: the
:class:`~polyn.testing.snapshot.SnapshotAdmin` view defines them in the mock's ``jetstream``
(from a snapshot of the real server, or in memory), and key-value goes to the real server
(:class:`~polyn.testing.SandboxTransport` puts the three together; ``polyn_sandbox`` and
``Sandbox.start`` build one).

The stream *contents* start empty: a sandbox sees only what its own test published, and a
consumer of a stream delivers the messages its test published before the consumer was first used
(deliver policy ``all``), as a fresh durable consumer would.

Timing runs on trio's clock without background tasks: ``ack_wait``, nak delays and ``expires`` are
deadlines checked when a fetch looks for messages and slept on with ``trio.move_on_at``, so with
``MockClock(autojump_threshold=0)`` a redelivery after 30 s takes no real time.

Not modelled: stream limits other than ``max_msgs`` (``max_age``, ``max_bytes``, per-subject
limits), ``interest`` retention (treated as ``limits``), mirrors and sources, push consumers,
ordered consumers, and JetStream advisories.

Example::

    mock = MockNats()
    sub = await mock.subscribe("orders.*")
    await mock.publish("orders.created", b"{}")
    assert (await sub.receive()).data == b"{}"
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from polyn.errors import (
    ConsumerError,
    NatsConnectionError,
    NoRespondersError,
    RequestTimeout,
    StreamError,
)
from polyn.naming import subject_matches
from polyn.nats.limits import check_subject, checked_headers
from polyn.nats.message import NAK, Message
from polyn.nats.transport import PubAck, Subscription
from polyn.testing._jetstream import JetStreamMemory

__all__ = ["MockNats"]

_DEFAULT_EXPIRES = 5.0  # as the real transport's fetch
_MAX_PAYLOAD = 1024 * 1024


class _MockSubscription(Subscription):
    def __init__(self, mock: MockNats, subject: str, queue: str | None, limit: int) -> None:
        self._mock = mock
        self.subject = subject
        self.queue = queue
        self._limit = limit
        self._items: collections.deque[Message] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._finished = False  # no more messages will come (the mock closed)
        self._reader_closed = False

    @property
    def pending(self) -> int:
        return len(self._items)

    def _offer(self, message: Message) -> bool:
        if self._finished:
            return True
        if len(self._items) >= self._limit:
            return False
        self._items.append(message)
        self._lot.unpark()
        return True

    def _finish(self) -> None:
        self._finished = True
        self._lot.unpark_all()

    async def receive(self) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._reader_closed:
                raise trio.ClosedResourceError("this channel was closed")
            if self._items:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return self._items.popleft()
            if self._finished:
                raise trio.EndOfChannel
            await self._lot.park()

    async def receive_batch(self, max_items: int) -> list[Message]:
        batch = [await self.receive()]
        while self._items and len(batch) < max_items:
            batch.append(self._items.popleft())
        return batch

    def receive_nowait(self) -> Message:
        if self._reader_closed:
            raise trio.ClosedResourceError("this channel was closed")
        if self._items:
            return self._items.popleft()
        if self._finished:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def aclose(self) -> None:
        self._reader_closed = self._finished = True
        self._items.clear()
        self._mock._unsubscribe(self)
        self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


@attrs.define
class _Request:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: Message | None = None


class MockNats:
    """The in-memory :class:`~polyn.nats.Messaging` of one test (see the module docstring).

    Args:
        max_payload: the largest body (plus headers) it accepts, as the server's setting.
        url: what :attr:`connected_url` reports while open.

    Every publish is recorded in :attr:`messages` (core and JetStream, in order; not the
    acknowledgements), which is what the sandbox's helpers read. :attr:`jetstream` holds its
    streams and consumers, which the sandbox's administration view defines.

    It is not an actor: it has no task of its own (timers are deadlines on trio's clock), so
    nothing needs to run or supervise it; the sandbox creates one per test and closes it at
    teardown.
    """

    def __init__(self, *, max_payload: int = _MAX_PAYLOAD, url: str = "mock://sandbox") -> None:
        self.jetstream = JetStreamMemory(self)
        self.messages: list[Message] = []
        self._max_payload = max_payload
        self._url = url
        self._subs: list[_MockSubscription] = []
        self._queue_turns: dict[tuple[str, str], itertools.count[int]] = {}
        self._requests: dict[str, _Request] = {}
        self._inbox_ids = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<MockNats streams={len(self.jetstream.streams)} subscriptions={len(self._subs)} "
            f"messages={len(self.messages)}>"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected_url(self) -> str | None:
        return None if self._closed else self._url

    @property
    def max_payload(self) -> int:
        return self._max_payload

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every subscription (their readers see the end) and refuse further calls."""
        self._closed = True
        for sub in list(self._subs):
            sub._finish()
        self._subs.clear()
        for request in self._requests.values():
            request.event.set()
        self.jetstream.wake_all()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise NatsConnectionError("the sandbox's MockNats is closed (its test has ended)")

    def _check_publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        self._check_open()
        check_subject(subject)
        return checked_headers(subject, data, headers, self._max_payload)

    # -- core NATS ----------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
    ) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        hdrs = self._check_publish(subject, data, headers)
        if reply_to is not None:
            check_subject(reply_to, "reply subject")
        self._route(subject, bytes(data), hdrs, reply_to)
        stream = self.jetstream.capturing(subject)
        if stream is not None:  # a core publish is stored by a stream that captures it
            stream.store(subject, bytes(data), hdrs, trio.current_time())
        # Like the real transport's queued publish: no yield, so a burst costs no task switches.

    def _route(
        self, subject: str, data: bytes, headers: dict[str, str], reply_to: str | None
    ) -> int:
        """Record a publish and hand it to every matching subscriber; return how many got it."""
        self.messages.append(Message(subject, data, reply_to, dict(headers)))
        receivers = 0
        request = self._requests.pop(subject, None)
        if request is not None:
            request.reply = Message(subject, data, reply_to, dict(headers))
            request.event.set()
            receivers += 1
        groups: dict[str, list[_MockSubscription]] = {}
        for sub in self._subs:
            if not subject_matches(sub.subject, subject):
                continue
            if sub.queue:
                groups.setdefault(sub.queue, []).append(sub)
            else:
                sub._offer(Message(subject, data, reply_to, dict(headers)))
                receivers += 1
        for queue, members in groups.items():
            # Round robin within the group, as evenly as the server's random pick on average.
            turn = next(self._queue_turns.setdefault((subject, queue), itertools.count()))
            members[turn % len(members)]._offer(Message(subject, data, reply_to, dict(headers)))
            receivers += 1
        return receivers

    def _unsubscribe(self, sub: _MockSubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def subscribe(
        self, subject: str, *, queue: str | None = None, max_pending: int = 65_536
    ) -> Subscription:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        check_subject(subject)
        sub = _MockSubscription(self, subject, queue, max_pending)
        self._subs.append(sub)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return sub

    @property
    def subscriptions(self) -> list[tuple[str, str | None]]:
        """The open subscriptions as ``(subject, queue group)`` pairs."""
        return [(sub.subject, sub.queue) for sub in self._subs]

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        hdrs = self._check_publish(subject, data, headers)
        inbox = f"_INBOX.mock.{next(self._inbox_ids)}"
        request = _Request()
        self._requests[inbox] = request
        try:
            if self._route(subject, bytes(data), hdrs, inbox) == 0:
                stream = self.jetstream.capturing(subject)
                if stream is None:
                    raise NoRespondersError(f"no responders are subscribed to {subject!r}")
                # JetStream answers a request on a subject it captures, as on the server.
                ack = stream.store(subject, bytes(data), hdrs, trio.current_time())
                await trio.lowlevel.checkpoint()
                return Message(inbox, _json_bytes(_pub_ack_json(ack)), None, {})
            with trio.move_on_after(timeout):
                await request.event.wait()
            if request.reply is None:
                self._check_open()
                raise RequestTimeout(f"no reply to the request on {subject!r} within {timeout} s")
            return request.reply
        finally:
            self._requests.pop(inbox, None)

    async def flush(self, timeout: float = 5.0) -> None:
        """Nothing is ever queued in memory: a checkpoint."""
        self._check_open()
        await trio.lowlevel.checkpoint()

    # -- acknowledgements (the Acknowledger of delivered messages) -----------------------------

    def enqueue_ack(self, subject: str, body: bytes) -> None:
        self._check_open()
        tokens = subject.split(".")
        if len(tokens) != 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
            raise ConsumerError(f"{subject!r} is not an acknowledgement subject of this sandbox")
        stream = self.jetstream.streams.get(tokens[2])
        consumer = stream.consumers.get(tokens[3]) if stream is not None else None
        if consumer is not None:  # else deleted meanwhile: the server ignores it too
            consumer.acknowledge(int(tokens[5]), int(tokens[4]), body, trio.current_time())

    async def ack_and_wait(self, subject: str, body: bytes, timeout: float) -> None:
        self.enqueue_ack(subject, body)
        await trio.lowlevel.checkpoint()

    # -- JetStream: messages ------------------------------------------------------------------

    async def js_publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> PubAck:
        await trio.lowlevel.checkpoint_if_cancelled()
        hdrs = self._check_publish(subject, data, headers)
        stream = self.jetstream.capturing(subject)
        if stream is None:
            raise StreamError(f"no JetStream stream captures the subject {subject!r}", code=503)
        ack = stream.store(subject, bytes(data), hdrs, trio.current_time())
        if not ack.duplicate:
            self._route(subject, bytes(data), hdrs, None)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ack

    async def fetch(
        self,
        stream: str,
        consumer: str,
        batch: int,
        *,
        expires: float | None = None,
        no_wait: bool = False,
    ) -> list[Message]:
        """Pull up to ``batch`` messages, as :meth:`polyn.nats.Transport.fetch` does.

        Fetches of one consumer run one at a time. A fetch cancelled while waiting naks the
        messages it had already taken, so they are redelivered at once (as the real transport
        does).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        state = self.jetstream.consumer(stream, consumer)
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        async with state.lock:
            out = state.take(batch, trio.current_time())
            if no_wait or len(out) >= batch:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return out
            deadline = trio.current_time() + (_DEFAULT_EXPIRES if expires is None else expires)
            state.waiting += 1
            try:
                while len(out) < batch and trio.current_time() < deadline and not self._closed:
                    with trio.move_on_at(min(deadline, state.next_due())):
                        await state.changed.park()
                    out += state.take(batch - len(out), trio.current_time())
            except trio.Cancelled:
                now = trio.current_time()
                for message in out:
                    assert message.reply_to is not None
                    tokens = message.reply_to.split(".")
                    state.acknowledge(int(tokens[5]), int(tokens[4]), NAK, now)
                raise
            finally:
                state.waiting -= 1
            return out


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _pub_ack_json(ack: PubAck) -> dict[str, Any]:
    raw: dict[str, Any] = {"stream": ack.stream, "seq": ack.seq}
    if ack.duplicate:
        raw["duplicate"] = True
    return raw
