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

**One outcome per send, by construction.** Every task that parks on an actor (a caller waiting
for its reply, a caster or sender waiting for room) parks exactly once, on its own one-shot
:class:`_Slot`, and only the slot wakes it: :meth:`_Slot.resolve` reschedules the task the first
time and does nothing after, and trio's abort (a timeout, a cancellation) empties the slot the
same way. A caller parks once for the whole call: while the mailbox is full its message waits in
the parked-senders queue *with its slot*, and being let into the mailbox moves the message
without waking the caller; only the reply (or the error that replaces it) does. Whatever
happens next (a crash, a stop, a kill, a restart), the code that ends the run resolves every slot
it still holds with an error of its own (outcome objects can be unwrapped only once, so each
parked task gets a fresh one).

Messages the runtime itself delivers (a child's exit to its supervisor, a timer, a monitor's
``Down``) bypass the bound: they never wait, and there are only as many as the timers and
monitors an actor set and the children a supervisor has.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from polyn.actors._key import Key
from polyn.actors._monitors import Down, Monitor
from polyn.actors._timers import Timer, _Timers
from polyn.errors import ActorError, CallTimeout

if TYPE_CHECKING:
    from polyn.actors._actor import Actor
    from polyn.actors._ref import ActorRef
    from polyn.actors._tree import Tree

_log: Final = logging.getLogger("polyn.actors")

T = TypeVar("T")

# Mailbox items are plain tuples ``(kind, payload, slot)``, the cheapest thing to build per
# message.
_CAST: Final = 0
_CALL: Final = 1
_INFO: Final = 2
_EXIT: Final = 3  # a supervised child finished; payload is its _Process, read only by supervisors
_CONTINUE: Final = 4  # handle_continue, put at the head of the mailbox by continue_with

_Item = tuple[int, Any, "_Slot | None"]

# Handed straight to an idle actor's parked task to make it look at its stop flag.
_WAKE: Final = object()

NORMAL: Final = "normal"
SHUTDOWN: Final = "shutdown"


