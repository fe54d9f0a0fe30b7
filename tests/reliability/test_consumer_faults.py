"""Issue 21, consumer findings: careless handlers, schema authors and consumer configurations.

Each scenario runs a real nats-server of its own and asserts what a user would observe:

- (2) a schema removed from the bucket while its events are queued: nothing is terminated, the
  consumer reports it (``health()``), and once the schema is back every event is handled — both
  when the consumer naks and when its ``max_deliver`` makes it hold the events instead;
- (3) ``max_deliver`` below ``max_failures``: the dead letter comes at the last delivery;
- (8, 10) handlers raising ``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError`` or a
  stray ``trio.Cancelled``: failures of their message, never of the consumer or the App;
- (11) a fetch loop that ends crashes the consumer for its supervisor; ``handler_timeout``; a
  hung handler makes ``health()`` false after ``stall_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import trio
from _support import Shared
from reliability_support import ORDER_SCHEMA, Service, wait_until

from polyn.app import App
from polyn.config import Config
from polyn.consumers import (
    DEADLETTER_PREFIX,
    Ack,
    Pipeline,
    PipelineMessage,
    PullConsumer,
)
from polyn.event import Event
from polyn.nats import Message, NatsConnection
from polyn.schema_store import SchemaStore


class Recorder(PullConsumer):
    """Records (n, delivery) of every event; raises what ``fail(n, delivery)`` returns."""

    def __init__(self, seen: list[tuple[int, int]], fail: Any = None, **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen
        self.fail = fail or (lambda n, delivery: None)

    async def handle_message(self, event: Event, msg: Message) -> Ack:
        n = event.data["n"]
        delivery = msg.metadata.num_delivered if msg.metadata else 0
        self.seen.append((n, delivery))
        error = self.fail(n, delivery)
        if error is not None:
            if isinstance(error, BaseException):
                raise error
            await error()  # a coroutine function that misbehaves
        return Ack.ACK


async def ack_floor(service: Service) -> int:
    info = await service.admin.consumer_info(service.stream, service.consumer)
    return int(info.raw.get("ack_floor", {}).get("stream_seq", 0))


async def publish(service: Service, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        event = service.event(n)
        await service.admin.js_publish(
            service.type, service.body(event), headers={"Nats-Msg-Id": event.id}
        )


async def dead_letter_count(service: Service, stream: str) -> int:
    return int((await service.admin.stream_info(stream)).state.get("messages", 0))


# -- (2) a missing schema is a configuration fault ------------------------------------------


class PipelineRecorder(Pipeline):
    """A Pipeline recording (n, delivery) as :class:`Recorder` does."""

    def __init__(self, seen: list[tuple[int, int]], **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        metadata = message.msg.metadata
        self.seen.append((message.event.data["n"], metadata.num_delivered if metadata else 0))
        return message


@pytest.mark.parametrize("kind", ["pull", "pipeline"])
@pytest.mark.parametrize("max_deliver", [None, 3], ids=["naked", "held-at-max-deliver"])
async def test_a_schema_removed_with_events_queued_terminates_nothing_and_all_are_handled_later(
    service: Service, max_deliver: int | None, kind: str
) -> None:
    bucket = service.names.bucket("schemas")
    await service.admin.kv_create(bucket)
    await service.admin.kv_put(bucket, service.type, json.dumps(ORDER_SCHEMA).encode())
    extra = {"max_deliver": max_deliver} if max_deliver else {}
    await service.create(**extra)
    dead_stream = service.names.stream("dead")
    await service.admin.create_stream({"name": dead_stream, "subjects": [DEADLETTER_PREFIX + ">"]})
    config = Config(
        domain=service.domain,
        source_root=service.config.source_root,
        servers=[service.url],
        schema_store=bucket,
    )
    seen: list[tuple[int, int]] = Shared()
    # max_failures=1: a missing schema that counted as a failure would dead-letter at once
    consumer: PullConsumer | Pipeline = (
        Recorder(seen, type=service.type, max_failures=1)
        if kind == "pull"
        else PipelineRecorder(seen, type=service.type, max_failures=1)
    )
    app = App(config, [NatsConnection(), SchemaStore(), consumer])
    events = 30
    async with app.run() as running:
        store = running.ref(bucket).running_actor()
        assert isinstance(store, SchemaStore)
        # another team's `polyn schemas load --prune` deletes the key
        await service.admin.kv_delete(bucket, service.type)
        await wait_until(lambda: service.type not in store.schemas.names())
        await publish(service, events)
        await wait_until(lambda: not running.health(), timeout=10)
        # every event met at least once, and at max_deliver the consumer holds instead of naking
        await trio.sleep(4 if max_deliver else 2)
        assert seen == []
        assert await ack_floor(service) == 0  # nothing acked, nothing terminated
        assert await dead_letter_count(service, dead_stream) == 0
        assert not running.health()
        await service.admin.kv_put(bucket, service.type, json.dumps(ORDER_SCHEMA).encode())
        await wait_until(lambda: len({n for n, _ in seen}) == events, timeout=90)
        state = await service.wait_settled(timeout=30)
        await wait_until(running.health, timeout=10)
    assert sorted({n for n, _ in seen}) == list(range(events))
    assert state["num_pending"] == 0 and state["num_ack_pending"] == 0
    assert await dead_letter_count(service, dead_stream) == 0


# -- (3) dead letters at min(max_failures, max_deliver) -------------------------------------


async def test_max_deliver_below_max_failures_dead_letters_at_the_last_delivery(
    service: Service,
) -> None:
    await service.create(max_deliver=3)
    dead_stream = service.names.stream("dead")
    await service.admin.create_stream({"name": dead_stream, "subjects": [DEADLETTER_PREFIX + ">"]})
    seen: list[tuple[int, int]] = Shared()
    consumer = Recorder(
        seen,
        lambda n, delivery: ValueError(f"cannot handle {n}") if n == 0 else None,
        type=service.type,
        max_failures=5,
    )
    async with service.run(consumer):
        await publish(service, 2)
        await wait_until(lambda: (1, 1) in seen)
        with trio.fail_after(30):
            while await dead_letter_count(service, dead_stream) < 1:  # noqa: ASYNC110
                await trio.sleep(0.1)
        await service.wait_settled()
    assert [d for n, d in seen if n == 0] == [1, 2, 3]
    (letter,) = await service.stored(dead_stream)
    assert letter.headers["Polyn-Error"] == "cannot handle 0"


# -- (8, 10) whatever a handler raises fails its message, not the App -----------------------


def _stray_cancelled() -> Any:
    async def escape() -> None:
        captured: list[BaseException] = []
        with trio.move_on_after(0.01):
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                captured.append(exc)
                raise
        raise captured[0]  # re-raised outside its own scope: escapes as a stray Cancelled

    return escape


RAISERS: dict[str, Any] = {
    "SystemExit": lambda: SystemExit(0),
    "KeyboardInterrupt": lambda: KeyboardInterrupt(),
    "asyncio.CancelledError": lambda: asyncio.CancelledError(),
    "stray trio.Cancelled": _stray_cancelled,
}


@pytest.mark.parametrize("kind", list(RAISERS))
async def test_a_pull_consumer_handler_raising_anything_fails_only_its_message(
    service: Service, kind: str
) -> None:
    await service.create()
    dead_stream = service.names.stream("dead")
    await service.admin.create_stream({"name": dead_stream, "subjects": [DEADLETTER_PREFIX + ">"]})
    seen: list[tuple[int, int]] = Shared()
    raiser = RAISERS[kind]
    consumer = Recorder(
        seen,
        lambda n, delivery: raiser() if n == 3 else None,
        type=service.type,
        max_failures=2,
    )
    async with service.run(consumer) as running:
        await publish(service, 11)
        await wait_until(lambda: len({n for n, _ in seen if n != 3}) == 10)
        with trio.fail_after(20):
            while await dead_letter_count(service, dead_stream) < 1:  # noqa: ASYNC110
                await trio.sleep(0.1)
        await service.wait_settled()
        assert running.health()
        await publish(service, 1, start=11)  # and it goes on
        await wait_until(lambda: (11, 1) in seen)
    assert [d for n, d in seen if n == 3] == [1, 2]


class Counting(Pipeline):
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012

    def __init__(self, handled: list[int], raiser: Any, **options: Any) -> None:
        super().__init__(**options)
        self.handled = handled
        self.raiser = raiser

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        n = message.event.data["n"]
        if n == 3:
            error = self.raiser()
            if isinstance(error, BaseException):
                raise error
            await error()
        self.handled.append(n)
        return message


@pytest.mark.parametrize("kind", list(RAISERS))
async def test_a_pipeline_handler_raising_anything_fails_only_its_message(
    service: Service, kind: str
) -> None:
    await service.create()
    handled: list[int] = Shared()
    consumer = Counting(handled, RAISERS[kind], type=service.type, max_failures=2)
    async with service.run(consumer) as running:
        await publish(service, 11)
        await wait_until(lambda: len(handled) == 10)
        await service.wait_settled()
        assert running.health()
        await publish(service, 1, start=11)
        await wait_until(lambda: 11 in handled)
    assert 3 not in handled


# -- (11) dead loops, hung handlers ---------------------------------------------------------


async def test_a_fetch_loop_that_ends_crashes_the_consumer_and_it_is_restarted(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray ``trio.Cancelled`` out of a pull request used to end the fetch loop and leave a
    zombie: alive, healthy, handling nothing."""
    caplog.set_level(logging.ERROR, logger="polyn.actors")  # the crash report, whoever set it
    await service.create()
    seen: list[tuple[int, int]] = Shared()
    starts: list[Any] = []

    class Fragile(Recorder):
        async def init(self) -> None:
            await super().init()
            starts.append(self)
            if len(starts) == 1:
                transport = self._resolved.transport  # type: ignore[union-attr]
                real_fetch = transport.fetch

                async def fetch_once_broken(*args: Any, **kwargs: Any) -> Any:
                    transport.fetch = real_fetch  # type: ignore[method-assign]
                    await _stray_cancelled()()

                transport.fetch = fetch_once_broken  # type: ignore[method-assign]

    async with service.run(Fragile(seen, type=service.type, name="fragile")) as running:
        await wait_until(lambda: len(starts) == 2, timeout=10)
        await publish(service, 3)
        await wait_until(lambda: len(seen) == 3)
        await wait_until(running.health)
    assert any("fetch loop" in r.getMessage() for r in caplog.records)


