"""The OTP pieces an actor reaches for: deferred replies, handle_continue, timers, monitors,
``init`` returning IGNORE, and how a supervisor that gives up looks to its parent."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from actor_support import Log, Recorder, events, settle

from polyn.actors import (
    IGNORE,
    NO_REPLY,
    Actor,
    Caller,
    Down,
    DynamicSupervisor,
    Monitor,
    Supervisor,
    Timer,
)
from polyn.errors import ActorError, CallTimeout

# -- deferred replies -----------------------------------------------------------------------


class Barrier(Actor):
    """Answers every ``"wait"`` call only when a ``"release"`` cast comes, with its value."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.waiting: list[Caller] = []

    async def handle_call(self, request: Any) -> Any:
        if request == "wait":
            self.waiting.append(self.caller)
            return NO_REPLY
        if request == "count":
            return len(self.waiting)
        if request == "twice":
            self.caller.reply("first")
            return "second"
        return await super().handle_call(request)

    async def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError("barrier broke")
        for caller in self.waiting:
            caller.reply(request)
        self.waiting.clear()


async def test_a_deferred_reply_lets_the_actor_go_on_and_answers_the_caller_later() -> None:
    async with Supervisor([Barrier(name="b")]).run() as tree:
        b = tree.ref("b")
        answers: list[Any] = []
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lambda: _append(answers, b.call("wait")))
            await settle()
            assert await b.call("count") == 3  # the actor handled more calls meanwhile
            await b.cast("go")
        assert answers == ["go", "go", "go"]


async def _append(answers: list[Any], call: Any) -> None:
    answers.append(await call)


async def test_the_first_answer_to_a_call_wins() -> None:
    async with Supervisor([Barrier(name="b")]).run() as tree:
        assert await tree.ref("b").call("twice") == "first"
        assert await tree.ref("b").call("count") == 0


async def test_a_deferred_caller_gets_actor_error_when_the_actor_crashes() -> None:
    errors: list[ActorError] = []
    async with Supervisor([Barrier(name="b")]).run() as tree:
        b = tree.ref("b")

        async def wait() -> None:
            try:
                await b.call("wait")
            except ActorError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await settle()
            await b.cast("crash")
    [error] = errors
    assert "stopped (RuntimeError('barrier broke')) before replying" in str(error)


async def test_a_deferred_caller_that_timed_out_is_not_answered_and_the_actor_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Supervisor([Barrier(name="b")]).run() as tree:
        b = tree.ref("b")
        with pytest.raises(CallTimeout):
            await b.call("wait", timeout=1)
        await b.cast("late")  # replies to a caller that has gone: dropped
        assert await b.call("count") == 0


async def test_caller_outside_handle_call_raises() -> None:
    class Nosy(Actor):
        async def init(self) -> None:
            with pytest.raises(ActorError, match="only valid inside handle_call"):
                self.caller  # noqa: B018

    async with Supervisor([Nosy()]).run():
        pass


# -- handle_continue ------------------------------------------------------------------------


class Loader(Actor):
    def __init__(self, log: Log, **options: Any) -> None:
        super().__init__(**options)
        self.log = log

    async def init(self) -> None:
        self.log.append("init")
        self.continue_with("load")

    async def handle_continue(self, argument: Any) -> None:
        self.log.append(("continue", argument))
        if argument == "load":
            self.continue_with("warm")

    async def handle_cast(self, request: Any) -> None:
        self.log.append(("cast", request))
        if request == "again":
            self.continue_with("after cast")
            with pytest.raises(ActorError, match="already has a handle_continue pending"):
                self.continue_with("one too many")


async def test_handle_continue_runs_after_init_and_callbacks_before_the_next_message() -> None:
    log = Log()
    async with Supervisor([Loader(log, name="l")]).run() as tree:
        # Queued while init runs: handled only after the continues.
        await tree.ref("l").cast("first")
        await tree.ref("l").cast("again")
        await tree.ref("l").cast("last")
        await settle()
    assert log == [
        "init",
        ("continue", "load"),
        ("continue", "warm"),
        ("cast", "first"),
        ("cast", "again"),
        ("continue", "after cast"),
        ("cast", "last"),
    ]


# -- timers ---------------------------------------------------------------------------------


class Ticker(Actor):
    def __init__(self, log: Log, **options: Any) -> None:
        super().__init__(**options)
        self.log = log
        self.timers: dict[str, Timer] = {}

    async def handle_cast(self, request: Any) -> None:
        kind, what, delay = request
        if kind == "set":
            self.timers[what] = self.send_after(delay, what)
        else:
            self.log.append(("cancelled", what, self.cancel_timer(self.timers[what])))

    async def handle_info(self, message: Any) -> None:
        self.log.append((trio.current_time(), message))


async def test_timers_fire_in_deadline_order_on_trios_clock_and_can_be_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with Supervisor([Ticker(log, name="t")]).run() as tree:
        t = tree.ref("t")
        start = trio.current_time()
        await t.cast(("set", "late", 10))
        await t.cast(("set", "early", 2))
        await t.cast(("set", "never", 5))
        await t.cast(("cancel", "never", None))
        await trio.sleep(20)
        await t.cast(("cancel", "early", None))  # already fired
        await settle()
    assert log == [
        ("cancelled", "never", True),
        (start + 2, "early"),
        (start + 10, "late"),
        ("cancelled", "early", False),
    ]


