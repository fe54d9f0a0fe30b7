"""Fixtures of the example shop's tests: a nats-server of their own, set up as the shop needs.

``shop_server`` (session) is a nats-server with the example's schemas loaded (from
``schemas/``) and its migrations run (from ``migrations/``), exactly as ``python -m
examples.shop`` prepares one. The plugin's ``nats_server``, ``polyn_schema_bucket`` and
``polyn_schemas`` are overridden here (not only ``nats_server``: a session fixture of the
plugin computed once for another directory would otherwise be reused), so the
``polyn_sandbox`` fixture wraps this server: its snapshot has the shop's streams and consumers.

The repository root is put on ``sys.path`` so that ``examples`` imports under plain ``pytest``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.shop.demo import prepare_nats  # noqa: E402
from examples.shop.service import make_config  # noqa: E402
from polyn.server import NatsServer  # noqa: E402
from polyn.testing.plugin import read_schemas  # noqa: E402


@pytest.fixture(scope="session")
def shop_server() -> Iterator[str]:
    """The URL of a nats-server prepared for the shop: schemas loaded, migrations run."""
    with NatsServer() as server:
        trio.run(prepare_nats, make_config(server.url), lambda line: None)
        yield server.url


@pytest.fixture(scope="session")
def nats_server(shop_server: str) -> str:
    return shop_server


@pytest.fixture(scope="session")
def polyn_schema_bucket() -> str:
    return make_config("nats://unused").schema_store


@pytest.fixture(scope="session")
def polyn_schemas(shop_server: str, polyn_schema_bucket: str) -> dict[str, Any]:
    return read_schemas(shop_server, polyn_schema_bucket)
