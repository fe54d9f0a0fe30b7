"""Consume benchmark: validated, acknowledged events per second from JetStream consumers.

Run by hand (not part of the tests), on a quiet machine, with the ``bench`` extra installed
(``pip install -e ".[dev,bench]"``: FastStream and pydantic)::

    python benchmarks/consume.py                      # peers + polyn, both schema drafts
    python benchmarks/consume.py --events 50000 --rounds 3
    python benchmarks/consume.py --only prefetch      # PullConsumer throughput by prefetch
    python benchmarks/consume.py --only scale         # N PullConsumers in one App; 100k backlog

The payload is issue 17's realistic one: five fields (``name``, ``email``, ``age``, ``tags``,
``active``), ~384-byte events, its schema declaring ``"$schema"`` 2020-12 (as JSON Schema
tooling writes by default) and, in a second set of rows, the same schema without it (the
draft-07 path). Every contender drains the same backlog from a durable pull consumer of its own,
acknowledging each event:

- raw nats-py on plain asyncio: ``fetch(100)`` and ``ack`` per message, **no validation**;
- FastStream's NATS pull subscriber, batch mode (``PullSub(batch_size=100, batch=True)``) and
  per-message mode (``PullSub(batch_size=100)``), logger off (its best case), the body parsed
  into a pydantic model of the CloudEvent and the payload (``str``, ``str``, ``int >= 0``,
  ``list[str]``, ``bool``);
- polyn ``PullConsumer`` with its default ``prefetch`` and with ``prefetch = 100``, and
  ``Pipeline`` (10 processors, one batcher of 100), each decoding and validating every event
  against the CloudEvent schema and the payload schema.

Targets (issue 17): PullConsumer (defaults) >= 1.5x FastStream per-message; Pipeline >= 1.0x
FastStream batch and >= 0.7x raw. Rounds are interleaved; the table shows medians of the
per-round figures and ratios. Tracing is off (no OpenTelemetry SDK configured).

``--only prefetch`` measures PullConsumer by ``prefetch`` (1 ... 200) with an instant handler and
with a 1 ms handler, the figures behind ``polyn.consumers.DEFAULT_PREFETCH``. ``--only scale``:
N PullConsumers in one App on one connection (N = 1, 10, 100), each on its own type and stream,
pre-filled with the same total of events, aggregate events/s once every consumer has started
(target: within 20 % of N = 1; the start, and the rate with it, are reported apart); and
a 100k-event backlog drained by a Pipeline, with the process's RSS before and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import nats
import trio

from polyn import codec, naming
from polyn.actors import Supervisor
from polyn.config import Config
from polyn.consumers import (
    DEFAULT_PREFETCH,
    Ack,
    BatchInfo,
    Pipeline,
    PipelineMessage,
    PullConsumer,
)
from polyn.event import Event
from polyn.nats import NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

TYPE = "bench.user.registered.v1"
CONFIG_FIELDS = {"domain": "com.bench", "source_root": "bench"}
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "email", "age", "tags", "active"],
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "active": {"type": "boolean"},
    },
}
SCHEMAS = {
    "2020-12": {"$schema": "https://json-schema.org/draft/2020-12/schema", **PAYLOAD_SCHEMA},
    "draft-07": PAYLOAD_SCHEMA,
}
DATA = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "age": 36,
    "tags": ["math", "engines", "poetry"],
    "active": True,
}


def durable(event_type: str = TYPE) -> str:
    """The durable consumer, named as polyn derives it, so every contender reads the same name."""
    return naming.consumer_name(event_type, Config(**CONFIG_FIELDS))


# -- preparing a backlog -----------------------------------------------------------------------


async def fill(
    url: str,
    stream: str,
    count: int,
    schema: dict[str, Any],
    event_type: str = TYPE,
    ack_wait: float = 60,
) -> None:
    """A stream with ``count`` valid events and the durable consumer."""
    config = Config(servers=[url], **CONFIG_FIELDS)
    schemas = codec.Schemas.from_dict({event_type: schema})
    transport = await NatsTransport.connect(url)
    try:
        await transport.create_stream(
            {"name": stream, "subjects": [event_type], "storage": "memory"}
        )
        await transport.create_consumer(
            stream,
            {
                "durable_name": durable(event_type),
                "ack_policy": "explicit",
                "max_ack_pending": 20_000,
                "ack_wait": ack_wait,
            },
        )
        for _ in range(count):
            await transport.publish(
                event_type, codec.encode(Event.new(config, event_type, DATA), schemas, config)
            )
        await transport.flush()
        with trio.fail_after(120):
            while (await transport.stream_info(stream)).state.get("messages", 0) < count:  # noqa: ASYNC110 - polls the server
                await trio.sleep(0.05)
    finally:
        await transport.close()


async def drained(url: str, stream: str, event_type: str = TYPE) -> bool:
    transport = await NatsTransport.connect(url)
    try:
        info = await transport.consumer_info(stream, durable(event_type))
        return info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await transport.close()


async def delete(url: str, *streams: str) -> None:
    transport = await NatsTransport.connect(url)
    try:
        for stream in streams:
            await transport.delete_stream(stream)
    finally:
        await transport.close()


# -- raw nats-py ---------------------------------------------------------------------------------


async def raw(url: str, stream: str, count: int) -> float:
    nc = await nats.connect(url)
    sub = await nc.jetstream().pull_subscribe_bind(durable(), stream=stream)
    start = time.perf_counter()
    done = 0
    while done < count:
        msgs = await sub.fetch(100, timeout=5)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await nc.flush()
    elapsed = time.perf_counter() - start
    await nc.close()
    return count / elapsed


# -- FastStream ----------------------------------------------------------------------------------


def faststream_run(url: str, stream: str, count: int, batch: bool) -> float:
    from faststream.nats import JStream, NatsBroker, PullSub
    from pydantic import BaseModel, Field

    class User(BaseModel):
        name: str
        email: str
        age: int = Field(ge=0)
        tags: list[str]
        active: bool

    class CloudEvent(BaseModel):
        id: str
        specversion: str
        type: str
        source: str
        time: str | None = None
        datacontenttype: str | None = None
        dataschema: str | None = None
        polyndata: dict[str, Any] | None = None
        data: User

    async def main() -> float:
        broker = NatsBroker(url, logger=None)
        done = asyncio.Event()
        handled = 0
        js_stream = JStream(stream, declare=False)

        if batch:

            @broker.subscriber(
                TYPE,
                stream=js_stream,
                durable=durable(),
                pull_sub=PullSub(batch_size=100, batch=True),
            )
            async def on_batch(events: list[CloudEvent]) -> None:
                nonlocal handled
                handled += len(events)
                if handled >= count:
                    done.set()

        else:

            @broker.subscriber(
                TYPE, stream=js_stream, durable=durable(), pull_sub=PullSub(batch_size=100)
            )
            async def on_event(event: CloudEvent) -> None:
                nonlocal handled
                handled += 1
                if handled >= count:
                    done.set()

        start = time.perf_counter()
        await broker.start()
        await done.wait()
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.2)  # the last acks
        await broker.stop()
        return count / elapsed

    return asyncio.run(main())


# -- polyn ---------------------------------------------------------------------------------------


class Counter:
    """Counts handled events across consumers; sets ``done`` at ``count``."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.handled = 0
        self.finished = 0.0
        self.done = trio.Event()

    def add(self, n: int = 1) -> None:
        self.handled += n
        if self.handled >= self.count and not self.done.is_set():
            self.finished = time.perf_counter()
            self.done.set()


