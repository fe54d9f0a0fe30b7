"""Fixtures of the typed-events tests.

``rich`` (session): the module generated from ``typed_support.RICH_SCHEMAS``, imported under a
unique name so cattrs can resolve its annotations as it would in a user's package.
``shop_events`` (session): the example's generated module.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from typed_support import RICH_SCHEMAS, load_module


@pytest.fixture(autouse=True)
def _cli_logging_stays_in_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests here run ``polyn.cli.main`` in this process: its logging set-up (levels of the
    polyn.nats and polyn.actors loggers) would outlive the test."""
    from polyn import cli

    monkeypatch.setattr(cli, "_configure_logging", lambda *args: None)


@pytest.fixture(scope="session")
def rich_text() -> str:
    from polyn.typed.codegen import generate_module

    return generate_module(RICH_SCHEMAS, source="the test's schemas").text


@pytest.fixture(scope="session")
def rich(rich_text: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.ModuleType]:
    module = load_module(rich_text, tmp_path_factory.mktemp("rich"))
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="session")
def shop_events() -> types.ModuleType:
    """The example's generated module, imported as the service imports it."""
    from examples.shop import events

    return events
