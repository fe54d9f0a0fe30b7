"""Polyn from asyncio and synchronous programs: a portal into an App's trio run.

Most programs that publish events are not trio programs: FastAPI or Starlette on uvicorn
(asyncio), Django, Flask, Celery tasks, scripts. A :class:`Portal` runs a Polyn
:class:`~polyn.App` (its NatsConnection, SchemaStore, any consumers) for such a host, tied to
the host's lifecycle, and gives it Polyn's calls in the host's own style:

- **synchronous code**: ``with polyn.Portal(app) as portal:`` starts the App on a thread of the
  portal's own (a trio run in it) and returns once the tree has started; leaving the block stops
  the tree and ends the thread. ``portal.pub(...)``, ``portal.request(...)``,
  ``portal.reply(...)``, ``portal.store(name).get/put/...``, ``portal.health()`` and
  ``portal.call(fn)`` block the calling thread, and may be called from many threads at once.
  ``portal.start()`` / ``portal.stop()`` do the same as the block, for hooks (gunicorn
  ``post_fork``, Celery ``worker_process_init``).
- **asyncio**: ``async with polyn.Portal(app) as portal:`` starts it without blocking the loop
  (a FastAPI lifespan) and gives an :class:`AsyncPortal`, whose calls are coroutines:
  ``await portal.pub(...)``. Cancelling the task cancels the call in the trio run too.
- **trio** (hypercorn's trio worker): the same ``async with`` runs the App in the current trio
  run, no thread; the AsyncPortal's calls are then Polyn's trio calls, so one FastAPI app serves
  on uvicorn and on hypercorn unchanged.

Why calls are cheap: a call does not cross threads on its own. Calls from many threads and
asyncio tasks are gathered and cross into the trio run together (one
``TrioToken.run_sync_soon`` per batch; an asyncio loop sends what its tasks asked during one
iteration as one batch), and results come back together (one ``loop.call_soon_threadsafe`` per
asyncio loop per batch). Errors are the same :mod:`polyn.errors` classes as the trio calls,
raised in the caller's thread or task.

Things to know:

- **Handlers run on the portal's trio thread**, not on the host loop or its threads. A handler
  that needs the host's own resources (an async database pool bound to the host loop, a sync
  ORM) hands the work over with :func:`to_host`.
- **fork()**: a portal belongs to the process that started it. Used in a child after a fork
  (gunicorn, ``uvicorn --workers``, Celery prefork) it raises :class:`~polyn.errors.PolynError`
  saying so; start one portal per worker process, after the fork (an ASGI lifespan already runs
  in each worker).
- **Stopping** fails the calls still waiting with :class:`~polyn.errors.PolynError`; stop your
  workers (or let the web server drain its requests) first. A portal still running when the
  interpreter exits is stopped then (``atexit``, up to 10 s), gracefully.
- **Tests**: ``Portal(app, sandbox=True)`` runs the App on a :class:`polyn.testing.Sandbox`
  (an in-memory NATS, real time) wrapping the server in the App's config; ``portal.sandbox``
  then shows what was published.

Example (FastAPI on uvicorn)::

    @contextlib.asynccontextmanager
    async def lifespan(api):
        async with polyn.Portal(make_app()) as portal:
            yield {"polyn": portal}

    api = FastAPI(lifespan=lifespan)

    @api.post("/orders")
    async def place_order(order: Order, request: Request):
        ack = await request.state.polyn.pub("order.placed.v1", order, ack=True)
        return {"seq": ack.seq}

Example (a script, or a WSGI app's worker)::

    with polyn.Portal(app) as portal:
        with ThreadPoolExecutor(8) as pool:
            pool.map(lambda order: portal.pub("order.placed.v1", order), orders)
"""

from __future__ import annotations

from polyn.portal._host import to_host
from polyn.portal._portal import AsyncPortal, AsyncStore, Portal, Store

__all__ = ["AsyncPortal", "AsyncStore", "Portal", "Store", "to_host"]


# Reprs and tracebacks show the public path, as trio's names do.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        if "._" in _value.__module__:
            _value.__module__ = __name__
del _name, _value
