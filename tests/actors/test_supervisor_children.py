"""A supervisor's children at run time, as OTP's supervisor and Elixir's DynamicSupervisor.

``terminate_child`` stops a child and keeps its spec, ``restart_child`` starts it again,
``delete_child`` forgets a stopped child; ``which_children`` / ``count_children`` report them. A
DynamicSupervisor forgets children that end for good, and a ref to a run that has ended never
reaches its successor.
"""

from __future__ import annotations

from typing import Any

import pytest
from actor_support import Log, Recorder, events, settle

from polyn.actors import Actor, DynamicSupervisor, Supervisor
from polyn.errors import ActorError


async def test_a_dynamic_supervisor_forgets_a_transient_child_that_exits_normally() -> None:
    async with Supervisor([DynamicSupervisor(name="pool", max_children=2)]).run() as tree:
        first = await tree.start_child(Recorder(Log(), restart="transient"), supervisor="pool")
        await tree.start_child(Recorder(Log(), restart="transient"), supervisor="pool")
        assert first is not None
        await first.cast("stop")
        await settle()
        assert len(await tree.which_children(supervisor="pool")) == 1
        third = await tree.start_child(Recorder(Log(), restart="transient"), supervisor="pool")
        assert third is not None and third.alive
        with pytest.raises(ActorError, match="not a child"):
            await tree.terminate_child(first, supervisor="pool")


async def test_a_dynamic_supervisor_forgets_a_temporary_child_that_crashes() -> None:
    async with Supervisor([DynamicSupervisor(name="pool", max_children=1)]).run() as tree:
        child = await tree.start_child(Recorder(Log(), restart="temporary"), supervisor="pool")
        assert child is not None
        await child.cast("crash")
        await settle()
        assert await tree.which_children(supervisor="pool") == []
        await tree.start_child(Recorder(Log()), supervisor="pool")


async def test_terminate_child_refuses_a_ref_to_a_run_that_has_ended() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a")]).run() as tree:
        old_run = tree.ref("a").running_actor().ref
        await old_run.cast("crash")
        await settle()
        with pytest.raises(ActorError, match="not a child"):
            await tree.terminate_child(old_run)
        assert tree.ref("a").alive
    assert events(log, "terminate") == [
        ("terminate", "a", "RuntimeError"),
        ("terminate", "a", "shutdown"),
    ]


async def test_a_mutable_constructor_argument_does_not_carry_state_across_a_restart() -> None:
    class Tally(Actor):
        def __init__(self, counts: dict[str, list[int]], **options: Any) -> None:
            super().__init__(**options)
            self.counts = counts

        async def handle_cast(self, request: Any) -> None:
            if request == "crash":
                raise RuntimeError("boom")
            self.counts.setdefault("seen", []).append(request)

        async def handle_call(self, request: Any) -> Any:
            return self.counts

    given: dict[str, list[int]] = {"seen": [0]}
    async with Supervisor([Tally(given, name="tally")]).run() as tree:
        tally = tree.ref("tally")
        await tally.cast(1)
        assert await tally.call("get") == {"seen": [0, 1]}
        await tally.cast("crash")
        await settle()
        assert await tally.call("get") == {"seen": [0]}
    assert given == {"seen": [0]}  # the spec's argument is never handed to a run


async def test_terminate_child_keeps_the_spec_and_restart_child_starts_it_again() -> None:
    log = Log()
    async with Supervisor([Recorder(log, name="a"), Recorder(log, name="b")]).run() as tree:
        await tree.terminate_child("a")
        assert tree.whereis("a") is None
        infos = await tree.which_children()
        assert [(info.name, info.ref is not None) for info in infos] == [("a", False), ("b", True)]
        counts = await tree.count_children()
        assert (counts.specs, counts.active, counts.workers, counts.supervisors) == (2, 1, 2, 0)
        ref = await tree.restart_child("a")
        assert ref is not None and await ref.call("ping") == "pong"
        with pytest.raises(ActorError, match="is running"):
            await tree.restart_child("a")
        with pytest.raises(ActorError, match="is running"):
            await tree.delete_child("a")
        await tree.terminate_child("a")
        await tree.delete_child("a")
        assert [info.name for info in await tree.which_children()] == ["b"]
        with pytest.raises(ActorError, match="not a child"):
            await tree.restart_child("a")
    assert events(log, "init", "terminate")[:5] == [
        ("init", "a"),
        ("init", "b"),
        ("terminate", "a", "shutdown"),
        ("init", "a"),
        ("terminate", "a", "shutdown"),
    ]
