"""What the fault-tolerance scenarios share: a service on a server of its own, and the figures.

Every scenario runs a real nats-server of its own (``fresh_server``, started by the launcher),
builds a :class:`polyn.App` on it the way a user would, breaks something, and asserts what a
user would observe. Each scenario records its figures (events, kills, lost, duplicates, in-flight,
RSS) with the ``figures`` fixture; at the end of the session they are printed as the README's
"Reliability" table and written to ``reliability.json`` under pytest's base temporary folder.

Marked ``slow`` (left out of the default run): select them with ``pytest -m reliability``
(or ``pytest -m slow``, every slow test).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from _support import Names
from reliability_support import LogCounter, Service

from polyn.nats import NatsTransport

_FIGURES: list[dict[str, Any]] = []
_COLUMNS = (
    ("scenario", "scenario"),
    ("events", "events"),
    ("kills", "kills / faults"),
    ("lost", "lost"),
    ("duplicates_stored", "duplicates stored"),
    ("duplicates_handled", "duplicates handled"),
    ("max_in_flight", "max in flight"),
    ("rss_mb", "RSS (MB)"),
    ("seconds", "seconds"),
    ("notes", "notes"),
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: a fault-tolerance scenario (issue 11)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("Reliability figures")
    rows = sorted(_FIGURES, key=lambda row: str(row.get("scenario")))
    for line in figures_table(rows).splitlines():
        terminalreporter.write_line(line)


def figures_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table, the README's "Reliability" table."""
    lines = [
        "| " + " | ".join(title for _, title in _COLUMNS) + " |",
        "|" + "|".join("---" for _ in _COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in _COLUMNS) + " |")
    return "\n".join(lines)


@pytest.fixture
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A dict the test fills with what it observed; recorded (and printed) after the test."""
    row: dict[str, Any] = {"scenario": request.node.name.removeprefix("test_")}
    begin = time.monotonic()
    yield row
    row.setdefault("seconds", round(time.monotonic() - begin, 1))
    _FIGURES.append(row)
    path = tmp_path_factory.getbasetemp() / "reliability.json"
    path.write_text(json.dumps(_FIGURES, indent=2, default=str))
    print(f"\n{row['scenario']}: {json.dumps(row, default=str)}")


# -- measuring ------------------------------------------------------------------------------


@pytest.fixture
def count_logs(monkeypatch: pytest.MonkeyPatch) -> Callable[..., LogCounter]:
    def install(*names: str) -> LogCounter:
        counter = LogCounter()
        for name in names:
            logger = logging.getLogger(name)
            monkeypatch.setattr(logger, "propagate", False)
            monkeypatch.setattr(logger, "handlers", [counter])
        return counter

    return install


@pytest.fixture
async def admin(fresh_server: Any) -> AsyncIterator[NatsTransport]:
    """A connection of the test's own to its server, for set-up and inspection."""
    transport = await NatsTransport.connect(fresh_server.url, reconnect_time_wait=0.1)
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
def service(admin: NatsTransport, fresh_server: Any, names: Names) -> Service:
    return Service(admin, fresh_server.url, names)
