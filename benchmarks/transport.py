"""Transport benchmark: Polyn's trio transport against raw nats-py on plain asyncio, same run.

Run by hand (not part of the tests), on a quiet machine:

    python benchmarks/transport.py            # starts its own nats-server
    NATS_URL=nats://... python benchmarks/transport.py

Figures (each polyn figure is followed by its ratio to raw nats-py measured in the same run):

- core publish: 100k messages of 128 B from one task, until flushed;
- request/reply p50 and p99: requester and responder in one process (raw: one asyncio loop;
  polyn: both through one transport, four thread crossings per round trip), then, as services
  run in production, the responder in a process of its own (raw or polyn) and every pairing;
- JetStream publish with acks: raw sequential ``js.publish`` against polyn with many in flight;
- JetStream consume: fetch(100) and ack every message, 20k messages.

No validation and no tracing here: this is the transport alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import nats
import trio

from polyn.nats import NatsTransport
from polyn.server import NatsServer

PAYLOAD = b"x" * 128


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


# -- raw nats-py on plain asyncio --------------------------------------------------------------


async def raw_core_publish(url: str, count: int) -> float:
    nc = await nats.connect(url)
    start = time.perf_counter()
    for _ in range(count):
        await nc.publish("bench.core", PAYLOAD)
    await nc.flush()
    elapsed = time.perf_counter() - start
    await nc.close()
    return count / elapsed


async def raw_request_reply(url: str, count: int) -> tuple[float, float]:
    nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await nc.publish(msg.reply, b"pong")

    await nc.subscribe("bench.rr.raw", cb=respond)
    for _ in range(200):
        await nc.request("bench.rr.raw", b"ping", timeout=5)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await nc.request("bench.rr.raw", b"ping", timeout=5)
        latencies.append(time.perf_counter() - start)
    await nc.close()
    return percentiles(latencies)


async def raw_js_publish(url: str, stream: str, count: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    start = time.perf_counter()
    for _ in range(count):
        await js.publish(f"{stream.lower()}.x", PAYLOAD)
    elapsed = time.perf_counter() - start
    await js.delete_stream(stream)
    await nc.close()
    return count / elapsed


async def fill_stream(url: str, stream: str, count: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    for _ in range(count):
        await nc.publish(f"{stream.lower()}.x", PAYLOAD)
    await nc.flush()
    while (await js.stream_info(stream)).state.messages < count:  # noqa: ASYNC110 - polls the server
        await asyncio.sleep(0.05)
    await js.add_consumer(
        stream, durable_name="bench", ack_policy="explicit", max_ack_pending=100_000
    )
    await nc.close()


async def drop_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


async def raw_consume(url: str, stream: str, count: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("bench", stream=stream)
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
    return done / elapsed


# -- polyn -----------------------------------------------------------------------------------


async def polyn_core_publish(url: str, count: int) -> float:
    transport = await NatsTransport.connect(url)
    start = time.perf_counter()
    for _ in range(count):
        await transport.publish("bench.core", PAYLOAD)
    await transport.flush()
    elapsed = time.perf_counter() - start
    await transport.close()
    return count / elapsed


async def polyn_request_reply(url: str, count: int) -> tuple[float, float]:
    transport = await NatsTransport.connect(url)
    sub = await transport.subscribe("bench.rr.polyn")

    async def responder() -> None:
        async for msg in sub:
            assert msg.reply_to is not None
            await transport.publish(msg.reply_to, b"pong")

    latencies = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        for _ in range(200):
            await transport.request("bench.rr.polyn", b"ping")
        for _ in range(count):
            start = time.perf_counter()
            await transport.request("bench.rr.polyn", b"ping")
            latencies.append(time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    await transport.close()
    return percentiles(latencies)


async def serve_raw(url: str, subject: str) -> None:
    """A raw nats-py responder (run in its own process by ``--serve raw``)."""
    nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await nc.publish(msg.reply, b"pong")

    await nc.subscribe(subject, cb=respond)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_polyn(url: str, subject: str) -> None:
    """A polyn transport responder (run in its own process by ``--serve polyn``)."""
    transport = await NatsTransport.connect(url)
    sub = await transport.subscribe(subject)
    print("ready", flush=True)
    async for msg in sub:
        assert msg.reply_to is not None
        await transport.publish(msg.reply_to, b"pong")


class Responder:
    """A responder in a separate process, as a service in production would be."""

    def __init__(self, kind: str, url: str, subject: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--subject", subject],
            env={**os.environ, "NATS_URL": url},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


async def raw_requester(url: str, subject: str, count: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    for _ in range(200):
        await nc.request(subject, b"ping", timeout=5)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await nc.request(subject, b"ping", timeout=5)
        latencies.append(time.perf_counter() - start)
    await nc.close()
    return percentiles(latencies)


async def polyn_requester(url: str, subject: str, count: int) -> tuple[float, float]:
    transport = await NatsTransport.connect(url)
    for _ in range(200):
        await transport.request(subject, b"ping")
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await transport.request(subject, b"ping")
        latencies.append(time.perf_counter() - start)
    await transport.close()
    return percentiles(latencies)


def cross_process_request_reply(url: str, count: int) -> dict[str, tuple[float, float]]:
    results = {}
    for requester in ("raw", "polyn"):
        for responder_kind in ("raw", "polyn"):
            subject = f"bench.rr.{requester}.{responder_kind}"
            responder = Responder(responder_kind, url, subject)
            try:
                if requester == "raw":
                    results[f"{requester}/{responder_kind}"] = asyncio.run(
                        raw_requester(url, subject, count)
                    )
                else:
                    results[f"{requester}/{responder_kind}"] = trio.run(
                        polyn_requester, url, subject, count
                    )
            finally:
                responder.stop()
    return results


async def polyn_js_publish(url: str, stream: str, count: int, in_flight: int) -> float:
    transport = await NatsTransport.connect(url)
    await transport.create_stream({"name": stream, "subjects": [f"{stream.lower()}.>"]})
    subject = f"{stream.lower()}.x"
    per_task = count // in_flight

    async def publisher() -> None:
        for _ in range(per_task):
            await transport.js_publish(subject, PAYLOAD)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(in_flight):
            nursery.start_soon(publisher)
    elapsed = time.perf_counter() - start
    await transport.delete_stream(stream)
    await transport.close()
    return per_task * in_flight / elapsed


async def polyn_consume(url: str, stream: str, count: int) -> float:
    transport = await NatsTransport.connect(url)
    start = time.perf_counter()
    done = 0
    while done < count:
        msgs = await transport.fetch(stream, "bench", 100, expires=5)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await transport.flush()
    elapsed = time.perf_counter() - start
    await transport.close()
    return done / elapsed


# -- the run ---------------------------------------------------------------------------------


def run(url: str, scale: float) -> None:
    core_n = int(100_000 * scale)
    rr_n = int(3000 * scale)
    js_n = int(5000 * scale)
    consume_n = int(20_000 * scale)
    rows: list[tuple[str, str, str, str]] = []

    raw_pub = asyncio.run(raw_core_publish(url, core_n))
    polyn_pub = trio.run(polyn_core_publish, url, core_n)
    rows.append(
        (
            "core publish (msgs/s)",
            f"{raw_pub:,.0f}",
            f"{polyn_pub:,.0f}",
            f"{polyn_pub / raw_pub:.2f}",
        )
    )

    raw_rr = asyncio.run(raw_request_reply(url, rr_n))
    polyn_rr = trio.run(polyn_request_reply, url, rr_n)
    for label, index in (("p50", 0), ("p99", 1)):
        rows.append(
            (
                f"request/reply {label} (µs), requester and responder in one process",
                f"{raw_rr[index]:.0f}",
                f"{polyn_rr[index]:.0f}",
                f"{polyn_rr[index] / raw_rr[index]:.2f}",
            )
        )
    cross = cross_process_request_reply(url, rr_n)
    for label, index in (("p50", 0), ("p99", 1)):
        base = cross["raw/raw"][index]
        for pair, text in (
            ("polyn/raw", "polyn requester, raw responder process"),
            ("polyn/polyn", "polyn requester, polyn responder process"),
        ):
            rows.append(
                (
                    f"request/reply {label} (µs), {text}",
                    f"{base:.0f}",
                    f"{cross[pair][index]:.0f}",
                    f"{cross[pair][index] / base:.2f}",
                )
            )
        rows.append(
            (
                f"request/reply {label} (µs), raw requester, polyn responder process",
                f"{base:.0f}",
                f"{cross['raw/polyn'][index]:.0f}",
                f"{cross['raw/polyn'][index] / base:.2f}",
            )
        )

    raw_js = asyncio.run(raw_js_publish(url, "BENCH_RAW_JS", js_n))
    polyn_js = trio.run(polyn_js_publish, url, "BENCH_POLYN_JS", js_n * 4, 100)
    rows.append(
        (
            "JetStream publish with ack (msgs/s): raw sequential vs polyn 100 in flight",
            f"{raw_js:,.0f}",
            f"{polyn_js:,.0f}",
            f"{polyn_js / raw_js:.2f}",
        )
    )

    asyncio.run(fill_stream(url, "BENCH_RAW_CONSUME", consume_n))
    raw_consume_rate = asyncio.run(raw_consume(url, "BENCH_RAW_CONSUME", consume_n))
    asyncio.run(drop_stream(url, "BENCH_RAW_CONSUME"))
    asyncio.run(fill_stream(url, "BENCH_POLYN_CONSUME", consume_n))
    polyn_consume_rate = trio.run(polyn_consume, url, "BENCH_POLYN_CONSUME", consume_n)
    asyncio.run(drop_stream(url, "BENCH_POLYN_CONSUME"))
    rows.append(
        (
            "JetStream consume fetch(100) + ack (msgs/s)",
            f"{raw_consume_rate:,.0f}",
            f"{polyn_consume_rate:,.0f}",
            f"{polyn_consume_rate / raw_consume_rate:.2f}",
        )
    )

    print("| figure | raw nats-py (asyncio) | polyn (trio) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument("--serve", choices=["raw", "polyn"], help=argparse.SUPPRESS)
    parser.add_argument("--subject", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("NATS_URL")
    if args.serve:
        assert url is not None
        if args.serve == "raw":
            asyncio.run(serve_raw(url, args.subject))
        else:
            trio.run(serve_polyn, url, args.subject)
        return
    if url:
        run(url, args.scale)
    else:
        with NatsServer() as server:
            run(server.url, args.scale)


if __name__ == "__main__":
    main()
