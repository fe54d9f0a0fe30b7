"""``async with polyn.Portal(app)`` in a trio program: the App in the host's own trio run.

The case of FastAPI / Starlette on hypercorn's trio worker: no portal thread, no crossing for
the coroutines; the blocking calls still work from the host's worker threads (a FastAPI ``def``
endpoint runs in one).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import trio
from _support import Names
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from portal_support import ServerWatch, make_app, new_threads

import polyn
from examples.fastapi_app.app import create_app
from examples.fastapi_app.service import prepare
from polyn.server import NatsServer


@pytest.fixture(scope="module")
def shop(server: NatsServer) -> NatsServer:
    prepare(server.url)
    return server


ORDER = {
    "order_id": "H-1",
    "customer": "ada",
    "items": [{"sku": "mug", "quantity": 1, "price": 8}],
}


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("polyn-portal")]


async def test_fastapi_on_hypercorn_trio_runs_the_app_in_the_same_loop(
    shop: NatsServer, watch: ServerWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_URL", shop.url)
    before = watch.stream_count("ORDERS")
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        (url,) = await nursery.start(
            lambda task_status: serve(
                create_app(),  # type: ignore[arg-type]
                config,
                shutdown_trigger=shutdown.wait,
                task_status=task_status,
            )
        )
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            placed = await client.post("/orders", json=ORDER)
            assert placed.status_code == 201, placed.text
            assert placed.json()["seq"] == before + 1
            stock = await client.get("/stock/mug", params={"quantity": 2})
            assert stock.json() == {"sku": "mug", "available": 300, "reserved": True}
            assert (await client.get("/health")).json() == {"healthy": True}
            assert portal_threads() == []  # the App runs in this trio run: no portal thread
        shutdown.set()
    (stored,) = watch.stream_events("ORDERS")[before:]
    assert stored["data"]["order_id"] == "H-1"


class Quotes(polyn.Responder):
    def __init__(self, subject: str, answer: str, **options: Any) -> None:
        super().__init__(subject=subject, **options)
        self.answer = answer

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, Any]:
        # to_host in a trio host: the coroutine runs right here, in the same loop
        price = await polyn.portal.to_host(self.price, event.data["sku"])
        return self.answer, {"price": price}

    async def price(self, sku: str) -> int:
        await trio.lowlevel.checkpoint()
        return len(sku)


async def app_health(running: polyn.Running) -> bool:
    return running.health()


async def test_the_portal_in_a_trio_run(
    server: NatsServer, watch: ServerWatch, names: Names
) -> None:
    subject = names.subject("user.created.v1")
    asked, given = names.subject("quote.requested.v1"), names.subject("quote.given.v1")
    bucket = names.bucket("settings")
    seen = watch.subscribe(subject)
    before_threads = set(threading.enumerate())
    app = make_app(
        server.url, names.token, Quotes(asked, given), polyn.JSONStore(bucket, create=True)
    )
    async with polyn.Portal(app) as portal:
        assert portal_threads() == []
        assert await portal.pub(subject, {"name": "from trio"}) is None
        assert (await portal.request(asked, {"sku": "AB"})).data == {"price": 2}
        assert await portal.store(bucket).put("k", 1) == 1
        assert await portal.store(bucket).get("k") == 1
        assert await portal.health() is True
        assert await portal.call(app_health) is True

        # a host's worker thread (a FastAPI `def` endpoint) uses the blocking calls
        await trio.to_thread.run_sync(portal.blocking.pub, subject, {"name": "from a thread"})
        with pytest.raises(polyn.PolynError, match="own trio thread"):
            portal.blocking.pub(subject, {"name": "from the trio thread itself"})
        with pytest.raises(polyn.ValidationError):
            await portal.pub(subject, {"name": ""})
    with pytest.raises(polyn.PolynError, match="stopped"):
        await portal.pub(subject, {"name": "too late"})
    assert await portal.health() is False
    for _ in range(500):
        if len(seen) == 2:
            break
        await trio.sleep(0.01)
    assert sorted(e["data"]["name"] for e in watch.events(subject)) == [
        "from a thread",
        "from trio",
    ]
    assert new_threads(before_threads) == []
    watch.delete_bucket(bucket)


async def test_a_trio_portal_on_the_sandbox(server: NatsServer, names: Names) -> None:
    subject = names.subject("user.created.v1")
    async with polyn.Portal(make_app(server.url, names.token), sandbox=True) as portal:
        await portal.pub(subject, {"name": "Ada"})
        assert portal.sandbox is not None
        (event,) = portal.sandbox.published_json(subject)
    assert event["data"] == {"name": "Ada"}
