"""Mailboxes and refs: bounded queues, backpressure, call timeouts, calls to dead actors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from actor_support import Log, Recorder, events, settle

from polyn.actors import Actor, Supervisor
from polyn.errors import ActorError, CallTimeout


class Gate(Actor):
    """Handles nothing until its ``open`` event is set, then records every cast."""

    def __init__(self, opened: trio.Event, seen: list[Any], **options: Any) -> None:
        super().__init__(**options)
        self.opened = opened
        self.seen = seen

    async def handle_cast(self, request: Any) -> None:
        await self.opened.wait()
        self.seen.append(request)

    async def handle_call(self, request: Any) -> Any:
        await self.opened.wait()
        return request


async def test_a_full_mailbox_makes_senders_wait_and_drops_nothing() -> None:
    opened = trio.Event()
    seen = Log()
    sent: list[int] = []
    async with Supervisor([Gate(opened, seen, name="gate", mailbox_size=3)]).run() as tree:
        gate = tree.ref("gate")

        async def send_all() -> None:
            for i in range(10):
                await gate.cast(i)
                sent.append(i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            await settle()
            # One message being handled plus three queued: the sender waits on the fifth.
            assert sent == [0, 1, 2, 3]
            opened.set()
        await settle()
    assert seen == list(range(10))


async def test_senders_waiting_on_a_full_mailbox_get_in_in_the_order_they_came() -> None:
    opened = trio.Event()
    seen = Log()
    async with Supervisor([Gate(opened, seen, name="gate", mailbox_size=1)]).run() as tree:
        gate = tree.ref("gate")
        await gate.cast("first")
        await gate.cast("queued")
        async with trio.open_nursery() as nursery:
            for name in ["a", "b", "c"]:
                nursery.start_soon(gate.cast, name)
                await settle()
            opened.set()
        await settle()
    assert seen == ["first", "queued", "a", "b", "c"]


async def test_a_call_that_times_out_raises_call_timeout_and_the_late_reply_is_discarded() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        a = tree.ref("a")
        with pytest.raises(CallTimeout, match=r"'a' got no reply within 0\.05 s"):
            await a.call(("sleep", 0.2), timeout=0.05)
        await trio.sleep(0.3)  # the reply comes, to nobody
        assert await a.call("ping") == "pong"
        assert events(log, "terminate") == []


async def test_call_timeout_is_a_timeout_error() -> None:
    assert issubclass(CallTimeout, TimeoutError)


async def test_the_call_timeout_includes_waiting_for_room_in_the_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    opened = trio.Event()
    async with Supervisor([Gate(opened, [], name="gate", mailbox_size=1)]).run() as tree:
        gate = tree.ref("gate")
        await gate.cast("handled")
        await gate.cast("queued")
        with pytest.raises(CallTimeout):
            await gate.call("never queued", timeout=1)
        opened.set()


async def test_a_call_to_a_stopped_actor_raises_actor_error_at_once_naming_it() -> None:
    async with Supervisor([Recorder([], name="a", restart="temporary")]).run() as tree:
        a = tree.ref("a")._resolve().ref
        await a.cast("stop")
        await settle()
        with pytest.raises(ActorError, match="actor 'a' is not running"):
            await a.call("ping")
        with pytest.raises(ActorError, match="no actor named 'a' is running"):
            await tree.ref("a").call("ping")


async def test_cast_and_send_to_a_stopped_actor_raise_actor_error() -> None:
    async with Supervisor([Recorder([], name="a", restart="temporary")]).run() as tree:
        a = tree.ref("a")._resolve().ref
        await a.cast("stop")
        await settle()
        with pytest.raises(ActorError):
            await a.cast("hello")
        with pytest.raises(ActorError):
            await a.send("hello")


async def test_a_caller_gets_actor_error_as_soon_as_the_actor_crashes_during_its_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    spec = Recorder(log, name="a", terminate_sleep=3, shutdown=10)
    async with Supervisor([spec]).run() as tree:
        start = trio.current_time()
        with pytest.raises(ActorError, match="crashed while handling the call") as caught:
            await tree.ref("a").call("crash")
        assert trio.current_time() == start  # before terminate's 3 s are over
        assert isinstance(caught.value.__cause__, RuntimeError)


async def test_queued_callers_get_actor_error_when_the_actor_crashes() -> None:
    class Crasher(Actor):
        async def handle_call(self, request: Any) -> Any:
            await trio.sleep(0.01)
            raise RuntimeError("down")

    outcomes: list[str] = []
    async with Supervisor([Crasher(name="c", restart="temporary")]).run() as tree:
        c = tree.ref("c")

        async def caller() -> None:
            try:
                await c.call("x")
            except ActorError as exc:
                outcomes.append(str(exc))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(caller)
    assert sorted(outcomes) == [
        "actor 'c' crashed while handling the call: RuntimeError('down')",
        "actor 'c' stopped (RuntimeError('down')) before replying to the call",
        "actor 'c' stopped (RuntimeError('down')) before replying to the call",
    ]


async def test_a_sender_waiting_on_a_full_mailbox_gets_actor_error_when_the_actor_stops() -> None:
    opened = trio.Event()
    failures: list[BaseException] = []
    spec = Gate(opened, [], name="gate", mailbox_size=1, restart="temporary", shutdown=0)
    async with Supervisor([spec]).run() as tree:
        gate = tree.ref("gate")
        await gate.cast("handled")
        await gate.cast("queued")

        async def blocked_sender() -> None:
            try:
                await gate.cast("waiting")
            except ActorError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_sender)
            await settle()
            await tree.terminate_child("gate")
    assert len(failures) == 1


async def test_an_actor_calling_itself_gets_actor_error_instead_of_waiting_forever() -> None:
    class Narcissus(Actor):
        async def handle_call(self, request: Any) -> Any:
            if request == "outer":
                try:
                    await self.ref.call("inner")
                except ActorError as exc:
                    return str(exc)
            return "inner"

    async with Supervisor([Narcissus(name="n")]).run() as tree:
        assert "called itself" in await tree.ref("n").call("outer")


async def test_an_actor_casting_to_its_own_full_mailbox_gets_actor_error() -> None:
    class Echo(Actor):
        async def handle_cast(self, request: Any) -> None:
            if request == "flood":
                try:
                    for i in range(5):
                        await self.ref.cast(i)
                except ActorError as exc:
                    self.error = str(exc)

        async def handle_call(self, request: Any) -> Any:
            return self.error

    async with Supervisor([Echo(name="e", mailbox_size=2)]).run() as tree:
        await tree.ref("e").cast("flood")
        assert "sent to its own full mailbox" in await tree.ref("e").call("error")


async def test_a_cancelled_caller_leaves_the_callee_running() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        a = tree.ref("a")
        with trio.move_on_after(0.01):
            await a.call(("sleep", 0.05), timeout=None)
        await trio.sleep(0.1)
        assert await a.call("ping") == "pong"
    assert events(log, "terminate") == [("terminate", "a", "shutdown")]


async def test_a_caller_waiting_on_an_actor_whose_init_fails_gets_actor_error() -> None:
    may_fail = trio.Event()

    class Hesitant(Actor):
        async def init(self) -> None:
            await may_fail.wait()
            raise OSError("gave up starting")

    errors: list[str] = []
    async with Supervisor([], name="root").run() as tree:

        async def start() -> None:
            with pytest.raises(ActorError, match="failed to start child 'h'"):
                await tree.start_child(Hesitant(name="h"))

        async def call() -> None:
            try:
                await tree.ref("h").call("hello")
            except ActorError as exc:
                errors.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            await settle()
            nursery.start_soon(call)  # the name is registered while init runs
            await settle()
            may_fail.set()
    assert errors == ["actor 'h' stopped (OSError('gave up starting')) before replying to the call"]
