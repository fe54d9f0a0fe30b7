"""A deadline for every async actor test: a regression in the runtime tends to show as a hang
(a caller never answered, a child never stopped), and a hung test would stall the whole run."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import trio

_HERE = Path(__file__).parent
_DEADLINE = 60  # seconds of trio's clock: virtual under autojump_clock, where a hang fires at once


@pytest.fixture
async def _deadline(request: pytest.FixtureRequest, nursery: trio.Nursery) -> None:
    async def bark() -> None:
        await trio.sleep(_DEADLINE)
        raise TimeoutError(f"{request.node.name} ran for more than {_DEADLINE} s of trio time")

    nursery.start_soon(bark)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if _HERE in item.path.parents and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.usefixtures("_deadline"))
