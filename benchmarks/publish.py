"""Publish benchmark: validated ``polyn.pub`` against a naive loop and FastStream, same run.

Run by hand (not part of the tests), on a quiet machine, tracing off (no OpenTelemetry SDK):

    pip install -e ".[dev,bench]"       # FastStream and pydantic
    python benchmarks/publish.py        # starts its own nats-server
    NATS_URL=nats://... python benchmarks/publish.py --events 50000

Every contender publishes the same user.created.v1 payload (a small object, three fields) as a
core NATS publish, until the server has it (flushed), and reports events per second:

- **polyn**: ``polyn.pub(running, ...)`` from ``--tasks`` trio tasks in one App: a full
  CloudEvent (``Event.new``), the envelope and the payload validated against their schemas,
  ``Nats-Msg-Id`` header, through the transport's batched publish path.
- **naive**: nats-py on asyncio, one loop: build the CloudEvent dict, ``jsonschema.validate``
  the payload (the schema compiled at each call, as the naive code does), ``json.dumps``,
  ``await nc.publish`` with the ``Nats-Msg-Id`` header.
- **naive-precompiled**: the same with a validator built once.
- **faststream**: FastStream's ``NatsBroker.publish`` of a pydantic model (built, so validated,
  per event), sequentially and from ``--tasks`` asyncio tasks. FastStream sends the bare model
  JSON: no envelope, no envelope validation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import nats
import trio

from polyn.app import App
from polyn.config import Config
from polyn.nats import NatsConnection
from polyn.publish import pub
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer

SUBJECT = "user.created.v1"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "email", "age"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}


def payload(i: int) -> dict[str, Any]:
    return {"name": f"user {i}", "email": f"user{i}@example.com", "age": i % 100}


# -- polyn ---------------------------------------------------------------------------------------


async def run_polyn(url: str, events: int, tasks: int) -> float:
    config = Config(domain="com.bench", source_root="bench", servers=[url])
    app = App(config, [NatsConnection(), SchemaStore(schemas={SUBJECT: SCHEMA})])
    async with app.run() as running:
        from polyn._resolve import resolve

        transport = resolve(running).transport
        per_task = events // tasks

        async def publisher(offset: int) -> None:
            for i in range(offset, offset + per_task):
                await pub(running, SUBJECT, payload(i))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(tasks):
                nursery.start_soon(publisher, n * per_task)
        await transport.flush()
        elapsed = time.perf_counter() - start
    return per_task * tasks / elapsed


# -- naive nats-py + json + jsonschema -----------------------------------------------------------


def naive_event(i: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "specversion": "1.0.1",
        "type": "com.bench." + SUBJECT,
        "source": "com:bench:bench",
        "time": datetime.now(UTC).isoformat(),
        "data": payload(i),
        "datacontenttype": "application/json",
        "dataschema": None,
        "polyndata": {"clientlang": "python", "clientlangversion": "3", "clientversion": "0"},
    }


async def run_naive(url: str, events: int, precompiled: bool) -> float:
    nc = await nats.connect(url)
    validator = jsonschema.Draft7Validator(SCHEMA)
    start = time.perf_counter()
    for i in range(events):
        event = naive_event(i)
        if precompiled:
            validator.validate(event["data"])
        else:
            jsonschema.validate(event["data"], SCHEMA)
        body = json.dumps(event).encode()
        await nc.publish(SUBJECT, body, headers={"Nats-Msg-Id": event["id"]})
    await nc.flush()
    elapsed = time.perf_counter() - start
    await nc.close()
    return events / elapsed


# -- FastStream ----------------------------------------------------------------------------------


async def run_faststream(url: str, events: int, tasks: int) -> float:
    from faststream.nats import NatsBroker
    from pydantic import BaseModel, Field

    class UserCreated(BaseModel):
        name: str = Field(min_length=1)
        email: str
        age: int = Field(ge=0)

    broker = NatsBroker(url)
    await broker.connect()
    per_task = events // tasks

    async def publisher(offset: int) -> None:
        for i in range(offset, offset + per_task):
            await broker.publish(UserCreated(**payload(i)), SUBJECT)

    start = time.perf_counter()
    await asyncio.gather(*(publisher(n * per_task) for n in range(tasks)))
    await broker.connection.flush()  # type: ignore[union-attr]
    elapsed = time.perf_counter() - start
    await broker.stop()
    return per_task * tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()

    def measure(url: str) -> dict[str, float]:
        results: dict[str, float] = {}
        results["polyn"] = trio.run(run_polyn, url, args.events, args.tasks)
        results["naive"] = asyncio.run(run_naive(url, args.events // 5, False))
        results["naive-precompiled"] = asyncio.run(run_naive(url, args.events, True))
        try:
            results["faststream (1 task)"] = asyncio.run(run_faststream(url, args.events, 1))
            results[f"faststream ({args.tasks} tasks)"] = asyncio.run(
                run_faststream(url, args.events, args.tasks)
            )
        except ImportError:
            print("FastStream / pydantic not installed: pip install -e '.[bench]'")
        return results

    url = os.environ.get("NATS_URL")
    if url:
        results = measure(url)
    else:
        with NatsServer(jetstream=False) as server:
            results = measure(server.url)
    polyn = results["polyn"]
    print(f"{'contender':<28} {'events/s':>12} {'polyn / it':>12}")
    for name, rate in results.items():
        print(f"{name:<28} {rate:>12,.0f} {polyn / rate:>11.2f}x")


if __name__ == "__main__":
    main()
