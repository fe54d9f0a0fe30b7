"""Pipeline's Broadway surface (issue 19): batch keys, partitions, acknowledgement choices,
``handle_failed`` — on a real nats-server."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
from _support import SharedDict
from consumer_support import Setup, wait_until

from polyn.consumers import (
    Ack,
    BatcherSpec,
    BatchInfo,
    Nak,
    Pipeline,
    PipelineMessage,
    ProcessorSpec,
)


async def settled(setup: Setup, timeout: float = 15.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            state = await setup.consumer_state()
            if state["num_ack_pending"] == 0 and state["num_pending"] == 0:
                return state
            await trio.sleep(0.05)


async def test_batches_are_grouped_per_batch_key_and_batch_info_names_it(setup: Setup) -> None:
    await setup.create()
    batches: list[tuple[Any, list[int]]] = []

    class Keyed(Pipeline):
        batchers = {"db": BatcherSpec(batch_size=4, batch_timeout=0.3, concurrency=2)}  # noqa: RUF012

        async def handle_message(self, processor: str, message: PipelineMessage) -> Any:
            n = message.event.data["n"]
            return message.put_batcher("db").put_batch_key(f"tenant-{n % 3}")

        async def handle_batch(
            self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
        ) -> None:
            batches.append((batch_info.batch_key, [m.event.data["n"] for m in messages]))

    for n in range(30):
        await setup.publish(n)
    async with setup.tree(Keyed(type=setup.type)):
        await wait_until(lambda: sum(len(ns) for _, ns in batches) == 30)
        await settled(setup)
    assert sorted(n for _, ns in batches for n in ns) == list(range(30))
    for key, numbers in batches:
        assert {f"tenant-{n % 3}" for n in numbers} == {key}
        assert len(numbers) <= 4


async def test_partitioned_processors_keep_the_order_of_each_key(setup: Setup) -> None:
    await setup.create()
    order: dict[int, list[int]] = {}
    tasks: dict[int, set[int]] = {}

    class Ordered(Pipeline):
        processors = {  # noqa: RUF012
            "default": ProcessorSpec(
                concurrency=6, partition_by=lambda message: message.event.data["note"]
            )
        }

        async def handle_message(self, processor: str, message: PipelineMessage) -> Any:
            key = int(message.event.data["note"])
            await trio.sleep(random.random() / 100)  # unequal work: unpartitioned, order breaks
            order.setdefault(key, []).append(message.event.data["n"])
            tasks.setdefault(key, set()).add(id(trio.lowlevel.current_task()))
            return message

    for n in range(120):
        await setup.publish(n, note=str(n % 4))
        if n == 60:
            await setup.publish_raw(b"not json: the producer settles it, the rest goes on")
    async with trio.open_nursery() as nursery:
        await setup.watch_deadletters(nursery)
        async with setup.tree(Ordered(type=setup.type)):
            await wait_until(lambda: sum(map(len, order.values())) == 120)
            await wait_until(lambda: len(setup.deadletters) == 1)
            await settled(setup)
        nursery.cancel_scope.cancel()
    for key, numbers in order.items():
        assert numbers == [n for n in range(120) if n % 4 == key]
        assert len(tasks[key]) == 1  # one processor task per key


async def test_partitioned_batchers_keep_the_order_of_each_key_across_batches(
    setup: Setup,
) -> None:
    await setup.create()
    seen: dict[str, list[int]] = {}
    partitions: dict[str, set[int | None]] = {}

    class Ordered(Pipeline):
        processors = {  # noqa: RUF012
            "default": {"concurrency": 4, "partition_by": lambda m: m.event.data["note"]}
        }
        batchers = {  # noqa: RUF012
            "db": {
                "batch_size": 5,
                "batch_timeout": 0.1,
                "concurrency": 3,
                "partition_by": lambda m: m.event.data["note"],
            }
        }

        async def handle_message(self, processor: str, message: PipelineMessage) -> Any:
            return message.put_batcher("db")

        async def handle_batch(
            self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
        ) -> None:
            await trio.sleep(random.random() / 50)
            for m in messages:
                key = m.event.data["note"]
                seen.setdefault(key, []).append(m.event.data["n"])
                partitions.setdefault(key, set()).add(batch_info.partition)

    for n in range(90):
        await setup.publish(n, note=f"k{n % 3}")
    async with setup.tree(Ordered(type=setup.type)):
        await wait_until(lambda: sum(map(len, seen.values())) == 90)
        await settled(setup)
    for key, numbers in seen.items():
        assert numbers == [n for n in range(90) if f"k{n % 3}" == key]
        assert len(partitions[key]) == 1 and None not in partitions[key]


class Choosy(Pipeline):
    """Fails event n when ``fails(n, delivery)``; acknowledgement chosen per message."""

    def __init__(self, log: dict[str, Any], **options: Any) -> None:
        super().__init__(**options)
        self.log = log

    async def handle_message(self, processor: str, message: PipelineMessage) -> Any:
        n = message.event.data["n"]
        delivery = message.msg.metadata.num_delivered if message.msg.metadata else 0
        self.log.setdefault("deliveries", []).append((n, delivery))
        choice = self.log.get("choices", {}).get(n)
        if choice is not None:
            message.configure_ack(on_failure=choice)
        if self.log["fails"](n, delivery):
            raise RuntimeError(f"event {n} failed on delivery {delivery}")
        return message

    async def handle_failed(self, messages: list[PipelineMessage]) -> list[PipelineMessage]:
        for m in messages:
            self.log.setdefault("failed", []).append(
                (m.event.data["n"], m.final, str(m.failure), m.msg.acked)
            )
        return messages


async def test_acknowledgement_choices_on_failure_ack_nak_with_delay_and_term(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    await setup.create()
    log: dict[str, Any] = SharedDict(
        fails=lambda n, delivery: n in (0, 2) or (n == 1 and delivery == 1),
        choices={0: Ack.ACK, 1: Nak(delay=0.3), 2: "term"},
    )
    async with trio.open_nursery() as nursery:
        await setup.watch_deadletters(nursery)
        pipeline = Choosy(log, type=setup.type, name="choosy")
        async with setup.tree(pipeline) as tree:
            for n in range(4):
                await setup.publish(n)
            await wait_until(lambda: (1, 2) in log.get("deliveries", []))
            await wait_until(lambda: len(setup.deadletters) == 1)
            state = await settled(setup)
            await trio.sleep(0.5)  # nothing else comes back
            running = tree.ref("choosy").running_actor()
            assert isinstance(running, Choosy)
            assert running.failed_count == 3  # acked by choice, but still counted
        nursery.cancel_scope.cancel()
    deliveries = sorted(log["deliveries"])
    assert deliveries == [(0, 1), (1, 1), (1, 2), (2, 1), (3, 1)]
    assert state["num_redelivered"] == 0
    (letter,) = setup.deadletters
    assert letter.headers["Polyn-Error"] == "event 2 failed on delivery 1"
    # the failure acked by choice is logged
    assert any(
        "event 0 failed" in r.getMessage() and "by choice" in r.getMessage() for r in caplog.records
    )


async def test_handle_failed_sees_every_failure_before_settlement_including_the_last(
    setup: Setup,
) -> None:
    await setup.create()
    log: dict[str, Any] = SharedDict(fails=lambda n, delivery: n == 7)
    async with trio.open_nursery() as nursery:
        await setup.watch_deadletters(nursery)
        async with setup.tree(Choosy(log, type=setup.type, max_failures=3, fetch_expires=0.2)):
            await setup.publish(7)
            await wait_until(lambda: len(setup.deadletters) == 1, timeout=20)
            await settled(setup)
        nursery.cancel_scope.cancel()
    failed = log["failed"]
    assert [final for _, final, _, _ in failed] == [False, False, True]
    assert all(acked is None for _, _, _, acked in failed)  # called before settlement
    assert [reason for _, _, reason, _ in failed] == [
        f"event 7 failed on delivery {d}" for d in (1, 2, 3)
    ]


async def test_handle_failed_may_choose_the_acknowledgement_and_on_success_applies(
    setup: Setup,
) -> None:
    await setup.create()
    log: dict[str, Any] = SharedDict(fails=lambda n, delivery: n == 1)

    class Forgiving(Choosy):
        async def handle_failed(self, messages: list[PipelineMessage]) -> list[PipelineMessage]:
            for m in messages:
                m.configure_ack(on_failure=Ack.ACK)
            return await super().handle_failed(messages)

    # on_success=TERM: a success settles with +TERM (no redelivery either way)
    pipeline = Forgiving(log, type=setup.type, on_success=Ack.TERM)
    async with setup.tree(pipeline):
        for n in range(3):
            await setup.publish(n)
        await wait_until(lambda: len(log.get("deliveries", [])) == 3)
        state = await settled(setup)
        await trio.sleep(0.3)
    assert sorted(log["deliveries"]) == [(0, 1), (1, 1), (2, 1)]
    assert state["num_redelivered"] == 0
