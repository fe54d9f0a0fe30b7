"""An actor's callbacks, options and life as one run: what a subclass author observes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from actor_support import Log, Recorder, events, settle

from polyn.actors import Actor, Restart, Supervisor, current_tree
from polyn.errors import ActorError


async def test_call_returns_what_handle_call_returns() -> None:
    async with Supervisor([Recorder([], name="a")]).run() as tree:
        assert await tree.ref("a").call("ping") == "pong"


async def test_casts_reach_handle_cast_in_the_order_sent() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        for i in range(300):  # more than a mailbox holds
            await tree.ref("a").cast(i)
        await settle()
    assert [entry[2] for entry in events(log, "cast")] == list(range(300))


async def test_send_reaches_handle_info() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        await tree.ref("a").send({"hello": 1})
        await settle()
    assert ("info", "a", {"hello": 1}) in log


async def test_default_handle_info_logs_the_unexpected_message_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Supervisor([Actor(name="plain")]).run() as tree:
        await tree.ref("plain").send("surprise")
        await settle()
        assert tree.ref("plain").alive
    assert "'plain' received an unexpected message: 'surprise'" in caplog.text


async def test_default_handle_call_crashes_the_actor_and_the_caller_gets_actor_error() -> None:
    async with Supervisor([Actor(name="plain")]).run() as tree:
        before = tree.ref("plain")._resolve()
        with pytest.raises(ActorError, match="crashed while handling the call") as caught:
            await tree.ref("plain").call("anything")
        assert isinstance(caught.value.__cause__, NotImplementedError)
        await settle()
        assert tree.ref("plain")._resolve() is not before


async def test_every_restart_builds_a_fresh_instance_from_the_constructor_arguments() -> None:
    class Counter(Actor):
        def __init__(self, start: int, **options: Any) -> None:
            super().__init__(**options)
            self.count = start

        async def handle_cast(self, request: Any) -> None:
            if request == "crash":
                raise RuntimeError("boom")
            self.count += 1

        async def handle_call(self, request: Any) -> int:
            return self.count

    spec = Counter(10, name="counter")
    async with Supervisor([spec]).run() as tree:
        counter = tree.ref("counter")
        await counter.cast("bump")
        assert await counter.call("get") == 11
        await counter.cast("crash")
        await settle()
        assert await counter.call("get") == 10
    assert spec.count == 10  # the spec itself never ran


async def test_a_spec_is_not_a_running_actor() -> None:
    spec = Recorder([], name="a")
    with pytest.raises(ActorError, match="is a spec, not a running actor"):
        spec.ref  # noqa: B018
    with pytest.raises(ActorError):
        spec.stop()


async def test_options_come_from_keywords_or_class_attributes() -> None:
    class Named(Actor):
        name = "fixed"
        restart = Restart.TRANSIENT
        shutdown = 1.5
        mailbox_size = 7

    default = Named()
    assert (default.name, default.restart, default.shutdown, default.mailbox_size) == (
        "fixed",
        Restart.TRANSIENT,
        1.5,
        7,
    )
    given = Named(name="other", restart="temporary", shutdown=0, mailbox_size=1)
    assert (given.name, given.restart, given.shutdown, given.mailbox_size) == (
        "other",
        Restart.TEMPORARY,
        0,
        1,
    )
    assert Actor().name is None
    assert Actor().restart is Restart.PERMANENT


@pytest.mark.parametrize(
    "options",
    [
        {"name": ""},
        {"restart": "sometimes"},
        {"shutdown": -1},
        {"mailbox_size": 0},
    ],
)
async def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Actor(**options)


async def test_a_running_actor_knows_its_ref_name_tree_and_context() -> None:
    seen: dict[str, Any] = {}

    class Curious(Actor):
        async def init(self) -> None:
            seen["name"] = self.name
            seen["ref"] = self.ref
            seen["tree"] = self.tree
            seen["context"] = self.context
            seen["current"] = current_tree()

    async with Supervisor([Curious(name="curious")]).run(context={"k": "v"}) as tree:
        assert seen["name"] == "curious"
        assert seen["ref"] == tree.ref("curious")._resolve().ref
        assert seen["tree"] is tree
        assert seen["current"] is tree
        assert seen["context"] == {"k": "v"}


async def test_stopping_normally_runs_terminate_with_normal_and_frees_the_name() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a", restart="transient")]).run() as tree:
        await tree.ref("a").cast("stop")
        await settle()
        assert tree.whereis("a") is None
    assert events(log, "terminate") == [("terminate", "a", "normal")]


async def test_a_reply_returned_before_stopping_is_still_sent() -> None:
    class Quitter(Actor):
        async def handle_call(self, request: Any) -> str:
            self.stop()
            return "bye"

    async with Supervisor([Quitter(name="q", restart="temporary")]).run() as tree:
        assert await tree.ref("q").call("quit") == "bye"


async def test_stop_called_in_init_stops_right_after_init() -> None:
    log = Log()

    class Once(Recorder):
        async def init(self) -> None:
            await super().init()
            self.stop()

    async with Supervisor([Once(log, name="once", restart="transient")]).run() as tree:
        await settle()
        assert tree.whereis("once") is None
    assert log == [("init", "once"), ("terminate", "once", "normal")]


async def test_a_callback_exception_crashes_the_actor_runs_terminate_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    with caplog.at_level(logging.ERROR, logger="polyn.actors"):
        async with Supervisor([Recorder(log, name="a")]).run() as tree:
            await tree.ref("a").cast("crash")
            await settle()
    assert log[:3] == [("init", "a"), ("terminate", "a", "RuntimeError"), ("init", "a")]
    crash = next(r for r in caplog.records if "crashed" in r.getMessage())
    assert crash.getMessage() == "actor 'a' crashed: RuntimeError('a crashed')"
    assert crash.exc_info is not None and crash.exc_info[0] is RuntimeError
    assert "handle_cast" in caplog.text  # the traceback


async def test_an_abnormal_stop_reason_is_logged_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Supervisor([Recorder([], name="a", restart="temporary")]).run() as tree:
        await tree.ref("a").cast(("stop", "lost my database"))
        await settle()
    assert "actor 'a' stopped abnormally: 'lost my database'" in caplog.text


async def test_helper_tasks_run_until_the_actor_stops_and_terminate_sees_them_running() -> None:
    log: list[str] = []

    class WithHelper(Actor):
        async def init(self) -> None:
            self.nursery.start_soon(self.helper)

        async def helper(self) -> None:
            try:
                log.append("helper started")
                await trio.sleep_forever()
            finally:
                log.append("helper cancelled")

        async def terminate(self, reason: object) -> None:
            log.append("terminate")

    async with Supervisor([WithHelper()]).run():
        await settle()
        assert log == ["helper started"]
    assert log == ["helper started", "terminate", "helper cancelled"]


async def test_a_failing_helper_task_crashes_its_actor() -> None:
    log = Log()
    failures: list[str] = []

    class Fragile(Recorder):
        async def init(self) -> None:
            await super().init()
            self.nursery.start_soon(self.helper)

        async def helper(self) -> None:
            await trio.lowlevel.checkpoint()
            if not failures:  # only the first run's helper fails
                failures.append("failed")
                raise OSError("socket gone")

    async with Supervisor([Fragile(log, name="f")]).run() as tree:
        await settle()
        assert await tree.ref("f").call("ping") == "pong"
    assert events(log, "init", "terminate")[:3] == [
        ("init", "f"),
        ("terminate", "f", "OSError"),
        ("init", "f"),
    ]


async def test_an_exception_in_terminate_is_logged_and_the_actor_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Sloppy(Actor):
        async def terminate(self, reason: object) -> None:
            raise KeyError("cleanup")

    async with Supervisor([Sloppy(name="s")]).run():
        pass
    assert "terminate of actor 's' raised" in caplog.text
