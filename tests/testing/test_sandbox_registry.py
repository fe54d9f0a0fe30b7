"""The Sandbox registry: which test's MockNats a task resolves to (conformance cases 117-122).

Tasks here are real trio tasks parked in a nursery; "test tasks" are registered with
``Sandbox.setup_test`` as the pytest fixture would register pytest-trio's runner task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from polyn.errors import ActorError, SandboxError
from polyn.nats import transport_for
from polyn.testing import MockNats, Sandbox, SandboxTransport

Task = trio.lowlevel.Task


@asynccontextmanager
async def parked_tasks(*names: str) -> AsyncIterator[list[Task]]:
    """Start one sleeping task per name (children of the caller) and yield them."""
    tasks: list[Task] = []
    async with trio.open_nursery() as nursery:
        for name in names:

            async def park(task_status: trio.TaskStatus[Task] = trio.TASK_STATUS_IGNORED) -> None:
                task_status.started(trio.lowlevel.current_task())
                await trio.sleep_forever()

            tasks.append(await nursery.start(park, name=name))
        yield tasks
        nursery.cancel_scope.cancel()


async def test_a_fresh_run_has_no_tasks_and_async_mode_off() -> None:  # case 117
    assert Sandbox.mapped_tasks() == {}
    assert Sandbox.async_mode() is False


async def test_an_allowed_task_resolves_to_the_test_mock() -> None:  # case 118
    mock = MockNats()
    async with parked_tasks("test", "other") as (test, other):
        Sandbox.setup_test(test, mock)
        Sandbox.allow(test, other)
        assert Sandbox.mock_for(other) is mock
        Sandbox.allow(test, other)  # again, same test: a no-op
        Sandbox.teardown_test(test)


async def test_allowing_a_task_of_another_test_is_an_error() -> None:  # case 119
    async with parked_tasks("test-a", "test-b", "shared") as (a, b, shared):
        Sandbox.setup_test(a, MockNats())
        Sandbox.setup_test(b, MockNats())
        Sandbox.allow(a, shared)
        with pytest.raises(SandboxError, match=r"already associated with a running test"):
            Sandbox.allow(b, shared)
        with pytest.raises(SandboxError, match="'test-a'"):
            Sandbox.allow(b, a)
        Sandbox.teardown_test(a)
        Sandbox.teardown_test(b)


async def test_an_unknown_task_in_async_mode_is_an_error_naming_it() -> None:  # case 120
    Sandbox.set_async_mode(True)
    async with parked_tasks("test", "other_task") as (test, other):
        Sandbox.setup_test(test, MockNats())
        with pytest.raises(SandboxError) as error:
            Sandbox.mock_for(other)
        text = str(error.value)
        assert "There are no MockNats servers\nassociated with task 'other_task'" in text
        assert "Sandbox.allow(" in text and "set_async_mode(False)" in text
        Sandbox.teardown_test(test)


async def test_with_async_mode_off_the_only_test_serves_every_task() -> None:  # case 121
    mock = MockNats()
    async with parked_tasks("test", "unrelated", "second") as (test, unrelated, second):
        Sandbox.setup_test(test, mock)
        assert Sandbox.mock_for(unrelated) is mock
        Sandbox.setup_test(second, MockNats())  # two tests: no longer unambiguous
        with pytest.raises(SandboxError, match="There are no MockNats servers"):
            Sandbox.mock_for(unrelated)
        Sandbox.teardown_test(second)
        Sandbox.teardown_test(test)


async def test_teardown_removes_the_test_and_the_tasks_it_allowed() -> None:  # case 122
    async with parked_tasks("test", "helper", "other-test") as (test, helper, other):
        other_mock = MockNats()
        Sandbox.setup_test(other, other_mock)
        Sandbox.setup_test(test, MockNats())
        Sandbox.allow(test, helper)
        Sandbox.teardown_test(test)
        assert Sandbox.mapped_tasks() == {other: other_mock}
        Sandbox.allow(other, helper)  # free again
        Sandbox.teardown_test(other)
        assert Sandbox.mapped_tasks() == {}


async def test_tasks_beneath_a_mapped_task_resolve_to_the_nearest_mapped_ancestor() -> None:
    outer_mock, inner_mock = MockNats(), MockNats()
    found: dict[str, MockNats] = {}

    async def grandchild(label: str) -> None:
        found[label] = Sandbox.mock_for()

    async def child(label: str, allow_from: Task | None) -> None:
        if allow_from is not None:
            Sandbox.allow(allow_from, trio.lowlevel.current_task())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(grandchild, label)

    async with parked_tasks("inner-test") as (inner_test,):
        Sandbox.set_async_mode(True)
        Sandbox.setup_test(trio.lowlevel.current_task(), outer_mock)
        Sandbox.setup_test(inner_test, inner_mock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, "plain", None)
            nursery.start_soon(child, "allowed", inner_test)
        Sandbox.teardown_test(inner_test)
        Sandbox.teardown_test(trio.lowlevel.current_task())
    assert found == {"plain": outer_mock, "allowed": inner_mock}


async def test_registering_a_test_task_twice_is_an_error() -> None:
    task = trio.lowlevel.current_task()
    Sandbox.setup_test(task, MockNats())
    with pytest.raises(SandboxError, match="already associated"):
        Sandbox.setup_test(task, MockNats())
    async with parked_tasks("x", "y") as (x, y):
        with pytest.raises(SandboxError, match="is not a test registered"):
            Sandbox.allow(x, y)
    Sandbox.teardown_test(task)


async def test_transport_for_returns_the_mock_only_while_a_test_is_registered() -> None:
    with pytest.raises(ActorError, match="outside a running tree"):
        transport_for("nats")
    mock = MockNats()
    Sandbox.setup_test(trio.lowlevel.current_task(), mock)
    transport = transport_for("nats")
    assert isinstance(transport, SandboxTransport) and transport.mock is mock
    other = MockNats()
    assert transport_for(other) is other  # a transport passed explicitly is used as given
    Sandbox.teardown_test(trio.lowlevel.current_task())
    with pytest.raises(ActorError, match="outside a running tree"):
        transport_for("nats")


async def test_transport_for_in_an_unresolvable_task_raises_the_sandbox_error() -> None:
    Sandbox.set_async_mode(True)
    async with parked_tasks("test") as (test,):
        Sandbox.setup_test(test, MockNats())
        with pytest.raises(SandboxError, match="There are no MockNats servers"):
            transport_for("nats")
        Sandbox.teardown_test(test)


async def test_two_trio_runs_do_not_share_a_registry() -> None:
    Sandbox.setup_test(trio.lowlevel.current_task(), MockNats())

    def other_run() -> dict[Task, MockNats]:
        async def look() -> dict[Task, MockNats]:
            return Sandbox.mapped_tasks()

        return trio.run(look)

    assert await trio.to_thread.run_sync(other_run) == {}
    Sandbox.teardown_test(trio.lowlevel.current_task())