async def test_a_timer_never_fires_into_a_restarted_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()

    class Fuse(Ticker):
        async def handle_call(self, request: Any) -> Any:
            raise RuntimeError("crash")

    async with Supervisor([Fuse(log, name="t")]).run() as tree:
        await tree.ref("t").cast(("set", "boom", 5))
        with pytest.raises(ActorError):
            await tree.ref("t").call("crash")
        await trio.sleep(10)
    assert log == []


# -- monitors -------------------------------------------------------------------------------


class Watcher(Actor):
    def __init__(self, log: Log, **options: Any) -> None:
        super().__init__(**options)
        self.log = log
        self.monitors: dict[str, Monitor] = {}

    async def handle_call(self, request: Any) -> Any:
        kind, name = request
        if kind == "watch":
            self.monitors[name] = self.monitor(
                self.tree.ref(name) if name != "ghost" else _ghost(self)
            )
            return None
        return self.demonitor(self.monitors[name])

    async def handle_info(self, message: Any) -> None:
        assert isinstance(message, Down)
        self.log.append((message.ref.name, _kind(message.reason), message.monitor))


def _ghost(actor: Actor) -> Any:
    from polyn.actors import ActorRef

    ref = actor.tree.whereis("ghost")
    assert ref is None
    return ActorRef._for_name(actor.tree, "ghost")


def _kind(reason: object) -> str:
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)


async def test_a_monitor_delivers_down_with_the_reason_when_the_watched_run_ends() -> None:
    log = Log()
    children = [
        Recorder(Log(), name="a"),
        Recorder(Log(), name="b", restart="temporary"),
        Watcher(log, name="w"),
    ]
    async with Supervisor(children).run() as tree:
        w = tree.ref("w")
        await w.call(("watch", "a"))
        await w.call(("watch", "b"))
        await w.call(("watch", "ghost"))
        await tree.ref("a").cast("crash")
        await tree.ref("b").cast("stop")
        await settle()
        monitors = tree.ref("w").running_actor().monitors  # type: ignore[attr-defined]
        assert sorted(log, key=lambda entry: entry[0]) == [
            ("a", "RuntimeError", monitors["a"]),
            ("b", "normal", monitors["b"]),
            ("ghost", "noproc", monitors["ghost"]),
        ]
        del log[:]
        await tree.ref("a").cast("crash")  # the restarted run was not monitored
        await settle()
        assert log == []


async def test_demonitor_stops_the_down_message() -> None:
    log = Log()
    async with Supervisor([Recorder(Log(), name="a"), Watcher(log, name="w")]).run() as tree:
        w = tree.ref("w")
        await w.call(("watch", "a"))
        assert await w.call(("stop watching", "a")) is True
        assert await w.call(("stop watching", "a")) is False
        await tree.ref("a").cast("crash")
        await settle()
    assert log == []


# -- ignore ---------------------------------------------------------------------------------


class Optional_(Actor):
    def __init__(self, enabled: bool, log: Log, **options: Any) -> None:
        super().__init__(**options)
        self.enabled = enabled
        self.log = log

    async def init(self) -> object:
        self.log.append(("init", self.name))
        return None if self.enabled else IGNORE

    async def terminate(self, reason: object) -> None:
        self.log.append(("terminate", self.name))


async def test_an_ignored_child_is_not_started_not_restarted_and_its_spec_is_kept() -> None:
    log = Log()
    children = [Optional_(False, log, name="off"), Optional_(True, log, name="on")]
    async with Supervisor(children, strategy="one_for_all").run() as tree:
        assert tree.whereis("off") is None
        infos = await tree.which_children()
        assert [(i.name, i.ref is not None) for i in infos] == [("off", False), ("on", True)]
        counts = tree.count_children_nowait()
        assert (counts.specs, counts.active) == (2, 1)
        assert await tree.start_child(Optional_(False, log, name="later")) is None
    assert log == [
        ("init", "off"),
        ("init", "on"),
        ("init", "later"),
        ("terminate", "on"),
    ]


async def test_a_dynamic_supervisor_keeps_nothing_of_an_ignored_child() -> None:
    async with Supervisor([DynamicSupervisor(name="pool", max_children=1)]).run() as tree:
        assert await tree.start_child(Optional_(False, Log()), supervisor="pool") is None
        assert await tree.which_children(supervisor="pool") == []


async def test_init_returning_anything_else_fails_the_start() -> None:
    class Confused(Actor):
        async def init(self) -> object:
            return "ok"

    with pytest.raises(ActorError, match=r"returned 'ok'; it returns None, or polyn\.actors\.IGN"):
        async with Supervisor([Confused(name="c")]).run():
            pass


# -- a supervisor that gives up --------------------------------------------------------------


@pytest.mark.parametrize(("restart", "restarted"), [("transient", False), ("permanent", True)])
async def test_a_supervisor_that_gives_up_exits_with_shutdown_as_otp(
    restart: str, restarted: bool
) -> None:
    log = Log()
    inner = Supervisor([Recorder(log, name="x")], name="inner", max_restarts=0, restart=restart)
    async with Supervisor([inner, Recorder(log, name="y")], name="outer").run() as tree:
        down = Log()

        class Witness(Actor):
            async def init(self) -> None:
                self.monitor(self.tree.ref("inner"))

            async def handle_info(self, message: Any) -> None:
                down.append(message.reason)

        await tree.start_child(Witness())
        await tree.ref("x").cast("crash")
        await settle()
        assert (tree.whereis("inner") is not None) is restarted
        assert tree.ref("y").alive
    [reason] = down
    assert reason[0] == "shutdown"
    assert isinstance(reason[1], ActorError)
    assert "reached its maximum restart intensity" in str(reason[1])
    assert events(log, "terminate")[:1] == [("terminate", "x", "RuntimeError")]
