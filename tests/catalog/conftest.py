"""Fixtures of the catalogue's tests: the example shop's server, and catalogues built from it.

``shop_url`` (session) is a nats-server of these tests' own, prepared as ``python -m
examples.shop`` prepares one (the repository's ``schemas/`` loaded into the bucket, its
``migrations/`` run). ``shop_catalog`` is the catalogue of that server plus the shop's App tree,
read exactly as ``polyn catalog --app examples.shop.service:app`` reads it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.shop.demo import prepare_nats  # noqa: E402
from examples.shop.service import make_config  # noqa: E402
from polyn.catalog import Catalog, build_catalog  # noqa: E402
from polyn.migration import open_transport  # noqa: E402
from polyn.server import NatsServer  # noqa: E402

SHOP_APP = "examples.shop.service:app"


@pytest.fixture(scope="session")
def shop_url() -> Iterator[str]:
    """A nats-server with the shop's schemas loaded and its migrations run."""
    with NatsServer() as server:
        trio.run(prepare_nats, make_config(server.url), lambda line: None)
        yield server.url


async def read_shop_catalog(url: str) -> Catalog:
    config = make_config(url)
    async with open_transport(config) as transport:
        return await build_catalog(config, transport=transport, apps=[SHOP_APP])


@pytest.fixture(scope="session")
def shop_catalog(shop_url: str) -> Catalog:
    """The shop's catalogue read from its server (bucket, streams, consumers) and its App."""
    return trio.run(read_shop_catalog, shop_url)
