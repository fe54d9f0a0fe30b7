"""The gate: calls into one trio run from other threads and asyncio loops, in batches.

A :class:`Gate` lives in the trio run that runs the App (a thread of the portal's own, or the
host's trio loop). Callers anywhere else hand it :class:`Call` objects:

- **in**: :meth:`Gate.submit` (a thread) and :meth:`Gate.submit_many` (an asyncio loop's batch,
  see :class:`LoopSide`) append to one locked list and wake trio with a single
  ``TrioToken.run_sync_soon`` while no wake-up is pending; everything appended before trio
  takes the list travels with that one wake-up. An asyncio loop first gathers its tasks' calls
  for the rest of its iteration (one ``loop.call_soon``), so 50 tasks publishing at once cost
  one crossing, not 50.
- **run**: one drain task runs the calls that normally finish without waiting (a core publish,
  a reply: validated, encoded and queued into the transport's pump; a portal's ``pub`` usually
  arrives validated and encoded by its caller, see :func:`polyn.publish.prepare_pub`) one after
  the other, and
  starts a task for each call that waits (a request, a JetStream publish, a key-value write).
- **out**: results are gathered and handed back right before trio next waits for I/O (a trio
  instrument): one ``loop.call_soon_threadsafe`` per asyncio loop per batch, and one lock
  release per blocked thread (each thread waits on its own).

Cancellation: an asyncio task cancelled while its call is pending (or a blocked thread
interrupted by ``KeyboardInterrupt``) sends a cancel request the same way; trio then cancels the
call's own cancel scope (a call not yet started is dropped). Closing the gate (the portal
stopping) fails every call still queued or running with :class:`~polyn.errors.PolynError`.

No asyncio object is created here except futures on the caller's own loop.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio
from opentelemetry import context as otel_context

from polyn.errors import PolynError

__all__ = [
    "INLINE",
    "SYNC",
    "TASK",
    "Call",
    "Callback",
    "Gate",
    "LoopSide",
    "asyncio_wait",
    "blocking_wait",
    "cancelled_error",
    "stopped_error",
]

log = logging.getLogger("polyn.portal")

SYNC: Final = 0
"""Run as a plain function in the drain task (health, key-value reads)."""
INLINE: Final = 1
"""Awaited in the drain task, one after the other: calls that normally never wait."""
TASK: Final = 2
"""Awaited in a task of its own: calls that wait for the network."""

Result = tuple[bool, Any]  # (True, value) or (False, exception)


def stopped_error() -> PolynError:
    return PolynError("the portal stopped before this call finished")


def cancelled_error() -> PolynError:
    return PolynError("the call was cancelled by its caller")


class Call:
    """One call crossing into the trio run, and how its result goes back.

    ``loop``/``future`` for an asyncio caller, ``lock`` (held until the result is in) for a
    thread; ``scope`` and ``cancelled`` are touched in the trio thread only.
    """

    __slots__ = (
        "args",
        "cancelled",
        "context",
        "fn",
        "future",
        "lock",
        "loop",
        "mode",
        "result",
        "scope",
    )

    def __init__(
        self,
        mode: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.mode = mode
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future
        self.lock: Any = None
        self.result: Result | None = None
        self.scope: trio.CancelScope | None = None
        self.cancelled = False
        # The caller's OpenTelemetry context, so the call's spans are children of the caller's
        # span (an HTTP request's, say) though they run in trio. Empty (and then not attached)
        # unless the caller has a current span or baggage. (Asking whether tracing is on would
        # cost several times more per call than this read of a ContextVar.)
        context = otel_context.get_current()
        self.context: otel_context.Context | None = context if context else None


class _Cancel:
    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call


class Callback:
    """A plain function to run in the trio thread as part of a batch (a hand-off's result)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


class _FlushBeforeIOWait(trio.abc.Instrument):
    """Hands the gate's results back right before trio waits for I/O (once per pass)."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def before_io_wait(self, timeout: float) -> None:
        self._flush()


_gates: weakref.WeakSet[Gate] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for gate in list(_gates):
        gate.forked = True


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Gate:
    """Batched calls into the trio run that :meth:`serve` runs in (see the module doc).

    ``target`` is what every call's function gets as its first argument (the App's running
    handle).
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.pid = os.getpid()
        self.forked = False  # set in a child process after a fork
        self.thread_id: int | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._lock = threading.Lock()
        self._inbound: list[Call | _Cancel | Callback] = []
        self._scheduled = False
        self._closed = False
        self._ready: collections.deque[Call] = collections.deque()
        self._work = trio.Event()
        self._outgoing: list[Call] = []
        self._to_loops: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._nursery: trio.Nursery | None = None
        self._running: set[Call] = set()
        self._current: Call | None = None  # the inline call the drain is running now
        self._inline_scope: trio.CancelScope | None = None
        self._sides: dict[asyncio.AbstractEventLoop, LoopSide] = {}
        self._last_side: LoopSide | None = None
        self.wakeups = 0
        """Batches that crossed into trio so far (one ``run_sync_soon`` each)."""
        self.handbacks = 0
        """Batches of results handed to asyncio loops so far (one ``call_soon_threadsafe`` each)."""
        _gates.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Gate {state} in flight={self.in_flight}>"

    # -- any thread ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Calls queued or running in the trio run now (approximate from other threads)."""
        return len(self._inbound) + len(self._ready) + len(self._running)

    def check(self) -> None:
        """Raise PolynError when calls cannot go through (forked child, closed gate)."""
        if self.forked:
            raise PolynError(
                f"this portal was started in process {self.pid} and cannot be used in process "
                f"{os.getpid()}, a child created by fork(): its trio thread and NATS connection "
                "stayed in the parent. Start a portal in each worker process after the fork "
                "(a post-fork hook: gunicorn post_fork, Celery worker_process_init, or an ASGI "
                "lifespan, which runs in each worker)"
            )
        if self._closed:
            raise PolynError("the portal is stopped; start it before calling it")

    def in_trio_thread(self) -> bool:
        return threading.get_ident() == self.thread_id

    def submit(self, call: Call) -> None:
        """Queue one call (any thread). Raises PolynError when the gate is closed."""
        self.check()
        with self._lock:
            if self._closed:
                raise PolynError("the portal is stopped; start it before calling it")
            self._inbound.append(call)
            if self._scheduled:
                return
            self._scheduled = True
        self._wake_trio()

    def submit_many(self, calls: Iterable[Call | _Cancel | Callback]) -> None:
        """Queue a batch of calls (any thread) with at most one wake-up."""
        self.check()
        with self._lock:
            if self._closed:
                raise PolynError("the portal is stopped; start it before calling it")
            self._inbound.extend(calls)
            if self._scheduled:
                return
            self._scheduled = True
        self._wake_trio()

    def cancel(self, call: Call) -> None:
        """Ask the trio run to cancel ``call`` (any thread); a no-op once the gate is closed."""
        if self.forked:
            return
        with self._lock:
            if self._closed:
                return
            self._inbound.append(_Cancel(call))
            if self._scheduled:
                return
            self._scheduled = True
        self._wake_trio()

    def _wake_trio(self) -> None:
        assert self._token is not None
        try:
            self._token.run_sync_soon(self._take)
        except trio.RunFinishedError:  # pragma: no cover - the run ended without closing us
            pass

    def loop_side(self, loop: asyncio.AbstractEventLoop) -> LoopSide:
        """The batching state of ``loop`` (created on its first call)."""
        side = self._last_side
        if side is not None and side.loop is loop:
            return side
        side = self._sides.get(loop)
        if side is None:
            side = self._sides[loop] = LoopSide(self, loop)
        self._last_side = side
        return side

    def forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sides.pop(loop, None)
        if self._last_side is not None and self._last_side.loop is loop:
            self._last_side = None

    # -- trio thread -----------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the gate in the current trio run until cancelled; then close it."""
        self._token = trio.lowlevel.current_trio_token()
        self.thread_id = threading.get_ident()
        instrument = _FlushBeforeIOWait(self._flush)
        trio.lowlevel.add_instrument(instrument)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._drain)
                task_status.started()
        finally:
            with self._lock:
                self._closed = True
                leftovers, self._inbound = self._inbound, []
            current, self._current = self._current, None
            if current is not None:
                self._finish(current, (False, stopped_error()))
            for item in [*self._ready, *leftovers]:
                if isinstance(item, Call):
                    self._finish(item, (False, stopped_error()))
            self._ready.clear()
            self._flush()
            trio.lowlevel.remove_instrument(instrument)

    def _take(self) -> None:  # run_sync_soon callback
        with self._lock:
            self._scheduled = False
            batch, self._inbound = self._inbound, []
        if not batch:
            return
        self.wakeups += 1
        ready = self._ready
        for item in batch:
            if isinstance(item, Call):
                ready.append(item)
            elif isinstance(item, _Cancel):
                call = item.call
                call.cancelled = True
                if call.scope is not None:
                    call.scope.cancel()
                elif call is self._current and self._inline_scope is not None:
                    self._inline_scope.cancel()
            else:
                try:
                    item.fn()
                except Exception:  # pragma: no cover - our own callbacks do not raise
                    log.exception("a portal callback failed")
        self._work.set()

    async def _drain(self) -> None:
        ready = self._ready
        target = self.target
        while True:
            await self._work.wait()
            self._work = trio.Event()
            while ready:
                # One cancel scope for a run of inline calls, not one per call (they are the
                # hot path): a cancel request for the call running now cancels this scope, and
                # the calls after it go on under a fresh one.
                with trio.CancelScope() as scope:
                    self._inline_scope = scope
                    while ready:
                        call = ready.popleft()
                        if call.cancelled:
                            continue
                        mode = call.mode
                        if mode == INLINE:
                            self._current = call
                            context = call.context
                            token = None if context is None else otel_context.attach(context)
                            try:
                                result: Result = (True, await call.fn(target, *call.args))
                            except Exception as exc:
                                result = (False, exc)
                            finally:
                                if token is not None:
                                    otel_context.detach(token)
                            self._current = None
                            self._finish(call, result)
                        elif mode == TASK:
                            call.scope = trio.CancelScope()
                            self._running.add(call)
                            assert self._nursery is not None
                            self._nursery.start_soon(self._run, call)
                        else:
                            try:
                                result = (True, call.fn(target, *call.args))
                            except Exception as exc:
                                result = (False, exc)
                            self._finish(call, result)
                self._inline_scope = None
                if scope.cancelled_caught and self._current is not None:
                    call, self._current = self._current, None
                    self._finish(call, (False, cancelled_error()))

    async def _run(self, call: Call) -> None:
        result: Result = (False, stopped_error())
        scope = call.scope
        assert scope is not None
        if call.context is not None:
            otel_context.attach(call.context)  # this task's own contextvars: no detach
        try:
            with scope:
                result = (True, await call.fn(self.target, *call.args))
            if scope.cancelled_caught:
                result = (False, cancelled_error())
        except Exception as exc:
            result = (False, exc)
        finally:
            self._running.discard(call)
            self._finish(call, result)

    def to_loop(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on ``loop`` soon (trio thread), with the pass's other results for it."""
        self._to_loops.append((loop, fn))

    def _finish(self, call: Call, result: Result) -> None:
        call.result = result
        self._outgoing.append(call)

    def _flush(self) -> None:  # trio thread, right before it waits for I/O
        if not self._outgoing and not self._to_loops:
            return
        done, self._outgoing = self._outgoing, []
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[Call], list[Callable[[], None]]]] = {}
        for call in done:
            loop = call.loop
            if loop is None:
                call.lock.release()
            else:
                batch = by_loop.get(loop)
                if batch is None:
                    by_loop[loop] = ([call], [])
                else:
                    batch[0].append(call)
        if self._to_loops:
            starts, self._to_loops = self._to_loops, []
            for loop, fn in starts:
                batch = by_loop.get(loop)
                if batch is None:
                    by_loop[loop] = ([], [fn])
                else:
                    batch[1].append(fn)
        for loop, (calls, fns) in by_loop.items():
            self.handbacks += 1
            try:
                loop.call_soon_threadsafe(_on_loop, calls, fns)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
                self.forget_loop(loop)


