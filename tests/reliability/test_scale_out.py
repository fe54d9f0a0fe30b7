"""Scale-out (issue 21): N processes of one service share one durable consumer.

Three processes run the same service (a PullConsumer) on one stream. In normal operation every
event is handled, and none twice. Then one process is SIGKILLed mid-run: what it had fetched and
not acknowledged is redelivered to the other two after the consumer's ``ack_wait``, and nothing
is lost (an event the killed process handled but had not yet acked may be handled again: at
least once, as JetStream promises).
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import trio
from reliability_support import Service, wait_until

SERVICE = textwrap.dedent(
    """
    import os, sys, trio
    import polyn

    url, domain, source_root, event_type, log_path = sys.argv[1:]
    SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}

    class Worker(polyn.PullConsumer):
        type = event_type
        prefetch = 5

        async def handle_message(self, event, msg):
            await trio.sleep(0.005)  # some work, so that the three share the load
            with open(log_path, "a") as log:
                log.write(f"{os.getpid()} {event.data['n']}\\n")
            return polyn.Ack.ACK

    class Ready(polyn.Actor):
        async def init(self):
            print("ready", flush=True)

    config = polyn.Config(domain=domain, source_root=source_root, servers=[url])
    app = polyn.App(config, [
        polyn.NatsConnection(),
        polyn.SchemaStore(schemas={event_type: SCHEMA}),
        Worker(),
        Ready(),
    ])
    trio.run(app.main)
    """
)


def handled(log: Path) -> list[tuple[int, int]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        pid, n = line.split()
        out.append((int(pid), int(n)))
    return out


def spawn(service: Service, script: Path, log: Path) -> Any:
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            service.url,
            service.domain,
            service.config.source_root,
            service.type,
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def start_services(service: Service, script: Path, log: Path, count: int) -> list[Any]:
    processes = [spawn(service, script, log) for _ in range(count)]
    for process in processes:
        assert process.stdout is not None
        line = await trio.to_thread.run_sync(process.stdout.readline)
        assert line.strip() == "ready"
    return processes


def stop(processes: list[Any]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def publish(service: Service, numbers: range) -> None:
    for n in numbers:
        event = service.event(n)
        await service.admin.js_publish(
            service.type, service.body(event), headers={"Nats-Msg-Id": event.id}
        )


async def test_three_processes_share_a_durable_consumer_and_a_killed_one_loses_nothing(
    service: Service, tmp_path: Path, figures: dict[str, Any]
) -> None:
    await service.create(ack_wait=2)
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    log = tmp_path / "handled.log"
    processes = await start_services(service, script, log, 3)
    try:
        # normal operation: every event once, the work shared
        first = range(300)
        await publish(service, first)
        await wait_until(lambda: len(handled(log)) >= len(first), timeout=60)
        await service.wait_settled()
        normal = handled(log)
        counts = collections.Counter(n for _, n in normal)
        assert sorted(counts) == list(first)
        assert max(counts.values()) == 1, "an event was handled twice in normal operation"
        assert len({pid for pid, _ in normal}) >= 2, "one process did all the work"

        # one process SIGKILLed mid-run
        second = range(300, 900)
        await publish(service, second)
        victim = processes[0]
        await wait_until(
            lambda: sum(1 for pid, n in handled(log) if pid == victim.pid and n >= 300) >= 20,
            timeout=60,
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = trio.current_time()
        await wait_until(lambda: {n for _, n in handled(log)} >= set(second), timeout=90)
        state = await service.wait_settled(timeout=60)
        drained = trio.current_time() - killed_at
    finally:
        stop(processes)

    everything = handled(log)
    numbers = collections.Counter(n for _, n in everything)
    lost = [n for n in range(900) if numbers[n] == 0]
    twice = [n for n, c in numbers.items() if c > 1]
    by_victim = {n for pid, n in everything if pid == victim.pid}
    assert lost == []
    # only what the killed process had in hand can have been handled again
    assert set(twice) <= by_victim
    assert state["num_pending"] == 0 and state["num_ack_pending"] == 0
    survivors = {pid for pid, n in everything if n >= 300 and pid != victim.pid}
    assert len(survivors) == 2
    figures.update(
        events=900,
        kills=1,
        lost=0,
        duplicates_handled=len(twice),
        notes=(
            f"3 processes, one durable consumer (ack_wait 2 s, prefetch 5); normal run: 300 "
            f"handled once each; SIGKILL of one: drained {drained:.1f} s later, "
            f"{len(twice)} handled twice (in the killed process's hands)"
        ),
    )
