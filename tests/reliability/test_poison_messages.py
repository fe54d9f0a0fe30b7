"""Scenario 2: 10,000 poison bodies mixed into valid traffic on one stream.

Kinds of poison: random bytes (some without a ``Nats-Msg-Id``), invalid JSON (truncated,
garbage, nested past any recursion limit), valid JSON that is not a CloudEvent, CloudEvents whose
``data`` has the wrong types, CloudEvents whose type is not a message name, bodies near the
server's ``max_payload``, and envelopes drawn from :func:`polyn.testing.strategies.invalid_events`.
(A valid type without a schema is not poison but a configuration fault, never terminated: see
``test_consumer_faults``.)

A Pipeline consumes the stream. Afterwards: every poison body was terminated and dead-lettered
exactly once with a reason (``Polyn-Error``), its body kept (or cut to fit, marked
``Polyn-Truncated``); every valid event was handled; the pipeline never restarted and the
service stayed healthy throughout; the consumer has nothing pending.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable
from typing import Any

import orjson
import trio
from _support import Shared
from hypothesis import HealthCheck, Phase, given, settings
from reliability_support import LogCounter, Service

from polyn.consumers import DEADLETTER_PREFIX as PREFIX
from polyn.consumers import Pipeline, PipelineMessage
from polyn.server import NatsServer
from polyn.testing.strategies import invalid_events

POISON = 10_000
VALID = 5_000
NEAR_MAX = 10  # bodies within a few kB of max_payload (1 MB by default)
DRAWN = 250  # from invalid_events: Hypothesis draws ~50 a second on a busy 2-core machine
PUBLISHERS = 64


def draw_invalid_events(service: Service, count: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(invalid_events(service.type, service.schemas, config=service.config))
    def collect(body: bytes) -> None:
        out.append(body)

    collect()
    return out


def poison_bodies(service: Service, max_payload: int) -> list[tuple[str, bytes, bool]]:
    """(kind, body, with_msg_id) for POISON bodies, every kind represented."""
    rng = random.Random(11)
    envelope = orjson.loads(service.body(service.event(0)))

    def event_like(**changes: Any) -> bytes:
        document = dict(envelope, id=f"poison-{rng.getrandbits(64):x}")
        document.update(changes)
        return orjson.dumps(document)

    bodies: list[tuple[str, bytes, bool]] = []
    bodies += [("invalid_events", body, True) for body in draw_invalid_events(service, DRAWN)]
    for i in range(NEAR_MAX):
        # half leave no room for a dead letter's headers (cut to fit), half leave enough
        size = max_payload - (
            rng.randint(100, 250) if i < NEAR_MAX // 2 else rng.randint(2000, 4000)
        )
        if i % 2:
            body = event_like(data={"n": "x", "note": "p" * size})[:size]  # cut JSON too
        else:
            body = rng.randbytes(size)
        bodies.append(("near max_payload", body, True))
    kinds = [
        "random bytes",
        "random bytes, no Nats-Msg-Id",
        "invalid JSON",
        "JSON, not a CloudEvent",
        "wrong types in data",
        "type not a message name",
    ]
    i = 0
    while len(bodies) < POISON:
        kind = kinds[i % len(kinds)]
        variant = i // len(kinds)
        i += 1
        if kind.startswith("random bytes"):
            body = i.to_bytes(4, "big") + rng.randbytes(rng.randint(1, 300))
        elif kind == "invalid JSON":
            body = [
                b'{"id": "' + str(i).encode(),
                b"{not json " + str(i).encode(),
                b"[" * 100_000 + str(i).encode(),
                service.body(service.event(i))[: -rng.randint(1, 40)],
                b"\xff\xfe" + json.dumps({"i": i}).encode(),
                b"",  # an empty body
            ][variant % 6]
        elif kind == "JSON, not a CloudEvent":
            body = orjson.dumps(
                [{"hello": i}, [i, "x"], f"string {i}", i, {"type": f"x{i}", "data": {}}][
                    variant % 5
                ]
            )
        elif kind == "wrong types in data":
            body = event_like(
                data=[{"n": str(i)}, {"n": 1.5 + i}, {"note": i}, [i], None][variant % 5]
            )
        else:
            body = event_like(type=f"{service.domain}.Unknown {i}..placed")
        bodies.append((kind, body, not kind.endswith("no Nats-Msg-Id")))
    return bodies


class Counter(Pipeline):
    processors = {"default": {"concurrency": 10}}  # noqa: RUF012
    starts = 0

    def __init__(self, handled: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.handled = handled

    async def init(self) -> None:
        type(self).starts += 1
        await super().init()

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        self.handled.append(message.event.id)
        return message


async def test_ten_thousand_poison_bodies_are_dead_lettered_and_valid_traffic_flows(
    service: Service,
    fresh_server: NatsServer,
    figures: dict[str, Any],
    count_logs: Callable[..., LogCounter],
) -> None:
    logs = count_logs("polyn.consumer", "polyn.deadletter")
    admin = service.admin
    await service.create(storage="memory")
    dead_stream = service.names.stream("deadletters")
    await admin.create_stream(
        {"name": dead_stream, "subjects": [PREFIX + ">"], "storage": "memory"}
    )
    poison = poison_bodies(service, admin.max_payload)
    valid = [service.event(n) for n in range(VALID)]
    traffic: list[tuple[str, bytes, str | None]] = [
        (kind, body, f"poison-{i}" if with_id else None)
        for i, (kind, body, with_id) in enumerate(poison)
    ]
    traffic += [("valid", service.body(event), event.id) for event in valid]
    random.Random(7).shuffle(traffic)

    handled: list[str] = Shared()
    health: list[bool] = []
    Counter.starts = 0

    async def publish(part: list[tuple[str, bytes, str | None]]) -> None:
        for _, body, msg_id in part:
            headers = {"Nats-Msg-Id": msg_id} if msg_id else None
            await admin.js_publish(service.type, body, headers=headers, timeout=10)

    start = trio.current_time()
    async with service.run(Counter(handled, type=service.type)) as running:

        async def watch_health() -> None:
            while True:
                health.append(running.health())
                await trio.sleep(0.05)

        async with trio.open_nursery() as watcher:
            watcher.start_soon(watch_health)
            async with trio.open_nursery() as nursery:
                for p in range(PUBLISHERS):
                    nursery.start_soon(publish, traffic[p::PUBLISHERS])

            async def dead_letter_count() -> int:
                info = await admin.stream_info(dead_stream)
                return int(info.state.get("messages", 0))

            with trio.fail_after(45):
                while len(handled) < VALID or await dead_letter_count() < POISON:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            state = await service.wait_settled()
            watcher.cancel_scope.cancel()
    elapsed = trio.current_time() - start

    dead = await service.stored(dead_stream)
    by_id = {msg_id: (kind, body) for kind, body, msg_id in traffic if msg_id}
    by_body = {body: kind for kind, body, msg_id in traffic if msg_id is None}
    matched: collections.Counter[str] = collections.Counter()
    reasons: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    problems: list[str] = []
    for letter in dead:
        headers = letter.headers
        original = headers.get("Polyn-Original-Id")
        if original is not None:
            kind, body = by_id[original]
            key = original
        else:
            kind = by_body.get(letter.data, "?")
            body = letter.data
            key = "body:" + letter.data.hex()[:64]
        matched[key] += 1
        reasons[kind][headers.get("Polyn-Error-Type", "?")] += 1
        if kind in ("valid", "?"):
            problems.append(f"{kind} message dead-lettered: {headers}")
        if not headers.get("Polyn-Error") or "\n" in headers["Polyn-Error"]:
            problems.append(f"no one-line reason for a {kind} body: {headers}")
        if headers.get("Polyn-Consumer") != service.consumer:
            problems.append(f"wrong consumer in {headers}")
        if headers.get("Polyn-Original-Subject") != service.type:
            problems.append(f"wrong original subject in {headers}")
        if headers.get("Polyn-Truncated") == "true":
            if not (body.startswith(letter.data) and len(letter.data) < len(body)):
                problems.append(f"a truncated {kind} dead letter is not a prefix of its body")
        elif letter.data != body:
            problems.append(f"the dead letter of a {kind} body changed the body")

    truncated = sum(letter.headers.get("Polyn-Truncated") == "true" for letter in dead)
    valid_ids = {event.id for event in valid}
    figures.update(
        scenario="2. poison messages mixed into valid traffic",
        events=f"{POISON} poison + {VALID} valid",
        kills=f"0 (pipeline restarts: {Counter.starts - 1})",
        lost=len(valid_ids - set(handled)) + (POISON - len(matched)),
        duplicates_stored=sum(count - 1 for count in matched.values()),
        duplicates_handled=len(handled) - len(set(handled)),
        seconds=round(elapsed, 1),
        notes=(
            f"dead letters {len(dead)} ({truncated} truncated near max_payload); healthy in "
            f"{sum(health)}/{len(health)} samples; error types "
            + "; ".join(f"{kind}: {dict(types)}" for kind, types in sorted(reasons.items()))
        ),
    )

    assert problems == []
    # each one logged too: the consumer's warning and the dead letter's error
    assert logs.counts[("polyn.consumer", "WARNING")] == POISON
    assert logs.counts[("polyn.deadletter", "ERROR")] == POISON
    assert sum(logs.counts.values()) == 2 * POISON
    assert len(dead) == POISON
    assert len(matched) == POISON and set(matched.values()) == {1}
    assert set(handled) == valid_ids
    assert Counter.starts == 1  # the pipeline never stopped
    assert all(health)
    assert truncated == NEAR_MAX // 2
    assert all(len(letter.data) + 64 < admin.max_payload for letter in dead)
    assert state["num_pending"] == 0 and state["num_ack_pending"] == 0