def _on_loop(calls: list[Call], fns: list[Callable[[], None]]) -> None:  # the caller's loop
    for call in calls:
        future = call.future
        assert future is not None and call.result is not None
        if future.done():  # cancelled meanwhile
            continue
        ok, value = call.result
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    for fn in fns:
        try:
            fn()
        except Exception:  # pragma: no cover - our own callbacks do not raise
            log.exception("a portal callback failed")


class LoopSide:
    """One asyncio loop's calls gathered for the rest of its iteration, then sent as a batch."""

    __slots__ = ("gate", "loop", "pending", "scheduled")

    def __init__(self, gate: Gate, loop: asyncio.AbstractEventLoop) -> None:
        self.gate = gate
        self.loop = loop
        self.pending: list[Call | _Cancel | Callback] = []
        self.scheduled = False

    def add(self, call: Call | _Cancel | Callback) -> None:
        self.pending.append(call)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def cancel(self, call: Call) -> None:
        self.add(_Cancel(call))

    def flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        try:
            self.gate.submit_many(batch)
        except PolynError as exc:
            for item in batch:
                if isinstance(item, Call) and item.future is not None and not item.future.done():
                    item.future.set_exception(exc)


def new_lock() -> Any:
    """A lock already held, which the gate releases when the result is in."""
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


def blocking_wait(gate: Gate, call: Call) -> Any:
    """Submit ``call`` from a thread and block until its result is in (raising its error)."""
    lock = call.lock = new_lock()
    try:
        gate.submit(call)
        lock.acquire()
    except BaseException:  # KeyboardInterrupt (even right after submit): cancel it in trio
        gate.cancel(call)
        raise
    assert call.result is not None
    ok, value = call.result
    if ok:
        return value
    raise value


async def asyncio_wait(gate: Gate | None, call: Call) -> Any:
    """Submit ``call`` from an asyncio task and wait for its result (raising its error)."""
    if gate is None:
        raise PolynError("the portal is not started: use `async with polyn.Portal(app)`")
    gate.check()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise PolynError(
            "AsyncPortal's coroutines run on asyncio; from a thread use the blocking Portal "
            "(portal.blocking), from trio open the portal in your trio loop"
        ) from None
    future = call.future = loop.create_future()
    call.loop = loop
    side = gate.loop_side(loop)
    side.add(call)
    try:
        return await future
    except asyncio.CancelledError:
        if future.cancelled():
            side.cancel(call)
        raise
