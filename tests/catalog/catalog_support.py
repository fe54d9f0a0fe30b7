"""What the catalogue's tests share: the repository root, the shop's App, reading its catalogue.

(A module of its own, not ``conftest``: test modules cannot import a ``conftest`` reliably when
every test folder has one.)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.shop.service import make_config  # noqa: E402
from polyn.catalog import Catalog, build_catalog  # noqa: E402
from polyn.migration import open_transport  # noqa: E402

SHOP_APP = "examples.shop.service:app"
SHOP_EVENTS = ["order.placed.v1", "payment.captured.v1", "stock.reported.v1", "stock.requested.v1"]


async def read_shop_catalog(url: str) -> Catalog:
    """The shop's catalogue read from the server at ``url`` (bucket, streams, consumers) and
    its App, as ``polyn catalog --app examples.shop.service:app`` reads it."""
    config = make_config(url)
    async with open_transport(config) as transport:
        return await build_catalog(config, transport=transport, apps=[SHOP_APP])
