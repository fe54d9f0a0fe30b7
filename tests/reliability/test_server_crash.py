"""Scenario 1: the server is killed (SIGKILL) and restarted twice while events flow.

A service consumes a file-storage stream with a Pipeline while producers publish 20,000 events
with ``pub(..., ack=True)``. Twice during the run the nats-server process is killed with SIGKILL
and started again on the same port and store. Afterwards:

- every published event is in the stream exactly once (the producer's retries reuse the
  ``Nats-Msg-Id``, so JetStream drops the copies of attempts that did arrive);
- every event was handled, and a handler that deduplicates by event id applied each exactly
  once (JetStream redelivers what was delivered but not acknowledged before a crash: at least
  once, so raw handler calls may repeat, and we count them);
- no message was acknowledged before its batch handler had finished with it.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import pytest
import trio
from reliability_support import Service, wait_until

import polyn
from polyn.consumers import BatchInfo, Pipeline, PipelineMessage
from polyn.nats import NatsTransport
from polyn.server import NatsServer

EVENTS = 20_000
PRODUCERS = 32
KILLS = 2
OUTAGE = 0.5  # seconds between the SIGKILL and the restart


class Record:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()  # raw batch-handler calls
        self.applied: list[int] = []  # the deduplicating handler's effects, one per event
        self.seen_ids: set[str] = set()
        self.ids_of: dict[int, set[str]] = collections.defaultdict(set)
        self.sequences: dict[str, set[int]] = collections.defaultdict(set)
        self.finished: set[str] = set()  # ack subjects of deliveries whose handler finished
        self.early_acks: list[str] = []


class Ledger(Pipeline):
    """Writes each event once to a "database": a batch handler that deduplicates by id."""

    processors = {"default": {"concurrency": 10}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 50, "batch_timeout": 0.05, "concurrency": 2}}  # noqa: RUF012
    fetch_expires = 0.5

    def __init__(self, record: Record, **options: Any) -> None:
        super().__init__(**options)
        self.record = record

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        record = self.record
        await trio.sleep(0.001)  # the database round trip
        for message in messages:
            event = message.event
            metadata = message.msg.metadata
            assert metadata is not None and message.msg.reply_to is not None
            record.calls[event.id] += 1
            record.ids_of[event.data["n"]].add(event.id)
            record.sequences[event.id].add(metadata.stream_sequence)
            if event.id not in record.seen_ids:
                record.seen_ids.add(event.id)
                record.applied.append(event.data["n"])
            record.finished.add(message.msg.reply_to)


async def test_server_killed_twice_during_20k_acked_publishes_loses_and_duplicates_nothing(
    service: Service,
    fresh_server: NatsServer,
    figures: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="polyn.publish")
    await service.create(storage="file", ack_wait=5)
    record = Record()

    # Every +ACK the service sends passes here: it must come after its handler finished.
    enqueue_ack = NatsTransport.enqueue_ack
    ack_prefix = f"$JS.ACK.{service.stream}."

    def checked_enqueue_ack(self: NatsTransport, subject: str, body: bytes) -> None:
        if body == b"+ACK" and subject.startswith(ack_prefix) and subject not in record.finished:
            record.early_acks.append(subject)
        enqueue_ack(self, subject, body)

    monkeypatch.setattr(NatsTransport, "enqueue_ack", checked_enqueue_ack)

    acked: list[int] = []
    failed: list[tuple[int, BaseException]] = []
    duplicate_acks = 0
    kills = 0

    async def producer(running: polyn.Running, numbers: range) -> None:
        nonlocal duplicate_acks
        for n in numbers:
            try:
                ack = await polyn.pub(running, service.type, {"n": n}, ack=True)
            except Exception as exc:  # a lost event: recorded, asserted below
                failed.append((n, exc))
                continue
            assert ack is not None
            duplicate_acks += ack.duplicate
            acked.append(n)

    async def crash_twice() -> None:
        nonlocal kills
        for k in range(1, KILLS + 1):
            await wait_until(lambda k=k: len(acked) >= EVENTS * k // (KILLS + 1), timeout=40)
            await trio.to_thread.run_sync(fresh_server.kill)
            kills += 1
            await trio.sleep(OUTAGE)
            await trio.to_thread.run_sync(fresh_server.start)

    start = trio.current_time()
    async with service.run(Ledger(record, type=service.type)) as running:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash_twice)
            for p in range(PRODUCERS):
                nursery.start_soon(producer, running, range(p, EVENTS, PRODUCERS))
        published = trio.current_time() - start
        await wait_until(lambda: len(record.seen_ids) >= len(acked), timeout=40)
        await service.wait_settled(timeout=30)
    elapsed = trio.current_time() - start

    stored = await service.stored()
    stored_numbers = collections.Counter(message.json()["data"]["n"] for message in stored)
    lost = sorted(set(range(EVENTS)) - set(stored_numbers))
    duplicates_stored = sum(count - 1 for count in stored_numbers.values())
    duplicates_handled = sum(record.calls.values()) - len(record.calls)
    retries = sum("retrying with the same Nats-Msg-Id" in r.getMessage() for r in caplog.records)
    figures.update(
        scenario="1. server crash: SIGKILL + restart during ack=True publish and Pipeline consume",
        events=EVENTS,
        kills=kills,
        lost=len(lost) + len(failed),
        duplicates_stored=duplicates_stored,
        duplicates_handled=duplicates_handled,
        seconds=round(elapsed, 1),
        notes=(
            f"file storage; {PRODUCERS} producers; publish phase {published:.1f} s; "
            f"{retries} publish retries, {duplicate_acks} answered duplicate=True; "
            f"handled once after dedup: {len(record.applied)}; early acks: "
            f"{len(record.early_acks)}"
        ),
    )

    assert kills == KILLS
    assert failed == []  # every pub(ack=True) returned an ack
    assert sorted(acked) == list(range(EVENTS))
    assert lost == []
    assert duplicates_stored == 0
    assert len(stored) == EVENTS
    # every event was handled, each applied exactly once by the deduplicating handler
    assert sorted(record.applied) == list(range(EVENTS))
    assert all(len(ids) == 1 for ids in record.ids_of.values())  # one event id per number
    assert all(len(seqs) == 1 for seqs in record.sequences.values())  # one stored copy each
    assert record.early_acks == []
