"""The running side of an actor: one trio task, one bounded mailbox, one nursery.

An :class:`~polyn.actors.Actor` instance is only a spec and the callbacks; everything the runtime
needs while it runs lives here, in a slotted :class:`_Process`, so an idle actor costs one task,
one nursery and a few small objects (the budget is 5 KB per idle actor).

The mailbox is built on :mod:`trio.lowlevel` rather than on a trio memory channel. The semantics
are a memory channel's (bounded FIFO, senders wait while it is full, nothing is ever dropped), but
a memory channel pair with its statistics and task sets costs about 2.6 KB per actor, more than
half the budget, and a mailbox has exactly one receiver, which makes a much smaller structure
enough. Sending is a cancellation point but not a schedule point: a sender that finds room goes
on without yielding, and one that finds the mailbox full parks until the actor takes a message.
That bounds what a sender can run ahead by ``mailbox_size`` messages, and lets a burst of casts
be handled in one batch instead of one task switch per message.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from polyn.errors import ActorError

if TYPE_CHECKING:
    from polyn.actors._actor import Actor
    from polyn.actors._ref import ActorRef
    from polyn.actors._tree import Tree

_log: Final = logging.getLogger("polyn.actors")

# Mailbox items are plain tuples ``(kind, payload, reply)``, the cheapest thing to build per
# message.
_CAST: Final = 0
_CALL: Final = 1
_INFO: Final = 2
_EXIT: Final = 3  # a supervised child finished; payload is its _Process, read only by supervisors

_Item = tuple[int, Any, "_Reply | None"]

# Handed straight to an idle actor's parked task to make it look at its stop flag.
_WAKE: Final = object()

NORMAL: Final = "normal"
SHUTDOWN: Final = "shutdown"


def is_normal(reason: object) -> bool:
    """Whether ``reason`` is a normal exit (``"normal"`` or ``"shutdown"``), as OTP defines it."""
    return isinstance(reason, str) and (reason == NORMAL or reason == SHUTDOWN)


def unwrap(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups, else ``exc`` itself.

    A helper task's failure reaches the actor wrapped in the ExceptionGroup of the actor's
    nursery; the reason an actor records and logs is the failure itself.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Reply:
    """Where the answer to one :meth:`ActorRef.call` goes: straight back to the parked caller.

    ``task`` is None once the reply is delivered or the caller gave up (timeout, cancellation),
    so a late reply is dropped here and never disturbs the callee.
    """

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task: Task | None = task

    def resolve(self, result: outcome.Outcome[Any]) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task, result)

    def abandon(self, _: object) -> Abort:
        self.task = None
        return Abort.SUCCEEDED


class _Process:
    """One running actor: its task, mailbox, nursery, name and exit state."""

    __slots__ = (
        "_ref",
        "actor",
        "capacity",
        "closed",
        "finished",
        "killed",
        "name",
        "nursery",
        "parent",
        "queue",
        "reason",
        "receiver",
        "record",
        "senders",
        "seq",
        "starter",
        "stop_reason",
        "stopped_by_parent",
        "stopping",
        "task",
        "tree",
        "waiters",
    )

    def __init__(
        self,
        actor: Actor,
        tree: Tree,
        parent: _Process | None,
        record: object,
    ) -> None:
        self.actor = actor
        self.tree = tree
        self.parent = parent
        # The parent supervisor's record of this child, so an exit can be matched to it.
        self.record = record
        self.name: str | None = actor.name
        self.capacity: int = actor.mailbox_size
        self.seq = tree._next_seq()
        self.queue: deque[_Item] | None = None  # created on first use: most idle actors never queue
        self.receiver: Task | None = None  # the actor's own task while it waits for a message
        self.senders: dict[Task, _Item] | None = None  # senders parked on a full mailbox, in order
        self.closed = False
        self.task: Task | None = None
        self.nursery: trio.Nursery | None = None
        self.starter: Task | None = None
        self.stopping = False
        self.stop_reason: object = NORMAL
        self.stopped_by_parent = False
        self.killed = False
        self.finished = False
        self.reason: object = None
        self.waiters: list[Task] | None = None
        self._ref: ActorRef | None = None

    @property
    def label(self) -> str:
        """How logs and errors name this actor: its registered name, else class and number."""
        if self.name is not None:
            return repr(self.name)
        return f"<{type(self.actor).__name__} #{self.seq}>"

    @property
    def ref(self) -> ActorRef:
        ref = self._ref
        if ref is None:
            from polyn.actors._ref import ActorRef

            ref = self._ref = ActorRef._for_process(self)
        return ref

    # -- the mailbox, sender side ------------------------------------------------------------

    async def put(self, item: _Item) -> None:
        """Queue ``item``, waiting while the mailbox is full; ActorError once the actor stopped."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise self._not_running()
        receiver = self.receiver
        if receiver is not None:
            # The actor is parked on an empty mailbox: hand the item over directly.
            self.receiver = None
            reschedule(receiver, outcome.Value(item))
            return
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        if len(queue) < self.capacity:
            queue.append(item)
            return
        task = current_task()
        if task is self.task:
            raise ActorError(
                f"actor {self.label} sent to its own full mailbox "
                f"({self.capacity} messages), which would wait forever"
            )
        senders = self.senders
        if senders is None:
            senders = self.senders = {}
        senders[task] = item

        def abort(_: object) -> Abort:
            senders.pop(task, None)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _not_running(self) -> ActorError:
        return ActorError(f"actor {self.label} is not running")

    # -- the mailbox, receiver side (only ever the actor's own task) -------------------------

    def _admit_sender(self, queue: deque[_Item]) -> None:
        # Room again: the longest-waiting sender's item moves in and that sender goes on.
        senders = self.senders
        assert senders
        task = next(iter(senders))
        queue.append(senders.pop(task))
        reschedule(task, outcome.Value(None))

    def _abort_receive(self, _: object) -> Abort:
        self.receiver = None
        return Abort.SUCCEEDED

    def _close(self, reason: object) -> None:
        """Refuse new messages and fail every caller still waiting on this actor."""
        self.closed = True
        self.receiver = None
        senders = self.senders
        if senders:
            self.senders = None
            error = outcome.Error(self._not_running())
            for task in senders:
                reschedule(task, error)
        queue = self.queue
        if queue:
            self.queue = None
            for _kind, _payload, reply in queue:
                if reply is not None:
                    reply.resolve(outcome.Error(self._stopped_before_reply(reason)))

    def _stopped_before_reply(self, reason: object) -> ActorError:
        error = ActorError(f"actor {self.label} stopped ({reason!r}) before replying to the call")
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        return error

    # -- lifecycle, driven by the parent -----------------------------------------------------

    def request_stop(self, reason: object) -> None:
        """Ask the actor to stop after the message it is handling, with ``reason``.

        The first request wins. Messages still queued are not handled: their callers get
        ActorError.
        """
        if self.stopping or self.finished:
            return
        self.stopping = True
        self.stop_reason = reason
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            reschedule(receiver, outcome.Value(_WAKE))

    def kill(self) -> None:
        """Cancel everything the actor runs (its callbacks and helper tasks), at once."""
        self.killed = True
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def wait_finished(self) -> None:
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        task = current_task()
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = []
        waiters.append(task)

        def abort(_: object) -> Abort:
            waiters.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def begin_shutdown(self, timeout: float) -> float:
        """Ask the actor to stop as a supervisor does; return the deadline for
        :meth:`finish_shutdown`.

        ``timeout`` 0 cancels at once (OTP's ``brutal_kill``: ``terminate`` does not run);
        ``math.inf`` lets it take as long as it needs. Split from :meth:`finish_shutdown` so
        that many children can be asked first and waited for together.
        """
        self.stopped_by_parent = True
        if timeout <= 0:
            self.kill()
        else:
            self.request_stop(SHUTDOWN)
        return trio.current_time() + timeout

    async def finish_shutdown(self, deadline: float) -> None:
        """Wait until the actor has finished, cancelling it if it is still running at
        ``deadline``."""
        with trio.move_on_at(deadline):
            await self.wait_finished()
        if not self.finished:
            if not self.killed:
                _log.warning(
                    "actor %s did not stop within its shutdown timeout; cancelling it",
                    self.label,
                    extra={"actor": self.label},
                )
                self.kill()
            await self.wait_finished()

    async def shutdown(self, timeout: float) -> None:
        """Stop the actor gracefully, cancel it after ``timeout`` seconds, wait until done."""
        await self.finish_shutdown(self.begin_shutdown(timeout))

    # -- the actor's own task ----------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, runner: Callable[[], Awaitable[None]]) -> None:
        """Spawn the actor's task in ``nursery`` and wait until its ``init`` has returned.

        Raises what ``init`` raised. The caller's task spawns the actor, so the actor's
        contextvars are copied from the caller: supervisors therefore spawn their own children.
        """
        self.tree._register(self)
        self.starter = current_task()
        try:
            nursery.start_soon(runner, name=f"actor {self.label}")
        except BaseException:
            self.tree._unregister(self)
            raise

        def abort(_: object) -> Abort:
            self.starter = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _notify_started(self, error: BaseException | None) -> None:
        starter = self.starter
        if starter is not None:
            self.starter = None
            reschedule(starter, outcome.Value(None) if error is None else outcome.Error(error))

    async def run(self, shielded: bool = False) -> None:
        """The body of the actor's task: init, the message loop, terminate. Never raises.

        ``shielded`` is for a tree's root, so that cancelling whatever runs the tree becomes a
        graceful, ordered stop instead of cancelling every actor at once.
        """
        self.task = current_task()
        actor = self.actor
        started = False
        stopping = False  # the loop has ended and _stop has begun
        reason: object = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.cancel_scope.shield = shielded
                self.nursery = nursery
                if self.killed:
                    nursery.cancel_scope.cancel()
                actor._polyn_process = self
                await actor.init()
                started = True
                self._notify_started(None)
                reason = await self._serve()
                stopping = True
                await self._stop(reason)
                nursery.cancel_scope.cancel()  # the actor's helper tasks die with it
        except BaseException as exc:
            error = unwrap(exc)
            if not stopping:
                # init failed, or a helper task crashed the running actor.
                reason = error
            else:
                _log.error(
                    "a helper task of actor %s failed while it stopped",
                    self.label,
                    exc_info=error,
                    extra={"actor": self.label},
                )
        if not started:
            if reason is None:  # cancelled during init
                reason = ActorError(f"actor {self.label} was cancelled during init")
            self._close(reason)  # whoever called it while init ran is waiting
            self._notify_started(reason if isinstance(reason, BaseException) else None)
        elif not stopping:
            if reason is None:  # its supervisor cancelled it: no terminate, as with OTP's kill
                reason = self.stop_reason if self.stopping else "killed"
                self._close(reason)
            else:  # a helper task crashed it: terminate runs now, after the nursery closed
                await self._stop(reason)
        self._finish(reason)
        parent = self.parent
        if parent is not None and started and not self.stopped_by_parent:
            # Exits travel through the parent's mailbox like any message, so a supervisor sees
            # them in order with its calls. The dying task may wait there for room: it holds
            # nothing any more (its name is free, its callers are answered).
            try:
                await parent.put((_EXIT, self, None))
            except ActorError:
                pass  # the parent is stopping and no longer listens

    async def _serve(self) -> object:
        """Handle messages until asked to stop; return the exit reason (a crash's exception)."""
        # Nothing is cached in locals here: every local lives as long as the actor, and bound
        # methods cost 64 bytes each per idle actor, more than the lookups cost per message.
        actor = self.actor
        reply: _Reply | None = None
        try:
            while not self.stopping:
                queue = self.queue
                if queue:
                    item = queue.popleft()
                    if self.senders:
                        self._admit_sender(queue)
                else:
                    self.receiver = self.task
                    received = await wait_task_rescheduled(self._abort_receive)
                    if received is _WAKE:
                        continue
                    item = received
                kind, payload, reply = item
                if kind == _CAST:
                    await actor.handle_cast(payload)
                elif kind == _CALL:
                    result = await actor.handle_call(payload)
                    reply.resolve(outcome.Value(result))  # type: ignore[union-attr]
                    reply = None
                elif kind == _INFO:
                    await actor.handle_info(payload)
                else:
                    await actor._polyn_child_exit(payload)
        except trio.Cancelled:
            if reply is not None:
                reply.resolve(outcome.Error(self._stopped_before_reply("killed")))
            raise
        except BaseException as exc:
            if reply is not None:
                error = ActorError(f"actor {self.label} crashed while handling the call: {exc!r}")
                error.__cause__ = exc
                reply.resolve(outcome.Error(error))
            return exc
        return self.stop_reason

    async def _stop(self, reason: object) -> None:
        """Close the mailbox (failing waiting callers), log an abnormal exit, run terminate."""
        self._close(reason)
        if not is_normal(reason):
            self._log_exit(reason)
        try:
            await self.actor.terminate(reason)
        except trio.Cancelled:
            raise
        except Exception as exc:
            _log.error(
                "terminate of actor %s raised",
                self.label,
                exc_info=exc,
                extra={"actor": self.label},
            )

    def _log_exit(self, reason: object) -> None:
        if isinstance(reason, BaseException):
            _log.error(
                "actor %s crashed: %r",
                self.label,
                reason,
                exc_info=reason,
                extra={"actor": self.label},
            )
        else:
            _log.error(
                "actor %s stopped abnormally: %r",
                self.label,
                reason,
                extra={"actor": self.label},
            )

    def _finish(self, reason: object) -> None:
        self.finished = True
        self.reason = reason
        self.closed = True
        self.nursery = None
        self.task = None
        self.tree._unregister(self)
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for task in waiters:
                reschedule(task, outcome.Value(None))
