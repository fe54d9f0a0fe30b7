"""A real-time deadline for every async actor test: a regression in the runtime tends to show
as a hang (a caller never answered, a child never stopped, a mock clock with nothing left to
jump to), and a hung test would stall the whole run until CI's own limit."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from actor_support import real_deadline

DEADLINE = 60  # seconds; the whole folder runs in a few


# tryfirst: wrap the test before pytest-trio turns it into a trio.run call.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # A conftest's runtest hooks only see the items under its own folder.
    test = getattr(item, "obj", None)
    if inspect.iscoroutinefunction(test):
        item.obj = _with_deadline(test, item.name)  # type: ignore[attr-defined]
    yield


def _with_deadline(
    test: Callable[..., Coroutine[Any, Any, None]], name: str
) -> Callable[..., Coroutine[Any, Any, None]]:
    @functools.wraps(test)  # keeps the signature pytest-trio reads the fixtures from
    async def guarded(**kwargs: Any) -> None:
        with real_deadline(DEADLINE, name):
            await test(**kwargs)

    return guarded