class CountingConsumer(PullConsumer):
    def __init__(self, counter: Counter, work: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.counter = counter
        self.work = work

    async def handle_message(self, event: Event, msg: Any) -> Any:
        if self.work:
            await trio.sleep(self.work)
        self.counter.add()
        return Ack.ACK


class CountingPipeline(Pipeline):
    processors = {"default": {"concurrency": 10}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 100, "batch_timeout": 0.05, "concurrency": 2}}  # noqa: RUF012

    def __init__(self, counter: Counter, **options: Any) -> None:
        super().__init__(**options)
        self.counter = counter

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        self.counter.add(len(messages))


async def polyn_run(
    url: str,
    consumers: list[Any],
    schemas: dict[str, Any],
    counter: Counter,
    on_done: Callable[[], None] | None = None,
    up: list[tuple[float, int]] | None = None,
) -> float:
    """Events/s from the start of the App until ``counter`` is done; ``up`` gets the moment
    every child had started and how many events were handled by then."""
    config = Config(servers=[url], **CONFIG_FIELDS)
    children = [NatsConnection(), SchemaStore(schemas=schemas), *consumers]
    start = time.perf_counter()
    async with Supervisor(children).run(context={"config": config}):
        if up is not None:
            up.append((time.perf_counter(), counter.handled))
        await counter.done.wait()
        elapsed = time.perf_counter() - start
        if on_done is not None:
            on_done()
    return counter.count / elapsed


