"""Portal benchmark: ``pub`` from asyncio tasks and from threads through a ``polyn.Portal``,
against ``pub`` from trio tasks in the App's own trio run, in the same process and run.

Run by hand (not part of the tests), on a quiet machine, tracing off (no OpenTelemetry SDK):

    pip install -e ".[dev]"
    python benchmarks/portal.py                 # starts its own nats-server
    NATS_URL=nats://... python benchmarks/portal.py --events 50000 --rounds 5

Every contender publishes the realistic payload of issue 17 (five fields, ~380 bytes as a
CloudEvent) as a validated core publish until the server has it (flushed), once with the
schema declaring ``"$schema": ".../draft/2020-12/schema"`` and once declaring draft-07, and
reports events per second and CPU time per event (of all the process's threads: a figure that
other processes' load disturbs less than the wall clock); rounds are interleaved and the median
is reported, with each contender's ratio to trio in the same round:

- **trio**: ``polyn.pub(running, ...)`` from ``--tasks`` trio tasks in a trio program
  (``async with app.run()`` in ``trio.run``): the baseline.
- **asyncio**: ``await portal.pub(...)`` from ``--tasks`` asyncio tasks in ``asyncio.run``,
  through ``async with polyn.Portal(app)`` (the App on the portal's trio thread).
- **threads**: ``portal.pub(...)`` from ``--threads`` threads through ``with polyn.Portal(app)``.

Then request / reply: ``--requests`` sequential requests to a Responder in the same App (both
validated), p50 and p99 in microseconds, from a trio task and from an asyncio task.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio

import polyn
from polyn.resolve import resolve
from polyn.server import NatsServer

SUBJECT = "user.created.v1"
ASK = "price.asked.v1"
TOLD = "price.told.v1"

PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"},
    "email": {"type": "string"},
    "age": {"type": "integer", "minimum": 0},
    "tags": {"type": "array", "items": {"type": "string"}},
    "active": {"type": "boolean"},
}
DRAFTS = {
    "2020-12": "https://json-schema.org/draft/2020-12/schema",
    "draft-07": "http://json-schema.org/draft-07/schema#",
}
PAYLOAD: dict[str, Any] = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "age": 36,
    "tags": ["math", "engines", "poetry"],
    "active": True,
}


def schemas(draft: str) -> dict[str, Any]:
    schema = {
        "$schema": DRAFTS[draft],
        "type": "object",
        "required": list(PROPERTIES),
        "properties": PROPERTIES,
    }
    return {SUBJECT: schema, ASK: schema, TOLD: schema}


class Prices(polyn.Responder):
    subject = ASK

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, Any]:
        return TOLD, event.data


def make_app(url: str, draft: str) -> polyn.App:
    config = polyn.Config(domain="com.bench", source_root="bench", servers=[url])
    return polyn.App(
        config, [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas(draft)), Prices()]
    )


async def flush(running: polyn.Running) -> None:
    await resolve(running).transport.flush()


def p50_p99(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def rates(events: int, start: float, cpu: float) -> tuple[float, float]:
    """Events per second (wall clock) and CPU µs per event (all of the process's threads)."""
    return (
        events / (time.perf_counter() - start),
        (time.process_time() - cpu) / events * 1e6,
    )


# -- trio: the baseline ----------------------------------------------------------------------------


def run_trio(url: str, draft: str, events: int, tasks: int, requests: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        async with make_app(url, draft).run() as running:
            per_task = events // tasks

            async def publisher() -> None:
                for _ in range(per_task):
                    await polyn.pub(running, SUBJECT, PAYLOAD)

            start, cpu = time.perf_counter(), time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(publisher)
            await flush(running)
            rate, cpu = rates(per_task * tasks, start, cpu)
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                await polyn.request(running, ASK, PAYLOAD)
                samples.append(time.perf_counter() - t0)
            p50, p99 = p50_p99(samples)
            return {"rate": rate, "cpu": cpu, "p50": p50, "p99": p99}

    return trio.run(main)


# -- asyncio through the portal --------------------------------------------------------------------


def run_asyncio(url: str, draft: str, events: int, tasks: int, requests: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        async with polyn.Portal(make_app(url, draft)) as portal:
            per_task = events // tasks

            async def publisher() -> None:
                for _ in range(per_task):
                    await portal.pub(SUBJECT, PAYLOAD)

            start, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(publisher() for _ in range(tasks)))
            await portal.call(flush)
            rate, cpu = rates(per_task * tasks, start, cpu)
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                await portal.request(ASK, PAYLOAD)
                samples.append(time.perf_counter() - t0)
            p50, p99 = p50_p99(samples)
            return {"rate": rate, "cpu": cpu, "p50": p50, "p99": p99}

    return asyncio.run(main())


# -- threads through the portal --------------------------------------------------------------------


def run_threads(url: str, draft: str, events: int, threads: int) -> dict[str, float]:
    with polyn.Portal(make_app(url, draft)) as portal:
        per_thread = events // threads
        go = threading.Event()

        def publisher() -> None:
            go.wait()
            for _ in range(per_thread):
                portal.pub(SUBJECT, PAYLOAD)

        workers = [threading.Thread(target=publisher) for _ in range(threads)]
        for worker in workers:
            worker.start()
        start, cpu = time.perf_counter(), time.process_time()
        go.set()
        for worker in workers:
            worker.join()
        portal.call(flush)
        rate, cpu = rates(per_thread * threads, start, cpu)
        return {"rate": rate, "cpu": cpu}


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    import os

    url = os.environ.get("NATS_URL")
    if url:
        yield url
        return
    with NatsServer() as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drafts", nargs="+", default=list(DRAFTS), choices=list(DRAFTS))
    args = parser.parse_args()

    with server_url() as url:
        for draft in args.drafts:
            contenders: dict[str, Callable[[], dict[str, float]]] = {
                "trio": functools.partial(
                    run_trio, url, draft, args.events, args.tasks, args.requests
                ),
                "asyncio": functools.partial(
                    run_asyncio, url, draft, args.events, args.tasks, args.requests
                ),
                "threads": functools.partial(run_threads, url, draft, args.events, args.threads),
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
            for _ in range(args.rounds):
                for name, run in contenders.items():
                    results[name].append(run())
            report(draft, args, results)


def report(
    draft: str, args: argparse.Namespace, results: dict[str, list[dict[str, float]]]
) -> None:
    print(f"\nschema {draft}: {args.events} events, median of {args.rounds} interleaved rounds")
    trio_rates = [r["rate"] for r in results["trio"]]
    labels = {
        "trio": f"trio, {args.tasks} tasks (baseline)",
        "asyncio": f"asyncio, {args.tasks} tasks, portal",
        "threads": f"threads, {args.threads}, portal",
    }
    trio_cpu = [r["cpu"] for r in results["trio"]]
    for name, rounds in results.items():
        speeds = [r["rate"] for r in rounds]
        ratios = [rate / base for rate, base in zip(speeds, trio_rates, strict=True)]
        cpu = [r["cpu"] for r in rounds]
        cpu_ratios = [base / c for c, base in zip(cpu, trio_cpu, strict=True)]
        print(
            f"  pub  {labels[name]:<34} {statistics.median(speeds):>9,.0f}/s  "
            f"{statistics.median(ratios):.2f}x trio (rounds: "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f");  CPU {statistics.median(cpu):.1f} µs/event = "
            f"{statistics.median(cpu_ratios):.2f}x trio's speed"
        )
    for name in ("trio", "asyncio"):
        p50 = statistics.median(r["p50"] for r in results[name])
        p99 = statistics.median(r["p99"] for r in results[name])
        print(f"  request/reply p50 from {name:<8} {p50:>7.0f} µs  (p99 {p99:.0f} µs)")


if __name__ == "__main__":
    main()