async def test_a_handler_timeout_fails_the_message_and_the_consumer_goes_on(
    service: Service,
) -> None:
    await service.create()
    seen: list[tuple[int, int]] = Shared()

    async def hang() -> None:
        await trio.sleep_forever()

    consumer = Recorder(
        seen,
        lambda n, delivery: hang if (n, delivery) == (0, 1) else None,
        type=service.type,
        handler_timeout=0.5,
    )
    async with service.run(consumer):
        await publish(service, 2)
        await wait_until(lambda: (0, 2) in seen and (1, 1) in seen, timeout=15)
        await service.wait_settled()
    assert seen[:2] == [(0, 1), (1, 1)]  # the hung one failed, the next one went on


async def test_a_hung_handler_makes_health_false_after_stall_timeout(service: Service) -> None:
    await service.create()
    seen: list[tuple[int, int]] = Shared()
    release = trio.Event()

    consumer = Recorder(
        seen,
        lambda n, delivery: release.wait if n == 0 else None,
        type=service.type,
        stall_timeout=0.5,
    )
    async with service.run(consumer) as running:
        assert running.health()
        await publish(service, 2)
        await wait_until(lambda: seen == [(0, 1)])
        await wait_until(lambda: not running.health(), timeout=5)
        release.set()
        await wait_until(lambda: len(seen) == 2)
        await wait_until(running.health, timeout=5)


