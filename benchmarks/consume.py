"""Consume benchmark: validated, acknowledged events per second from one JetStream consumer.

Run by hand (not part of the tests), on a quiet machine, with the ``bench`` extra installed
(``pip install -e ".[dev,bench]"``: FastStream and pydantic)::

    python benchmarks/consume.py              # starts its own nats-server
    python benchmarks/consume.py --events 50000

Every contender drains the same backlog of valid Polyn events (a CloudEvent with a
five-property payload) from a durable pull consumer of its own, acknowledging each one:

- (a) raw nats-py on plain asyncio: ``fetch(100)`` and ``ack`` per message, **no validation**;
- (b) FastStream's NATS pull subscriber, batch mode (``PullSub(batch_size=100, batch=True)``),
  the body parsed into a pydantic model of the CloudEvent and its payload;
- (c) FastStream, per-message mode (``PullSub(batch_size=100)``), the same model;
- polyn ``PullConsumer`` (one event at a time, in order) and ``Pipeline`` (10 processors, one
  batcher of 100), each decoding and validating every event against the CloudEvent schema and
  its payload schema.

Tracing is off (no OpenTelemetry SDK configured). Ratios are polyn / baseline, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from typing import Any

import nats
import trio

from polyn import codec, naming
from polyn.actors import Supervisor
from polyn.config import Config
from polyn.consumers import Ack, BatchInfo, Pipeline, PipelineMessage, PullConsumer
from polyn.event import Event
from polyn.nats import NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

TYPE = "bench.order.placed.v1"
CONFIG_FIELDS = {"domain": "com.bench", "source_root": "bench"}
SCHEMA = {
    "type": "object",
    "required": ["order_id", "customer", "amount", "currency", "items"],
    "properties": {
        "order_id": {"type": "string"},
        "customer": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "items": {"type": "integer", "minimum": 1},
    },
}


# The durable consumer is named as polyn derives it, so every contender reads the same name.
DURABLE = naming.consumer_name(TYPE, Config(**CONFIG_FIELDS))


# -- preparing a backlog -----------------------------------------------------------------------


async def fill(url: str, stream: str, count: int) -> None:
    """A stream with ``count`` valid events and a durable consumer named ``durable``."""
    config = Config(servers=[url], **CONFIG_FIELDS)
    schemas = codec.Schemas.from_dict({TYPE: SCHEMA})
    transport = await NatsTransport.connect(url)
    try:
        await transport.create_stream({"name": stream, "subjects": [TYPE], "storage": "memory"})
        await transport.create_consumer(
            stream,
            {
                "durable_name": DURABLE,
                "ack_policy": "explicit",
                "max_ack_pending": 20_000,
                "ack_wait": 60,
            },
        )
        for n in range(count):
            data = {
                "order_id": f"o-{n}",
                "customer": "ada",
                "amount": 12.5,
                "currency": "EUR",
                "items": 3,
            }
            await transport.publish(
                TYPE, codec.encode(Event.new(config, TYPE, data), schemas, config)
            )
        await transport.flush()
        with trio.fail_after(60):
            while (await transport.stream_info(stream)).state.get("messages", 0) < count:  # noqa: ASYNC110 - polls the server
                await trio.sleep(0.05)
    finally:
        await transport.close()


async def drained(url: str, stream: str) -> bool:
    transport = await NatsTransport.connect(url)
    try:
        info = await transport.consumer_info(stream, DURABLE)
        return info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await transport.close()


async def delete(url: str, stream: str) -> None:
    transport = await NatsTransport.connect(url)
    try:
        await transport.delete_stream(stream)
    finally:
        await transport.close()


# -- (a) raw nats-py -------------------------------------------------------------------------


async def raw(url: str, stream: str, count: int) -> float:
    nc = await nats.connect(url)
    sub = await nc.jetstream().pull_subscribe_bind(DURABLE, stream=stream)
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


# -- (b), (c) FastStream -----------------------------------------------------------------------


def faststream_run(url: str, stream: str, count: int, batch: bool) -> float:
    from typing import Literal

    from faststream.nats import JStream, NatsBroker, PullSub
    from pydantic import BaseModel

    class Order(BaseModel):
        order_id: str
        customer: str
        amount: float
        currency: Literal["EUR", "USD", "GBP"]
        items: int

    class CloudEvent(BaseModel):
        id: str
        specversion: str
        type: str
        source: str
        time: str | None = None
        datacontenttype: str | None = None
        dataschema: str | None = None
        polyndata: dict[str, Any] | None = None
        data: Order

    async def main() -> float:
        broker = NatsBroker(url, logger=None)
        done = asyncio.Event()
        handled = 0
        js_stream = JStream(stream, declare=False)

        if batch:

            @broker.subscriber(
                TYPE,
                stream=js_stream,
                durable=DURABLE,
                pull_sub=PullSub(batch_size=100, batch=True),
            )
            async def on_batch(events: list[CloudEvent]) -> None:
                nonlocal handled
                handled += len(events)
                if handled >= count:
                    done.set()

        else:

            @broker.subscriber(
                TYPE, stream=js_stream, durable=DURABLE, pull_sub=PullSub(batch_size=100)
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


# -- polyn -------------------------------------------------------------------------------------


class CountingConsumer(PullConsumer):
    type = TYPE
    prefetch = 100

    def __init__(self, done: trio.Event, count: int, **options: Any) -> None:
        super().__init__(**options)
        self.done = done
        self.count = count
        self.handled = 0

    async def handle_message(self, event: Event, msg: Any) -> Any:
        self.handled += 1
        if self.handled >= self.count:
            self.done.set()
        return Ack.ACK


class CountingPipeline(Pipeline):
    type = TYPE
    processors = {"default": {"concurrency": 10}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 100, "batch_timeout": 0.05, "concurrency": 2}}  # noqa: RUF012

    def __init__(self, done: trio.Event, count: int, **options: Any) -> None:
        super().__init__(**options)
        self.done = done
        self.count = count
        self.handled = 0

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        self.handled += len(messages)
        if self.handled >= self.count:
            self.done.set()


async def polyn_run(url: str, stream: str, count: int, kind: str) -> float:
    config = Config(servers=[url], **CONFIG_FIELDS)
    done = trio.Event()
    consumer_cls = CountingConsumer if kind == "pull" else CountingPipeline
    consumer = consumer_cls(done, count, stream_name=stream, source=None)
    children = [NatsConnection(), SchemaStore(schemas={TYPE: SCHEMA}), consumer]
    start = time.perf_counter()
    async with Supervisor(children).run(context={"config": config}):
        await done.wait()
        elapsed = time.perf_counter() - start
    return count / elapsed


# -- the run -----------------------------------------------------------------------------------


def run(url: str, count: int) -> None:
    results: dict[str, float] = {}
    contenders: list[tuple[str, Any]] = [
        ("raw", lambda s: asyncio.run(raw(url, s, count))),
        ("faststream batch", lambda s: faststream_run(url, s, count, batch=True)),
        ("faststream per-message", lambda s: faststream_run(url, s, count, batch=False)),
        ("polyn PullConsumer", lambda s: trio.run(polyn_run, url, s, count, "pull")),
        ("polyn Pipeline", lambda s: trio.run(polyn_run, url, s, count, "pipeline")),
    ]
    for index, (label, contender) in enumerate(contenders):
        stream = f"BENCH_CONSUME_{index}"
        trio.run(fill, url, stream, count)
        results[label] = contender(stream)
        complete = trio.run(drained, url, stream)
        trio.run(delete, url, stream)
        print(f"{label}: {results[label]:,.0f} events/s (all acked: {complete})", file=sys.stderr)

    print(
        f"\n{count:,} events; {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; tracing off\n"
    )
    print(
        "| consumer | events/s | vs raw nats-py (a) | vs FastStream batch "
        "| vs FastStream per-message |"
    )
    print("|---|---|---|---|---|")
    for label, rate in results.items():
        print(
            f"| {label} | {rate:,.0f} | {rate / results['raw']:.2f} | "
            f"{rate / results['faststream batch']:.2f} | "
            f"{rate / results['faststream per-message']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("NATS_URL")
    if url:
        run(url, args.events)
    else:
        from polyn.server import NatsServer

        with NatsServer() as server:
            run(server.url, args.events)


if __name__ == "__main__":
    main()
