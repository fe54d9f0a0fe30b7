"""Scenario 5: a reconnect storm: the server is killed and restarted ten times within a minute.

While it happens, producers publish with ``ack=True``, a Pipeline consumes the stream, and a core
NATS Subscriber listens. Afterwards: no acknowledged publish is lost and none was stored twice;
every event was handled; after each restart the Subscriber received a core event published
after it (its subscription was renewed); the App's ``health()`` went false for each outage and
true again after it, and the connection counted each disconnect and reconnect.
"""

from __future__ import annotations

import collections
import logging
import random
from typing import Any

import pytest
import trio
from _support import Shared
from reliability_support import ORDER_SCHEMA, Service, wait_until

import polyn
from polyn.consumers import Pipeline, PipelineMessage, Subscriber
from polyn.event import Event
from polyn.nats import Message, NatsConnection
from polyn.server import NatsServer

KILLS = 10
STORM_LIMIT = 60.0  # seconds: ten outages within a minute
PRODUCERS = 8


class Listener(Subscriber):
    def __init__(self, heard: list[int], **options: Any) -> None:
        super().__init__(**options)
        self.heard = heard

    async def handle_message(self, event: Event, msg: Message) -> None:
        self.heard.append(event.data["n"])


class Ledger(Pipeline):
    processors = {"default": {"concurrency": 5}}  # noqa: RUF012
    fetch_expires = 0.5

    def __init__(self, calls: collections.Counter[int], **options: Any) -> None:
        super().__init__(**options)
        self.calls = calls

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        self.calls[message.event.data["n"]] += 1
        return message


async def test_ten_outages_in_a_minute_lose_no_acked_publish_and_show_in_health(
    service: Service,
    fresh_server: NatsServer,
    figures: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="polyn.publish")
    await service.create(storage="file", ack_wait=5)
    core_type = service.names.subject("ping.sent.v1")
    schemas = {service.type: ORDER_SCHEMA, core_type: ORDER_SCHEMA}
    heard: list[int] = Shared()
    calls: collections.Counter[int] = collections.Counter()
    acked: list[int] = []
    failed: list[tuple[int, BaseException]] = []
    health: list[bool] = []
    outages_seen = 0
    rng = random.Random(5)

    app = service.app(
        Listener(heard, subject=core_type),
        Ledger(calls, type=service.type),
        schemas=schemas,
    )
    start = trio.current_time()
    async with app.run() as running:
        connection = running.ref("nats").running_actor()
        assert isinstance(connection, NatsConnection)
        numbers = iter(range(10**9))

        stop = False

        async def produce() -> None:
            # Stopped by a flag, not cancelled: a cancelled publish has an unknown outcome.
            for n in numbers:
                if stop:
                    return
                try:
                    await polyn.pub(running, service.type, {"n": n}, ack=True)
                except Exception as exc:  # a lost event: recorded, asserted below
                    failed.append((n, exc))
                else:
                    acked.append(n)
                await trio.sleep(0.002)

        async def watch_health() -> None:
            nonlocal outages_seen
            while True:
                healthy = running.health()
                if health and health[-1] and not healthy:
                    outages_seen += 1
                health.append(healthy)
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_health)
            await wait_until(lambda: len(health) > 0 and health[-1])
            async with trio.open_nursery() as producers:
                for _ in range(PRODUCERS):
                    producers.start_soon(produce)
                storm_start = trio.current_time()
                probes = 0
                for kill in range(1, KILLS + 1):
                    await trio.sleep(rng.uniform(0.3, 1.0))  # traffic between outages
                    await trio.to_thread.run_sync(fresh_server.kill)
                    await wait_until(lambda kill=kill: outages_seen >= kill, timeout=10)
                    await trio.sleep(rng.uniform(0.2, 0.8))  # the outage
                    await trio.to_thread.run_sync(fresh_server.start)
                    await wait_until(lambda: health[-1], timeout=15)
                    # the subscription was renewed: a core event sent now reaches the Subscriber
                    probe = -kill
                    await polyn.pub(running, core_type, {"n": probe})
                    await wait_until(lambda probe=probe: probe in heard, timeout=10)
                    probes += 1
                storm = trio.current_time() - storm_start
                await trio.sleep(0.5)
                stop = True  # the producers finish the publish in hand and return
            nursery.cancel_scope.cancel()

        await wait_until(lambda: set(acked) <= set(calls), timeout=30)
        await service.wait_settled()
        state = connection.state
        disconnects, reconnects = state.disconnects, state.reconnects
    elapsed = trio.current_time() - start

    stored = await service.stored()
    stored_numbers = collections.Counter(m.json()["data"]["n"] for m in stored)  # type: ignore[index]
    lost = set(acked) - set(stored_numbers)
    retries = sum("retrying with the same Nats-Msg-Id" in r.getMessage() for r in caplog.records)
    figures.update(
        scenario="5. reconnect storm: 10 kills and restarts within a minute",
        events=len(acked) + len(failed),
        kills=KILLS,
        lost=len(lost) + len(failed),
        duplicates_stored=sum(count - 1 for count in stored_numbers.values()),
        duplicates_handled=sum(count - 1 for count in calls.values()),
        seconds=round(elapsed, 1),
        notes=(
            f"storm {storm:.1f} s; {PRODUCERS} producers, {retries} publish retries; "
            f"health() outages seen {outages_seen}; connection disconnects {disconnects}, "
            f"reconnects {reconnects}; subscriber probes after each restart {probes}/{KILLS}; "
            f"unhealthy in {health.count(False)}/{len(health)} samples"
        ),
    )
    assert failed == []
    assert lost == set()
    assert set(stored_numbers) == set(acked)
    assert all(count == 1 for count in stored_numbers.values())
    assert set(calls) == set(acked)  # every event handled
    assert storm < STORM_LIMIT
    assert outages_seen == KILLS
    assert (disconnects, reconnects) == (KILLS, KILLS)
    assert probes == KILLS
