"""Fixtures of the catalogue's tests: the example shop's server, and its catalogue.

``shop_url`` (session) is a nats-server of these tests' own, prepared as ``python -m
examples.shop`` prepares one (the repository's ``schemas/`` loaded into the bucket, its
``migrations/`` run). ``shop_catalog`` is the catalogue of that server plus the shop's App tree,
read exactly as ``polyn catalog --app examples.shop.service:app`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from catalog_support import read_shop_catalog

from examples.shop.demo import prepare_nats
from examples.shop.service import make_config
from polyn.catalog import Catalog
from polyn.server import NatsServer


@pytest.fixture(scope="session")
def shop_url() -> Iterator[str]:
    """A nats-server with the shop's schemas loaded and its migrations run."""
    with NatsServer() as server:
        trio.run(prepare_nats, make_config(server.url), lambda line: None)
        yield server.url


@pytest.fixture(scope="session")
def shop_catalog(shop_url: str) -> Catalog:
    """The shop's catalogue read from its server (bucket, streams, consumers) and its App."""
    return trio.run(read_shop_catalog, shop_url)
