"""Scenario 3: handlers that fail, and an infrastructure fault that crashes an actor repeatedly.

Failing handlers: a Pipeline's handler raises on some events. Those messages are naked with a
backoff growing with their delivery count (1 s, 2 s, 4 s ...) and redelivered; the pipeline never
stops; ``max_failures`` terminates and dead-letters the hopeless ones; once the transient fault
is removed every other event is handled. Nothing is lost: every event is handled or
dead-lettered, never both.

Crash loop: a consumer whose stream is deleted (and recreated) crashes; its supervisor restarts
it. Its supervisor (``max_restarts=M`` within ``max_seconds``) restarts it M times and escalates
on the (M+1)-th crash to the App, which restarts the whole subtree (one restart of its own);
a sibling consumer keeps handling its events through all of it and loses none.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import pytest
import trio
from _support import Shared, SharedDict, SharedSet
from reliability_support import ORDER_SCHEMA, Service, wait_until

import polyn
from polyn.actors import Supervisor
from polyn.consumers import DEADLETTER_PREFIX as PREFIX
from polyn.consumers import Pipeline, PipelineMessage, PullConsumer, backoff
from polyn.errors import ActorError
from polyn.event import Event
from polyn.nats import Message
from polyn.server import NatsServer

EVENTS = 300
MAX_FAILURES = 4


def hopeless(n: int) -> bool:
    return n % 30 == 0


def transient(n: int) -> bool:
    return n % 5 == 1


class Flaky(Pipeline):
    """Raises on hopeless events always, and on transient ones while the fault lasts."""

    processors = {"default": {"concurrency": 10}}  # noqa: RUF012
    starts = 0

    def __init__(self, log: dict[str, Any], **options: Any) -> None:
        super().__init__(**options)
        self.log = log

    async def init(self) -> None:
        type(self).starts += 1
        await super().init()

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        n = message.event.data["n"]
        metadata = message.msg.metadata
        assert metadata is not None
        failing = hopeless(n) or (transient(n) and self.log["fault"])
        self.log["deliveries"][n].append((metadata.num_delivered, trio.current_time(), failing))
        if hopeless(n):
            raise ValueError(f"event {n} can never be handled")
        if failing:
            raise ConnectionError(f"the database is down (event {n})")
        self.log["handled"].append(n)
        return message


async def test_failing_handlers_back_off_dead_letter_the_hopeless_and_lose_nothing(
    service: Service, fresh_server: NatsServer, figures: dict[str, Any]
) -> None:
    admin = service.admin
    await service.create(storage="file")
    dead_stream = service.names.stream("deadletters")
    await admin.create_stream({"name": dead_stream, "subjects": [PREFIX + ">"]})
    log: dict[str, Any] = SharedDict(
        fault=True,
        deliveries=collections.defaultdict(list),
        handled=[],
    )
    Flaky.starts = 0
    start = trio.current_time()
    async with service.run(
        Flaky(log, type=service.type, max_failures=MAX_FAILURES, fetch_expires=0.5)
    ) as running:
        for n in range(EVENTS):
            await polyn.pub(running, service.type, {"n": n}, ack=True)
        deliveries = log["deliveries"]
        failing = [n for n in range(EVENTS) if transient(n) and not hopeless(n)]
        # the fault lasts until every transient event has failed twice
        await wait_until(lambda: all(len(deliveries[n]) >= 2 for n in failing), timeout=20)
        log["fault"] = False
        fault_removed = trio.current_time() - start
        hopeless_count = sum(hopeless(n) for n in range(EVENTS))

        async def dead_letters() -> int:
            return int((await admin.stream_info(dead_stream)).state.get("messages", 0))

        with trio.fail_after(30):
            while (  # noqa: ASYNC110
                len(set(log["handled"])) < EVENTS - hopeless_count
                or await dead_letters() < hopeless_count
            ):
                await trio.sleep(0.1)
        state = await service.wait_settled()
    elapsed = trio.current_time() - start

    dead = await service.stored(dead_stream)
    dead_numbers = collections.Counter(m.json()["data"]["n"] for m in dead)  # type: ignore[index]
    handled = collections.Counter(log["handled"])
    problems: list[str] = []
    for n in range(EVENTS):
        history = deliveries[n]
        counts = [count for count, _, _ in history]
        if counts != list(range(1, len(counts) + 1)):
            problems.append(f"event {n}: delivery counts {counts}")
        for (count, at, failed), (_, next_at, _) in itertools.pairwise(history):
            if failed and next_at - at < 0.9 * backoff(count):
                problems.append(
                    f"event {n}: redelivered {next_at - at:.2f} s after failing delivery "
                    f"{count}, before its backoff of {backoff(count)} s"
                )
        if hopeless(n):
            if len(history) != MAX_FAILURES or handled[n] or dead_numbers[n] != 1:
                problems.append(f"hopeless {n}: {history}, dead letters {dead_numbers[n]}")
        elif handled[n] != 1 or dead_numbers[n]:
            problems.append(f"event {n}: handled {handled[n]} times, dead-lettered too")
        elif transient(n) and (len(history) < 3 or history[-1][2]):
            problems.append(f"transient {n}: {history}")
        elif not transient(n) and len(history) != 1:
            problems.append(f"healthy event {n} delivered {len(history)} times")
    errors = {(m.headers["Polyn-Error-Type"], m.headers["Polyn-Error"]) for m in dead}
    redeliveries = sum(len(history) - 1 for history in deliveries.values())
    figures.update(
        scenario="3a. failing handlers: nak with backoff, max_failures dead-letters",
        events=EVENTS,
        kills=f"{len(failing)} transient + {hopeless_count} hopeless failing events",
        lost=EVENTS - len(handled) - len(dead_numbers),
        duplicates_stored=sum(count - 1 for count in dead_numbers.values()),
        duplicates_handled=sum(count - 1 for count in handled.values()),
        seconds=round(elapsed, 1),
        notes=(
            f"max_failures={MAX_FAILURES}; {redeliveries} redeliveries after naks, each no "
            f"sooner than its backoff; fault removed at {fault_removed:.1f} s; "
            f"pipeline restarts: {Flaky.starts - 1}"
        ),
    )
    assert problems == []
    assert sorted(dead_numbers) == [n for n in range(EVENTS) if hopeless(n)]
    assert all(kind == "ValueError" and "can never be handled" in text for kind, text in errors)
    assert Flaky.starts == 1  # the pipeline never stopped
    assert state["num_pending"] == 0 and state["num_ack_pending"] == 0


# -- crash loop -----------------------------------------------------------------------------

MAX_RESTARTS = 3
INIT_TIME = 1.0  # leaves the test ample time to recreate the stream during a restart


class Workers(Supervisor):
    starts = 0

    async def init(self) -> None:
        type(self).starts += 1
        await super().init()


class Steady(Pipeline):
    starts = 0

    def __init__(self, seen: set[str], **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen

    async def init(self) -> None:
        type(self).starts += 1
        await super().init()

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        self.seen.add(message.event.id)
        return message


class Fragile(PullConsumer):
    """A consumer whose start takes a while, as one that opens a database connection would."""

    starts = 0
    ready = 0
    fetch_expires = 0.3

    def __init__(self, seen: list[int], **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen

    async def init(self) -> None:
        type(self).starts += 1
        await trio.sleep(INIT_TIME)
        await super().init()
        type(self).ready += 1

    async def handle_message(self, event: Event, msg: Message) -> polyn.Ack:
        self.seen.append(event.data["n"])
        return polyn.Ack.ACK


async def test_a_crash_loop_escalates_through_supervisor_intensity_exactly_as_configured(
    service: Service, fresh_server: NatsServer, figures: dict[str, Any]
) -> None:
    admin = service.admin
    payments = Service(admin, service.url, service.names, kind="payment")
    await service.create(storage="file")
    await payments.create(storage="file")
    Workers.starts = Steady.starts = Fragile.starts = Fragile.ready = 0
    steady_seen: set[str] = SharedSet()
    published: list[str] = []
    fragile_seen: list[int] = Shared()
    workers = Workers(
        [
            Steady(steady_seen, type=service.type, fetch_expires=0.3),
            Fragile(fragile_seen, type=payments.type),
        ],
        name="workers",
        strategy="one_for_one",
        max_restarts=MAX_RESTARTS,
        max_seconds=60,
    )
    schemas = {service.type: ORDER_SCHEMA, payments.type: ORDER_SCHEMA}
    observed: list[tuple[int, int, int, int]] = []  # after each cycle
    health_false = 0
    start = trio.current_time()
    app_run = service.app(workers, schemas=schemas, max_restarts=1, max_seconds=60).run()
    with pytest.raises(ActorError, match="maximum restart intensity") as gave_up:
        async with app_run as app:
            producing = True
            producer_done = trio.Event()

            async def produce() -> None:
                # Stopped by a flag, not cancelled: a cancelled publish has an unknown outcome.
                n = 0
                while producing:
                    ack = await polyn.pub(app, service.type, {"n": n}, ack=True)
                    assert ack is not None
                    published.append(str(n))
                    n += 1
                    await trio.sleep(0.005)
                producer_done.set()

            async def watch_health() -> None:
                nonlocal health_false
                while True:
                    health_false += not app.health()
                    await trio.sleep(0.02)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                nursery.start_soon(watch_health)
                number = 0
                for _cycle in range(MAX_RESTARTS + 1):
                    before = Fragile.starts
                    await admin.delete_stream(payments.stream)  # the fault
                    await wait_until(lambda before=before: Fragile.starts > before, timeout=15)
                    await payments.create(storage="file")  # repaired while the consumer restarts
                    await wait_until(lambda: Fragile.ready == Fragile.starts, timeout=15)
                    await polyn.pub(app, payments.type, {"n": number}, ack=True)
                    await wait_until(lambda number=number: number in fragile_seen, timeout=15)
                    number += 1
                    observed.append((Workers.starts, Steady.starts, Fragile.starts, health_false))
                await trio.sleep(0.5)
                producing = False
                with trio.fail_after(30):
                    await producer_done.wait()
                nursery.cancel_scope.cancel()
            total = len(published)
            await wait_until(lambda: len(steady_seen) >= total, timeout=20)
            assert app.health()
            await service.wait_settled()
            # Deleted for good this time: the restarted subtree's supervisor spends its intensity
            # on starts that fail, escalates again, and the App, past its own max_restarts=1,
            # gives up: the service stops with the error instead of looping forever.
            before_end = Fragile.starts
            await admin.delete_stream(payments.stream)
            await trio.sleep_forever()
    elapsed = trio.current_time() - start

    stored = int((await admin.stream_info(service.stream)).state.get("messages", 0))
    figures.update(
        scenario="3b. crash loop: stream deleted and recreated, supervisor intensity",
        events=f"{total} on the steady consumer, {MAX_RESTARTS + 1} on the crashing one",
        kills=f"{MAX_RESTARTS + 2} stream deletions ({MAX_RESTARTS + 1} repaired)",
        lost=total - len(steady_seen) + (MAX_RESTARTS + 1 - len(set(fragile_seen))),
        duplicates_stored=stored - total,
        duplicates_handled=len(fragile_seen) - len(set(fragile_seen)),
        seconds=round(elapsed, 1),
        notes=(
            f"workers max_restarts={MAX_RESTARTS}: (workers starts, steady starts, crashing "
            f"consumer starts) after each deletion: {[o[:3] for o in observed]}; "
            f"app unhealthy in {health_false} samples (only while the subtree restarted); "
            f"last deletion not repaired: {Fragile.starts - before_end} failed starts, then "
            "the workers and the App (max_restarts=1) gave up with ActorError"
        ),
    )
    # M deletions: the crashing consumer is restarted M times by its supervisor, which stays.
    for cycle, (workers_starts, steady_starts, fragile_starts, _) in enumerate(
        observed[:MAX_RESTARTS], start=1
    ):
        assert (workers_starts, steady_starts, fragile_starts) == (1, 1, 1 + cycle)
    # One more within max_seconds: the supervisor gives up; the App restarts the subtree once.
    assert observed[MAX_RESTARTS][:3] == (2, 2, MAX_RESTARTS + 2)
    assert observed[MAX_RESTARTS - 1][3] == 0  # healthy while only a child restarted
    assert observed[MAX_RESTARTS][3] > 0  # the subtree's restart shows in health()
    assert sorted(fragile_seen) == list(range(MAX_RESTARTS + 1))
    assert steady_seen and len(steady_seen) == total  # nothing lost by the steady consumer
    # the end: 1 crash + MAX_RESTARTS failed starts, then the workers and the App gave up
    assert Fragile.starts == before_end + MAX_RESTARTS
    assert "supervisor" in str(gave_up.value)
