"""Publish benchmark: validated ``polyn.pub`` against FastStream and raw nats-py, same run.

Run by hand (not part of the tests), on a quiet machine, tracing off (no OpenTelemetry SDK):

    pip install -e ".[dev,bench]"                # FastStream 0.7.8 and pydantic
    python benchmarks/publish.py                 # starts its own nats-server
    python benchmarks/publish.py --rounds 5 --events 50000
    python benchmarks/publish.py --old /tmp/polyn-old   # also polyn from another checkout

The payload is issue 17's realistic one (``benchmarks/realistic.py``): five fields in a CloudEvent
of about 384 bytes, its schema declaring draft 2020-12 or draft-07. Every contender runs in a
process of its own, rounds are interleaved, and the medians are compared:

- **polyn pub (<draft>)**: ``polyn.pub(running, ...)`` from ``--tasks`` (50) trio tasks: a
  validated CloudEvent with ``Nats-Msg-Id``, core NATS, until flushed;
- **faststream publish(model)**: FastStream's ``NatsBroker.publish`` of a pydantic model (built,
  so validated, per event) from 50 asyncio tasks; its logger off (its best case); it sends the
  bare model JSON, no envelope;
- **raw nats-py**: ``nc.publish`` of a pre-encoded body with the header, one task, no validation;
- **polyn pub(ack=True)** from 100 tasks, against **raw js.publish** (sequential) and raw nats-py
  with 100 asyncio tasks in flight, into a memory stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import realistic

SUBJECT = "user.created.v1"


# -- contenders (each runs in its own process) ---------------------------------------------------


async def polyn_pub(url: str, events: int, tasks: int, draft: str, ack: bool) -> float:
    from polyn.app import App
    from polyn.config import Config
    from polyn.nats import NatsConnection, transport_for
    from polyn.publish import pub
    from polyn.schema_store import SchemaStore

    config = Config(domain="com.bench", source_root="bench", servers=[url])
    schemas = {SUBJECT: realistic.SCHEMAS[draft]}
    app = App(config, [NatsConnection(), SchemaStore(schemas=schemas)])
    async with app.run() as running:
        import trio

        transport = transport_for(running)
        per_task = events // tasks
        if ack:
            await _fresh_stream(transport)

        async def publisher(offset: int) -> None:
            for i in range(offset, offset + per_task):
                await pub(running, SUBJECT, realistic.data(i), ack=ack)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(tasks):
                nursery.start_soon(publisher, n * per_task)
        await transport.flush()
        elapsed = time.perf_counter() - start
        if ack:
            await transport.delete_stream("BENCH_PUB")
    return per_task * tasks / elapsed


async def _fresh_stream(transport: Any) -> None:
    try:
        await transport.delete_stream("BENCH_PUB")
    except Exception:
        pass
    await transport.create_stream({"name": "BENCH_PUB", "subjects": [SUBJECT], "storage": "memory"})


async def faststream_publish(url: str, events: int, tasks: int) -> float:
    from faststream.nats import NatsBroker

    model = realistic.pydantic_model()
    broker = NatsBroker(url, logger=None)
    await broker.connect()
    per_task = events // tasks

    async def publisher(offset: int) -> None:
        for i in range(offset, offset + per_task):
            await broker.publish(model(**realistic.data(i)), SUBJECT)

    start = time.perf_counter()
    await asyncio.gather(*(publisher(n * per_task) for n in range(tasks)))
    await broker.connection.flush()  # type: ignore[union-attr]
    elapsed = time.perf_counter() - start
    await broker.stop()
    return per_task * tasks / elapsed


async def raw_publish(url: str, events: int) -> float:
    import nats

    nc = await nats.connect(url)
    body = json.dumps({"data": realistic.data()}).encode().ljust(384)
    start = time.perf_counter()
    for i in range(events):
        await nc.publish(SUBJECT, body, headers={"Nats-Msg-Id": str(i)})
    await nc.flush()
    elapsed = time.perf_counter() - start
    await nc.close()
    return events / elapsed


async def raw_js_publish(url: str, events: int, tasks: int) -> float:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.delete_stream("BENCH_PUB")
    except Exception:
        pass
    await js.add_stream(name="BENCH_PUB", subjects=[SUBJECT], storage="memory")
    body = json.dumps({"data": realistic.data()}).encode().ljust(384)
    per_task = events // tasks

    async def publisher(offset: int) -> None:
        for i in range(offset, offset + per_task):
            await js.publish(SUBJECT, body, headers={"Nats-Msg-Id": str(i)})

    start = time.perf_counter()
    await asyncio.gather(*(publisher(n * per_task) for n in range(tasks)))
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_PUB")
    await nc.close()
    return per_task * tasks / elapsed


def one(args: argparse.Namespace) -> float:
    url = os.environ["NATS_URL"]
    kind = args.kind
    if kind == "polyn":
        import trio

        return float(trio.run(polyn_pub, url, args.events, args.tasks, args.draft, args.ack))
    if kind == "faststream":
        return asyncio.run(faststream_publish(url, args.events, args.tasks))
    if kind == "raw":
        return asyncio.run(raw_publish(url, args.events))
    if kind == "raw-js":
        return asyncio.run(raw_js_publish(url, args.events, args.tasks))
    raise SystemExit(f"unknown contender {kind}")


# -- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--ack-events", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", help="another polyn checkout to measure in the same run")
    parser.add_argument("--only", help="comma-separated contender names to run")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--draft", default="2020-12", help=argparse.SUPPRESS)
    parser.add_argument("--ack", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return

    n, a = str(args.events), str(args.ack_events)
    contenders: dict[str, tuple[list[str], str | None]] = {}
    checkouts: list[tuple[str, str | None]] = [("", None)]
    if args.old:
        checkouts.append((" [old]", args.old))
    for draft in ("draft-07", "2020-12"):
        for label, path in checkouts:
            contenders[f"polyn pub, {draft}, 50 tasks{label}"] = (
                ["--kind", "polyn", "--draft", draft, "--events", n, "--tasks", "50"],
                path,
            )
    contenders["faststream publish(model), 50 tasks"] = (
        ["--kind", "faststream", "--events", n, "--tasks", "50"],
        None,
    )
    contenders["raw nats-py publish, 1 task"] = (["--kind", "raw", "--events", n], None)
    for label, path in checkouts:
        contenders[f"polyn pub(ack=True), draft-07, 100 tasks{label}"] = (
            ["--kind", "polyn", "--draft", "draft-07", "--ack", "--events", a, "--tasks", "100"],
            path,
        )
    contenders["raw js.publish, sequential"] = (
        ["--kind", "raw-js", "--events", a, "--tasks", "1"],
        None,
    )
    contenders["raw js.publish, 100 tasks"] = (
        ["--kind", "raw-js", "--events", a, "--tasks", "100"],
        None,
    )
    if args.only:
        wanted = args.only.split(",")
        contenders = {k: v for k, v in contenders.items() if any(w in k for w in wanted)}

    def measure(url: str) -> dict[str, list[float]]:
        os.environ["NATS_URL"] = url
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for round_no in range(args.rounds):
            for name, (argv, path) in contenders.items():
                results[name].append(realistic.run_one(__file__, argv, path))
            print(f"round {round_no + 1} of {args.rounds} done", file=sys.stderr)
        return results

    url = os.environ.get("NATS_URL")
    if url:
        results = measure(url)
    else:
        from polyn.server import NatsServer

        with NatsServer() as server:
            results = measure(server.url)
    base = next((k for k in results if k.startswith("faststream")), next(iter(results)))
    realistic.report(results, base, "/s", higher=True)


if __name__ == "__main__":
    main()
