"""Fixtures of the sandbox tests.

``transport`` runs a test three times: against the real :class:`~polyn.nats.NatsTransport`,
against the sandbox's :class:`~polyn.testing.SandboxTransport` (``MockNats`` messaging, a
snapshot of that server's definitions, its real buckets), and against that on virtual time
(``MockClock(autojump_threshold=0)`` for the whole trio run; the mock pauses the autojump while
it calls the real server). The behaviour suite thus holds the mock to the server wherever both
are observable, and shows that its timing is trio's clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing

from polyn.nats import NatsTransport, Transport
from polyn.testing import SandboxTransport, real_time

VIRTUAL = "mock-virtual"

# A user's project with a test suite of its own, run by test_readme_project.py.
collect_ignore = ["user_project"]


def run_on_virtual_time(
    fn: Callable[[], Any], *, clock: object = None, instruments: Any = ()
) -> Any:
    """A pytest-trio ``run=`` that runs the test on an autojumping MockClock."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0), instruments=instruments)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and (
            callspec.params.get("transport") == VIRTUAL
            or callspec.params.get("harness") == "sandbox"  # test_sandbox_service.py
        ):
            # Before pytest-trio's own trio marker, which runs on the real clock.
            item.add_marker(pytest.mark.trio(run=run_on_virtual_time), append=False)


@pytest.fixture(params=["real", "mock", VIRTUAL])
async def transport(nats_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    with real_time():
        real = await NatsTransport.connect(nats_url)
    try:
        if request.param == "real":
            yield real
        else:
            sandboxed = SandboxTransport(real)
            await sandboxed.refresh()
            try:
                yield sandboxed
            finally:
                await sandboxed.aclose()
    finally:
        with real_time():
            await real.close()
