"""The crossing between trio and the asyncio loop that nats-py runs on.

nats-py only runs on asyncio, Polyn only on trio. The transport runs nats-py on an asyncio loop in
a thread of its own (:class:`LoopThread`) and crosses between the two threads **in batches**:

- trio -> asyncio: :class:`Outbox` queues outgoing operations (publishes, acknowledgements) in a
  thread-safe deque; right before trio waits for I/O it writes them from the trio thread when
  the socket is idle (:class:`polyn.nats._wire.DirectWriter`: no crossing at all), else wakes
  the loop once for the batch, never once per message;
- asyncio -> trio: :meth:`LoopThread.resolve` hands results to waiting trio tasks, and
  :class:`Inbox` hands delivered messages to a trio reader, again waking trio once per batch;
- :meth:`LoopThread.run` runs one coroutine on the loop and waits for it (one crossing each way),
  for operations that are not on a hot path (JetStream management, key-value reads, flush).

One crossing costs tens of microseconds (two thread wake-ups), so batching is what keeps the
transport close to raw nats-py. The deques rely on CPython's atomic ``deque.append`` /
``popleft`` and a "scheduled" flag that is cleared *before* draining, so an item appended while a
drain runs is either drained by it or schedules the next one; nothing is left behind.

Cancellation: a trio task cancelled while its coroutine runs on the loop cancels that asyncio
task and returns only once it has finished, so nothing is left pending on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import selectors
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from polyn.errors import NatsConnectionError
from polyn.nats.message import Message
from polyn.nats.transport import Subscription

T = TypeVar("T")
log = logging.getLogger("polyn.nats")

__all__ = ["Inbox", "InboxSubscription", "LoopThread", "Outbox", "Waiter"]


class Waiter(Generic[T]):
    """A result that an asyncio-side callback resolves and one trio task waits for."""

    __slots__ = ("_event", "_outcome", "tag")

    def __init__(self, tag: str | None = None) -> None:
        self._event = trio.Event()
        self._outcome: outcome.Outcome[T] | None = None
        self.tag = tag  # what it waits for (a request's subject), for error routing

    def _set(self, result: outcome.Outcome[T]) -> None:  # trio thread
        if self._outcome is None:
            self._outcome = result
            self._event.set()

    @property
    def done(self) -> bool:
        return self._outcome is not None

    async def wait(self) -> T:
        await self._event.wait()
        assert self._outcome is not None
        return self._outcome.unwrap()


class _HookedSelector(selectors.DefaultSelector):
    """The loop's selector, calling a hook right before each wait for I/O."""

    def __init__(self, before_select: Callable[[], None]) -> None:
        super().__init__()
        self._before_select = before_select

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._before_select()
        return super().select(timeout)


