"""The ``core`` fixture: see ``core_support.Core``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _support import Names
from core_support import Core
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from polyn.nats import NatsTransport


@pytest.fixture
async def core(nats_url: str, names: Names) -> AsyncIterator[Core]:
    transport = await NatsTransport.connect(nats_url)
    try:
        setup = Core(transport, nats_url, names)
        await setup.load_schemas()
        yield setup
        try:
            await transport.kv_delete_bucket(setup.bucket)
        except Exception:
            pass
    finally:
        await transport.close()


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
