"""``MockNats``: the in-memory :class:`~polyn.nats.Transport` of the test sandbox.

What is in memory, and what is real
-----------------------------------
Messaging is in memory and private to one ``MockNats``: core publish / subscribe with NATS's own
subject-token matching (``*`` one token, ``>`` one or more, :func:`polyn.naming.subject_matches`),
queue groups (each message to one member of each group), request / reply, and JetStream-like
streams with durable pull consumers (``fetch`` with ``batch`` / ``expires`` / ``no_wait``; ``ack``,
``nak(delay)``, ``term``, ``in_progress``, ``ack_sync``; ``ack_wait`` redelivery with ``backoff``;
``max_deliver``; ``max_ack_pending``; delivery counts and ``$JS.ACK`` metadata; ``Nats-Msg-Id``
de-duplication within the stream's ``duplicate_window``; ``filter_subject(s)``; the deliver
policies ``all``, ``new``, ``last`` and ``by_start_sequence``; ``workqueue`` retention).

**Definitions are real.** Which streams and consumers exist, and how they are configured, comes from
the real nats-server that the mock wraps, as the Polyn protocol requires (a misconfigured stream
fails in a test as in production): :meth:`MockNats.snapshot` reads every stream and consumer once,
and every later lookup (``stream_names``, ``stream_info``, ``consumer_info``, the stream check of
``js_publish``, the consumer of ``fetch``) reads that snapshot, never the server, so nothing crosses
into the real transport while a test runs on virtual time (``trio.testing.MockClock``). Management
calls (``create_stream``, ``create_consumer``, ``delete_*``, ``update_stream``) go to the real
server and update the snapshot with its answer; after changing the server some other way, call
:meth:`MockNats.snapshot` again (``sandbox.refresh()``). Key-value reads of the schema bucket are
answered from the schema snapshot given to the constructor; every other key-value call goes to
the real server.

The stream *contents* start empty: a sandbox sees only what its own test published, and a
consumer of a stream delivers the messages its test published before the consumer was first used
(deliver policy ``all``), as a fresh durable consumer would.

Timing runs on trio's clock without background tasks: ``ack_wait``, nak delays and ``expires`` are
deadlines checked when a fetch looks for messages and slept on with ``trio.move_on_at``, so with
``MockClock(autojump_threshold=0)`` a redelivery after 30 s takes no real time.

Without a real transport (``MockNats()``) the mock keeps the stream and consumer definitions it
is given in memory only: handy for unit tests of one handler, but nothing checks them against a
server. The pytest fixture ``polyn_sandbox`` always wraps a real one.

Not modelled: stream limits other than ``max_msgs`` (``max_age``, ``max_bytes``, per-subject
limits), ``interest`` retention (treated as ``limits``), mirrors and sources, push consumers,
ordered consumers, and JetStream advisories.

Example::

    mock = MockNats(real_transport)
    await mock.snapshot()
    sub = await mock.subscribe("orders.*")
    await mock.publish("orders.created", b"{}")
    assert (await sub.receive()).data == b"{}"
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import trio
import trio.testing

from polyn.errors import (
    ConsumerError,
    NatsConnectionError,
    NoRespondersError,
    RequestTimeout,
    SandboxError,
    StreamError,
)
from polyn.naming import subject_matches
from polyn.nats.jsapi import JetStreamApi
from polyn.nats.limits import check_subject, checked_headers
from polyn.nats.message import ACK, NAK, PROGRESS, TERM, Message
from polyn.nats.transport import (
    ConsumerInfo,
    KvEntry,
    KvWatch,
    PubAck,
    StreamInfo,
    Subscription,
    Transport,
)

__all__ = ["MockNats", "real_time"]

_DEFAULT_ACK_WAIT = 30.0
_DEFAULT_DUPLICATE_WINDOW = 120.0
_DEFAULT_MAX_ACK_PENDING = 1000
_DEFAULT_EXPIRES = 5.0  # as the real transport's fetch
_MAX_PAYLOAD = 1024 * 1024


@contextmanager
def real_time() -> Iterator[None]:
    """Pause a :class:`trio.testing.MockClock`'s autojump for the block (no-op on a real clock).

    A call into the real transport waits for another thread; to an autojumping MockClock that
    looks idle, so it would jump past every timeout of the call at once. Polyn's sandbox wraps
    its own calls into the real server (start-up, snapshots, management calls, teardown) in
    this, so a test may use ``autojump_clock`` from the start.
    """
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        yield
        return
    saved = clock.autojump_threshold
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        clock.autojump_threshold = saved


def _subjects_overlap(a: str, b: str) -> bool:
    """Whether some literal subject matches both patterns (the server's stream subject filter)."""
    ta, tb = a.split("."), b.split(".")
    for index in range(max(len(ta), len(tb))):
        x = ta[index] if index < len(ta) else None
        y = tb[index] if index < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


@attrs.define
class _Stored:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    timestamp_ns: int


@attrs.define
class _Pending:
    """A delivered, unacknowledged message: redelivered once ``due`` has passed."""

    deliveries: int
    due: float
    naked: bool = False


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


class _Stream:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info
        self.messages: dict[int, _Stored] = {}
        self.last_seq = 0
        self.msg_ids: dict[str, tuple[int, float]] = {}
        self.consumers: dict[str, _Consumer] = {}

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def subjects(self) -> list[str]:
        return self.info.subjects or [self.info.name]

    def captures(self, subject: str) -> bool:
        return any(subject_matches(pattern, subject) for pattern in self.subjects)

    @property
    def first_seq(self) -> int:
        return min(self.messages) if self.messages else self.last_seq + 1

    def store(self, subject: str, data: bytes, headers: dict[str, str], now: float) -> PubAck:
        config = self.info.config
        msg_id = headers.get("Nats-Msg-Id")
        window = float(config.get("duplicate_window") or _DEFAULT_DUPLICATE_WINDOW)
        if msg_id:
            ids = self.msg_ids  # in insertion order, so in time order: expire from the front
            while ids:
                oldest = next(iter(ids))
                if now - ids[oldest][1] < window:
                    break
                del ids[oldest]
            seen = self.msg_ids.get(msg_id)
            if seen is not None:
                return PubAck(stream=self.name, seq=seen[0], duplicate=True)
        self.last_seq += 1
        seq = self.last_seq
        self.messages[seq] = _Stored(seq, subject, data, headers, time.time_ns())
        if msg_id:
            self.msg_ids[msg_id] = (seq, now)
        max_msgs = int(config.get("max_msgs") or -1)
        if max_msgs > 0:
            while len(self.messages) > max_msgs:
                del self.messages[min(self.messages)]
        for consumer in self.consumers.values():
            consumer.stored(subject, seq)
        return PubAck(stream=self.name, seq=seq)

    def remove(self, seq: int) -> None:
        self.messages.pop(seq, None)


class _Consumer:
    """A durable pull consumer's delivery state, on trio's clock."""

    def __init__(self, mock: MockNats, stream: _Stream, info: ConsumerInfo) -> None:
        self.mock = mock
        self.stream = stream
        self.info = info
        config = info.config
        self.name = info.name
        filters = list(config.get("filter_subjects") or [])
        if config.get("filter_subject"):
            filters.append(config["filter_subject"])
        self.filters = filters
        self.ack_policy = str(config.get("ack_policy") or "explicit").lower()
        self.ack_wait = float(config.get("ack_wait") or _DEFAULT_ACK_WAIT)
        self.backoff = [float(b) for b in (config.get("backoff") or [])]
        max_deliver = config.get("max_deliver")
        self.max_deliver = int(max_deliver) if max_deliver else -1
        self.max_ack_pending = int(config.get("max_ack_pending") or _DEFAULT_MAX_ACK_PENDING)
        self.pending: dict[int, _Pending] = {}
        self.cseq = 0
        self.redelivered = 0
        self.waiting = 0
        self.lock = trio.Lock()
        self.changed = trio.lowlevel.ParkingLot()
        policy = str(config.get("deliver_policy") or "all").lower()
        if policy == "new":
            self.next_seq = stream.last_seq + 1
        elif policy == "by_start_sequence":
            self.next_seq = int(config.get("opt_start_seq") or 1)
        elif policy == "last":
            matching = [s for s, m in stream.messages.items() if self.matches(m.subject)]
            self.next_seq = max(matching) if matching else stream.last_seq + 1
        else:
            self.next_seq = 1
        self.num_pending = sum(
            1 for s, m in stream.messages.items() if s >= self.next_seq and self.matches(m.subject)
        )

    def matches(self, subject: str) -> bool:
        return not self.filters or any(subject_matches(f, subject) for f in self.filters)

    def stored(self, subject: str, seq: int) -> None:
        if seq >= self.next_seq and self.matches(subject):
            self.num_pending += 1
            self.changed.unpark_all()

    def _wait_for(self, deliveries: int) -> float:
        if self.backoff:
            return self.backoff[min(deliveries - 1, len(self.backoff) - 1)]
        return self.ack_wait

    def _expire(self, now: float) -> None:
        """Forget messages whose last allowed delivery has timed out (``max_deliver``)."""
        if self.max_deliver <= 0:
            return
        for seq, entry in list(self.pending.items()):
            if entry.due <= now and entry.deliveries >= self.max_deliver:
                del self.pending[seq]

    def next_due(self) -> float:
        return min((p.due for p in self.pending.values()), default=float("inf"))

    def take(self, limit: int, now: float) -> list[Message]:
        """Deliver up to ``limit`` messages: due redeliveries first, then new ones, in order."""
        self._expire(now)
        out: list[Message] = []
        due = sorted((p.due, seq) for seq, p in self.pending.items() if p.due <= now)
        for _, seq in due:
            if len(out) >= limit:
                return out
            stored = self.stream.messages.get(seq)
            if stored is None:  # removed from the stream meanwhile
                del self.pending[seq]
                continue
            entry = self.pending[seq]
            entry.deliveries += 1
            entry.due = now + self._wait_for(entry.deliveries)
            entry.naked = False
            self.redelivered += 1
            out.append(self._deliver(stored, entry.deliveries))
        while len(out) < limit and self.num_pending > 0:
            if self.ack_policy != "none" and len(self.pending) >= self.max_ack_pending:
                break
            seq = self.next_seq
            self.next_seq += 1
            stored = self.stream.messages.get(seq)
            if stored is None or not self.matches(stored.subject):
                if seq > self.stream.last_seq:
                    self.num_pending = 0
                continue
            self.num_pending -= 1
            if self.ack_policy != "none":
                self.pending[seq] = _Pending(1, now + self._wait_for(1))
            out.append(self._deliver(stored, 1))
        return out

    def _deliver(self, stored: _Stored, deliveries: int) -> Message:
        self.cseq += 1
        reply = (
            f"$JS.ACK.{self.stream.name}.{self.name}.{deliveries}.{stored.seq}.{self.cseq}."
            f"{stored.timestamp_ns}.{self.num_pending}"
        )
        return Message(stored.subject, stored.data, reply, dict(stored.headers), self.mock)

    def acknowledge(self, seq: int, deliveries: int, body: bytes, now: float) -> None:
        if body.startswith(PROGRESS):
            entry = self.pending.get(seq)
            if entry is not None and not entry.naked:
                entry.due = now + self._wait_for(entry.deliveries)
            return
        if body.startswith(NAK):
            entry = self.pending.get(seq)
            if entry is None:
                return
            delay = 0.0
            rest = body[len(NAK) :].strip()
            if rest:
                try:
                    delay = int(json.loads(rest).get("delay", 0)) / 1e9
                except (ValueError, AttributeError):
                    delay = 0.0
            entry.due = now + delay
            entry.naked = True
            self.changed.unpark_all()
            return
        # +ACK, an empty ack, or +TERM: the message is done for this consumer.
        if body == b"" or body.startswith(ACK) or body.startswith(TERM):
            if self.ack_policy == "all" and not body.startswith(TERM):
                done = [s for s in self.pending if s <= seq]
            else:
                done = [seq] if seq in self.pending else []
            for s in done:
                del self.pending[s]
                if str(self.stream.info.config.get("retention") or "").lower() == "workqueue":
                    self.stream.remove(s)
            if done:
                self.changed.unpark_all()

    def consumer_info(self, now: float) -> ConsumerInfo:
        self._expire(now)
        return attrs.evolve(
            self.info,
            num_pending=self.num_pending,
            num_ack_pending=len(self.pending),
            num_redelivered=sum(1 for p in self.pending.values() if p.deliveries > 1),
            num_waiting=self.waiting,
        )


@attrs.define
class _Request:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: Message | None = None


class MockNats:
    """An in-memory :class:`~polyn.nats.Transport` for one test (see the module docstring).

    Args:
        real: the real transport whose server defines the streams, consumers and buckets;
            ``None`` for a mock that keeps definitions in memory only.
        schemas: the schema bucket's contents (message name to JSON Schema, as a dict or as
            the stored JSON text), answered from memory; ``None`` reads the real bucket.
        schema_bucket: the name of that bucket (the config's ``schema_store``).

    Every publish is recorded in :attr:`messages` (core and JetStream, in order; not the
    acknowledgements), which is what the sandbox's helpers read.

    It is not an actor: it has no task of its own (timers are deadlines on trio's clock), so
    nothing needs to run or supervise it; the sandbox creates one per test and closes it at
    teardown.
    """

    def __init__(
        self,
        real: Transport | None = None,
        *,
        schemas: Mapping[str, Any] | None = None,
        schema_bucket: str = "POLYN_SCHEMAS",
    ) -> None:
        self.real = real
        self.schema_bucket = schema_bucket
        self._schemas: dict[str, bytes] | None = None
        if schemas is not None:
            self._schemas = {
                name: value if isinstance(value, bytes) else _json_bytes(value)
                for name, value in schemas.items()
            }
        self.messages: list[Message] = []
        self._subs: list[_MockSubscription] = []
        self._queue_turns: dict[tuple[str, str], itertools.count[int]] = {}
        self._requests: dict[str, _Request] = {}
        self._inbox_ids = itertools.count(1)
        self._streams: dict[str, _Stream] = {}
        self._consumer_infos: dict[tuple[str, str], ConsumerInfo] = {}
        self._closed = False
        self.crossings = 0
        """How many calls went to the real transport (tests assert none while on virtual time)."""

    def __repr__(self) -> str:
        return (
            f"<MockNats streams={len(self._streams)} subscriptions={len(self._subs)} "
            f"messages={len(self.messages)}>"
        )

    # -- snapshot of the real server ----------------------------------------------------------

    async def snapshot(self) -> None:
        """(Re-)read every stream and consumer definition from the real server.

        Streams keep the messages already published to them in this mock, and consumers keep
        their delivery state, as long as they still exist on the server.
        """
        with self._crossing("reading the server's streams and consumers") as real:
            await self._snapshot(real)

    async def _snapshot(self, real: Transport) -> None:
        api = JetStreamApi(real.request)
        streams = await api.list_streams()
        consumers: list[ConsumerInfo] = []

        async def list_consumers(stream: str) -> None:
            consumers.extend(await api.list_consumers(stream))

        async with trio.open_nursery() as nursery:
            for info in streams:
                if info.state.get("consumer_count", 1):
                    nursery.start_soon(list_consumers, info.name)
        self._replace_snapshot(streams, consumers)

    def _replace_snapshot(self, streams: list[StreamInfo], consumers: list[ConsumerInfo]) -> None:
        old = self._streams
        self._streams = {}
        for info in streams:
            stream = old.get(info.name)
            if stream is None:
                stream = _Stream(info)
            else:
                stream.info = info
                stream.consumers.clear()
            self._streams[info.name] = stream
        previous = {(s.name, c.name): c for s in old.values() for c in s.consumers.values()}
        self._consumer_infos = {}
        for cinfo in consumers:
            self._consumer_infos[(cinfo.stream, cinfo.name)] = cinfo
            kept = previous.get((cinfo.stream, cinfo.name))
            stream = self._streams.get(cinfo.stream)
            if kept is not None and stream is not None and kept.stream is stream:
                kept.info = cinfo
                stream.consumers[cinfo.name] = kept

    def add_stream(self, info: StreamInfo) -> None:
        """Put a stream definition into the snapshot (``create_stream`` does, with the answer)."""
        stream = self._streams.get(info.name)
        if stream is None:
            self._streams[info.name] = _Stream(info)
        else:
            stream.info = info

    def add_consumer(self, info: ConsumerInfo) -> None:
        """Put a consumer definition into the snapshot."""
        self._consumer_infos[(info.stream, info.name)] = info
        stream = self._streams.get(info.stream)
        if stream is not None:
            stream.consumers.pop(info.name, None)  # rebuilt from the new definition when used

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected_url(self) -> str | None:
        if self._closed:
            return None
        return self.real.connected_url if self.real is not None else "mock://sandbox"

    @property
    def max_payload(self) -> int:
        return self.real.max_payload if self.real is not None else _MAX_PAYLOAD

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every subscription (their readers see the end) and refuse further calls.

        The real transport it wraps is left open: whoever created it closes it.
        """
        self._closed = True
        for sub in list(self._subs):
            sub._finish()
        self._subs.clear()
        for request in self._requests.values():
            request.event.set()
        for stream in self._streams.values():
            for consumer in stream.consumers.values():
                consumer.changed.unpark_all()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise NatsConnectionError("the sandbox's MockNats is closed (its test has ended)")

    @contextmanager
    def _crossing(self, what: str) -> Iterator[Transport]:
        """A call into the real transport, with virtual time paused while it runs."""
        real = self._need_real(what)
        self.crossings += 1
        with real_time():
            yield real

    def _need_real(self, what: str) -> Transport:
        self._check_open()
        if self.real is None:
            raise SandboxError(
                f"{what} needs a real NATS server, and this MockNats wraps none; "
                "create it as MockNats(real_transport) or use the polyn_sandbox fixture"
            )
        return self.real

    def _check_publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        self._check_open()
        check_subject(subject)
        return checked_headers(subject, data, headers, self.max_payload)

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
        stream = self._capturing(subject)
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
                stream = self._capturing(subject)
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
        stream = self._streams.get(tokens[2])
        consumer = stream.consumers.get(tokens[3]) if stream is not None else None
        if consumer is not None:  # else deleted meanwhile: the server ignores it too
            consumer.acknowledge(int(tokens[5]), int(tokens[4]), body, trio.current_time())

    async def ack_and_wait(self, subject: str, body: bytes, timeout: float) -> None:
        self.enqueue_ack(subject, body)
        await trio.lowlevel.checkpoint()

    # -- JetStream: messages ------------------------------------------------------------------

    def _capturing(self, subject: str) -> _Stream | None:
        for stream in self._streams.values():
            if stream.captures(subject):
                return stream
        return None

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
        stream = self._capturing(subject)
        if stream is None:
            raise StreamError(f"no JetStream stream captures the subject {subject!r}", code=503)
        ack = stream.store(subject, bytes(data), hdrs, trio.current_time())
        if not ack.duplicate:
            self._route(subject, bytes(data), hdrs, None)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ack

    def _consumer(self, stream_name: str, consumer_name: str) -> _Consumer:
        self._check_open()
        stream = self._streams.get(stream_name)
        info = self._consumer_infos.get((stream_name, consumer_name))
        if stream is None or info is None:
            raise ConsumerError("the consumer does not exist (no responders)", code=503)
        consumer = stream.consumers.get(consumer_name)
        if consumer is None:
            consumer = stream.consumers[consumer_name] = _Consumer(self, stream, info)
        return consumer

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
        state = self._consumer(stream, consumer)
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

    # -- JetStream: definitions (the snapshot; changes go to the real server) -----------------

    async def stream_names(self, subject: str | None = None) -> list[str]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return [
            s.name
            for s in self._streams.values()
            if subject is None or any(_subjects_overlap(p, subject) for p in s.subjects)
        ]

    async def stream_info(self, name: str) -> StreamInfo:
        self._check_open()
        await trio.lowlevel.checkpoint()
        stream = self._streams.get(name)
        if stream is None:
            raise StreamError(f"stream {name!r}: stream not found", code=404, err_code=10059)
        state = dict(stream.info.state)
        state.update(
            messages=len(stream.messages),
            bytes=sum(len(m.data) for m in stream.messages.values()),
            first_seq=stream.first_seq,
            last_seq=stream.last_seq,
            consumer_count=sum(1 for key in self._consumer_infos if key[0] == name),
        )
        return attrs.evolve(stream.info, state=state)

    async def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        self._check_open()
        await trio.lowlevel.checkpoint()
        info = self._consumer_infos.get((stream, consumer))
        if info is None:
            raise ConsumerError(
                f"consumer {consumer!r} of stream {stream!r}: consumer not found",
                code=404,
                err_code=10014,
            )
        return self._consumer(stream, consumer).consumer_info(trio.current_time())

    async def create_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        if self.real is None:
            self._check_open()
            name = config.get("name")
            if not name or not isinstance(name, str):
                raise StreamError(f"a stream configuration needs a 'name', got {config!r}")
            info = StreamInfo(name=name, config=dict(config), state={})
        else:
            with self._crossing("create_stream") as real:
                info = await real.create_stream(config)
        self.add_stream(info)
        return await self.stream_info(info.name)

    async def update_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        if self.real is None:
            self._check_open()
            name = config.get("name")
            if not isinstance(name, str) or name not in self._streams:
                raise StreamError(f"updating stream {name!r}: stream not found", code=404)
            info = StreamInfo(name=name, config=dict(config), state={})
        else:
            with self._crossing("update_stream") as real:
                info = await real.update_stream(config)
        self.add_stream(info)
        return await self.stream_info(info.name)

    async def delete_stream(self, name: str) -> None:
        if self.real is not None:
            with self._crossing("delete_stream") as real:
                await real.delete_stream(name)
        elif name not in self._streams:
            raise StreamError(f"deleting stream {name!r}: stream not found", code=404)
        self._streams.pop(name, None)
        for key in [k for k in self._consumer_infos if k[0] == name]:
            del self._consumer_infos[key]

    async def create_consumer(self, stream: str, config: Mapping[str, Any]) -> ConsumerInfo:
        name = config.get("durable_name") or config.get("name")
        if not name:
            raise ConsumerError("a consumer configuration needs a durable_name")
        if self.real is None:
            self._check_open()
            if stream not in self._streams:
                raise StreamError(f"creating consumer {name!r}: stream not found", code=404)
            info = ConsumerInfo(stream=stream, name=name, config=dict(config))
        else:
            with self._crossing("create_consumer") as real:
                info = await real.create_consumer(stream, config)
        existing = self._consumer_infos.get((stream, info.name))
        if existing is None or dict(existing.config) != dict(info.config):
            self.add_consumer(info)
        return await self.consumer_info(stream, info.name)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        if self.real is not None:
            with self._crossing("delete_consumer") as real:
                await real.delete_consumer(stream, consumer)
        elif (stream, consumer) not in self._consumer_infos:
            raise ConsumerError(f"deleting consumer {consumer!r}: consumer not found", code=404)
        self._consumer_infos.pop((stream, consumer), None)
        found = self._streams.get(stream)
        if found is not None:
            found.consumers.pop(consumer, None)

    # -- key-value (the schema bucket from memory, the rest from the real server) ------------

    def _schema_snapshot(self, bucket: str) -> dict[str, bytes] | None:
        return self._schemas if bucket == self.schema_bucket else None

    async def kv_create(
        self,
        bucket: str,
        *,
        replicas: int = 1,
        history: int = 1,
        description: str | None = None,
    ) -> None:
        with self._crossing("kv_create") as real:
            await real.kv_create(
                bucket, replicas=replicas, history=history, description=description
            )

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._check_open()
            await trio.lowlevel.checkpoint()
            value = schemas.get(key)
            return None if value is None else KvEntry(bucket, key, value, 0, "PUT")
        with self._crossing("kv_get") as real:
            return await real.kv_get(bucket, key)

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        with self._crossing("kv_put") as real:
            return await real.kv_put(bucket, key, value)

    async def kv_create_key(self, bucket: str, key: str, value: bytes) -> int:
        with self._crossing("kv_create_key") as real:
            return await real.kv_create_key(bucket, key, value)

    async def kv_update(self, bucket: str, key: str, value: bytes, last_revision: int) -> int:
        with self._crossing("kv_update") as real:
            return await real.kv_update(bucket, key, value, last_revision)

    async def kv_delete(self, bucket: str, key: str) -> None:
        with self._crossing("kv_delete") as real:
            await real.kv_delete(bucket, key)

    async def kv_keys(self, bucket: str) -> list[str]:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._check_open()
            await trio.lowlevel.checkpoint()
            return list(schemas)
        with self._crossing("kv_keys") as real:
            return await real.kv_keys(bucket)

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._check_open()
            await trio.lowlevel.checkpoint()
            return dict(schemas)
        with self._crossing("kv_entries") as real:
            return await real.kv_entries(bucket)

    async def kv_watch(self, bucket: str) -> KvWatch:
        with self._crossing("kv_watch") as real:
            return await real.kv_watch(bucket)

    async def kv_delete_bucket(self, bucket: str) -> None:
        with self._crossing("kv_delete_bucket") as real:
            await real.kv_delete_bucket(bucket)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _pub_ack_json(ack: PubAck) -> dict[str, Any]:
    raw: dict[str, Any] = {"stream": ack.stream, "seq": ack.seq}
    if ack.duplicate:
        raw["duplicate"] = True
    return raw