class _FlushBeforeIOWait(trio.abc.Instrument):
    """Runs the bridge's trio-side flush right before trio waits for I/O."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def before_io_wait(self, timeout: float) -> None:
        self._flush()


class LoopThread:
    """An asyncio event loop running in a daemon thread, owned by one transport.

    Must be created and started from inside a trio run (it captures the run's token).

    Wake-ups between the threads are deferred to the moment the sending thread is about to wait
    for I/O itself: trio's side flushes in a ``before_io_wait`` instrument, the loop's side in
    its selector, right before ``select``. Everything one side asked of the other during a
    scheduler pass then travels in one wake-up, and the thread being woken finds the GIL free
    instead of waking a second time to take it: measured, this halves the cost of a crossing.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.SelectorEventLoop(_HookedSelector(self._flush_to_trio))
        self._trio_token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closing = False
        # Every inbox fed by this loop: when the loop stops they end, so a reader of a
        # subscription or watch of a closed connection sees the end instead of waiting forever.
        self.inboxes: weakref.WeakSet[Inbox[Any]] = weakref.WeakSet()
        self._to_trio: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._to_loop: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._before_wait: list[Callable[[], None]] = []
        self._instrument = _FlushBeforeIOWait(self._flush_to_loop)
        trio.lowlevel.add_instrument(self._instrument)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    async def stop(self) -> None:
        """Stop the loop (cancelling what still runs on it) and wait for its thread to end."""
        if not self._closing:
            self._flush_to_loop()
            self._closing = True
            if self._thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
            try:
                trio.lowlevel.remove_instrument(self._instrument)
            except KeyError:  # pragma: no cover - already removed
                pass
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join)
        for inbox in list(self.inboxes):
            inbox.end()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                leftovers = asyncio.all_tasks(self.loop)
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self._flush_to_trio()
                self.loop.close()

    # -- crossings --------------------------------------------------------------------------

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the loop thread soon (from the trio thread).

        The wake-up is sent when trio next waits for I/O, together with every other call made
        in the same scheduler pass.
        """
        if self._closing:
            raise NatsConnectionError("the NATS connection is closed")
        self._to_loop.append((fn, args))

    def before_wait(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` in the trio thread right before trio next waits for I/O (from trio).

        It runs before that pass's calls are sent to the loop, so it may still add some (the
        outbox writes a pass's publishes there, or hands them to the loop).
        """
        self._before_wait.append(fn)

    def soon_in_trio(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in the trio thread as soon as it is free (from trio, in a
        :meth:`before_wait` hook): trio has already chosen how long to wait for I/O by then, so
        a task woken there must wake that wait too, as a call from another thread does."""
        self._trio_token.run_sync_soon(fn, *args)

    def _flush_to_loop(self) -> None:  # trio thread, before it waits for I/O
        if self._before_wait:
            hooks, self._before_wait = self._before_wait, []
            for hook in hooks:
                try:
                    hook()
                except Exception:  # pragma: no cover - an instrument must never raise
                    log.exception("a trio-side flush of the NATS transport failed")
        if self._to_loop and not self._closing:
            batch, self._to_loop = self._to_loop, []
            try:
                self.loop.call_soon_threadsafe(_run_batch, batch)
            except RuntimeError:  # the loop closed under us: its tasks were cancelled
                pass

    def to_trio(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in the trio thread soon (from the loop thread).

        The wake-up is sent right before the loop next waits for I/O, together with every
        other call made in the same loop iteration.
        """
        self._to_trio.append((fn, args))

    def _flush_to_trio(self) -> None:  # loop thread, before it waits for I/O
        if self._to_trio:
            batch, self._to_trio = self._to_trio, []
            try:
                self._trio_token.run_sync_soon(_run_batch, batch)
            except trio.RunFinishedError:
                pass  # the trio run is over: nobody is waiting any more

    def resolve(self, waiter: Waiter[T], result: outcome.Outcome[T]) -> None:
        """Resolve ``waiter`` from the loop thread (woken with the iteration's other results)."""
        self.to_trio(waiter._set, result)

    async def run(
        self,
        factory: Callable[[], Awaitable[T]],
        translate: Callable[[BaseException], BaseException] | None = None,
    ) -> T:
        """Run ``factory()`` on the loop and return its result in trio.

        Exceptions are passed through ``translate`` (in the trio thread) so that no nats-py or
        asyncio exception type escapes the transport. If the calling trio task is cancelled, the
        asyncio task is cancelled too and this returns (raising :class:`trio.Cancelled`) only
        after it has finished.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        state: dict[str, Any] = {}

        def fail(error: BaseException) -> outcome.Outcome[T]:
            if "raise_cancel" in state:  # we were cancelled: report that, not the side effect
                cancelled: outcome.Outcome[T] = outcome.capture(state["raise_cancel"])
                return cancelled
            return outcome.Error(translate(error) if translate else error)

        def resume(atask: asyncio.Future[T] | None, error: BaseException | None) -> None:
            result: outcome.Outcome[T]
            if atask is None:
                result = fail(error or NatsConnectionError("the operation never started"))
            elif atask.cancelled():
                result = fail(NatsConnectionError("the NATS connection closed during the call"))
            elif (exc := atask.exception()) is not None:
                result = outcome.Error(translate(exc) if translate else exc)
            else:
                result = outcome.Value(atask.result())
            trio.lowlevel.reschedule(task, result)

        def start() -> None:  # loop thread
            if state.get("cancel"):
                self.to_trio(resume, None, NatsConnectionError("cancelled before start"))
                return
            try:
                atask = self.loop.create_task(_await(factory))
            except BaseException as exc:  # pragma: no cover - create_task itself failing
                self.to_trio(resume, None, exc)
                return
            state["atask"] = atask
            atask.add_done_callback(lambda t: self.to_trio(resume, t, None))

        def cancel() -> None:  # loop thread
            atask = state.get("atask")
            if atask is None:
                state["cancel"] = True
            else:
                atask.cancel()

        self.call_soon(start)

        def abort(raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            state["raise_cancel"] = raise_cancel
            try:
                self.loop.call_soon_threadsafe(cancel)
            except RuntimeError:  # pragma: no cover - loop closed; its tasks were cancelled
                pass
            return trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def _run_batch(batch: list[tuple[Callable[..., object], tuple[object, ...]]]) -> None:
    for fn, args in batch:
        try:
            fn(*args)
        except Exception:  # a crossing callback must never take down the thread running it
            log.exception("a callback crossing between trio and asyncio failed")


_DRAINED = object()  # marks a point in the outbox that a trio task waits to see written

Op = tuple[Any, ...]


class Outbox:
    """Operations queued by trio, written in batches, in order.

    ``put`` never crosses threads itself. Right before trio waits for I/O, the pass's operations
    are written by the trio thread itself when ``direct()`` gives a writer whose socket is idle
    (:class:`polyn.nats._wire.DirectWriter`; the loop thread is not woken at all); otherwise
    the loop is woken once for them. On the loop, a batch is written at once with
    ``write_batch`` when ``can_write_batch()`` says so (see :mod:`polyn.nats._wire`); otherwise
    a drainer task hands operations one by one to ``write_one``, which may wait (nats-py's own
    backpressure). Either side takes the operations out of the queue and writes them while
    holding the writer's lock (the drainer marks the one it holds across a wait), so the two
    never reorder them. While paused (disconnected), operations stay queued. When more than
    ``limit`` operations are waiting, ``wait_for_room`` makes producers wait until the backlog
    is down to half of it.

    With a direct writer, operations are ``(frame, payload size)`` pairs (``frame`` the encoded
    PUB bytes) or ``(_DRAINED, waiter)`` markers; otherwise whatever ``write_one`` takes.
    """

    def __init__(
        self,
        bridge: LoopThread,
        write_one: Callable[[Op], Awaitable[None]],
        write_batch: Callable[[list[Op]], None] | None = None,
        can_write_batch: Callable[[], bool] = lambda: False,
        limit: int = 20_000,
        direct: Callable[[], Any] = lambda: None,
    ) -> None:
        self._bridge = bridge
        self._write_one = write_one
        self._write_batch = write_batch
        self._can_write_batch = can_write_batch
        self._direct = direct
        self._ops: collections.deque[Op] = collections.deque()
        self._flush_pending = False  # trio side: a flush before the next I/O wait is due
        self._scheduled = False  # a kick of the loop is on its way
        self._holding = False  # the loop's drainer holds an operation it has not written yet
        self._limit = limit
        self._room: trio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._paused = False
        self._lock: Any = contextlib.nullcontext()

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def full(self) -> bool:
        return len(self._ops) >= self._limit

    def put(self, op: Op) -> None:
        """Queue ``op`` (trio thread)."""
        self._ops.append(op)
        if not self._flush_pending:
            self._flush_pending = True
            self._bridge.before_wait(self._flush)

    async def wait_for_room(self) -> None:
        """Wait while the backlog is over the limit (trio thread)."""
        while len(self._ops) >= self._limit:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()

    async def drained(self) -> None:
        """Wait until everything queued before this call has been handed to nats-py."""
        if not self._ops:
            return
        waiter: Waiter[None] = Waiter()
        self.put((_DRAINED, waiter))
        await waiter.wait()

    # -- trio thread, before it waits for I/O -------------------------------------------------

    def _flush(self) -> None:
        self._flush_pending = False
        if not self._ops:
            return
        if not self._paused:
            writer = self._direct()
            if writer is not None and writer.lock.acquire(blocking=False):
                try:
                    if not self._holding and writer.idle() and self._send_direct(writer):
                        self._release_room()
                        return
                finally:
                    writer.lock.release()
        if not self._scheduled:
            self._scheduled = True
            try:
                self._bridge.call_soon(self._kick)
            except NatsConnectionError:  # closed meanwhile: nothing will be written any more
                self._scheduled = False

    def _send_direct(self, writer: Any) -> bool:
        ops = self._ops
        frames: list[bytes] = []
        drained: list[Waiter[None]] = []
        payload = 0
        for op in ops:
            if op[0] is _DRAINED:
                drained.append(op[1])
            else:
                frames.append(op[0])
                payload += op[1]
        if frames and not writer.try_send(frames, len(frames), payload):
            return False  # nothing sent: the loop writes them and sees why
        ops.clear()
        for waiter in drained:
            self._bridge.soon_in_trio(waiter._set, outcome.Value(None))
        return True

    def _release_room(self) -> None:
        if self._room is not None and len(self._ops) < self._limit // 2:
            room, self._room = self._room, None
            self._bridge.soon_in_trio(room.set)

    # -- loop thread ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the drainer task (call on the loop thread)."""
        self._wake = asyncio.Event()
        return asyncio.get_running_loop().create_task(self._drain())

    def use_lock(self, lock: Any) -> None:
        """Write under ``lock`` (the direct writer's) from now on (loop thread)."""
        self._lock = lock if lock is not None else contextlib.nullcontext()

    def pause(self, paused: bool) -> None:
        """Hold operations while disconnected (loop thread); resuming drains the backlog."""
        self._paused = paused
        if not paused:
            self._kick()

    def _kick(self) -> None:
        self._scheduled = False  # before taking: an op queued from now on schedules a new kick
        if self._paused:
            return
        if self._write_batch is not None and self._can_write_batch():
            with self._lock:
                self._write_all()
            if not self._ops:
                return
        if self._wake is not None:
            self._wake.set()

    def _write_all(self) -> None:
        assert self._write_batch is not None
        ops = self._ops
        batch: list[Op] = []
        while ops:
            op = ops.popleft()
            if op[0] is _DRAINED:
                if batch:
                    self._write_batch(batch)
                    batch = []
                self._bridge.resolve(op[1], outcome.Value(None))
            else:
                batch.append(op)
        if batch:
            self._write_batch(batch)
        self._release()

    def _release(self) -> None:
        if self._room is not None and len(self._ops) < self._limit // 2:
            room, self._room = self._room, None
            self._bridge.to_trio(room.set)

    async def _drain(self) -> None:
        assert self._wake is not None
        ops = self._ops
        while True:
            await self._wake.wait()
            self._wake.clear()
            while ops and not self._paused:
                if self._write_batch is not None and self._can_write_batch():
                    with self._lock:
                        self._write_all()
                    continue
                with self._lock:
                    if not ops:
                        break
                    op = ops.popleft()
                    self._holding = True
                try:
                    if op[0] is _DRAINED:
                        self._bridge.resolve(op[1], outcome.Value(None))
                    else:
                        await self._write_one(op)
                finally:
                    self._holding = False
            self._release()


class Inbox(trio.abc.ReceiveChannel[T]):
    """Items delivered by the loop thread to one trio reader, woken once per batch.

    When ``limit`` items are waiting, the loop-side producer waits in :meth:`put` until the trio
    reader has taken half of them (backpressure reaches nats-py's own pending limits).
    """

    def __init__(self, bridge: LoopThread, limit: int = 10_000) -> None:
        self._bridge = bridge
        self._items: collections.deque[T] = collections.deque()
        self._limit = limit
        self._waiting = False
        self._event = trio.Event()
        self._closed = False  # no more items will come
        self._reader_closed = False  # the reader closed its end: receiving is an error
        self._error: BaseException | None = None
        self._room: asyncio.Event | None = None
        self._on_close: Callable[[], Awaitable[None]] | None = None
        bridge.inboxes.add(self)

    def __len__(self) -> int:
        return len(self._items)

    # -- loop thread ------------------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Deliver ``item`` (loop thread); waits while the reader is ``limit`` items behind."""
        while len(self._items) >= self._limit and not self._closed:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()
        self.put_nowait(item)

    def offer(self, item: T) -> bool:
        """Deliver ``item`` unless ``limit`` items are already waiting (loop thread)."""
        if len(self._items) >= self._limit:
            return False
        self.put_nowait(item)
        return True

    def put_nowait(self, item: T) -> None:
        if self._closed:
            return
        self._items.append(item)
        if self._waiting:
            self._waiting = False
            self._bridge.to_trio(self._wake)

    def finish(self, error: BaseException | None = None) -> None:
        """No more items will come (loop thread); ``error`` is raised to the reader after them."""
        self._error = error
        self._closed = True
        self._bridge.to_trio(self._wake)

    # -- trio thread ------------------------------------------------------------------------

    def end(self) -> None:
        """No more items will come because the loop has stopped (trio thread): the reader gets
        what is waiting, then the end of the channel."""
        if not self._closed:
            self._closed = True
            self._event.set()

    def _wake(self) -> None:
        self._event.set()

    def _release(self) -> None:
        room = self._room
        if room is not None and len(self._items) <= self._limit // 2:
            self._room = None
            try:
                self._bridge.loop.call_soon_threadsafe(room.set)
            except RuntimeError:  # pragma: no cover - loop already closed
                pass

    async def receive(self) -> T:
        # A checkpoint on every path, but only one: waking from the event was one already.
        slept = False
        while True:
            if self._reader_closed:
                if not slept:
                    await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("this channel was closed")
            if self._items:
                if not slept:
                    await trio.lowlevel.checkpoint()
                    slept = True
                    continue  # re-check: the reader may have been closed meanwhile
                item = self._items.popleft()
                self._release()
                return item
            if self._closed:
                if not slept:
                    await trio.lowlevel.checkpoint()
                if self._error is not None:
                    raise self._error
                raise trio.EndOfChannel
            self._event = trio.Event()
            self._waiting = True
            if self._items or self._closed:
                self._waiting = False
                continue
            await self._event.wait()
            slept = True

    async def receive_batch(self, max_items: int) -> list[T]:
        """Wait for at least one item and return up to ``max_items`` of those waiting."""
        first = await self.receive()
        batch = [first]
        items = self._items
        while items and len(batch) < max_items:
            batch.append(items.popleft())
        self._release()
        return batch

    def receive_nowait(self) -> T:
        if self._reader_closed:
            raise trio.ClosedResourceError("this channel was closed")
        if self._items:
            item = self._items.popleft()
            self._release()
            return item
        if self._closed:
            if self._error is not None:
                raise self._error
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def aclose(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            with trio.CancelScope(shield=True):
                await on_close()
        self._closed = self._reader_closed = True
        self._items.clear()
        self._event.set()  # a task blocked in receive() sees the closure
        room, self._room = self._room, None
        if room is not None:
            try:
                self._bridge.loop.call_soon_threadsafe(room.set)
            except RuntimeError:  # pragma: no cover
                pass
        await trio.lowlevel.checkpoint()


class InboxSubscription(Subscription):
    """A subscription's messages as the trio side reads them: an :class:`Inbox` the loop fills."""

    def __init__(self, inbox: Inbox[Message], subject: str, queue: str | None) -> None:
        self._inbox = inbox
        self.subject = subject
        self.queue = queue

    async def receive(self) -> Message:
        return await self._inbox.receive()

    async def receive_batch(self, max_items: int) -> list[Message]:
        return await self._inbox.receive_batch(max_items)

    def receive_nowait(self) -> Message:
        return self._inbox.receive_nowait()

    @property
    def pending(self) -> int:
        return len(self._inbox)

    async def aclose(self) -> None:
        await self._inbox.aclose()
