"""The Polyn side of the shop's web front, shared by the FastAPI, hypercorn and sync examples.

The web front takes orders and payment webhooks over HTTP and turns them into the shop's events
(the schemas and streams of :mod:`examples.shop`: ``schemas/`` and ``migrations/``). Its App::

    NatsConnection
    SchemaStore
    JSONStore SHOP_WEB_SETTINGS   settings the web front reads and writes (created if missing)
    StockDesk  Responder          answers stock.requested.v1 from the host's StockBook

StockDesk is a handler, so it runs where the App runs (the portal's trio thread under uvicorn
or a sync server; the web server's own loop under hypercorn's trio worker). The StockBook
stands for the web app's own resources, a database pool bound to the web server's loop, so the
handler reaches it with :func:`polyn.portal.to_host`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio
import attrs

import polyn
from examples.shop.service import (
    ORDER_PLACED,
    PAYMENT_CAPTURED,
    STOCK,
    STOCK_REPORTED,
    STOCK_REQUESTED,
    make_config,
)

__all__ = [
    "ORDER_PLACED",
    "PAYMENT_CAPTURED",
    "SETTINGS",
    "STOCK_REQUESTED",
    "StockBook",
    "StockDesk",
    "build_app",
    "nats_url",
    "prepare",
    "web_config",
]

SETTINGS = "SHOP_WEB_SETTINGS"
SOURCE_ROOT = "shop.web"


def nats_url() -> str:
    """``NATS_URL``, or a server on this machine's default port."""
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


def web_config(url: str | None = None) -> polyn.Config:
    """The shop's config with the web front's own ``source_root``."""
    return attrs.evolve(make_config(url or nats_url()), source_root=SOURCE_ROOT)


class StockBook:
    """The web app's stock, behind an ``anyio.Lock``: a stand-in for its async database pool.

    Like a real pool, its lock belongs to the event loop that first uses it (the web
    server's); a handler on the portal's trio thread must not touch it directly.
    """

    def __init__(self, stock: dict[str, int] | None = None) -> None:
        self.stock = dict(STOCK if stock is None else stock)
        self._lock: anyio.Lock | None = None
        self.loop_thread: int | None = None  # where reserve() ran last (the example's tests)

    async def reserve(self, sku: str, quantity: int) -> tuple[int, bool]:
        """How many of ``sku`` there are, reserving ``quantity`` if there are enough."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            self.loop_thread = threading.get_ident()
            available = self.stock.get(sku, 0)
            reserved = available >= quantity
            if reserved:
                self.stock[sku] = available - quantity
            return available, reserved


def reserve_blocking(book: StockBook, sku: str, quantity: int) -> tuple[int, bool]:
    """The synchronous host's way (a sync ORM): the same bookkeeping, in the calling thread."""
    book.loop_thread = threading.get_ident()
    available = book.stock.get(sku, 0)
    reserved = available >= quantity
    if reserved:
        book.stock[sku] = available - quantity
    return available, reserved


class StockDesk(polyn.Responder):
    """Answers stock requests from the host's :class:`StockBook` (a Responder on the portal)."""

    subject = STOCK_REQUESTED

    def __init__(self, book: StockBook, *, blocking: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.book = book
        self.blocking = blocking

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, object]:
        sku, quantity = event.data["sku"], event.data["quantity"]
        if self.blocking:  # a synchronous host: its code runs in a worker thread
            available, reserved = await polyn.portal.to_host(
                reserve_blocking, self.book, sku, quantity
            )
        else:  # an async host: its code runs on the host's loop
            available, reserved = await polyn.portal.to_host(self.book.reserve, sku, quantity)
        return STOCK_REPORTED, {"sku": sku, "available": available, "reserved": reserved}


def build_app(
    book: StockBook, config: polyn.Config | None = None, *, blocking: bool = False
) -> polyn.App:
    """The web front's App (see the module doc)."""
    return polyn.App(
        config or web_config(),
        [
            polyn.NatsConnection(),
            polyn.SchemaStore(),
            polyn.JSONStore(SETTINGS, create=True),
            StockDesk(book, blocking=blocking),
        ],
    )


def prepare(url: str) -> None:
    """Load the shop's schemas and run its migrations (the ORDERS stream) on ``url``."""
    import trio

    from examples.shop.demo import prepare_nats

    trio.run(prepare_nats, make_config(url), lambda line: print(line, flush=True))
