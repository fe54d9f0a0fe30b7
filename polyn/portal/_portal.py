"""Portal and AsyncPortal: a Polyn App run for a host program, and the calls into it."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

import trio

from polyn.app import App, Running
from polyn.errors import PolynError
from polyn.event import Event
from polyn.json_store import JSONStore
from polyn.nats import PubAck
from polyn.portal._gate import INLINE, SYNC, TASK, Call, Gate, asyncio_wait, blocking_wait
from polyn.portal._host import HOST, SYNC_HOST, TRIO_HOST, AsyncioHost
from polyn.publish import prepare_pub, pub, pub_prepared, reply, request

if TYPE_CHECKING:
    from polyn.testing import Sandbox

__all__ = ["AsyncPortal", "AsyncStore", "Portal", "Store"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED = (
    "new",
    "starting",
    "running",
    "stopping",
    "stopped",
)


# -- what runs in the trio thread -------------------------------------------------------------
# Each takes the App's running handle first (the gate's target).


async def _pub(
    running: Running,
    event_type: str,
    data: Any,
    source: str | None,
    headers: Mapping[str, str] | None,
    reply_to: str | None,
    store: str | None,
    ack: bool,
) -> PubAck | None:
    return await pub(
        running,
        event_type,
        data,
        source=source,
        headers=headers,
        reply_to=reply_to,
        store=store,
        ack=ack,
    )


async def _request(
    running: Running,
    event_type: str,
    data: Any,
    timeout: float,
    source: str | None,
    headers: Mapping[str, str] | None,
    store: str | None,
) -> Event:
    return await request(
        running, event_type, data, timeout=timeout, source=source, headers=headers, store=store
    )


async def _reply(
    running: Running,
    reply_to: str,
    event_type: str,
    data: Any,
    source: str | None,
    headers: Mapping[str, str] | None,
    store: str | None,
) -> None:
    await reply(running, reply_to, event_type, data, source=source, headers=headers, store=store)


def _health(running: Running) -> bool:
    return running.health()


def _store_get(running: Running, name: str, key: str) -> Any:
    return JSONStore.of(running, name).get(key)


def _store_contents(running: Running, name: str) -> dict[str, Any]:
    return JSONStore.of(running, name).contents()


async def _store_put(running: Running, name: str, key: str, value: Any) -> int:
    return await JSONStore.of(running, name).put(key, value)


async def _store_delete(running: Running, name: str, key: str) -> None:
    await JSONStore.of(running, name).delete(key)


async def _call(running: Running, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(running, *args)


# -- start and stop ---------------------------------------------------------------------------


class _Signal:
    """A one-shot event that threads wait for blocking and asyncio tasks wait for with await."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._lock:
            self._event.set()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_set_done, future)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    async def wait_async(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return
            self._futures.append((loop, future))
        await future

    async def wait_async_uncancellable(self) -> None:
        """Wait even through cancellation (re-raised after): a thread must not be left behind."""
        cancelled = False
        while not self._event.is_set():
            try:
                await self.wait_async()
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _in_trio() -> bool:
    """Whether the caller runs in a trio run (else: asyncio)."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


@contextlib.asynccontextmanager
async def _sandbox_for(app: App) -> AsyncIterator[Sandbox]:
    from polyn.testing import Sandbox  # only when asked for: production never imports it

    async with Sandbox.start(app.config.servers[0]) as sandbox:
        yield sandbox


_started_portals: weakref.WeakSet[Portal] = weakref.WeakSet()
_EXIT_GRACE = 10.0


@atexit.register
def _stop_at_exit() -> None:
    """Stop the portals nobody stopped (a ``start()`` in a hook without its ``stop()``), so
    their connections close gracefully and what they queued is sent. atexit runs while daemon
    threads still run."""
    for portal in list(_started_portals):
        with contextlib.suppress(Exception):
            if portal._request_stop():
                portal._finished.wait(_EXIT_GRACE)


class Portal:
    """A Polyn :class:`~polyn.App` run for a host program, with **blocking** calls into it.

    ``Portal(app, *, sandbox=False)``. See :mod:`polyn.portal` for the whole story.

    - ``with Portal(app) as portal:`` (or ``portal.start()`` ... ``portal.stop()``) runs the
      App's tree on a thread of its own, in a trio run of its own, from the moment the tree has
      started (its errors, such as :class:`~polyn.errors.ActorError`, are raised by ``start``)
      until ``stop`` has stopped the tree and the thread has ended.
    - ``async with Portal(app) as portal:`` does the same without blocking an asyncio loop and
      gives the :class:`AsyncPortal`; in a trio program (hypercorn's trio worker) it runs the
      App in the current trio run instead, with no thread.
    - The calls (:meth:`pub`, :meth:`request`, :meth:`reply`, :meth:`store`, :meth:`health`,
      :meth:`call`) may be made from any number of threads at once; they cross into the trio
      run in shared batches and raise the same :mod:`polyn.errors` as their trio versions.

    ``sandbox=True`` runs the App on a :class:`polyn.testing.Sandbox` (a ``MockNats``, real
    time) wrapping the server of the App's config; :attr:`sandbox` then gives what was
    published. For tests only.
    """

    def __init__(self, app: App, *, sandbox: bool = False) -> None:
        if not isinstance(app, App):
            raise TypeError(f"Portal needs a polyn.App, not {app!r}")
        self.app = app
        self._want_sandbox = sandbox
        self.sandbox: Sandbox | None = None
        """The :class:`~polyn.testing.Sandbox` the App runs on, with ``sandbox=True``; read its
        ``published()`` once your calls have returned."""
        self._state = _NEW
        self._lock = threading.Lock()
        self._gate: Gate | None = None
        self._running: Running | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._host: AsyncioHost | str = SYNC_HOST
        self._host_loop: asyncio.AbstractEventLoop | None = None
        self._direct = False
        self._started = _Signal()
        self._finished = _Signal()
        self._error: BaseException | None = None
        self._stop_requested = False
        self._in_loop: contextlib.AsyncExitStack | None = None
        self.aio = AsyncPortal(self)
        """The same portal with coroutines for asyncio code (:class:`AsyncPortal`)."""

    def __repr__(self) -> str:
        where = "in the host's trio loop" if self._direct else "on its own thread"
        return f"<Portal {self._state} {where} domain={self.app.config.domain!r}>"

    # -- lifecycle -------------------------------------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            if self._state != _NEW:
                raise PolynError(
                    f"this portal is {self._state}; a Portal starts once: make a new one"
                )
            self._state = _STARTING

    def start(self) -> Portal:
        """Start the App on the portal's thread; return once every child has started.

        Raises what the App's start raises (:class:`~polyn.errors.ActorError`, ...), with the
        thread already gone. Returns the portal itself.
        """
        self._begin()
        self._spawn_thread()
        self._started.wait()
        if self._state != _RUNNING:
            self._join_failed()
        return self

    def stop(self) -> None:
        """Stop the App's tree and the portal's thread; return once both are gone.

        Calls still waiting raise :class:`~polyn.errors.PolynError`. Raises the error the App
        stopped with if it failed by itself (restart intensity exceeded). Stopping twice is a
        no-op.
        """
        self._check_not_in_trio("stop()")
        if self._direct:
            raise PolynError("this portal runs in a trio loop: leave its `async with` block")
        if not self._request_stop():
            return
        self._finished.wait()
        self._end_thread()

    def __enter__(self) -> Portal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> AsyncPortal:
        if _in_trio():
            await self._enter_trio()
            return self.aio
        self._begin()
        self._host_loop = asyncio.get_running_loop()
        self._spawn_thread()
        try:
            await self._started.wait_async()
        except asyncio.CancelledError:
            self._request_stop()
            await self._finished.wait_async_uncancellable()
            self._end_thread(raise_error=False)
            raise
        if self._state != _RUNNING:
            self._join_failed()
        return self.aio

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._direct:
            await self._exit_trio(exc_type, exc, tb)
            return
        if self._request_stop():
            await self._finished.wait_async_uncancellable()
            self._end_thread()

    # -- on a thread of its own --------------------------------------------------------------------

    def _spawn_thread(self) -> None:
        _started_portals.add(self)
        self._thread = threading.Thread(
            target=self._thread_main, name=f"polyn-portal {self.app.config.domain}", daemon=True
        )
        self._thread.start()

    def _thread_main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._state = _STOPPED
            self._started.set()
            self._finished.set()

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_event = trio.Event()
        async with contextlib.AsyncExitStack() as stack:
            gate = await self._open(stack)
            if self._host_loop is not None:
                self._host = AsyncioHost(gate, self._host_loop)
            HOST.set(self._host)
            with self._lock:
                self._state = _RUNNING
                stop_now = self._stop_requested  # asked before the token could be used
            self._started.set()
            if not stop_now:
                await self._stop_event.wait()

    async def _open(self, stack: contextlib.AsyncExitStack) -> Gate:
        """Start the sandbox (if asked), the App and the gate in the current trio run."""
        if self._want_sandbox:
            self.sandbox = await stack.enter_async_context(_sandbox_for(self.app))
        running = await stack.enter_async_context(self.app.run())
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)  # runs first: the gate closes, then the App
        gate = Gate(running)
        await nursery.start(gate.serve)
        self._running = running
        self._gate = gate
        return gate

    def _request_stop(self) -> bool:
        """Ask the trio run to stop; False when there is nothing to stop (in this process)."""
        with self._lock:
            if self._thread is None:
                return False  # never started, or stopped already
            self._stop_requested = True
            if self._state == _RUNNING:
                self._state = _STOPPING
        if self._gate is not None and self._gate.forked:
            return False  # the thread and the tree stayed in the parent process
        token, event = self._token, self._stop_event
        if token is not None and event is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)
        return True

    def _end_thread(self, raise_error: bool = True) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if raise_error and error is not None:
            raise error

    def _join_failed(self) -> None:
        self._finished.wait()
        self._end_thread()
        raise PolynError("the portal stopped while starting")  # pragma: no cover

    def _check_not_in_trio(self, what: str) -> None:
        gate = self._gate
        if gate is not None and gate.in_trio_thread():
            raise PolynError(
                f"portal.{what} was called in the portal's own trio thread, where it would wait "
                "for itself forever: there, await polyn.pub(...) and friends directly"
            )

    # -- in the host's trio loop (hypercorn's trio worker) -----------------------------------------

    async def _enter_trio(self) -> None:
        self._begin()
        self._direct = True
        self._host = TRIO_HOST
        stack = contextlib.AsyncExitStack()
        try:
            await self._open(stack)
        except BaseException:
            self._state = _STOPPED
            await stack.aclose()
            raise
        self._in_loop = stack
        self._state = _RUNNING

    async def _exit_trio(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._in_loop = self._in_loop, None
        self._state = _STOPPING
        try:
            if stack is not None:
                await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._state = _STOPPED

    # -- the calls -------------------------------------------------------------------------------

    def _gate_for_call(self) -> Gate:
        gate = self._gate
        if gate is None or self._state == _NEW:
            raise PolynError("the portal is not started: use `with portal:` or portal.start()")
        gate.check()
        self._check_not_in_trio("a blocking call")
        return gate

    def _blocking(self, mode: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return blocking_wait(self._gate_for_call(), Call(mode, fn, args))

    def pub(
        self,
        event_type: str,
        data: Any,
        *,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
        store: str | None = None,
        ack: bool = False,
    ) -> PubAck | None:
        """:func:`polyn.pub` from a thread: blocks until the event is queued (or, with
        ``ack=True``, stored by JetStream: returns the PubAck).

        Example::

            portal.pub("order.placed.v1", order, ack=True)
        """
        if not ack:
            prepared = self._prepared(event_type, data, source, store)
            if prepared is not None:
                self._blocking(INLINE, pub_prepared, (*prepared, headers, reply_to))
                return None
        mode = TASK if ack else INLINE
        return self._blocking(  # type: ignore[no-any-return]
            mode, _pub, (event_type, data, source, headers, reply_to, store, ack)
        )

    def _prepared(
        self, event_type: str, data: Any, source: str | None, store: str | None
    ) -> tuple[str, str, bytes] | None:
        """The event validated and encoded in the caller's thread, when it qualifies
        (:func:`polyn.publish.prepare_pub`): the App's trio thread then only sends it."""
        running = self._running
        if running is None or self._state != _RUNNING:
            return None
        return prepare_pub(running.tree, event_type, data, source, store)

    def request(
        self,
        event_type: str,
        data: Any,
        *,
        timeout: float = 5,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> Event:
        """:func:`polyn.request` from a thread: the validated reply :class:`~polyn.Event`."""
        return self._blocking(  # type: ignore[no-any-return]
            TASK, _request, (event_type, data, timeout, source, headers, store)
        )

    def reply(
        self,
        reply_to: str,
        event_type: str,
        data: Any,
        *,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> None:
        """:func:`polyn.reply` from a thread: answer a request whose reply subject you have."""
        self._blocking(INLINE, _reply, (reply_to, event_type, data, source, headers, store))

    def health(self) -> bool:
        """``running.health()`` of the App: every child running and the connection up.

        False (not an error) while the portal is not running, for a health endpoint; in a
        child process after a fork it raises the fork's :class:`~polyn.errors.PolynError`.
        """
        gate = self._gate
        if gate is not None and gate.forked:
            gate.check()
        if self._state != _RUNNING or gate is None or gate.closed:
            return False
        return self._blocking(SYNC, _health, ())  # type: ignore[no-any-return]

    def store(self, name: str) -> Store:
        """The :class:`~polyn.JSONStore` registered as ``name``, with blocking calls."""
        return Store(self, name)

    def call(self, fn: Callable[[Running, Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
        """Run ``await fn(running, *args)`` in the App's trio run and return its result.

        For what the other calls do not cover: an actor's ``call``, your own trio code.
        ``running`` is the App's :class:`~polyn.app.Running` handle; use it only inside ``fn``.

        Example::

            total = portal.call(lambda running: running.ref("ledger").call("total"))
        """
        return self._blocking(TASK, _call, (fn, *args))  # type: ignore[no-any-return]

    @property
    def calls_in_flight(self) -> int:
        """Calls queued or running in the App's trio run now (0 once stopped)."""
        gate = self._gate
        return 0 if gate is None or gate.closed else gate.in_flight


class AsyncPortal:
    """The calls of a :class:`Portal` as coroutines, for asyncio code (and trio code).

    What ``async with polyn.Portal(app) as portal`` gives, and ``portal.aio`` of any Portal. Each
    call is awaited in the calling asyncio task; many tasks' calls share crossings into the
    trio run. Cancelling the task cancels the call there too. When the portal runs in the
    host's trio loop, the calls are simply the trio ones (no crossing).
    """

    __slots__ = ("_portal",)

    def __init__(self, portal: Portal) -> None:
        self._portal = portal

    def __repr__(self) -> str:
        return f"<AsyncPortal of {self._portal!r}>"

    @property
    def blocking(self) -> Portal:
        """The same portal with blocking calls (for a sync endpoint run in a worker thread)."""
        return self._portal

    @property
    def sandbox(self) -> Sandbox | None:
        """See :attr:`Portal.sandbox`."""
        return self._portal.sandbox

    def _direct_running(self) -> Running:
        """The App's handle when the portal runs in this trio loop (calls need no crossing)."""
        portal = self._portal
        if portal._state != _RUNNING or portal._running is None:
            raise PolynError("the portal is stopped; start it before calling it")
        return portal._running

    async def _await(self, mode: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return await asyncio_wait(self._portal._gate, Call(mode, fn, args))

    def pub(
        self,
        event_type: str,
        data: Any,
        *,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
        store: str | None = None,
        ack: bool = False,
    ) -> Coroutine[Any, Any, PubAck | None]:
        """:func:`polyn.pub` from asyncio (a coroutine: ``await`` it).

        Example::

            await portal.pub("payment.captured.v1", payment)
            ack = await portal.pub("order.placed.v1", order, ack=True)
        """
        # The hot path: a plain function handing back the one coroutine that waits, rather
        # than a coroutine awaiting it (a frame less per event).
        portal = self._portal
        args = (event_type, data, source, headers, reply_to, store, ack)
        if portal._direct:
            return _pub(self._direct_running(), *args)
        if not ack:
            prepared = portal._prepared(event_type, data, source, store)
            if prepared is not None:  # validated and encoded here: the crossing carries bytes
                call = Call(INLINE, pub_prepared, (*prepared, headers, reply_to))
                return asyncio_wait(portal._gate, call)
        return asyncio_wait(portal._gate, Call(TASK if ack else INLINE, _pub, args))

    async def request(
        self,
        event_type: str,
        data: Any,
        *,
        timeout: float = 5,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> Event:
        """:func:`polyn.request` from asyncio: the validated reply :class:`~polyn.Event`."""
        args = (event_type, data, timeout, source, headers, store)
        if self._portal._direct:
            return await _request(self._direct_running(), *args)
        return await self._await(TASK, _request, args)  # type: ignore[no-any-return]

    async def reply(
        self,
        reply_to: str,
        event_type: str,
        data: Any,
        *,
        source: str | None = None,
        headers: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> None:
        """:func:`polyn.reply` from asyncio."""
        args = (reply_to, event_type, data, source, headers, store)
        if self._portal._direct:
            await _reply(self._direct_running(), *args)
            return
        await self._await(INLINE, _reply, args)

    async def health(self) -> bool:
        """See :meth:`Portal.health`."""
        portal = self._portal
        gate = portal._gate
        if gate is not None and gate.forked:
            gate.check()
        if portal._state != _RUNNING or gate is None or gate.closed:
            return False
        if portal._direct:
            return self._direct_running().health()
        return await self._await(SYNC, _health, ())  # type: ignore[no-any-return]

    def store(self, name: str) -> AsyncStore:
        """The :class:`~polyn.JSONStore` registered as ``name``, with coroutines."""
        return AsyncStore(self, name)

    async def call(self, fn: Callable[[Running, Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
        """See :meth:`Portal.call`."""
        if self._portal._direct:
            return await fn(self._direct_running(), *args)
        return await self._await(TASK, _call, (fn, *args))  # type: ignore[no-any-return]


class Store:
    """A :class:`~polyn.JSONStore` of the portal's App, with blocking calls.

    Reads come from the store's in-memory mirror, writes go through NATS (see JSONStore).
    """

    __slots__ = ("_portal", "name")

    def __init__(self, portal: Portal, name: str) -> None:
        self._portal = portal
        self.name = name

    def __repr__(self) -> str:
        return f"<portal Store {self.name!r}>"

    def get(self, key: str) -> Any:
        """The value of ``key``, or None."""
        return self._portal._blocking(SYNC, _store_get, (self.name, key))

    def contents(self) -> dict[str, Any]:
        """A copy of the whole store, ``{key: value}``."""
        return self._portal._blocking(  # type: ignore[no-any-return]
            SYNC, _store_contents, (self.name,)
        )

    def put(self, key: str, value: Any) -> int:
        """Store ``value`` under ``key``; its revision."""
        return self._portal._blocking(  # type: ignore[no-any-return]
            TASK, _store_put, (self.name, key, value)
        )

    def delete(self, key: str) -> None:
        """Delete ``key`` (a missing key is fine)."""
        self._portal._blocking(TASK, _store_delete, (self.name, key))


class AsyncStore:
    """A :class:`~polyn.JSONStore` of the portal's App, with coroutines (see :class:`Store`)."""

    __slots__ = ("_aio", "name")

    def __init__(self, aio: AsyncPortal, name: str) -> None:
        self._aio = aio
        self.name = name

    def __repr__(self) -> str:
        return f"<portal AsyncStore {self.name!r}>"

    async def _do(self, mode: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._aio._portal._direct:
            result = fn(self._aio._direct_running(), *args)
            return await result if mode == TASK else result
        return await self._aio._await(mode, fn, args)

    async def get(self, key: str) -> Any:
        """The value of ``key``, or None."""
        return await self._do(SYNC, _store_get, (self.name, key))

    async def contents(self) -> dict[str, Any]:
        """A copy of the whole store, ``{key: value}``."""
        return await self._do(SYNC, _store_contents, (self.name,))  # type: ignore[no-any-return]

    async def put(self, key: str, value: Any) -> int:
        """Store ``value`` under ``key``; its revision."""
        return await self._do(TASK, _store_put, (self.name, key, value))  # type: ignore[no-any-return]

    async def delete(self, key: str) -> None:
        """Delete ``key`` (a missing key is fine)."""
        await self._do(TASK, _store_delete, (self.name, key))