class _Sentinel:
    """A marker value with a readable repr (``polyn.actors.NO_REPLY``)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"polyn.actors.{self._name}"


NO_REPLY: Final = _Sentinel("NO_REPLY")
IGNORE: Final = _Sentinel("IGNORE")


def is_normal(reason: object) -> bool:
    """Whether ``reason`` is a normal exit, as OTP defines it: ``"normal"``, ``"shutdown"``, or
    ``("shutdown", detail)`` (Elixir's ``{:shutdown, term}``)."""
    if isinstance(reason, str):
        return reason == NORMAL or reason == SHUTDOWN
    return type(reason) is tuple and len(reason) == 2 and reason[0] == SHUTDOWN


def unwrap(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups, else ``exc`` itself.

    A helper task's failure reaches the actor wrapped in the ExceptionGroup of the actor's
    nursery; the reason an actor records and logs is the failure itself.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Slot:
    """Where the one outcome of one parked task goes: its reply, its admission, or an error.

    ``task`` is None once the slot is resolved or the task gave up (timeout, cancellation), so
    every later resolution is dropped here: a late reply never disturbs the callee, and no task
    is ever woken twice.
    """

    __slots__ = ("process", "task")

    def __init__(self, task: Task, process: _Process) -> None:
        self.task: Task | None = task
        self.process = process

    def resolve(self, result: outcome.Outcome[Any]) -> bool:
        """Wake the parked task with ``result``; False (and nothing done) if already resolved."""
        task = self.task
        if task is None:
            return False
        self.task = None
        reschedule(task, result)
        return True

    def abort(self, _: object) -> Abort:
        # trio calls this when the parked task is cancelled: give up the slot, and the place in
        # the parked-senders queue if the message has not been let in yet.
        self.task = None
        senders = self.process.senders
        if senders:
            senders.pop(self, None)
        return Abort.SUCCEEDED


class Caller:
    """The handle of one call being answered later: OTP's ``from`` for ``GenServer.reply/2``.

    :attr:`Actor.caller <polyn.actors.Actor.caller>` gives it inside ``handle_call``; return
    :data:`~polyn.actors.NO_REPLY` from ``handle_call`` and answer later with :meth:`reply`,
    from any callback or helper task of the same run. The first answer wins; later ones, and
    answers to a caller that has given up (its timeout, a cancellation), are dropped. If the
    actor's run ends first, the caller gets :class:`~polyn.errors.ActorError` at once, as for
    any call the actor did not answer. A handle that is never answered leaves its caller waiting
    until its timeout.

    Example::

        async def handle_call(self, request):
            self.waiting.append(self.caller)   # answered when the job is done
            return NO_REPLY

        async def handle_info(self, message):
            for caller in self.waiting:
                caller.reply(message)
    """

    __slots__ = ("_slot",)

    def __init__(self, slot: _Slot) -> None:
        self._slot = slot

    @property
    def waiting(self) -> bool:
        """Whether the caller is still waiting for this answer."""
        return self._slot.task is not None

    def reply(self, value: Any) -> None:
        """Send ``value`` as the call's return value (dropped if the call has ended)."""
        slot = self._slot
        deferred = slot.process.deferred
        if deferred is not None:
            deferred.pop(slot, None)
        slot.resolve(outcome.Value(value))

    def __repr__(self) -> str:
        state = "waiting" if self.waiting else "answered or gone"
        return f"<Caller of actor {self._slot.process.label}, {state}>"


class _Process:
    """One running actor: its task, mailbox, nursery, name and exit state."""

    __slots__ = (
        "_ref",
        "actor",
        "capacity",
        "closed",
        "current",
        "deferred",
        "extras",
        "finished",
        "killed",
        "name",
        "nursery",
        "parent",
        "queue",
        "reason",
        "receiver",
        "record",
        "scope",
        "senders",
        "seq",
        "starter",
        "stop_reason",
        "stopped_by_parent",
        "stopping",
        "task",
        "tree",
        "values",
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
        # Senders parked on a full mailbox, in arrival order, each with its message.
        self.senders: dict[_Slot, _Item] | None = None
        self.current: _Slot | None = None  # the call being handled
        self.deferred: dict[_Slot, None] | None = None  # calls answered later (NO_REPLY)
        self.values: dict[Key[Any], Any] | None = None  # what the actor provides
        self.extras: _Extras | None = None  # timers and monitors, for the few actors using them
        self.closed = False
        self.task: Task | None = None
        self.nursery: trio.Nursery | None = None
        self.scope: trio.CancelScope | None = None  # what kill() cancels
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

    def _park(self, slot: _Slot, item: _Item) -> None:
        if slot.task is self.task:
            raise ActorError(
                f"actor {self.label} sent to its own full mailbox "
                f"({self.capacity} messages), which would wait forever"
            )
        senders = self.senders
        if senders is None:
            senders = self.senders = {}
        senders[slot] = item

    async def put(self, item: _Item, timeout: float | None = None) -> None:
        """Queue ``item``, waiting while the mailbox is full; ActorError once the actor stopped.

        With a ``timeout``, raises :class:`~polyn.errors.CallTimeout` if the message could not
        be queued within it (the message is then not queued).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise self._not_running()
        # _offer, inlined: this is the path of every cast.
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            reschedule(receiver, outcome.Value(item))
            return
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        if len(queue) < self.capacity:
            queue.append(item)
            return
        slot = _Slot(current_task(), self)
        self._park(slot, item)
        if timeout is None:
            await wait_task_rescheduled(slot.abort)
            return
        with trio.move_on_after(timeout):
            await wait_task_rescheduled(slot.abort)
            return
        raise CallTimeout(
            f"actor {self.label} had no room for the message within {timeout} s "
            f"(its mailbox holds {self.capacity}); the message was not queued"
        )

    async def call(self, request: Any, timeout: float | None) -> Any:
        """Queue a call and park once, until its reply or the error that replaces it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise self._not_running()
        task = current_task()
        if task is self.task:
            raise ActorError(f"actor {self.label} called itself, which would wait forever")
        slot = _Slot(task, self)
        item = (_CALL, request, slot)
        # _offer, inlined: this is the path of every call.
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            reschedule(receiver, outcome.Value(item))
        else:
            queue = self.queue
            if queue is None:
                queue = self.queue = deque()
            if len(queue) < self.capacity:
                queue.append(item)
            else:
                self._park(slot, item)
        if timeout is None:
            return await wait_task_rescheduled(slot.abort)
        with trio.CancelScope(deadline=trio.current_time() + timeout):
            return await wait_task_rescheduled(slot.abort)
        # Reached only when the deadline cancelled the wait: the slot is given up, so the
        # callee's eventual answer is dropped without disturbing it.
        raise CallTimeout(
            f"call to actor {self.label} got no reply within {timeout} s "
            "(the actor goes on; its late reply will be discarded)"
        )

    def deliver(self, item: _Item) -> None:
        """Queue a message the runtime delivers (exit, timer, Down): never waits, never fails.

        Dropped once the actor has stopped, like any message still in its mailbox then.
        """
        if self.closed:
            return
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            reschedule(receiver, outcome.Value(item))
            return
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append(item)

    def _deliver_info(self, message: Any) -> None:
        self.deliver((_INFO, message, None))

    def _not_running(self) -> ActorError:
        return ActorError(f"actor {self.label} is not running")

    # -- the mailbox, receiver side (only ever the actor's own task) -------------------------

    def _admit_senders(self, queue: deque[_Item]) -> None:
        # Room again: the longest-waiting senders' messages move in. A caster goes on; a
        # caller stays parked, now waiting for its reply.
        senders = self.senders
        capacity = self.capacity
        while senders and len(queue) < capacity:
            slot = next(iter(senders))
            item = senders.pop(slot)
            queue.append(item)
            if item[0] != _CALL:
                slot.resolve(outcome.Value(None))

    def _abort_receive(self, _: object) -> Abort:
        self.receiver = None
        return Abort.SUCCEEDED

    def _close(self, reason: object) -> None:
        """Refuse new messages and give every task still waiting on this run its own error."""
        self.closed = True
        self.receiver = None
        self.values = None  # what this run provided is withdrawn with it
        senders = self.senders
        if senders:
            self.senders = None
            for slot, (kind, _payload, _slot) in senders.items():
                if kind == _CALL:
                    slot.resolve(outcome.Error(self._stopped_before_reply(reason)))
                else:
                    slot.resolve(outcome.Error(self._stopped_before_taking(reason)))
        queue = self.queue
        if queue:
            self.queue = None
            for _kind, _payload, reply in queue:
                if reply is not None:
                    reply.resolve(outcome.Error(self._stopped_before_reply(reason)))
        current = self.current
        if current is not None:
            self.current = None
            current.resolve(outcome.Error(self._stopped_before_reply(reason)))
        deferred = self.deferred
        if deferred:
            self.deferred = None
            for reply in deferred:
                reply.resolve(outcome.Error(self._stopped_before_reply(reason)))

    def _stopped_before_reply(self, reason: object) -> ActorError:
        error = ActorError(f"actor {self.label} stopped ({reason!r}) before replying to the call")
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        return error

    def _stopped_before_taking(self, reason: object) -> ActorError:
        error = ActorError(
            f"actor {self.label} stopped ({reason!r}) before it had room for the message"
        )
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        return error

    # -- what the actor offers while it runs ---------------------------------------------------

    def provide(self, key: Key[T], value: T) -> None:
        if self.closed:
            raise ActorError(f"actor {self.label} has stopped; it cannot provide {key!r}")
        value = key.checked(value, self.label)
        values = self.values
        if values is None:
            values = self.values = {}
        values[key] = value

    def caller(self) -> Caller:
        current = self.current
        if current is None:
            raise ActorError(f"actor {self.label}: Actor.caller is only valid inside handle_call")
        return Caller(current)

    def continue_with(self, argument: Any) -> None:
        if current_task() is not self.task:
            raise ActorError(
                f"actor {self.label}: continue_with is only valid in the actor's own callbacks"
            )
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        elif queue and queue[0][0] == _CONTINUE:
            raise ActorError(f"actor {self.label} already has a handle_continue pending")
        queue.appendleft((_CONTINUE, argument, None))

    def _extras(self) -> _Extras:
        extras = self.extras
        if extras is None:
            extras = self.extras = _Extras()
        return extras

    def send_after(self, delay: float, message: Any) -> Timer:
        nursery = self.nursery
        if nursery is None or self.closed:
            raise ActorError(f"actor {self.label} has stopped; it cannot set a timer")
        timer = Timer(trio.current_time() + max(delay, 0), message)
        extras = self._extras()
        timers = extras.timers
        if timers is None:
            timers = extras.timers = _Timers()
            nursery.start_soon(timers.serve, self._deliver_info, name=f"timers of {self.label}")
        timers.add(timer)
        return timer

    def monitor(self, target: _Process | None, ref: ActorRef) -> Monitor:
        monitor = Monitor(self, target, ref)
        if target is None or target.finished:
            # As OTP: monitoring a run that has already ended reports it at once, as noproc.
            self.deliver((_INFO, Down(ref, "noproc", monitor), None))
            return monitor
        watched = target._extras()
        if watched.watched_by is None:
            watched.watched_by = {}
        watched.watched_by[monitor] = None
        mine = self._extras()
        if mine.watching is None:
            mine.watching = {}
        mine.watching[monitor] = None
        return monitor

    def demonitor(self, monitor: Monitor) -> bool:
        extras = self.extras
        if extras is None or not extras.watching or monitor not in extras.watching:
            return False
        del extras.watching[monitor]
        target = monitor.target
        if target is not None and target.extras is not None and target.extras.watched_by:
            target.extras.watched_by.pop(monitor, None)
        return True

    def _end_monitors(self) -> None:
        extras = self.extras
        if extras is None:
            return
        watching = extras.watching
        if watching:
            extras.watching = None
            for monitor in watching:
                target = monitor.target
                if target is not None and target.extras is not None and target.extras.watched_by:
                    target.extras.watched_by.pop(monitor, None)
        watched_by = extras.watched_by
        if watched_by:
            extras.watched_by = None
            ref = self.ref
            for monitor in watched_by:
                watcher = monitor.watcher
                if watcher.extras is not None and watcher.extras.watching:
                    watcher.extras.watching.pop(monitor, None)
                watcher.deliver((_INFO, Down(ref, self.reason, monitor), None))

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
        """Cancel everything the actor runs (its callbacks, helper tasks, terminate), at once."""
        self.killed = True
        scope = self.scope
        if scope is not None:
            scope.cancel()

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

    async def start(self, nursery: trio.Nursery, runner: Callable[[], Awaitable[None]]) -> bool:
        """Spawn the actor's task in ``nursery`` and wait until its ``init`` has returned.

        Returns False if ``init`` returned :data:`IGNORE` (the run has ended by then), raises
        what ``init`` raised. The caller's task spawns the actor, so the actor's contextvars
        are copied from the caller: supervisors therefore spawn their own children.
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

        started: bool = await wait_task_rescheduled(abort)
        return started

    def _notify_started(self, error: BaseException | None, started: bool = True) -> None:
        starter = self.starter
        if starter is not None:
            self.starter = None
            reschedule(starter, outcome.Value(started) if error is None else outcome.Error(error))

    async def run(self, shielded: bool = False) -> None:
        """The body of the actor's task: init, the message loop, terminate. Never raises.

        ``shielded`` is for a tree's root, so that cancelling whatever runs the tree becomes a
        graceful, ordered stop instead of cancelling every actor at once.
        """
        self.task = current_task()
        actor = self.actor
        started = False
        ignored = False
        stopping = False  # the loop has ended and _stop has begun
        reason: object = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.cancel_scope.shield = shielded
                self.nursery = nursery
                self.scope = nursery.cancel_scope
                if self.killed:
                    nursery.cancel_scope.cancel()
                actor._polyn_process = self
                result = await actor.init()
                if result is IGNORE:
                    ignored = True
                    reason = IGNORE
                    nursery.cancel_scope.cancel()
                else:
                    if result is not None:
                        raise TypeError(
                            f"init of actor {self.label} returned {result!r}; "
                            "it returns None, or polyn.actors.IGNORE"
                        )
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
        self.nursery = None
        if not started:
            if reason is None:  # cancelled during init
                reason = ActorError(f"actor {self.label} was cancelled during init")
            self._close(reason)  # whoever called it while init ran is waiting
            if ignored:
                self._notify_started(None, started=False)
            else:
                self._notify_started(reason if isinstance(reason, BaseException) else None)
        elif not stopping:
            if reason is None:  # its supervisor cancelled it: no terminate, as with OTP's kill
                reason = self.stop_reason if self.stopping else "killed"
                self._close(reason)
            else:
                # A helper task crashed it: terminate runs now, after the nursery closed, in a
                # scope of its own that kill() cancels, so the shutdown time still holds.
                with trio.CancelScope(shield=shielded) as scope:
                    self.scope = scope
                    if self.killed:
                        scope.cancel()
                    await self._stop(reason)
        self.scope = None
        self._finish(reason)
        parent = self.parent
        if parent is not None and started and not self.stopped_by_parent:
            # Exits travel through the parent's mailbox like any message, so a supervisor sees
            # them in order with its calls.
            parent.deliver((_EXIT, self, None))

    async def _serve(self) -> object:
        """Handle messages until asked to stop; return the exit reason (a crash's exception)."""
        # Nothing is cached in locals here: every local lives as long as the actor, and bound
        # methods cost 64 bytes each per idle actor, more than the lookups cost per message.
        actor = self.actor
        try:
            while not self.stopping:
                queue = self.queue
                if queue:
                    item = queue.popleft()
                    if self.senders:
                        self._admit_senders(queue)
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
                    self.current = reply
                    result = await actor.handle_call(payload)
                    self.current = None
                    if result is NO_REPLY:
                        if reply.task is not None:  # type: ignore[union-attr]
                            deferred = self.deferred
                            if deferred is None:
                                deferred = self.deferred = {}
                            deferred[reply] = None  # type: ignore[index]
                    else:
                        reply.resolve(outcome.Value(result))  # type: ignore[union-attr]
                elif kind == _INFO:
                    await actor.handle_info(payload)
                elif kind == _CONTINUE:
                    await actor.handle_continue(payload)
                else:
                    await actor._polyn_child_exit(payload)
        except trio.Cancelled:
            raise  # the call being handled is answered when the run closes, with the reason
        except BaseException as exc:
            current = self.current
            if current is not None:
                self.current = None
                error = ActorError(f"actor {self.label} crashed while handling the call: {exc!r}")
                error.__cause__ = exc
                current.resolve(outcome.Error(error))
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
        self.task = None
        self.tree._unregister(self)
        self._end_monitors()
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for task in waiters:
                reschedule(task, outcome.Value(None))


class _Extras:
    """Timers and monitors of one run: allocated only for the actors that use them."""

    __slots__ = ("timers", "watched_by", "watching")

    def __init__(self) -> None:
        self.timers: _Timers | None = None
        self.watching: dict[Monitor, None] | None = None  # monitors this actor set
        self.watched_by: dict[Monitor, None] | None = None  # monitors set on this actor
