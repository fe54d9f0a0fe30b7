"""Supervisors: start and stop order, strategies, restart types, intensity, shutdown, nesting."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import pytest
import trio
import trio.testing
from actor_support import Log, Recorder, events, settle

from polyn.actors import (
    Actor,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
    current_tree,
    start_child,
    terminate_child,
    which_children,
)
from polyn.errors import ActorError


def recorders(log: Log, *names: str, **options: Any) -> list[Actor]:
    return [Recorder(log, name=name, **options) for name in names]


def lifecycle(log: Log) -> list[tuple[Any, ...]]:
    return events(log, "init", "init-failed", "terminate")


async def test_children_start_in_order_each_init_returning_before_the_next_starts() -> None:
    log = Log()

    class Slow(Recorder):
        async def init(self) -> None:
            self.log.append(("begin", self.name))
            await trio.sleep(0.01)
            await super().init()

    async with Supervisor([Slow(log, name="a"), Slow(log, name="b")]).run():
        pass
    assert events(log, "begin", "init") == [
        ("begin", "a"),
        ("init", "a"),
        ("begin", "b"),
        ("init", "b"),
    ]


async def test_children_stop_in_reverse_start_order() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a", "b", "c")).run():
        pass
    assert events(log, "terminate") == [
        ("terminate", "c", "shutdown"),
        ("terminate", "b", "shutdown"),
        ("terminate", "a", "shutdown"),
    ]


async def test_a_failing_init_fails_the_start_naming_the_child_and_stops_the_started_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    children = [*recorders(log, "a", "b"), Recorder(log, name="c", fail_init=True)]
    with pytest.raises(ActorError) as caught:
        async with Supervisor(children, name="root").run():
            pytest.fail("the block must not run")
    assert str(caught.value) == (
        "supervisor 'root' failed to start child 'c' (Recorder): ValueError: c refuses to start"
    )
    assert isinstance(caught.value.__cause__, ValueError)
    assert lifecycle(log) == [
        ("init", "a"),
        ("init", "b"),
        ("init-failed", "c"),
        ("terminate", "b", "shutdown"),
        ("terminate", "a", "shutdown"),
    ]
    # Reported once, by the error its starter gets: no error log of it on the way up.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_start_failure_deep_in_the_tree_names_every_supervisor_on_the_way() -> None:
    inner = Supervisor([Recorder([], name="bad", fail_init=True)], name="inner")
    with pytest.raises(ActorError) as caught:
        async with Supervisor([inner], name="outer").run():
            pass
    # One line, public names only (no private error class in the text).
    assert str(caught.value) == (
        "supervisor 'outer' failed to start child 'inner' (Supervisor): "
        "supervisor 'inner' failed to start child 'bad' (Recorder): "
        "ValueError: bad refuses to start"
    )
    assert "_" not in type(caught.value).__qualname__
    cause = caught.value.__cause__
    assert isinstance(cause, ActorError)
    assert isinstance(cause.__cause__, ValueError)


async def test_one_for_one_restarts_only_the_child_that_exited() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a", "b", "c"), strategy="one_for_one").run() as tree:
        await tree.ref("b").cast("crash")
        await settle()
    assert lifecycle(log)[3:5] == [("terminate", "b", "RuntimeError"), ("init", "b")]


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a", "b", "c"), strategy="one_for_all").run() as tree:
        del log[:]
        await tree.ref("b").cast("crash")
        await settle()
        assert lifecycle(log) == [
            ("terminate", "b", "RuntimeError"),
            ("terminate", "c", "shutdown"),
            ("terminate", "a", "shutdown"),
            ("init", "a"),
            ("init", "b"),
            ("init", "c"),
        ]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a", "b", "c"), strategy="rest_for_one").run() as tree:
        del log[:]
        await tree.ref("b").cast("crash")
        await settle()
        assert lifecycle(log) == [
            ("terminate", "b", "RuntimeError"),
            ("terminate", "c", "shutdown"),
            ("init", "b"),
            ("init", "c"),
        ]


async def test_strategies_accept_the_enum_or_its_string() -> None:
    assert Supervisor(strategy="rest_for_one").strategy is Strategy.REST_FOR_ONE
    assert Supervisor(strategy=Strategy.ONE_FOR_ALL).strategy is Strategy.ONE_FOR_ALL
    with pytest.raises(ValueError):
        Supervisor(strategy="one_for_some")


async def test_a_permanent_child_is_restarted_even_after_a_normal_exit() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a")).run() as tree:
        await tree.ref("a").cast("stop")
        await settle()
        assert tree.ref("a").alive
    assert lifecycle(log)[:3] == [("init", "a"), ("terminate", "a", "normal"), ("init", "a")]


@pytest.mark.parametrize(
    ("command", "restarted"),
    [
        ("crash", True),
        (("stop", "lost"), True),
        ("stop", False),
        (("stop", "shutdown"), False),
    ],
)
async def test_a_transient_child_is_restarted_only_after_an_abnormal_exit(
    command: Any, restarted: bool
) -> None:
    async with Supervisor(recorders([], "a", restart=Restart.TRANSIENT)).run() as tree:
        await tree.ref("a").cast(command)
        await settle()
        assert (tree.whereis("a") is not None) is restarted


async def test_a_temporary_child_is_never_restarted_and_leaves_its_supervisor() -> None:
    async with Supervisor(recorders([], "a", restart="temporary")).run() as tree:
        await tree.ref("a").cast("crash")
        await settle()
        assert tree.whereis("a") is None
        assert await tree.which_children() == []


async def test_a_temporary_sibling_stopped_by_a_group_restart_is_not_restarted() -> None:
    log = Log()
    children = [Recorder(log, name="a"), Recorder(log, name="temp", restart="temporary")]
    async with Supervisor(children, strategy="one_for_all").run() as tree:
        await tree.ref("a").cast("crash")
        await settle()
        assert tree.whereis("temp") is None
        assert [child.name for child in await tree.which_children()] == ["a"]


async def test_past_its_intensity_a_supervisor_stops_its_children_and_fails_naming_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    spec = Supervisor(recorders(log, "a", "b"), name="root", max_restarts=2, max_seconds=5)
    with pytest.raises(ActorError) as caught:
        async with spec.run() as tree:
            for _ in range(3):
                await tree.ref("b").cast("crash")
                await settle()  # the third time, the root gives up and cancels the block
            pytest.fail("the supervisor should have given up")
    assert str(caught.value) == (
        "supervisor 'root' reached its maximum restart intensity (more than 2 restarts "
        "within 5 s); last exit: child 'b', RuntimeError('b crashed')"
    )
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert lifecycle(log)[-2:] == [
        ("terminate", "b", "RuntimeError"),
        ("terminate", "a", "shutdown"),
    ]
    assert "supervisor 'root' gave up: supervisor 'root' reached its maximum" in caplog.text


async def test_restarts_older_than_max_seconds_no_longer_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = Supervisor(recorders([], "a"), max_restarts=1, max_seconds=5)
    async with spec.run() as tree:
        for _ in range(4):
            await tree.ref("a").cast("crash")
            await settle()
            await trio.sleep(5.5)
        assert tree.running


async def test_a_restart_exactly_max_seconds_ago_still_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # OTP keeps a restart at t while t >= now - period.
    with pytest.raises(ActorError, match="maximum restart intensity"):
        async with Supervisor(recorders([], "a"), max_restarts=1, max_seconds=5).run() as tree:
            await tree.ref("a").cast("crash")
            await settle()
            autojump_clock.jump(5)
            await tree.ref("a").cast("crash")
            await settle()  # the root gives up here, which cancels the block
            pytest.fail("the supervisor should have given up")


async def test_a_child_that_fails_to_restart_becomes_the_trigger_of_the_next_attempt() -> None:
    log = Log()
    failures: list[str] = []

    class Refuser(Recorder):
        async def init(self) -> None:
            if self.name in failures:
                failures.remove(self.name)
                self.log.append(("init-failed", self.name))
                raise OSError("not now")
            await super().init()

    children = [Refuser(log, name=name) for name in ["a", "b", "c"]]
    async with Supervisor(children, strategy="rest_for_one").run() as tree:
        del log[:]
        failures.append("c")
        await tree.ref("b").cast("crash")
        await settle()
        # b's restart starts b, then c fails; the next attempt restarts from c, not from b.
        assert lifecycle(log) == [
            ("terminate", "b", "RuntimeError"),
            ("terminate", "c", "shutdown"),
            ("init", "b"),
            ("init-failed", "c"),
            ("init", "c"),
        ]


async def test_max_restarts_zero_escalates_the_first_crash() -> None:
    with pytest.raises(ActorError, match="more than 0 restarts"):
        async with Supervisor(recorders([], "a"), max_restarts=0).run() as tree:
            await tree.ref("a").cast("crash")
            await settle()  # the root gives up here, which cancels the block
            pytest.fail("the supervisor should have given up")


async def test_a_nested_supervisor_that_gives_up_is_a_crash_for_its_parent() -> None:
    log = Log()
    inner = Supervisor(recorders(log, "x"), name="inner", max_restarts=0)
    outer = Supervisor([inner, Recorder(log, name="y")], name="outer", strategy="one_for_one")
    async with outer.run() as tree:
        first_inner = tree.ref("inner")._resolve()
        del log[:]
        await tree.ref("x").cast("crash")
        await settle()
        assert tree.ref("inner")._resolve() is not first_inner
        assert lifecycle(log) == [("terminate", "x", "RuntimeError"), ("init", "x")]


async def test_a_child_that_keeps_failing_to_restart_exhausts_the_intensity() -> None:
    attempts: list[str] = []

    class Flaky(Recorder):
        async def init(self) -> None:
            if attempts:  # every restart fails
                attempts.append("failed")
                raise OSError("no database")
            attempts.append("started")
            await super().init()

    with pytest.raises(ActorError, match="maximum restart intensity") as caught:
        async with Supervisor([Flaky([], name="f")], max_restarts=3).run() as tree:
            await tree.ref("f").cast("crash")
            await settle()  # the root gives up here, which cancels the block
            pytest.fail("the supervisor should have given up")
    assert attempts == ["started", "failed", "failed", "failed"]
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_graceful_shutdown_gives_terminate_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a", terminate_sleep=4, shutdown=5)]).run():
        pass
    assert events(log, "terminated") == [("terminated", "a")]


async def test_a_terminate_slower_than_the_shutdown_timeout_is_cancelled(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a", terminate_sleep=10, shutdown=2)]).run():
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(2)
    assert events(log, "terminate", "terminated") == [("terminate", "a", "shutdown")]
    assert "did not stop within its shutdown timeout" in caplog.text


async def test_shutdown_zero_cancels_the_child_at_once_without_terminate() -> None:
    log = Log()

    class Busy(Recorder):
        async def handle_cast(self, request: Any) -> None:
            await trio.sleep_forever()

    async with Supervisor([Busy(log, name="a", shutdown=0)]).run() as tree:
        await tree.ref("a").cast("work forever")
        await settle()
    assert events(log, "terminate") == []


async def test_a_busy_child_finishes_its_message_before_a_graceful_stop() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tree.ref("a").call, ("sleep", 0.05))
            await settle()
            await tree.stop()
    assert lifecycle(log)[-1] == ("terminate", "a", "shutdown")


_marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")


async def test_start_child_from_outside_is_spawned_by_the_supervisor_in_the_tree() -> None:
    seen: list[Any] = []

    class Witness(Actor):
        async def init(self) -> None:
            seen.append((current_tree(), _marker.get()))

    async with Supervisor([], name="root").run(context={"k": 1}) as tree:
        _marker.set("caller's own value")
        ref = await tree.start_child(Witness(name="w"))
        assert ref.alive and ref.name == "w"
        assert [child.name for child in await tree.which_children()] == ["w"]
    assert seen == [(tree, "none")]


async def test_start_child_failure_raises_naming_the_child_and_the_supervisor_goes_on() -> None:
    async with Supervisor([], name="root").run() as tree:
        with pytest.raises(ActorError, match="failed to start child 'bad'") as caught:
            await tree.start_child(Recorder([], name="bad", fail_init=True))
        assert isinstance(caught.value.__cause__, ValueError)
        assert tree.running
        assert await tree.which_children() == []


async def test_start_child_rejects_what_is_not_an_actor_or_not_a_supervisor() -> None:
    async with Supervisor([Recorder([], name="a")]).run() as tree:
        with pytest.raises(TypeError):
            await tree.start_child("not an actor")  # type: ignore[arg-type]
        with pytest.raises(ActorError, match="is not a supervisor"):
            await start_child(tree.ref("a"), Recorder([]))


async def test_terminate_child_stops_it_gracefully_and_keeps_its_spec() -> None:
    log = Log()
    async with Supervisor(recorders(log, "a", "b")).run() as tree:
        await terminate_child(tree.root, "a")
        assert tree.whereis("a") is None
        children = await which_children(tree.root)
        assert [(child.name, child.ref) for child in children] == [
            ("a", None),
            ("b", tree.ref("b")._resolve().ref),
        ]
        await tree.terminate_child("a")  # not running: nothing to do, as OTP
        with pytest.raises(ActorError, match="is not a child"):
            await tree.terminate_child("nobody")
        await settle()
        assert tree.whereis("a") is None  # not restarted
    assert lifecycle(log)[2] == ("terminate", "a", "shutdown")


async def test_a_dynamic_supervisor_starts_children_on_demand_up_to_max_children() -> None:
    pool = DynamicSupervisor(name="pool", max_children=2)
    async with Supervisor([pool]).run() as tree:
        first = await tree.start_child(Recorder([]), supervisor="pool")
        await tree.start_child(Recorder([]), supervisor="pool")
        with pytest.raises(ActorError, match="max_children=2"):
            await tree.start_child(Recorder([]), supervisor="pool")
        await tree.terminate_child(first, supervisor="pool")
        await tree.start_child(Recorder([]), supervisor="pool")
        assert len(await tree.which_children(supervisor="pool")) == 2


async def test_a_dynamic_supervisor_restarts_its_children_one_for_one() -> None:
    log = Log()
    async with Supervisor([DynamicSupervisor(name="pool")]).run() as tree:
        await tree.start_child(Recorder(log, name="a"), supervisor="pool")
        await tree.start_child(Recorder(log, name="b"), supervisor="pool")
        await tree.ref("a").cast("crash")
        await settle()
        assert lifecycle(log)[2:] == [("terminate", "a", "RuntimeError"), ("init", "a")]


async def test_which_children_reports_each_child_running_or_not() -> None:
    children = [
        Recorder([], name="a"),
        Recorder([], name="t", restart="transient"),
        Supervisor([], name="sub"),
    ]
    async with Supervisor(children).run() as tree:
        await tree.ref("t").cast("stop")
        await settle()
        info = await tree.which_children()
    assert [(c.name, c.ref is not None, c.restart, c.supervisor) for c in info] == [
        ("a", True, Restart.PERMANENT, False),
        ("t", False, Restart.TRANSIENT, False),
        ("sub", True, Restart.PERMANENT, True),
    ]
    assert info[0].spec is children[0]


def test_trio_run_of_main_runs_the_tree_until_it_is_stopped() -> None:
    log = Log()

    class StopTheTree(Actor):
        async def init(self) -> None:
            self.nursery.start_soon(self.tree.stop)

    trio.run(Supervisor([Recorder(log, name="a"), StopTheTree()]).main)
    assert lifecycle(log) == [("init", "a"), ("terminate", "a", "shutdown")]


async def test_cancelling_main_stops_every_actor_gracefully_running_terminate() -> None:
    log = Log()
    inner = Supervisor(recorders(log, "c", "d"), name="inner")
    with trio.move_on_after(0.05):
        await Supervisor([*recorders(log, "a", "b"), inner]).main()
    assert events(log, "terminate") == [
        ("terminate", "d", "shutdown"),
        ("terminate", "c", "shutdown"),
        ("terminate", "b", "shutdown"),
        ("terminate", "a", "shutdown"),
    ]


async def test_main_raises_actor_error_when_the_root_gives_up() -> None:
    class Doomed(Actor):
        async def init(self) -> None:
            self.nursery.start_soon(self.fail)

        async def fail(self) -> None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("always")

    with pytest.raises(ActorError, match="maximum restart intensity"):
        await Supervisor([Doomed()], name="root").main()


async def test_an_exception_in_the_run_block_comes_out_as_raised_and_stops_the_tree() -> None:
    log = Log()
    with pytest.raises(KeyError):
        async with Supervisor(recorders(log, "a")).run():
            raise KeyError("from the block")
    assert events(log, "terminate") == [("terminate", "a", "shutdown")]


async def test_a_keyboard_interrupt_in_an_actor_is_never_restarted_and_stops_the_tree(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Interrupted(Recorder):
        async def handle_cast(self, request: Any) -> None:
            raise KeyboardInterrupt

    log = Log()
    with caplog.at_level(logging.CRITICAL), pytest.raises(KeyboardInterrupt):
        async with Supervisor([Recorder(log, name="a"), Interrupted(log, name="b")]).run() as t:
            await t.ref("b").cast("now")
            await settle()
            pytest.fail("the tree should have stopped")
    assert events(log, "init").count(("init", "b")) == 1
    assert ("terminate", "a", "shutdown") in log


async def test_a_failed_restart_is_logged_once_by_its_supervisor_with_the_causes_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts: list[int] = []  # a plain list argument is copied per start: this one is global

    class Flaky(Actor):
        async def init(self) -> None:
            starts.append(1)
            if len(starts) > 1:
                raise LookupError("the ledger is gone")

        async def handle_cast(self, request: Any) -> None:
            raise RuntimeError("crash")

    caplog.set_level(logging.DEBUG, logger="polyn.actors")
    with pytest.raises(ActorError, match="maximum restart intensity"):
        async with Supervisor([Flaky(name="flaky")], name="root", max_restarts=1).run() as tree:
            await tree.ref("flaky").cast("crash")
            await tree.wait_finished()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    restarts = [r for r in errors if "failed to restart" in r.getMessage()]
    assert [r.getMessage() for r in restarts] == [
        "supervisor 'root': child 'flaky' (Flaky) failed to restart: "
        "LookupError: the ledger is gone"
    ]
    assert restarts[0].exc_info is not None and restarts[0].exc_info[0] is LookupError
