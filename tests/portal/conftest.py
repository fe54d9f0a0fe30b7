"""Fixtures of the portal tests, and asyncio tests next to pytest-trio's ``trio_mode``.

- ``server`` (module): a nats-server of the module's own, with monitoring, so a test can count
  its connections (``portal_support.connections``).
- ``watch`` (function): a :class:`portal_support.ServerWatch` on it.

With ``trio_mode = true`` pytest-trio runs *every* ``async def`` test on trio, including those
marked for anyio's pytest plugin. The hook below hands a test marked ``@pytest.mark.anyio`` back
to anyio, and ``anyio_backend`` says asyncio (anyio's own default is every installed backend,
trio included): the same few lines a user's ``conftest.py`` needs
(docs/howto/asyncio-and-sync.md). Such tests use sync fixtures: in ``trio_mode`` an
``async def`` fixture is a trio fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from portal_support import ServerWatch

from polyn.server import NatsServer


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer(monitoring=True) as server:
        yield server


@pytest.fixture
def watch(server: NatsServer) -> Iterator[ServerWatch]:
    watch = ServerWatch(server.url)
    try:
        yield watch
    finally:
        watch.close()
