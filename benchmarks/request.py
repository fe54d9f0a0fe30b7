"""Request / reply benchmark: validated round trips between two processes, polyn and its peers.

Run by hand (not part of the tests), on a quiet machine, tracing off:

    python benchmarks/request.py                      # starts its own nats-server
    python benchmarks/request.py --rounds 5 --count 2000 --old /tmp/polyn-old

The payload is issue 17's realistic one (``benchmarks/realistic.py``, draft-07 schema unless
``--draft 2020-12``). The responder always runs in a process of its own, as services do; the
requester sends ``--count`` requests one after another and the p50 latency (µs) is reported,
medians over interleaved rounds, with ratios (lower is better):

- **polyn / polyn**: ``polyn.request`` to a ``polyn.Responder`` (both validate, both CloudEvents);
- **faststream / faststream**: ``broker.request`` of a pydantic model to a subscriber returning
  one (both validate), logger off;
- **polyn / raw** and **raw / raw**: a responder in raw nats-py echoing a fixed reply; the raw
  requester is ``nc.request``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import realistic

ASK = "user.lookup.v1"
ANSWER = "user.found.v1"


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


# -- responders (each in a process of its own) ------------------------------------------------


def serve(kind: str, url: str, draft: str) -> None:
    if kind == "polyn":
        import trio

        trio.run(_serve_polyn, url, draft)
    elif kind == "faststream":
        asyncio.run(_serve_faststream(url))
    else:
        asyncio.run(_serve_raw(url, draft))


async def _serve_polyn(url: str, draft: str) -> None:
    import trio

    import polyn

    class Lookup(polyn.Responder):
        subject = ASK

        async def handle_request(self, event: Any, msg: Any) -> tuple[str, object]:
            return ANSWER, event.data

    schemas = {ASK: realistic.SCHEMAS[draft], ANSWER: realistic.SCHEMAS[draft]}
    config = polyn.Config(domain="com.bench", source_root="bench", servers=[url])
    app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas), Lookup()])
    async with app.run():
        print("ready", flush=True)
        await trio.sleep_forever()


async def _serve_faststream(url: str) -> None:
    from faststream.nats import NatsBroker

    model = realistic.pydantic_model()
    broker = NatsBroker(url, logger=None)

    @broker.subscriber(ASK)
    async def lookup(body: model) -> model:  # type: ignore[valid-type]
        return body

    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _serve_raw(url: str, draft: str) -> None:
    import nats

    nc = await nats.connect(url)
    reply = _reply_body(draft)

    async def respond(msg: Any) -> None:
        await nc.publish(msg.reply, reply)

    await nc.subscribe(ASK, cb=respond)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


def _reply_body(draft: str) -> bytes:
    """A CloudEvent reply as a polyn responder would send it (valid, so polyn accepts it)."""
    from polyn import codec
    from polyn.config import Config
    from polyn.event import Event

    config = Config(domain="com.bench", source_root="bench")
    schemas = codec.Schemas.from_dict({ANSWER: realistic.SCHEMAS[draft]})
    return codec.encode(Event.new(config, ANSWER, realistic.data()), schemas, config)


# -- requesters ---------------------------------------------------------------------------------


async def _polyn_requester(url: str, count: int, draft: str) -> float:
    import polyn

    schemas = {ASK: realistic.SCHEMAS[draft], ANSWER: realistic.SCHEMAS[draft]}
    config = polyn.Config(domain="com.bench", source_root="bench", servers=[url])
    app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas)])
    samples: list[float] = []
    async with app.run() as running:
        data = realistic.data()
        for i in range(count + 200):
            start = time.perf_counter()
            await polyn.request(running, ASK, data)
            if i >= 200:
                samples.append(time.perf_counter() - start)
    return p50(samples)


async def _faststream_requester(url: str, count: int) -> float:
    from faststream.nats import NatsBroker

    model = realistic.pydantic_model()
    broker = NatsBroker(url, logger=None)
    await broker.connect()
    samples: list[float] = []
    for i in range(count + 200):
        start = time.perf_counter()
        response = await broker.request(model(**realistic.data()), ASK, timeout=5)
        model.model_validate_json(response.body)
        if i >= 200:
            samples.append(time.perf_counter() - start)
    await broker.stop()
    return p50(samples)


async def _raw_requester(url: str, count: int) -> float:
    import nats

    nc = await nats.connect(url)
    body = json.dumps(realistic.data()).encode()
    samples: list[float] = []
    for i in range(count + 200):
        start = time.perf_counter()
        await nc.request(ASK, body, timeout=5)
        if i >= 200:
            samples.append(time.perf_counter() - start)
    await nc.close()
    return p50(samples)


def one(args: argparse.Namespace) -> float:
    """One pairing: start the responder process, run the requester here, stop it."""
    url = os.environ["NATS_URL"]
    responder = subprocess.Popen(
        [sys.executable, __file__, "--serve", args.responder, "--draft", args.draft],
        env={**os.environ, "NATS_URL": url},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert responder.stdout is not None
        assert responder.stdout.readline().strip() == "ready"
        if args.requester == "polyn":
            import trio

            return float(trio.run(_polyn_requester, url, args.count, args.draft))
        if args.requester == "faststream":
            return asyncio.run(_faststream_requester(url, args.count))
        return asyncio.run(_raw_requester(url, args.count))
    finally:
        responder.terminate()
        responder.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--draft", default="draft-07")
    parser.add_argument("--old", help="another polyn checkout to measure in the same run")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--requester", help=argparse.SUPPRESS)
    parser.add_argument("--responder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, os.environ["NATS_URL"], args.draft)
        return
    if args.one:
        print(json.dumps(one(args)))
        return
    pairs = [("polyn", "polyn"), ("faststream", "faststream"), ("polyn", "raw"), ("raw", "raw")]
    contenders: dict[str, tuple[list[str], str | None]] = {}
    for requester, responder in pairs:
        argv = ["--requester", requester, "--responder", responder]
        argv += ["--count", str(args.count), "--draft", args.draft]
        contenders[f"{requester} -> {responder}"] = (argv, None)
        if args.old and "polyn" in (requester, responder):
            contenders[f"{requester} -> {responder} [old]"] = (argv, args.old)

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

        with NatsServer(jetstream=False) as server:
            results = measure(server.url)
    print("p50 latency, µs (lower is better); ratio = faststream's p50 / this p50")
    realistic.report(results, "faststream -> faststream", "µs", higher=False)
    raw = statistics.median(results["raw -> raw"])
    mixed = statistics.median(results["polyn -> raw"])
    print(f"polyn requester / raw requester, raw responder: {mixed / raw:.2f}x raw's p50")


if __name__ == "__main__":
    main()
