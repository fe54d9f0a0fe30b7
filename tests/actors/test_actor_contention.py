"""Exactly one outcome per send under contention: full mailboxes, many senders, crashes, stops.

Each test here is one of the defects an independent OTP acceptance check found (issue 16): a
caller let in from the full-mailbox wait was woken once for room and again for its reply, parked
senders shared one error object, a parked caller of a crashed actor waited for its timeout.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from actor_support import Log, Recorder, events, settle

from polyn.actors import Actor, Supervisor
from polyn.errors import ActorError, CallTimeout


class Echo(Actor):
    """Answers every call with its request at once, without a checkpoint."""

    async def handle_call(self, request: Any) -> Any:
        return request

    async def handle_cast(self, request: Any) -> None:
        pass


class Held(Actor):
    """Handles its first message only once ``opened`` is set; ``"crash"`` then raises."""

    def __init__(self, opened: trio.Event, log: Log, **options: Any) -> None:
        super().__init__(**options)
        self.opened = opened
        self.log = log

    async def handle_call(self, request: Any) -> Any:
        await self.opened.wait()
        if request == "crash":
            raise RuntimeError("crashed while others waited")
        return request

    async def handle_cast(self, request: Any) -> None:
        await self.opened.wait()
        if request == "crash":
            raise RuntimeError("crashed while others waited")

    async def terminate(self, reason: object) -> None:
        self.log.append(("terminate", type(reason).__name__ if reason else reason))


async def _call_all(ref: Any, count: int, **options: Any) -> dict[int, object]:
    outcomes: dict[int, object] = {}

    async def caller(i: int) -> None:
        try:
            result: object = await ref.call(i, **options)
        except (ActorError, CallTimeout) as exc:
            result = exc
        assert i not in outcomes, f"caller {i} finished twice"
        outcomes[i] = result

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(caller, i)
    return outcomes


@pytest.mark.parametrize(("mailbox_size", "callers"), [(4, 30), (1, 20), (100, 102), (100, 150)])
async def test_every_concurrent_caller_beyond_the_mailbox_bound_gets_its_own_reply(
    mailbox_size: int, callers: int
) -> None:
    async with Supervisor([Echo(name="echo", mailbox_size=mailbox_size)]).run() as tree:
        first = tree.ref("echo").running_actor()
        outcomes = await _call_all(tree.ref("echo"), callers)
        assert outcomes == {i: i for i in range(callers)}
        assert tree.ref("echo").running_actor() is first  # never crashed and restarted


async def test_a_caller_parked_on_a_full_mailbox_gets_actor_error_at_once_when_the_actor_crashes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    opened = trio.Event()
    log = Log()
    spec = Held(opened, log, name="held", mailbox_size=1, restart="temporary")
    async with Supervisor([spec]).run() as tree:
        held = tree.ref("held")
        await held.cast("crash")  # being handled, waits for the event
        await settle()
        await held.cast("queued")  # fills the mailbox
        results: list[object] = []

        async def parked_caller() -> None:
            try:
                results.append(await held.call("parked", timeout=30))
            except (ActorError, CallTimeout) as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked_caller)
            await settle()
            start = trio.current_time()
            opened.set()
        assert trio.current_time() == start
        assert len(results) == 1 and isinstance(results[0], ActorError)
        assert "stopped (RuntimeError('crashed while others waited'))" in str(results[0])
        assert log == [("terminate", "RuntimeError")]


@pytest.mark.parametrize("sender", ["call", "cast", "send"])
async def test_every_sender_parked_on_a_full_mailbox_gets_its_own_error_when_the_actor_stops(
    sender: str,
) -> None:
    opened = trio.Event()
    spec = Held(opened, Log(), name="held", mailbox_size=1, restart="temporary", shutdown=0)
    errors: list[BaseException] = []
    async with Supervisor([spec]).run() as tree:
        held = tree.ref("held")
        await held.cast("handled")
        await held.cast("queued")

        async def parked(i: int) -> None:
            try:
                await getattr(held, sender)(i)
            except ActorError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(parked, i)
            await settle()
            await tree.terminate_child("held")
    assert len(errors) == 5
    assert len({id(error) for error in errors}) == 5  # one error object each


async def test_shutdown_is_honoured_after_a_helper_task_crashed_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Fragile(Recorder):
        async def init(self) -> None:
            await super().init()
            self.nursery.start_soon(self.helper)

        async def helper(self) -> None:
            await trio.sleep(1)
            raise OSError("socket gone")

    log = Log()
    spec = Fragile(log, name="f", terminate_sleep=100, shutdown=2, restart="temporary")
    async with Supervisor([spec]).run():
        await trio.sleep(1.5)  # the helper has crashed the actor; terminate sleeps
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(2)
    assert events(log, "terminate", "terminated") == [("terminate", "f", "OSError")]


async def test_a_helper_crash_during_init_stops_within_the_shutdown_time() -> None:
    # init fails: no terminate, and the start fails at once.
    class Fragile(Actor):
        async def init(self) -> None:
            self.nursery.start_soon(self.helper)
            await trio.sleep_forever()

        async def helper(self) -> None:
            await trio.lowlevel.checkpoint()
            raise OSError("no socket")

    with pytest.raises(ActorError, match="failed to start child"):
        async with Supervisor([Fragile(name="f")]).run():
            pass


class Gate(Actor):
    """Records every cast and info, each only once ``opened`` is set."""

    def __init__(self, opened: trio.Event, seen: Log, **options: Any) -> None:
        super().__init__(**options)
        self.opened = opened
        self.seen = seen

    async def handle_cast(self, request: Any) -> None:
        await self.opened.wait()
        self.seen.append(request)

    async def handle_info(self, message: Any) -> None:
        await self.opened.wait()
        self.seen.append(message)


@pytest.mark.parametrize("sender", ["cast", "send"])
async def test_a_cast_or_send_with_a_timeout_gives_up_on_a_full_mailbox_without_queueing(
    sender: str, autojump_clock: trio.testing.MockClock
) -> None:
    opened = trio.Event()
    seen = Log()
    async with Supervisor([Gate(opened, seen, name="gate", mailbox_size=1)]).run() as tree:
        send = getattr(tree.ref("gate"), sender)
        await send("handled")
        await send("queued")
        start = trio.current_time()
        with pytest.raises(CallTimeout, match=r"had no room for the message within 2 s"):
            await send("dropped", timeout=2)
        assert trio.current_time() - start == 2

        async def open_soon() -> None:
            await trio.sleep(1)
            opened.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_soon)
            await send("let in", timeout=5)  # room comes after 1 s
        await settle()
    assert seen == ["handled", "queued", "let in"]
