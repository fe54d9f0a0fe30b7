"""Names and context: scoped to one running tree, reachable from actors, refs and handles."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from actor_support import Recorder, settle

from polyn.actors import Actor, Supervisor, Tree, current_tree, whereis
from polyn.errors import ActorError


class Finder(Actor):
    """Answers a call with what ``whereis`` finds for the requested name inside the tree."""

    async def handle_call(self, request: Any) -> Any:
        ref = whereis(request)
        return None if ref is None else await ref.call("ping")


async def test_whereis_inside_a_tree_finds_a_registered_actor() -> None:
    async with Supervisor([Recorder([], name="a"), Finder(name="finder")]).run() as tree:
        assert await tree.ref("finder").call("a") == "pong"
        assert await tree.ref("finder").call("nobody") is None


async def test_whereis_outside_any_tree_raises_and_points_to_the_handle() -> None:
    with pytest.raises(ActorError, match="outside a running tree"):
        whereis("a")


async def test_the_handle_resolves_names_from_outside() -> None:
    async with Supervisor([Recorder([], name="a")]).run() as tree:
        assert tree.whereis("nobody") is None
        with pytest.raises(ActorError, match="no actor named 'nobody' is running in this tree"):
            tree.ref("nobody")
        ref = tree.whereis("a")
        assert ref is not None and ref.name == "a"
        assert await ref.call("ping") == "pong"


async def test_a_ref_by_name_follows_the_actor_across_restarts() -> None:
    async with Supervisor([Recorder([], name="a")]).run() as tree:
        a = tree.ref("a")
        first = await a.call("serial")
        await a.cast("crash")
        await settle()
        assert await a.call("serial") != first


async def test_a_ref_to_one_run_does_not_follow_a_restart() -> None:
    async with Supervisor([Recorder([], name="a")]).run() as tree:
        run = tree.ref("a")._resolve().ref
        await run.cast("crash")
        await settle()
        assert not run.alive
        with pytest.raises(ActorError, match="is not running"):
            await run.call("ping")
        assert tree.ref("a").alive


async def test_two_trees_never_see_each_others_names() -> None:
    class Where(Actor):
        async def handle_call(self, request: Any) -> Any:
            ref = whereis("a")
            return None if ref is None else await ref.call("serial")

    async with (
        Supervisor([Recorder([], name="a"), Where(name="where")]).run() as one,
        Supervisor([Recorder([], name="a"), Where(name="where")]).run() as two,
    ):
        assert await one.ref("a").call("serial") != await two.ref("a").call("serial")
        assert await one.ref("where").call(None) == await one.ref("a").call("serial")
        assert await two.ref("where").call(None) == await two.ref("a").call("serial")
        assert one.ref("a") != two.ref("a")


async def test_a_name_already_taken_in_the_tree_fails_the_start_naming_it() -> None:
    spec = Supervisor([Recorder([], name="a"), Recorder([], name="a")], name="root")
    with pytest.raises(ActorError, match="the name 'a' is already taken in this tree"):
        async with spec.run():
            pass


async def test_the_context_is_reachable_from_actors_refs_and_the_handle_and_read_only() -> None:
    class Reader(Actor):
        async def handle_call(self, request: Any) -> Any:
            return self.context[request]

    context = {"config": "the config"}
    async with Supervisor([Reader(name="reader")]).run(context=context) as tree:
        assert tree.context["config"] == "the config"
        assert tree.ref("reader").context["config"] == "the config"
        assert await tree.ref("reader").call("config") == "the config"
        with pytest.raises(TypeError):
            tree.context["config"] = "changed"  # type: ignore[index]
        context["config"] = "changed after start"
        assert tree.context["config"] == "the config"


async def test_current_tree_is_the_tree_in_actors_and_their_helpers_and_none_outside() -> None:
    seen: list[Tree | None] = []

    class Helpful(Actor):
        async def init(self) -> None:
            seen.append(current_tree())
            self.nursery.start_soon(self.helper)

        async def helper(self) -> None:
            seen.append(current_tree())
            await trio.sleep_forever()

    assert current_tree() is None
    async with Supervisor([Helpful()]).run() as tree:
        await settle()
        assert current_tree() is None  # the block runs outside the tree
    assert seen == [tree, tree]


async def test_the_name_of_a_stopped_actor_is_free_again() -> None:
    async with Supervisor([Recorder([], name="a", restart="temporary")]).run() as tree:
        await tree.ref("a").cast("stop")
        await settle()
        assert tree.whereis("a") is None
        ref = await tree.start_child(Recorder([], name="a"))
        assert tree.ref("a")._resolve().ref == ref