STUCK_SERVICE = """
import sys, trio
import polyn

url, domain, source_root, event_type = sys.argv[1:]

class Stubborn(polyn.PullConsumer):
    type = event_type
    shutdown = 0.5

    async def handle_message(self, event, msg):
        print("handling", flush=True)
        with trio.CancelScope(shield=True):
            await trio.sleep(3600)
        return polyn.Ack.ACK

config = polyn.Config(domain=domain, source_root=source_root, servers=[url])
app = polyn.App(config, [
    polyn.NatsConnection(),
    polyn.SchemaStore(schemas={event_type: {"type": "object"}}),
    Stubborn(name="stubborn"),
])
trio.run(app.main)
print("returned", flush=True)
"""


async def test_a_handler_ignoring_cancellation_at_stop_is_named_and_the_app_exits_non_zero(
    service: Service, tmp_path: Any
) -> None:
    import signal
    import subprocess
    import sys

    await service.create()
    script = tmp_path / "stubborn.py"
    script.write_text(STUCK_SERVICE)
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            str(script),
            service.url,
            service.domain,
            service.config.source_root,
            service.type,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await publish(service, 1)
        assert process.stdout is not None and process.stderr is not None
        with trio.fail_after(20):
            line = b""
            while b"handling" not in line:
                line += await process.stdout.receive_some()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):  # not forever
            await process.wait()
        err = b""
        with trio.move_on_after(5):
            while chunk := await process.stderr.receive_some():
                err += chunk
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 70
    text = err.decode()
    assert "consumer stubborn" in text or "Stubborn" in text
    assert "ignores cancellation" in text