def polyn_pull(url: str, stream: str, count: int, schema: Any, prefetch: int | None) -> float:
    counter = Counter(count)
    options = {"prefetch": prefetch} if prefetch else {}
    consumer = CountingConsumer(counter, type=TYPE, stream_name=stream, **options)
    return trio.run(polyn_run, url, [consumer], {TYPE: schema}, counter)


def polyn_pipeline(url: str, stream: str, count: int, schema: Any) -> float:
    counter = Counter(count)
    consumer = CountingPipeline(counter, type=TYPE, stream_name=stream)
    return trio.run(polyn_run, url, [consumer], {TYPE: schema}, counter)


# -- the comparison ------------------------------------------------------------------------------


def compare(url: str, count: int, rounds: int) -> None:
    contenders: list[tuple[str, Callable[[str, Any], float]]] = [
        ("raw fetch(100)+ack", lambda s, schema: asyncio.run(raw(url, s, count))),
        ("FastStream batch", lambda s, schema: faststream_run(url, s, count, batch=True)),
        ("FastStream per-message", lambda s, schema: faststream_run(url, s, count, batch=False)),
        (
            f"polyn PullConsumer (default prefetch {DEFAULT_PREFETCH})",
            lambda s, schema: polyn_pull(url, s, count, schema, None),
        ),
        (
            "polyn PullConsumer, prefetch 100",
            lambda s, schema: polyn_pull(url, s, count, schema, 100),
        ),
        ("polyn Pipeline", lambda s, schema: polyn_pipeline(url, s, count, schema)),
    ]
    for draft, schema in SCHEMAS.items():
        figures: dict[str, list[float]] = {label: [] for label, _ in contenders}
        for round_ in range(rounds):
            for index, (label, contender) in enumerate(contenders):
                stream = f"BENCH_CONSUME_{index}"
                trio.run(fill, url, stream, count, schema)
                rate = contender(stream, schema)
                complete = trio.run(drained, url, stream)
                trio.run(delete, url, stream)
                figures[label].append(rate)
                print(
                    f"[{draft} round {round_ + 1}] {label}: {rate:,.0f} events/s "
                    f"(all acked: {complete})",
                    file=sys.stderr,
                )
        print(f"\n### {draft} schema: {count:,} events, {rounds} rounds (medians)\n")
        print("| consumer | events/s | vs raw | vs FastStream batch | vs FastStream per-message |")
        print("|---|---|---|---|---|")
        for label, rates in figures.items():
            vs = {
                base: statistics.median(r / b for r, b in zip(rates, figures[base], strict=True))
                for base in ("raw fetch(100)+ack", "FastStream batch", "FastStream per-message")
            }
            print(
                f"| {label} | {statistics.median(rates):,.0f} | {vs['raw fetch(100)+ack']:.2f} | "
                f"{vs['FastStream batch']:.2f} | {vs['FastStream per-message']:.2f} |"
            )


