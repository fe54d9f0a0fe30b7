"""``polyn.Portal(app, sandbox=True)``: a sync or asyncio program's tests, without a real stream.

The programs are the examples' (:mod:`examples.fastapi_app`): the shop's schemas and streams are
on the module's server, as a deployment has them; what the program publishes stays in the
sandbox's in-memory NATS.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator

import pytest
from portal_support import ServerWatch, new_threads

import polyn
from examples.fastapi_app.app import create_app
from examples.fastapi_app.service import (
    ORDER_PLACED,
    STOCK_REQUESTED,
    StockBook,
    build_app,
    prepare,
    web_config,
)
from polyn.server import NatsServer

with warnings.catch_warnings():  # Starlette's TestClient would rather have httpx2 than httpx
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ORDER = {
    "order_id": "T-1",
    "customer": "ada",
    "items": [{"sku": "mug", "quantity": 2, "price": 8.0}],
}


@pytest.fixture(scope="module")
def shop(server: NatsServer) -> NatsServer:
    prepare(server.url)  # the shop's schemas and streams, as in production
    return server


@pytest.fixture
def nats_url(shop: NatsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("NATS_URL", shop.url)  # what the web app's config reads
    yield shop.url


def test_a_synchronous_program_publishes_into_the_sandbox(
    nats_url: str, watch: ServerWatch
) -> None:
    stored = watch.stream_count("ORDERS")
    seen = watch.subscribe("order.>")
    book = StockBook()
    before_threads = set(threading.enumerate())
    with polyn.Portal(build_app(book, blocking=True), sandbox=True) as portal:
        ack = portal.pub(ORDER_PLACED, {**ORDER, "total": 16.0}, ack=True)
        assert ack is not None and (ack.stream, ack.seq) == ("ORDERS", 1)  # the sandbox's stream
        reply = portal.request(STOCK_REQUESTED, {"sku": "mug", "quantity": 5})
        assert reply.data == {"sku": "mug", "available": 300, "reserved": True}
        assert portal.sandbox is not None
        orders = portal.sandbox.published_json(ORDER_PLACED)
        requests = portal.sandbox.published_json(STOCK_REQUESTED)
    assert [o["data"]["order_id"] for o in orders] == ["T-1"]
    assert [r["data"] for r in requests] == [{"sku": "mug", "quantity": 5}]
    assert book.stock["mug"] == 295
    assert watch.stream_count("ORDERS") == stored  # nothing reached the real stream
    assert seen == []
    assert new_threads(before_threads) == []


def test_a_fastapi_app_under_test_publishes_into_the_sandbox(
    nats_url: str, watch: ServerWatch
) -> None:
    stored = watch.stream_count("ORDERS")
    with TestClient(create_app(sandbox=True)) as client:
        placed = client.post("/orders", json=ORDER)
        assert placed.status_code == 201, placed.text
        assert placed.json() == {"stream": "ORDERS", "seq": 1, "total": 16.0}
        invalid = client.post("/orders", json={**ORDER, "order_id": ""})
        assert invalid.status_code == 422
        assert "should be non-empty" in invalid.json()["detail"]
        assert client.get("/stock/teapot", params={"quantity": 2}).json() == {
            "sku": "teapot",
            "available": 25,
            "reserved": True,
        }
        assert client.get("/health").json() == {"healthy": True}
        sandbox = client.app_state["polyn"].sandbox
        (order,) = sandbox.published(ORDER_PLACED)
    event = json.loads(order.data)
    assert (event["type"], event["source"]) == ("com.acme.order.placed.v1", "com:acme:shop:web")
    assert event["data"] == {**ORDER, "total": 16.0}
    assert watch.stream_count("ORDERS") == stored


def test_web_config_reads_nats_url(nats_url: str) -> None:
    assert web_config().servers == (nats_url,)
