"""The sandbox's in-memory JetStream: stream contents, durable consumers' delivery state, and
the definitions both follow.

:class:`JetStreamMemory` is shared by the two views the sandbox builds over it:
:class:`~polyn.testing.MockNats` (messaging: ``js_publish`` stores, ``fetch`` delivers, acks
settle) and :class:`~polyn.testing.snapshot.SnapshotAdmin` (administration: which streams and
consumers exist, their info). Definitions come from the real server's snapshot (or, without a
server, from the admin view's own create calls); contents start empty in every sandbox.

Timing runs on trio's clock without background tasks: ``ack_wait``, nak delays and backoff are
deadlines checked when a fetch looks for messages (see :meth:`MemoryConsumer.take`).
"""

from __future__ import annotations

import json
import time

import attrs
import trio

from polyn.errors import ConsumerError, StreamError
from polyn.naming import subject_matches
from polyn.nats.message import ACK, NAK, PROGRESS, TERM, Acknowledger, Message
from polyn.nats.transport import ConsumerInfo, PubAck, StreamInfo

__all__ = ["JetStreamMemory", "MemoryConsumer", "MemoryStream", "subjects_overlap"]

_DEFAULT_ACK_WAIT = 30.0
_DEFAULT_DUPLICATE_WINDOW = 120.0
_DEFAULT_MAX_ACK_PENDING = 1000


def subjects_overlap(a: str, b: str) -> bool:
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


class MemoryStream:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info
        self.messages: dict[int, _Stored] = {}
        self.last_seq = 0
        self.msg_ids: dict[str, tuple[int, float]] = {}
        self.consumers: dict[str, MemoryConsumer] = {}

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


class MemoryConsumer:
    """A durable pull consumer's delivery state, on trio's clock."""

    def __init__(
        self, acknowledger: Acknowledger, stream: MemoryStream, info: ConsumerInfo
    ) -> None:
        self.acknowledger = acknowledger
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
        return Message(stored.subject, stored.data, reply, dict(stored.headers), self.acknowledger)

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


class JetStreamMemory:
    """Streams (definitions and contents) and durable consumers (definitions and delivery
    state) of one sandbox, in memory.

    ``acknowledger`` is what delivered messages acknowledge through (the sandbox's
    :class:`~polyn.testing.MockNats`). Lookups raise the errors the server answers with.
    """

    def __init__(self, acknowledger: Acknowledger) -> None:
        self.acknowledger = acknowledger
        self.streams: dict[str, MemoryStream] = {}
        self.consumer_infos: dict[tuple[str, str], ConsumerInfo] = {}

    # -- definitions ----------------------------------------------------------------------------

    def replace(self, streams: list[StreamInfo], consumers: list[ConsumerInfo]) -> None:
        """Take a new snapshot of the definitions.

        Streams keep the messages already stored in them, and consumers keep their delivery
        state, as long as they are still defined.
        """
        old = self.streams
        self.streams = {}
        for info in streams:
            stream = old.get(info.name)
            if stream is None:
                stream = MemoryStream(info)
            else:
                stream.info = info
                stream.consumers.clear()
            self.streams[info.name] = stream
        previous = {(s.name, c.name): c for s in old.values() for c in s.consumers.values()}
        self.consumer_infos = {}
        for cinfo in consumers:
            self.consumer_infos[(cinfo.stream, cinfo.name)] = cinfo
            kept = previous.get((cinfo.stream, cinfo.name))
            stream = self.streams.get(cinfo.stream)
            if kept is not None and stream is not None and kept.stream is stream:
                kept.info = cinfo
                stream.consumers[cinfo.name] = kept

    def add_stream(self, info: StreamInfo) -> None:
        """Define a stream (or change its definition, keeping its contents)."""
        stream = self.streams.get(info.name)
        if stream is None:
            self.streams[info.name] = MemoryStream(info)
        else:
            stream.info = info

    def add_consumer(self, info: ConsumerInfo) -> None:
        """Define a consumer; a changed definition starts its delivery state afresh."""
        existing = self.consumer_infos.get((info.stream, info.name))
        if existing is not None and dict(existing.config) == dict(info.config):
            return
        self.consumer_infos[(info.stream, info.name)] = info
        stream = self.streams.get(info.stream)
        if stream is not None:
            stream.consumers.pop(info.name, None)  # rebuilt from the new definition when used

    def remove_stream(self, name: str) -> None:
        self.streams.pop(name, None)
        for key in [k for k in self.consumer_infos if k[0] == name]:
            del self.consumer_infos[key]

    def remove_consumer(self, stream: str, consumer: str) -> None:
        self.consumer_infos.pop((stream, consumer), None)
        found = self.streams.get(stream)
        if found is not None:
            found.consumers.pop(consumer, None)

    # -- lookups --------------------------------------------------------------------------------

    def capturing(self, subject: str) -> MemoryStream | None:
        """The stream whose subjects capture ``subject``, if any."""
        for stream in self.streams.values():
            if stream.captures(subject):
                return stream
        return None

    def consumer(self, stream_name: str, consumer_name: str) -> MemoryConsumer:
        """A defined consumer's delivery state (created on first use), or ConsumerError."""
        stream = self.streams.get(stream_name)
        info = self.consumer_infos.get((stream_name, consumer_name))
        if stream is None or info is None:
            raise ConsumerError("the consumer does not exist (no responders)", code=503)
        consumer = stream.consumers.get(consumer_name)
        if consumer is None:
            consumer = stream.consumers[consumer_name] = MemoryConsumer(
                self.acknowledger, stream, info
            )
        return consumer

    def stream_names(self, subject: str | None = None) -> list[str]:
        return [
            s.name
            for s in self.streams.values()
            if subject is None or any(subjects_overlap(p, subject) for p in s.subjects)
        ]

    def stream_info(self, name: str) -> StreamInfo:
        """The stream's definition with the state of its contents in this sandbox."""
        stream = self.streams.get(name)
        if stream is None:
            raise StreamError(f"stream {name!r}: stream not found", code=404, err_code=10059)
        state = dict(stream.info.state)
        state.update(
            messages=len(stream.messages),
            bytes=sum(len(m.data) for m in stream.messages.values()),
            first_seq=stream.first_seq,
            last_seq=stream.last_seq,
            consumer_count=sum(1 for key in self.consumer_infos if key[0] == name),
        )
        return attrs.evolve(stream.info, state=state)

    def consumer_info(self, stream: str, consumer: str, now: float) -> ConsumerInfo:
        """The consumer's definition with its delivery state in this sandbox."""
        if (stream, consumer) not in self.consumer_infos:
            raise ConsumerError(
                f"consumer {consumer!r} of stream {stream!r}: consumer not found",
                code=404,
                err_code=10014,
            )
        return self.consumer(stream, consumer).consumer_info(now)

    def wake_all(self) -> None:
        """Wake every waiting fetch (the sandbox is closing)."""
        for stream in self.streams.values():
            for consumer in stream.consumers.values():
                consumer.changed.unpark_all()