def prefetch_sweep(url: str, count: int, rounds: int) -> None:
    schema = SCHEMAS["2020-12"]
    print(f"\n### PullConsumer by prefetch, 2020-12 schema, {count:,} events (medians)\n")
    print("| prefetch | instant handler, events/s | 1 ms handler, events/s |")
    print("|---|---|---|")
    for prefetch in (1, 5, 10, 25, 50, 100, 200):
        instant, slow = [], []
        for _ in range(rounds):
            trio.run(fill, url, "BENCH_PREFETCH", count, schema)
            instant.append(polyn_pull(url, "BENCH_PREFETCH", count, schema, prefetch))
            trio.run(delete, url, "BENCH_PREFETCH")
            slow_count = min(count, 3000)
            trio.run(fill, url, "BENCH_PREFETCH", slow_count, schema)
            counter = Counter(slow_count)
            consumer = CountingConsumer(
                counter, work=0.001, type=TYPE, stream_name="BENCH_PREFETCH", prefetch=prefetch
            )
            slow.append(trio.run(polyn_run, url, [consumer], {TYPE: schema}, counter))
            trio.run(delete, url, "BENCH_PREFETCH")
        print(
            f"| {prefetch} | {statistics.median(instant):,.0f} | {statistics.median(slow):,.0f} |"
        )


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(url: str, total: int, backlog: int) -> None:
    schema = SCHEMAS["2020-12"]
    print(f"\n### N PullConsumers in one App, one connection, {total:,} events in all\n")
    print("Aggregate events/s once every consumer has started (the start is reported below).\n")
    print("| N | aggregate events/s | vs N = 1 |")
    print("|---|---|---|")
    base = 0.0
    lines = []
    for n in (1, 10, 100):
        per = total // n
        types = [f"bench.scale{i}.registered.v1" for i in range(n)]
        streams = [f"BENCH_SCALE_{i}" for i in range(n)]
        for event_type, stream in zip(types, streams, strict=True):
            trio.run(fill, url, stream, per, schema, event_type)
        counter = Counter(per * n)
        consumers = [
            CountingConsumer(counter, type=t, stream_name=s, name=f"c{i}")
            for i, (t, s) in enumerate(zip(types, streams, strict=True))
        ]
        up: list[tuple[float, int]] = []
        started = time.perf_counter()
        overall = trio.run(
            polyn_run, url, consumers, dict.fromkeys(types, schema), counter, None, up
        )
        trio.run(delete, url, *streams)
        # From the moment every consumer has started: the start itself (each consumer checks
        # its stream and consumer on the server) is reported apart.
        (up_at, handled_before) = up[0]
        if handled_before >= counter.count:  # all handled while the last ones started
            rate = overall
        else:
            rate = (counter.handled - handled_before) / (counter.finished - up_at)
        base = base or rate
        print(f"| {n} | {rate:,.0f} | {rate / base:.2f} |")
        lines.append(f"| {n} | {up_at - started:.2f} | {handled_before:,} | {overall:,.0f} |")
    print("\nThe App's start (each consumer checks its stream and consumer), rate with it:\n")
    print("| N | start s | handled during the start | events/s, start included |")
    print("|---|---|---|---|")
    for line in lines:
        print(line)

    print(f"\n### A {backlog:,}-event backlog drained by a Pipeline\n")
    trio.run(fill, url, "BENCH_BACKLOG", backlog, schema)
    before = rss_mb()
    peak: list[float] = []
    counter = Counter(backlog)
    consumer = CountingPipeline(counter, type=TYPE, stream_name="BENCH_BACKLOG")
    rate = trio.run(
        polyn_run, url, [consumer], {TYPE: schema}, counter, lambda: peak.append(rss_mb())
    )
    trio.run(delete, url, "BENCH_BACKLOG")
    print(f"{rate:,.0f} events/s; RSS {before:.0f} MB before, {peak[0]:.0f} MB when drained")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["compare", "prefetch", "scale"], default=None)
    parser.add_argument("--backlog", type=int, default=100_000)
    args = parser.parse_args()

    def run(url: str) -> None:
        print(
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs; tracing off"
        )
        if args.only in (None, "compare"):
            compare(url, args.events, args.rounds)
        if args.only in (None, "prefetch"):
            prefetch_sweep(url, args.events, args.rounds)
        if args.only in (None, "scale"):
            scale(url, args.events, args.backlog)

    url = os.environ.get("NATS_URL")
    if url:
        run(url)
    else:
        from polyn.server import NatsServer

        with NatsServer() as server:
            run(server.url)


if __name__ == "__main__":
    main()
