"""SchemaStore at scale: start time and memory with 10,000 schemas, validation cost by store
size, and how quickly the watch picks up a changed schema. Against a real nats-server.

Run by hand (not part of the tests): ``python benchmarks/schema_store.py [N ...]`` (default
``0 100 10000``). Numbers measured while other programs use the CPU are indicative only.

For each N a bucket gets N distinct schemas (the realistic five-field payload schema of issue
17 with a field renamed per schema, alternately declaring 2020-12 and no ``$schema``), then a
fresh Python process (so its memory is its own) starts an App with a NatsConnection and a
SchemaStore on it and reports:

- start: from ``app.run()`` until the store's snapshot holds every schema;
- RSS: the process's resident memory after the start minus before it; the N = 0 row is the
  baseline (the connection, the actors), so ``+MB vs 0`` is what the schemas cost;
- validate: microseconds per ``decode`` of one realistic event whose type is in the store
  (best of five rounds; flat means the store's size does not matter);
- watch: milliseconds from writing a changed schema to the bucket until the store's snapshot
  has it (median of 20).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from polyn.server import NatsServer

PAYLOAD = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "age": 36,
    "tags": ["math", "engines", "poetry"],
    "active": True,
}


def schema(index: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "object",
        "required": ["name", "email", "age", "tags", "active"],
        "properties": {
            "name": {"type": "string"},
            "email": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "active": {"type": "boolean"},
            f"extra{index}": {"type": "string", "maxLength": 10 + index % 50},
        },
    }
    if index % 2 == 0:
        document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **document}
    return document


def name(index: int) -> str:
    return f"bench.event{index}.v1"


async def fill(url: str, bucket: str, count: int) -> None:
    from polyn.nats import NatsTransport

    transport = await NatsTransport.connect(url)
    try:
        await transport.kv_create(bucket)
        async with trio.open_nursery() as nursery:
            limit = trio.CapacityLimiter(64)

            async def put(index: int) -> None:
                async with limit:
                    await transport.kv_put(bucket, name(index), json.dumps(schema(index)).encode())

            for index in range(count):
                nursery.start_soon(put, index)
    finally:
        await transport.close()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _has(store: Any, target: str, description: str) -> bool:
    document = store.schemas.get(target) or {}
    return bool(document.get("description") == description)


async def child(url: str, bucket: str, count: int) -> dict[str, float]:
    """One measurement, in a process of its own."""
    import polyn
    from polyn.codec import decode, encode
    from polyn.event import Event
    from polyn.nats import transport_for
    from polyn.schema_store import SchemaStore

    config = polyn.Config(
        domain="com.bench", source_root="bench", servers=[url], schema_store=bucket
    )
    app = polyn.App(config, [polyn.NatsConnection(), SchemaStore()])
    before = _rss_mb()
    started = time.perf_counter()
    async with app.run() as running:
        store = running.ref(bucket).running_actor()
        assert isinstance(store, SchemaStore)
        while len(store.schemas) < count:  # noqa: ASYNC110 - the watch fills it
            await trio.sleep(0.001)
        start = time.perf_counter() - started
        after = _rss_mb()
        result = {"start": start, "rss": after - before}
        if count:
            target = name(count // 2)
            body = encode(Event.new(config, target, PAYLOAD), store.schemas, config)
            best = float("inf")
            for _ in range(5):
                rounds, began = 5000, time.perf_counter()
                for _ in range(rounds):
                    decode(body, store.schemas, config)
                best = min(best, (time.perf_counter() - began) / rounds * 1e6)
            result["validate"] = best
            delays = []
            transport = transport_for(running.ref("nats"))
            for attempt in range(20):
                changed = {**schema(count // 2), "description": f"v{attempt}"}
                began = time.perf_counter()
                await transport.kv_put(bucket, target, json.dumps(changed).encode())
                while not _has(store, target, f"v{attempt}"):  # noqa: ASYNC110
                    await trio.sleep(0.0005)
                delays.append((time.perf_counter() - began) * 1e3)
            result["watch"] = statistics.median(delays)
    return result


def main(counts: list[int]) -> None:
    with NatsServer() as server:
        rows = []
        for count in counts:
            bucket = f"BENCH_SCHEMAS_{count}"
            trio.run(fill, server.url, bucket, count)
            output = subprocess.run(
                [sys.executable, __file__, "--child", server.url, bucket, str(count)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append((count, json.loads(output.strip().splitlines()[-1])))
    baseline = next((result["rss"] for count, result in rows if count == 0), 0.0)
    print(
        f"{'schemas':>8}{'start s':>10}{'RSS +MB':>10}{'+MB vs 0':>10}"
        f"{'decode µs':>11}{'watch ms':>10}"
    )
    for count, result in rows:
        print(
            f"{count:>8}{result['start']:>10.3f}{result['rss']:>10.1f}"
            f"{result['rss'] - baseline:>10.1f}"
            f"{result.get('validate', float('nan')):>11.2f}"
            f"{result.get('watch', float('nan')):>10.1f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(trio.run(child, sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        main([int(arg) for arg in sys.argv[1:]] or [0, 100, 10_000])
