"""Typed values in a tree (Key, provide, lookup) and the synchronous supervisor queries."""

from __future__ import annotations

from typing import Any, Final, Protocol

import pytest
import trio
from actor_support import settle

from polyn.actors import Actor, Key, Supervisor
from polyn.errors import ActorError


class Connection:
    def __init__(self, serial: int) -> None:
        self.serial = serial


class Greeter(Protocol):
    def greet(self) -> str: ...


CONNECTION: Final = Key("connection", Connection)
GREETER: Final = Key[Greeter]("greeter")


class Hold:
    """What a Provider's init waits for: set by default, replaced by a test to hold a start."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.event.set()


class Provider(Actor):
    """Provides a Connection numbered by its run; ``"crash"`` crashes it."""

    runs = 0

    def __init__(self, hold: Hold | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.hold = hold

    async def init(self) -> None:
        if self.hold is not None:
            await self.hold.event.wait()
        Provider.runs += 1
        self.provide(CONNECTION, Connection(Provider.runs))

    async def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError("gone")
        if request == "replace":
            self.provide(CONNECTION, Connection(-1))
        if request == "wrong":
            self.provide(CONNECTION, "not a connection")  # type: ignore[arg-type]


async def test_a_provided_value_is_found_by_name_and_key_typed() -> None:
    async with Supervisor([Provider(name="db")]).run() as tree:
        connection = tree.lookup("db", CONNECTION)
        assert isinstance(connection, Connection)
        assert tree.require("db", CONNECTION) is connection
        assert tree.ref("db").lookup(CONNECTION) is connection
        assert tree.ref("db").require(CONNECTION) is connection
        assert tree.lookup("db", GREETER) is None
        assert tree.lookup("nobody", CONNECTION) is None
        await tree.ref("db").cast("replace")
        await settle()
        assert tree.require("db", CONNECTION).serial == -1


async def test_require_names_the_actor_and_the_key() -> None:
    async with Supervisor([Provider(name="db")]).run() as tree:
        with pytest.raises(ActorError, match=r"actor 'db' provides nothing under Key\('greeter'"):
            tree.require("db", GREETER)
        with pytest.raises(ActorError, match=r"no actor named 'cache' is running in this tree"):
            tree.require("cache", CONNECTION)
        with pytest.raises(ActorError, match=r"actor 'db' provides nothing under"):
            tree.ref("db").require(GREETER)


async def test_a_value_is_withdrawn_when_its_run_ends_and_the_successor_provides_its_own() -> None:
    hold = Hold()
    async with Supervisor([Provider(hold, name="db")]).run() as tree:
        first = tree.require("db", CONNECTION)
        run = tree.ref("db").running_actor().ref
        hold.event = trio.Event()  # the successor's init waits
        await tree.ref("db").cast("crash")
        await settle()
        assert run.lookup(CONNECTION) is None  # the ended run's value is gone
        assert tree.lookup("db", CONNECTION) is None  # the successor has not provided yet
        hold.event.set()
        await settle()
        second = tree.require("db", CONNECTION)
        assert second is not first and second.serial == first.serial + 1


async def test_a_value_of_the_wrong_type_is_refused_where_it_is_provided() -> None:
    async with Supervisor([Provider(name="db", restart="temporary")]).run() as tree:
        await tree.ref("db").cast("wrong")
        await settle()
        assert tree.whereis("db") is None  # the TypeError crashed the provider


async def test_provide_checks_the_type_and_names_the_actor_and_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Supervisor([Provider(name="db", restart="temporary")]).run() as tree:
        await tree.ref("db").cast("wrong")
        await settle()
    assert (
        "provided 'not a connection' for Key('connection', Connection), "
        "which needs test_actor_values.Connection"
    ) in caplog.text


def test_keys_compare_by_identity() -> None:
    assert Key("a", int) != Key("a", int)
    assert repr(Key("a", int)) == "Key('a', int)"
    assert repr(GREETER) == "Key('greeter')"


# -- the synchronous supervisor queries ---------------------------------------------------------


async def test_count_and_which_children_nowait_follow_crashes_and_restarts() -> None:
    hold = Hold()
    children = [Provider(hold, name="a"), Supervisor([], name="sub")]
    async with Supervisor(children).run() as tree:
        counts = tree.count_children_nowait()
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 1, 1)
        assert [info.name for info in tree.which_children_nowait()] == ["a", "sub"]
        assert tree.count_children_nowait(supervisor="sub").specs == 0
        hold.event = trio.Event()
        await tree.ref("a").cast("crash")
        await settle()  # the supervisor is restarting "a", whose init waits
        assert tree.count_children_nowait().active == 1
        assert [info.ref is None for info in tree.which_children_nowait()] == [True, False]
        hold.event.set()
        await settle()
        assert tree.count_children_nowait().active == 2
        with pytest.raises(ActorError, match="is not a supervisor"):
            tree.count_children_nowait(supervisor="a")


async def test_wait_finished_returns_when_the_tree_has_stopped() -> None:
    class StopTheTree(Actor):
        async def handle_cast(self, request: Any) -> None:
            await self.tree.stop()

    async with Supervisor([StopTheTree(name="s")]).run() as tree:
        await tree.ref("s").cast("stop")
        with trio.fail_after(5):
            await tree.wait_finished()
        assert not tree.running


async def test_a_tree_wide_cached_value_is_made_once_per_tree_and_not_on_failure() -> None:
    made: list[int] = []

    def make() -> Connection:
        made.append(1)
        return Connection(len(made))

    def broken() -> Connection:
        raise RuntimeError("cannot make it")

    async with Supervisor([]).run() as tree:
        with pytest.raises(RuntimeError):
            tree.cached(CONNECTION, broken)
        first = tree.cached(CONNECTION, make)
        assert tree.cached(CONNECTION, make) is first and made == [1]
        with pytest.raises(TypeError):
            tree.cached(Key("other", Connection), lambda: "not a connection")  # type: ignore[arg-type, return-value]
    async with Supervisor([]).run() as other:
        assert other.cached(CONNECTION, make) is not first and made == [1, 1]
