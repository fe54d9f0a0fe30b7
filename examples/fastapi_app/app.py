"""The shop's web front: a FastAPI app that publishes and requests Polyn events.

The same app serves on uvicorn (asyncio: the Polyn App runs on the portal's own thread) and on
hypercorn's trio worker (the Polyn App runs in the web server's trio loop, no thread); nothing
in it changes. Serve it with ``python -m examples.fastapi_app`` (see the package doc), or as any
ASGI app once ``NATS_URL`` points at a server with the shop's schemas and streams::

    uvicorn examples.fastapi_app.app:app
    hypercorn --worker-class trio examples.fastapi_app.app:app

- The **lifespan** starts the Polyn App with the web server and stops it with the server:
  ``async with polyn.Portal(app)``. With ``--workers N`` each worker process runs the lifespan,
  so each has its own portal (a portal never crosses a fork).
- The **dependency** :func:`polyn_portal` gives each handler the :class:`polyn.AsyncPortal`.
- :func:`create_app` builds it; ``create_app(sandbox=True)`` is the same app for tests, its
  Polyn App on an in-memory NATS (``tests/portal/test_sandbox.py`` shows the test).
- A Polyn :class:`~polyn.ValidationError` (an order that breaks the schema) becomes a 422.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import polyn
from examples.fastapi_app.service import (
    ORDER_PLACED,
    PAYMENT_CAPTURED,
    SETTINGS,
    STOCK_REQUESTED,
    StockBook,
    build_app,
)

log = logging.getLogger("examples.fastapi_app")


def create_app(*, sandbox: bool = False) -> FastAPI:
    """The web app. ``sandbox=True`` (tests) runs its Polyn App on a
    :class:`polyn.testing.Sandbox`: what it publishes stays in memory, and the lifespan state's
    ``polyn.sandbox`` shows it."""

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
        book = StockBook()
        async with polyn.Portal(build_app(book), sandbox=sandbox) as portal:
            log.info("polyn: %r", portal.blocking)
            yield {"polyn": portal, "stock_book": book}

    api = FastAPI(title="shop web front", lifespan=lifespan)
    api.include_router(router)
    api.add_exception_handler(polyn.ValidationError, invalid_event)  # type: ignore[arg-type]
    return api


def polyn_portal(request: Request) -> polyn.AsyncPortal:
    """The dependency: the portal the lifespan started (``request.state`` is lifespan state)."""
    portal: polyn.AsyncPortal = request.state.polyn
    return portal


Portal = Annotated[polyn.AsyncPortal, Depends(polyn_portal)]

router = APIRouter()


async def invalid_event(request: Request, exc: polyn.ValidationError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


class Item(BaseModel):
    sku: str
    quantity: int
    price: float


class Order(BaseModel):
    order_id: str
    customer: str
    items: list[Item]


class Payment(BaseModel):
    order_id: str
    customer: str
    amount: float
    currency: str = Field(examples=["EUR"])


@router.post("/orders", status_code=201)
async def place_order(order: Order, portal: Portal) -> dict[str, Any]:
    """JetStream: the order is stored in the ORDERS stream before the answer."""
    total = round(sum(item.quantity * item.price for item in order.items), 2)
    ack = await portal.pub(ORDER_PLACED, {**order.model_dump(), "total": total}, ack=True)
    assert ack is not None
    return {"stream": ack.stream, "seq": ack.seq, "total": total}


@router.post("/payments", status_code=202)
async def payment_webhook(payment: Payment, portal: Portal) -> dict[str, str]:
    """Core NATS: a payment provider's webhook, told to whoever listens."""
    await portal.pub(PAYMENT_CAPTURED, payment)
    return {"status": "accepted"}


@router.get("/stock/{sku}")
async def stock(sku: str, portal: Portal, quantity: int = 1) -> dict[str, Any]:
    """Request / reply: StockDesk (a Responder in the Polyn App) answers."""
    try:
        reply = await portal.request(STOCK_REQUESTED, {"sku": sku, "quantity": quantity}, timeout=2)
    except TimeoutError as exc:  # polyn.RequestTimeout is a TimeoutError
        raise HTTPException(504, f"no stock answer: {exc}") from exc
    data: dict[str, Any] = reply.data
    return data


@router.get("/settings/{key}")
async def get_setting(key: str, portal: Portal) -> dict[str, Any]:
    return {"key": key, "value": await portal.store(SETTINGS).get(key)}


@router.put("/settings/{key}")
async def put_setting(key: str, value: dict[str, Any], portal: Portal) -> dict[str, Any]:
    revision = await portal.store(SETTINGS).put(key, value)
    return {"key": key, "revision": revision}


@router.get("/health")
async def health(portal: Portal) -> JSONResponse:
    healthy = await portal.health()
    return JSONResponse({"healthy": healthy}, status_code=200 if healthy else 503)


app = create_app()
