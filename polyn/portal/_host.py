""":func:`to_host`: a handler on the portal's trio thread hands work back to the host program.

Consumers (``Subscriber``, ``Responder``, ``PullConsumer``, ``Pipeline``) in an App run by a
portal run on the portal's trio thread, not on the host's asyncio loop or request threads. Code
that needs the host's own resources (an async database pool bound to the host loop, a sync ORM
whose connections live in threads) goes through :func:`to_host`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from polyn.errors import PolynError

if TYPE_CHECKING:
    from polyn.portal._gate import Gate

__all__ = ["HOST", "SYNC_HOST", "TRIO_HOST", "AsyncioHost", "to_host"]

log = logging.getLogger("polyn.portal")

SYNC_HOST: Final = "sync"
TRIO_HOST: Final = "trio"
_CANCEL_GRACE: Final = 5.0


class AsyncioHost:
    """The host of a portal opened with ``async with`` on an asyncio loop."""

    __slots__ = ("gate", "loop")

    def __init__(self, gate: Gate, loop: asyncio.AbstractEventLoop) -> None:
        self.gate = gate
        self.loop = loop


HOST: trio.lowlevel.RunVar[AsyncioHost | str] = trio.lowlevel.RunVar(
    "polyn_portal_host", default=TRIO_HOST
)
"""What hosts the current trio run: an asyncio loop, a synchronous program, or trio itself."""


async def to_host(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` where the host program runs its own code, and return its result.

    Call it from a handler (any code in the App's tree):

    - ``fn`` an ``async def`` function: it runs as a task **on the host's asyncio loop** (the
      loop whose ``async with polyn.Portal(app)`` started the portal); the handler waits without
      blocking the trio thread. Cancelling the handler cancels that task and waits for it to
      finish. Under a trio host (hypercorn's trio worker) it is simply awaited: same loop.
    - ``fn`` a plain function: it runs in a worker thread (``trio.to_thread.run_sync``), as
      blocking code must; use it for a synchronous ORM or a thread-bound pool.

    Its exceptions are raised in the handler. Raises :class:`~polyn.errors.PolynError` for an
    ``async`` function when the portal was started by synchronous code (there is no host loop).

    Example::

        class Signups(polyn.Subscriber):
            subject = "user.signed_up.v1"

            async def handle_message(self, event, msg):
                await polyn.portal.to_host(save_signup, event.data)  # the host's async DB pool
    """
    host = HOST.get()
    if not inspect.iscoroutinefunction(fn):
        result = await trio.to_thread.run_sync(lambda: fn(*args))
        if inspect.iscoroutine(result):
            result.close()
            raise TypeError(
                f"to_host({fn!r}) returned a coroutine from a worker thread: pass the async "
                "function itself"
            )
        return result
    if host == TRIO_HOST:
        return await fn(*args)
    if not isinstance(host, AsyncioHost):
        raise PolynError(
            f"to_host({fn!r}): this portal was started by synchronous code, so there is no host "
            "event loop to run a coroutine on; pass a plain function (it runs in a thread)"
        )
    return await _on_asyncio(host, fn, args)


async def _on_asyncio(host: AsyncioHost, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    gate, loop = host.gate, host.loop
    from polyn.portal._gate import Callback

    done = trio.Event()
    box: dict[str, Any] = {}

    def finished(task: asyncio.Task[Any] | None, error: BaseException | None) -> None:  # trio
        box["task"] = task
        box["error"] = error
        done.set()

    def start() -> None:  # on the host loop, in a batch with the pass's other results
        side = gate.loop_side(loop)
        if box.get("cancel"):
            side.add(Callback(lambda: finished(None, None)))
            return
        try:
            task = loop.create_task(fn(*args))
        except BaseException as exc:
            error = exc  # `exc` is unbound after the except block; the callback runs later
            side.add(Callback(lambda: finished(None, error)))
            return
        box["running"] = task
        task.add_done_callback(lambda t: side.add(Callback(lambda: finished(t, None))))

    def cancel() -> None:  # on the host loop
        task = box.get("running")
        if task is None:
            box["cancel"] = True
        else:
            task.cancel()

    gate.to_loop(loop, start)
    try:
        await done.wait()
    except trio.Cancelled:
        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:  # the host loop is closed: its tasks are gone
            raise
        with trio.CancelScope(shield=True), trio.move_on_after(_CANCEL_GRACE) as grace:
            await done.wait()
        if grace.cancelled_caught:
            log.warning(
                "the host loop did not finish a cancelled to_host(%r) within %s s",
                fn,
                _CANCEL_GRACE,
            )
        raise
    if box["error"] is not None:
        raise box["error"]
    task = box["task"]
    if task is None or task.cancelled():
        raise PolynError(f"to_host({fn!r}): the host loop cancelled the coroutine")
    return task.result()
