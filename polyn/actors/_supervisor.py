"""Supervisors: OTP's restart strategies and intensity, and how a tree is run from outside."""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from polyn.actors._actor import Actor, Restart
from polyn.actors._process import SHUTDOWN, _Process, is_normal, unwrap
from polyn.actors._ref import ActorRef
from polyn.actors._tree import Tree, _current
from polyn.errors import ActorError, PolynError, describe_exception

_log: Final = logging.getLogger("polyn.actors")


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them has to be restarted (OTP's).

    - ``ONE_FOR_ONE``: only that child.
    - ``ONE_FOR_ALL``: all the others are stopped (in reverse start order), then every child is
      started again in start order.
    - ``REST_FOR_ONE``: the children started after it are stopped (in reverse start order),
      then it and they are started again in start order.

    Temporary children stopped this way are removed, not restarted. Strings work wherever a
    ``Strategy`` is expected: ``strategy="rest_for_one"``.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child of a supervisor, as :func:`which_children` reports it.

    ``ref`` points to the child's current run, or is None while it is not running (terminated
    with :func:`terminate_child`, a transient child that exited normally, a child whose
    ``init`` returned IGNORE, or a child being restarted). ``spec`` is the instance the
    supervisor builds each run from.
    """

    name: str | None
    ref: ActorRef | None
    restart: Restart
    supervisor: bool
    spec: Actor


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """How many children a supervisor has, as :func:`count_children` reports (OTP's fields).

    ``specs``: child specs it holds, running or not; ``active``: children running now;
    ``supervisors`` / ``workers``: specs that are supervisors / other actors.
    """

    specs: int
    active: int
    supervisors: int
    workers: int


class _Child:
    """A supervisor's record of one child: its spec and its current run, if any."""

    __slots__ = ("process", "spec")

    def __init__(self, spec: Actor) -> None:
        self.spec = spec
        self.process: _Process | None = None

    @property
    def label(self) -> str:
        name = self.spec.name
        return repr(name) if name is not None else f"<{type(self.spec).__name__}>"

    @property
    def described(self) -> str:
        """The label with the class when the name does not say it: ``'nats' (NatsConnection)``."""
        name = self.spec.name
        if name is None:
            return self.label
        return f"{name!r} ({type(self.spec).__name__})"


class _StartFailed(Exception):
    def __init__(self, child: _Child, cause: Exception) -> None:
        super().__init__(child, cause)
        self.child = child
        self.cause = cause


# Requests a supervisor answers through its mailbox, so that only its own task ever spawns or
# stops its children, whoever asks.
@dataclass(frozen=True, slots=True)
class _StartChild:
    spec: Actor


@dataclass(frozen=True, slots=True)
class _TerminateChild:
    child: ActorRef | str | Actor


@dataclass(frozen=True, slots=True)
class _RestartChild:
    child: ActorRef | str | Actor


@dataclass(frozen=True, slots=True)
class _DeleteChild:
    child: ActorRef | str | Actor


@dataclass(frozen=True, slots=True)
class _WhichChildren:
    pass


@dataclass(frozen=True, slots=True)
class _CountChildren:
    pass


@dataclass(frozen=True, slots=True)
class _Refused:
    """A request the supervisor declined; the asking function raises ``error``."""

    error: Exception


class Supervisor(Actor):
    """Starts, watches and restarts child actors with OTP's semantics; itself an actor.

    ``Supervisor(children, strategy="one_for_one", max_restarts=3, max_seconds=5, **options)``

    - **Start**: children start in list order, each one's ``init`` returning before the next
      starts. If a child fails to start, the children already started are stopped in reverse
      order and the supervisor's own start fails with an :class:`~polyn.errors.ActorError`
      naming the child, chained to the cause.
    - **Exits**: when a child exits, its restart type (:class:`Restart`) decides whether it is
      restarted; if so, the :class:`Strategy` decides which children restart with it. A child
      that fails to start again is retried at once, each attempt counting as a restart.
    - **Intensity**: restarts are counted per supervisor, whichever child caused them. If a
      restart would make more than ``max_restarts`` restarts within the last ``max_seconds``
      seconds (trio's clock), the supervisor gives up instead: it logs an error, stops all its
      children in reverse start order and exits with reason ``("shutdown", error)``, ``error``
      an ActorError naming itself. As with OTP's ``shutdown``, that is a normal exit: a
      permanent parent restarts the supervisor (counting it against its own intensity, so a
      persistent fault climbs the tree), a transient or temporary parent does not. At the
      root, :meth:`run` and :meth:`main` raise ``error``.
    - **Stop**: children stop in reverse start order, each given its ``shutdown`` time to run
      ``terminate`` before it is cancelled. A supervisor's own ``shutdown`` defaults to
      ``math.inf``, so that its subtree has all the time it needs.
    - **Children added at run time** (:func:`start_child`) go after the others; the
      supervisor's own task spawns them, whoever asks. They are not part of the spec: when the
      supervisor itself is restarted, it starts only ``children`` again, as OTP does.
    - **Children by hand**, as OTP's: :func:`terminate_child` stops a child and keeps its spec
      (so it is not restarted until :func:`restart_child`); :func:`delete_child` forgets a
      stopped child's spec. A temporary child's spec is forgotten as soon as it ends.
      :func:`which_children` and :func:`count_children` report them.
    - **IGNORE**: a child whose ``init`` returns :data:`~polyn.actors.IGNORE` is kept as a spec
      that is not running, and not restarted.

    A supervisor is a child spec like any actor, so supervisors nest. Subclasses that override
    ``init``, ``terminate``, ``handle_call`` or ``handle_info`` must call the base method.

    Example::

        tree = Supervisor(
            [NatsConnection(), Supervisor([Billing(), Mailer()], name="workers")],
            strategy="rest_for_one",
        )
        trio.run(tree.main)
    """

    shutdown = float("inf")

    def __init__(
        self,
        children: Iterable[Actor] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.children = tuple(children)
        for spec in self.children:
            if not isinstance(spec, Actor):
                raise TypeError(f"a supervisor's children must be Actor instances, not {spec!r}")
        self.strategy = Strategy(strategy)
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, not {max_restarts!r}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, not {max_seconds!r}")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        # Insertion-ordered: the start order. A dict gives O(1) removal of one of many
        # dynamic children.
        self._records: dict[_Child, None] = {}
        self._restarts: deque[float] = deque()

    # -- running a tree from outside ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run(self, context: Mapping[str, Any] | None = None) -> AsyncIterator[Tree]:
        """Start a tree with this supervisor at its root, inside the current trio run.

        Yields the :class:`Tree` handle once every child has started (raises ActorError if
        one fails to start). ``context`` becomes the tree's read-only context mapping. Leaving
        the block stops the tree gracefully (children in reverse order, each with its
        ``shutdown`` time) and returns when every actor has finished. If the root supervisor
        gives up (restart intensity) while the block runs, the block is cancelled and its
        error is raised here.

        Example::

            async with Supervisor([Counter(name="counter")]).run() as tree:
                await tree.ref("counter").cast("bump")
        """
        tree = Tree(context)
        root = _Process(self._polyn_fresh(), tree, None, None)
        tree._root = root
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await root.start(nursery, functools.partial(_run_root, root))
                except Exception as exc:
                    if isinstance(exc, ActorError):
                        raise
                    raise ActorError(f"supervisor {root.label} failed to start: {exc!r}") from exc
                nursery.start_soon(_cancel_when_failed, root, nursery.cancel_scope)
                try:
                    yield tree
                finally:
                    with trio.CancelScope(shield=True):
                        await root.shutdown(root.actor.shutdown)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Only the block's own exception can be in here (actors never raise out of their
            # tasks): hand it back as it was raised, not wrapped in a group.
            error = unwrap(group)
            if error is group:
                raise
        if error is not None:
            raise error
        failure = _failure(root)
        if failure is not None:
            raise failure

    async def main(self, context: Mapping[str, Any] | None = None) -> None:
        """Run a tree with this supervisor at its root until it stops; ``trio.run(sup.main)``.

        Returns when the tree is stopped (:meth:`Tree.stop`); raises ActorError when it fails
        to start or the root gives up. Cancelling it (or Ctrl-C) stops every actor gracefully,
        each running its ``terminate``, before the cancellation goes on.
        """
        async with self.run(context) as tree:
            await tree.wait_finished()

    # -- callbacks ---------------------------------------------------------------------------

    async def init(self) -> None:
        for spec in self.children:
            child = _Child(spec)
            self._records[child] = None
            try:
                await self._start(child)
            except _StartFailed as failed:
                await self._stop_all()
                raise self._start_error(failed) from failed.cause

    async def terminate(self, reason: object) -> None:
        await self._stop_all()

    async def handle_call(self, request: Any) -> Any:
        if isinstance(request, _StartChild):
            return await self._start_child(request.spec)
        if isinstance(request, _TerminateChild):
            return await self._terminate_child(request.child)
        if isinstance(request, _RestartChild):
            return await self._restart_child(request.child)
        if isinstance(request, _DeleteChild):
            return self._delete_child(request.child)
        if isinstance(request, _WhichChildren):
            return self._which_children()
        if isinstance(request, _CountChildren):
            return self._count_children()
        return await super().handle_call(request)

    async def _polyn_child_exit(self, child: _Process) -> None:
        record = child.record
        if not isinstance(record, _Child) or record.process is not child:
            return  # a run this supervisor already stopped or replaced
        record.process = None
        reason = child.reason
        if isinstance(reason, BaseException) and not isinstance(reason, Exception):
            raise reason  # KeyboardInterrupt and the like go up the tree, never restart
        restart = record.spec.restart
        if restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and not is_normal(reason)):
            await self._restart(record, reason)
        elif restart is Restart.TEMPORARY or not self._keeps_ended_children:
            self._records.pop(record, None)

    # Whether the spec of a child that ended for good stays (OTP's supervisor) or goes
    # (a DynamicSupervisor, whose children are all started at run time).
    _keeps_ended_children = True

    # -- the rules ---------------------------------------------------------------------------

    async def _start(self, child: _Child) -> _Process | None:
        """Start a run of ``child``; None when its init returned IGNORE."""
        me = self._running()
        assert me.nursery is not None
        try:
            actor = child.spec._polyn_fresh()
            process = _Process(actor, me.tree, me, child)
            started = await process.start(me.nursery, process.run)
        except Exception as exc:
            child.process = None
            # Not an error here: the failure is raised to whoever started the child (the tree's
            # starter, start_child's caller) or logged by _restart. With debug logging, the
            # traceback of the cause where it happened.
            _log.debug(
                "supervisor %s: child %s failed to start",
                me.label,
                child.label,
                exc_info=None if isinstance(exc, ActorError) and exc.start_failure else exc,
                extra={"actor": me.label},
            )
            raise _StartFailed(child, exc) from exc
        if not started:
            child.process = None
            return None
        child.process = process
        return process

    def _start_error(self, failed: _StartFailed) -> ActorError:
        """The error of a child's failed start: names the child and every supervisor on the
        way down to the actor that failed, and that actor's cause, once and in one line."""
        cause = failed.cause
        error = ActorError(
            f"supervisor {self._running().label} failed to start child "
            f"{failed.child.described}: {describe_exception(cause)}"
        )
        inner = cause.start_failure if isinstance(cause, ActorError) else None
        if inner is None:
            error.start_failure = (f"child {failed.child.described}", cause)
        else:
            which, leaf = inner
            error.start_failure = (f"{which} of supervisor {failed.child.label}", leaf)
        return error

    async def _restart(self, child: _Child, reason: object) -> None:
        trigger = child
        while True:
            if not self._add_restart():
                me = self._running()
                error = ActorError(
                    f"supervisor {me.label} reached its maximum restart "
                    f"intensity (more than {self.max_restarts} restarts within "
                    f"{self.max_seconds} s); last exit: child {trigger.label}, {reason!r}"
                )
                if isinstance(reason, BaseException):
                    error.__cause__ = reason
                _log.error(
                    "supervisor %s gave up: %s",
                    me.label,
                    error,
                    exc_info=error if isinstance(reason, BaseException) else None,
                    extra={"actor": me.label},
                )
                # OTP's supervisor exits with `shutdown` here: a normal exit, so a transient
                # parent leaves it down and a permanent one restarts it.
                me.request_stop((SHUTDOWN, error))
                return
            _log.info(
                "supervisor %s: restarting child %s (%s) after %r",
                self._running().label,
                trigger.label,
                self.strategy.value,
                reason,
            )
            try:
                await self._restart_group(trigger)
                return
            except _StartFailed as failed:
                # Nobody waits for a restart: its failure is reported here, once, with the
                # traceback of its cause unless a supervisor below reported that already.
                cause = failed.cause
                _log.error(
                    "supervisor %s: child %s failed to restart: %s",
                    self._running().label,
                    failed.child.described,
                    describe_exception(cause),
                    exc_info=None if isinstance(cause, PolynError) else cause,
                    extra={"actor": self._running().label},
                )
                # OTP's try_again_restart: the child that failed to start becomes the trigger.
                trigger = failed.child
                reason = cause

    def _add_restart(self) -> bool:
        now = trio.current_time()
        restarts = self._restarts
        threshold = now - self.max_seconds
        while restarts and restarts[0] < threshold:
            restarts.popleft()
        restarts.append(now)
        return len(restarts) <= self.max_restarts

    async def _restart_group(self, trigger: _Child) -> None:
        if self.strategy is Strategy.ONE_FOR_ONE:
            await self._start(trigger)
            return
        children = list(self._records)
        if self.strategy is Strategy.REST_FOR_ONE:
            children = children[children.index(trigger) :]
        for child in reversed(children):
            if child.process is not None:
                await self._stop_child(child)
        for child in children:
            if child.spec.restart is Restart.TEMPORARY and child is not trigger:
                del self._records[child]
        for child in children:
            if child in self._records:
                await self._start(child)

    async def _stop_child(self, child: _Child) -> None:
        process = child.process
        if process is not None:
            child.process = None
            await process.shutdown(child.spec.shutdown)

    async def _stop_all(self) -> None:
        for child in reversed(list(self._records)):
            await self._stop_child(child)

    # -- requests ----------------------------------------------------------------------------

    async def _start_child(self, spec: Actor) -> ActorRef | _Refused | None:
        child = _Child(spec)
        self._records[child] = None
        try:
            process = await self._start(child)
        except _StartFailed as failed:
            self._records.pop(child, None)
            error = self._start_error(failed)
            error.__cause__ = failed.cause
            return _Refused(error)
        if process is not None:
            return process.ref
        if spec.restart is Restart.TEMPORARY or not self._keeps_ended_children:
            self._records.pop(child, None)
        return None

    def _find(self, target: ActorRef | str | Actor) -> _Child | _Refused:
        """The record ``target`` names: a name, a spec, a ref by name, or a ref to a run, which
        matches only while that very run is the child's current one (never its successor)."""
        records = self._records
        if isinstance(target, ActorRef) and target._process is not None:
            process = target._process
            record = process.record
            if isinstance(record, _Child) and record in records and record.process is process:
                return record
        else:
            name = target if isinstance(target, str) else target.name
            for record in records:
                if record.spec is target or (name is not None and record.spec.name == name):
                    return record
        return _Refused(ActorError(f"{target!r} is not a child of {self._running().label}"))

    async def _terminate_child(self, target: ActorRef | str | Actor) -> _Refused | None:
        record = self._find(target)
        if isinstance(record, _Refused):
            return record
        if record.spec.restart is Restart.TEMPORARY or not self._keeps_ended_children:
            del self._records[record]
        await self._stop_child(record)
        return None

    async def _restart_child(self, target: ActorRef | str | Actor) -> ActorRef | _Refused | None:
        record = self._find(target)
        if isinstance(record, _Refused):
            return record
        if record.process is not None:
            return _Refused(
                ActorError(f"child {record.label} of {self._running().label} is running")
            )
        try:
            process = await self._start(record)
            return None if process is None else process.ref
        except _StartFailed as failed:
            error = self._start_error(failed)
            error.__cause__ = failed.cause
            return _Refused(error)

    def _delete_child(self, target: ActorRef | str | Actor) -> _Refused | None:
        record = self._find(target)
        if isinstance(record, _Refused):
            return record
        if record.process is not None:
            return _Refused(
                ActorError(
                    f"child {record.label} of {self._running().label} is running; "
                    "terminate_child it first"
                )
            )
        del self._records[record]
        return None

    def _which_children(self) -> list[ChildInfo]:
        return [self._info(child) for child in self._records]

    def _count_children(self) -> ChildCounts:
        specs = active = supervisors = 0
        for child in self._records:
            specs += 1
            process = child.process
            if process is not None and not process.closed:
                active += 1
            if isinstance(child.spec, Supervisor):
                supervisors += 1
        return ChildCounts(
            specs=specs, active=active, supervisors=supervisors, workers=specs - supervisors
        )

    def _info(self, child: _Child) -> ChildInfo:
        spec = child.spec
        return ChildInfo(
            name=spec.name,
            ref=None if child.process is None else child.process.ref,
            restart=spec.restart,
            supervisor=isinstance(spec, Supervisor),
            spec=spec,
        )


class DynamicSupervisor(Supervisor):
    """A ``one_for_one`` supervisor that starts with no children and gets them at run time.

    ``DynamicSupervisor(max_children=None, max_restarts=3, max_seconds=5, **options)``, as
    Elixir's: children come from :func:`start_child`, always spawned by the supervisor's own
    task. A child that ends for good (temporary; transient after a normal exit; stopped by
    :func:`terminate_child`) is forgotten at once, so :func:`which_children` and
    :func:`count_children` show the live ones and it no longer counts against
    ``max_children``, which bounds how many it holds at once (past it :func:`start_child`
    raises ActorError). ``restart_child`` and ``delete_child`` do not apply, as in Elixir. On
    shutdown all children are asked to stop at once and waited for together, since there may be
    many and they are independent.

    Example::

        pool = DynamicSupervisor(name="sessions", max_children=1000)
        async with Supervisor([pool]).run() as tree:
            ref = await tree.start_child(Session(user_id), supervisor="sessions")
    """

    def __init__(
        self,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5,
        **options: Any,
    ) -> None:
        super().__init__(
            (),
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            **options,
        )
        if max_children is not None and max_children < 0:
            raise ValueError(f"max_children must be >= 0 or None, not {max_children!r}")
        self.max_children = max_children

    _keeps_ended_children = False

    async def _restart_child(self, target: ActorRef | str | Actor) -> ActorRef | _Refused | None:
        return self._not_for_dynamic("restart_child")

    def _delete_child(self, target: ActorRef | str | Actor) -> _Refused | None:
        return self._not_for_dynamic("delete_child")

    def _not_for_dynamic(self, what: str) -> _Refused:
        return _Refused(
            ActorError(
                f"{what} does not apply to DynamicSupervisor {self._running().label}: "
                "its children are forgotten when they stop; start_child again instead"
            )
        )

    async def _start_child(self, spec: Actor) -> ActorRef | _Refused | None:
        if self.max_children is not None and len(self._records) >= self.max_children:
            return _Refused(
                ActorError(
                    f"supervisor {self._running().label} already has its "
                    f"max_children={self.max_children} children"
                )
            )
        return await super()._start_child(spec)

    async def _stop_all(self) -> None:
        stopping = []
        for child in reversed(list(self._records)):
            process = child.process
            if process is not None:
                child.process = None
                stopping.append((process, process.begin_shutdown(child.spec.shutdown)))
        for process, deadline in stopping:
            await process.finish_shutdown(deadline)


async def _run_root(root: _Process) -> None:
    # The root's task is new, so this only touches the tree's own copy of the context.
    _current.set(root.tree)
    await root.run(shielded=True)


async def _cancel_when_failed(root: _Process, scope: trio.CancelScope) -> None:
    await root.wait_finished()
    if _failure(root) is not None:
        scope.cancel()


def _failure(root: _Process) -> BaseException | None:
    """What :meth:`Supervisor.run` raises for how the root ended, or None for a clean stop."""
    reason = root.reason
    if is_normal(reason):
        if isinstance(reason, tuple) and isinstance(reason[1], BaseException):
            return reason[1]  # the root gave up: ("shutdown", error)
        return None
    if isinstance(reason, ActorError) or (
        isinstance(reason, BaseException) and not isinstance(reason, Exception)
    ):
        return reason
    error = ActorError(f"supervisor {root.label} stopped abnormally: {reason!r}")
    if isinstance(reason, BaseException):
        error.__cause__ = reason
    return error


def _supervisor_process(supervisor: ActorRef) -> _Process:
    process = supervisor._resolve()
    if not isinstance(process.actor, Supervisor):
        raise ActorError(f"{supervisor!r} is not a supervisor")
    return process


async def start_child(supervisor: ActorRef, spec: Actor) -> ActorRef | None:
    """Have ``supervisor`` start a fresh instance of ``spec`` as its last child.

    Waits until the child's ``init`` has returned (no timeout) and returns a ref to that run,
    or None if ``init`` returned :data:`~polyn.actors.IGNORE` (OTP's ``{ok, undefined}``).
    The supervisor's own task spawns the child, so it joins the supervisor's tree and context
    whoever asks. Raises :class:`~polyn.errors.ActorError` if the child fails to start
    (chained to the cause; the supervisor goes on, and keeps no record of it), if
    ``supervisor`` is not a running supervisor, or if a :class:`DynamicSupervisor` is full.

    Example::

        worker = await start_child(tree.ref("workers"), Worker(job_id, restart="transient"))
    """
    if not isinstance(spec, Actor):
        raise TypeError(f"a child must be an Actor instance, not {spec!r}")
    result = await _ask(supervisor, _StartChild(spec))
    assert result is None or isinstance(result, ActorRef)
    return result


async def terminate_child(supervisor: ActorRef, child: ActorRef | str | Actor) -> None:
    """Have ``supervisor`` stop ``child`` and keep its spec, as OTP's ``terminate_child``.

    ``child`` is a registered name, a ref, or the child's spec (``ChildInfo.spec``); a ref to a
    run that has already ended names nothing (OTP's ``not_found``), never that run's successor.
    The child is stopped as at shutdown (``terminate`` with ``"shutdown"``, cancelled after its
    ``shutdown`` time) and is not restarted: :func:`restart_child` starts it again,
    :func:`delete_child` forgets it. A temporary child, and every child of a
    :class:`DynamicSupervisor`, is forgotten at once. Terminating a child that is not running
    does nothing. Raises ActorError if ``supervisor`` has no such child.

    Example::

        await terminate_child(tree.ref("workers"), worker)
    """
    await _ask(supervisor, _TerminateChild(child))


async def restart_child(supervisor: ActorRef, child: ActorRef | str | Actor) -> ActorRef | None:
    """Start a child that :func:`terminate_child` stopped again, from its spec (OTP's).

    Returns a ref to the new run (None if its ``init`` returned IGNORE). Does not count
    towards the restart intensity. Raises ActorError if the child is running, is unknown, or
    fails to start (its spec is kept), and for a :class:`DynamicSupervisor`.

    Example::

        await terminate_child(tree.root, "mailer")
        ...
        await restart_child(tree.root, "mailer")
    """
    result = await _ask(supervisor, _RestartChild(child))
    assert result is None or isinstance(result, ActorRef)
    return result


async def delete_child(supervisor: ActorRef, child: ActorRef | str | Actor) -> None:
    """Forget the spec of a child that is not running (OTP's ``delete_child``).

    Raises ActorError if the child is running (terminate it first), is unknown, and for a
    :class:`DynamicSupervisor`.

    Example::

        await terminate_child(tree.root, "mailer")
        await delete_child(tree.root, "mailer")
    """
    await _ask(supervisor, _DeleteChild(child))


async def which_children(supervisor: ActorRef) -> list[ChildInfo]:
    """The children of ``supervisor`` in start order, running or not (a DynamicSupervisor
    holds only live ones).

    Answered through the supervisor's mailbox, so it reflects every exit and request that
    reached it earlier; :meth:`Tree.which_children_nowait` reads it synchronously instead.

    Example::

        down = [c.name for c in await which_children(tree.root) if c.ref is None]
    """
    result = await _ask(supervisor, _WhichChildren())
    assert isinstance(result, list)
    return result


async def count_children(supervisor: ActorRef) -> ChildCounts:
    """How many children ``supervisor`` holds, runs, and of which kind (OTP's
    ``count_children``); see :class:`ChildCounts`.

    Example::

        counts = await count_children(tree.ref("workers"))
        print(f"{counts.active} of {counts.specs} running")
    """
    result = await _ask(supervisor, _CountChildren())
    assert isinstance(result, ChildCounts)
    return result


async def _ask(supervisor: ActorRef, request: object) -> Any:
    _supervisor_process(supervisor)
    result = await supervisor.call(request, timeout=None)
    if isinstance(result, _Refused):
        raise result.error
    return result
