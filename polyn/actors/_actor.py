"""Actor: the base class of everything that runs in a tree, and its restart types."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import trio

from polyn.actors._key import Key
from polyn.actors._monitors import Monitor
from polyn.actors._process import NORMAL, Caller, _Process
from polyn.actors._timers import Timer
from polyn.errors import ActorError

if TYPE_CHECKING:
    from polyn.actors._ref import ActorRef
    from polyn.actors._tree import Tree

T = TypeVar("T")

_log: Final = logging.getLogger("polyn.actors")

DEFAULT_MAILBOX_SIZE: Final = 100
"""Default bound of a mailbox: deep enough to absorb bursts without a task switch per message,
small enough that a flooded actor pushes back on its senders within a hundred messages."""


class Restart(enum.StrEnum):
    """When a supervisor restarts a child that has exited (OTP's restart types).

    - ``PERMANENT``: always, whatever the exit reason (a normal exit included).
    - ``TRANSIENT``: only after an abnormal exit, that is a crash or a stop with a reason other
      than ``"normal"`` or ``"shutdown"``.
    - ``TEMPORARY``: never; the child is removed from its supervisor when it exits, and also
      when a ``one_for_all`` or ``rest_for_one`` restart of a sibling terminates it.

    Strings work wherever a ``Restart`` is expected: ``restart="transient"``.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Actor:
    """An actor in the style of an Erlang ``gen_server``: state, a mailbox, async callbacks.

    Subclass it and override the callbacks you need; each runs in the actor's own trio task, one
    message at a time, in mailbox order:

    - ``await init()``: runs first. The actor is registered under its name before ``init``
      starts, so messages sent meanwhile wait in the mailbox; its supervisor starts the next
      child only after ``init`` returns. If ``init`` raises, the start fails (the supervisor's
      start fails with an :class:`~polyn.errors.ActorError` naming this child, chained to the
      cause) and ``terminate`` is not called. If it returns :data:`~polyn.actors.IGNORE`
      (OTP's ``ignore``), the actor ends at once without ``terminate``, and its supervisor
      neither counts it as started nor restarts it.
    - ``await handle_call(request)``: for :meth:`ActorRef.call`; its return value is the
      reply. Return :data:`~polyn.actors.NO_REPLY` to answer later through :attr:`caller`
      (OTP's ``{:noreply, ...}`` and ``GenServer.reply/2``). The default raises
      ``NotImplementedError``, which crashes the actor.
    - ``await handle_cast(request)``: for :meth:`ActorRef.cast`. The default raises
      ``NotImplementedError``, which crashes the actor.
    - ``await handle_info(message)``: for :meth:`ActorRef.send`, :meth:`send_after` timers and
      :class:`~polyn.actors.Down` messages of :meth:`monitor`. The default logs the unexpected
      message at WARNING level and goes on.
    - ``await handle_continue(argument)``: runs right after the callback that called
      :meth:`continue_with` (``init`` included), before the next message (OTP's
      ``{:continue, arg}``). The default raises ``NotImplementedError``.
    - ``await terminate(reason)``: runs once when a started actor stops, with the reason:
      ``"normal"`` (it called :meth:`stop`), ``"shutdown"`` (its supervisor or tree stopped it),
      the exception that crashed it, or the reason given to :meth:`stop`. By then the mailbox
      is closed: callers and senders still waiting got :class:`~polyn.errors.ActorError`, and
      the values it provided are withdrawn. The actor's helper tasks are still running (except
      when one of them crashed the actor) and are cancelled after ``terminate`` returns. It
      runs at most once, inside a scope its supervisor cancels when the ``shutdown`` time runs
      out, however the actor is ending (a crash in a callback or in a helper task included).
      It does not run when the actor is cancelled (``shutdown=0``, or a shutdown timeout that
      ran out before it began).

    An exception raised by a callback, or by a helper task started in :attr:`nursery`, crashes
    the actor: the call being handled fails with ActorError at once, ``terminate(exc)`` runs,
    the crash is logged on the ``polyn.actors`` logger (name, reason, traceback), and the
    supervisor applies its restart rules.

    **An instance handed to a supervisor is a spec, never run itself**: every start and restart
    builds a fresh instance from the same constructor arguments (``Actor.__new__`` records
    them), so no state survives a restart. Plain containers among the arguments (exactly
    ``dict``, ``list`` and ``set``, and tuples holding them, at any depth) are copied for each
    start, so a run that mutates one leaves the next run's copy as the spec had it; every other
    object (a channel, a lock, a pool, a callback, an attrs instance, a subclass of ``list``)
    is passed by identity, the same object to every run: that is how to share something with
    every run on purpose. Options, as keyword arguments (passed on by a subclass's
    ``__init__`` to ``super().__init__(**options)``) or as class attributes:

    - ``name``: register the actor under this name in its tree (unique within the tree).
    - ``restart``: a :class:`Restart` type, default ``"permanent"``.
    - ``shutdown``: seconds its supervisor waits for it to stop gracefully before cancelling
      it; ``0`` cancels at once without ``terminate``; ``math.inf`` waits forever (the default
      for supervisors). Default 5.
    - ``mailbox_size``: the mailbox bound, default 100; senders wait while it is full.

    Example::

        class Counter(Actor):
            def __init__(self, start: int = 0, **options: Any) -> None:
                super().__init__(**options)
                self.count = start

            async def handle_cast(self, request: Any) -> None:
                self.count += 1

            async def handle_call(self, request: Any) -> int:
                return self.count

        trio.run(Supervisor([Counter(10, name="counter")]).main)
    """

    name: str | None = None
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    mailbox_size: int = DEFAULT_MAILBOX_SIZE

    _polyn_spec: tuple[tuple[Any, ...], dict[str, Any]]
    _polyn_process: _Process | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        self._polyn_spec = (args, kwargs)
        return self

    def __init__(
        self,
        *,
        name: str | None = None,
        restart: Restart | str | None = None,
        shutdown: float | None = None,
        mailbox_size: int | None = None,
    ) -> None:
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"an actor's name must be a non-empty string, not {name!r}")
            self.name = name
        if restart is not None:
            self.restart = Restart(restart)
        if shutdown is not None:
            if shutdown < 0:
                raise ValueError(f"shutdown must be >= 0 seconds, not {shutdown!r}")
            self.shutdown = shutdown
        if mailbox_size is not None:
            if mailbox_size < 1:
                raise ValueError(f"mailbox_size must be at least 1, not {mailbox_size!r}")
            self.mailbox_size = mailbox_size

    def __repr__(self) -> str:
        args, kwargs = self._polyn_spec
        shown = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- callbacks ---------------------------------------------------------------------------

    async def init(self) -> object:
        """Prepare the actor; runs before any message is handled. Raising fails the start.

        Returns None, or :data:`~polyn.actors.IGNORE` to end at once without being started
        (the supervisor does not restart it).
        """
        return None

    async def handle_call(self, request: Any) -> Any:
        """Answer a :meth:`ActorRef.call`; the return value is the reply."""
        raise NotImplementedError(f"{type(self).__name__} has no handle_call for {request!r}")

    async def handle_cast(self, request: Any) -> None:
        """Handle a :meth:`ActorRef.cast`."""
        raise NotImplementedError(f"{type(self).__name__} has no handle_cast for {request!r}")

    async def handle_continue(self, argument: Any) -> None:
        """Continue work asked for with :meth:`continue_with`, before the next message."""
        raise NotImplementedError(f"{type(self).__name__} has no handle_continue for {argument!r}")

    async def handle_info(self, message: Any) -> None:
        """Handle a :meth:`ActorRef.send`; by default log it as unexpected and go on."""
        _log.warning(
            "actor %s received an unexpected message: %r",
            self._running().label,
            message,
        )

    async def terminate(self, reason: object) -> None:
        """Clean up before the actor stops; ``reason`` says why (see the class docstring)."""

    # -- while running -----------------------------------------------------------------------

    def _running(self) -> _Process:
        process = self._polyn_process
        if process is None:
            raise ActorError(
                f"{self!r} is a spec, not a running actor: its supervisor runs fresh "
                "instances built from it"
            )
        return process

    @property
    def ref(self) -> ActorRef:
        """A ref to this run of the actor (like ``self()`` in Erlang: it never follows a
        restart)."""
        return self._running().ref

    @property
    def tree(self) -> Tree:
        """The tree this actor runs in."""
        return self._running().tree

    @property
    def context(self) -> Mapping[str, Any]:
        """The read-only context mapping of this actor's tree."""
        return self._running().tree.context

    @property
    def nursery(self) -> trio.Nursery:
        """The actor's own nursery, for helper tasks that live and die with this run.

        A helper that raises crashes the actor; when the actor stops, its helpers are
        cancelled after ``terminate`` returns. Only valid from ``init`` until ``terminate``.

        Example::

            async def init(self) -> None:
                self.nursery.start_soon(self._fetch_loop)
        """
        nursery = self._running().nursery
        if nursery is None:
            raise ActorError(f"actor {self._running().label} has stopped")
        return nursery

    def stop(self, reason: object = NORMAL) -> None:
        """Stop this actor once the current callback returns (a reply it returns is sent).

        ``"normal"`` (the default), ``"shutdown"`` and ``("shutdown", detail)`` (Elixir's
        ``{:shutdown, term}``) are normal exits: a transient child is not restarted and nothing
        is logged. Any other reason is an abnormal exit. Messages still in the mailbox are not
        handled; their callers get ActorError. Called from ``init``, the actor stops right
        after ``init`` returns.
        """
        self._running().request_stop(reason)

    @property
    def caller(self) -> Caller:
        """The :class:`~polyn.actors.Caller` of the call being handled, to answer it later.

        Only valid inside ``handle_call`` (else :class:`~polyn.errors.ActorError`). Keep it,
        return :data:`~polyn.actors.NO_REPLY`, and call ``caller.reply(value)`` when the answer
        is ready, from any callback or helper task of this run.

        Example::

            async def handle_call(self, request):
                caller = self.caller
                self.nursery.start_soon(self._answer, caller, request)
                return NO_REPLY      # the actor goes on with its mailbox meanwhile

            async def _answer(self, caller, request):
                caller.reply(await slow_lookup(request))
        """
        return self._running().caller()

    def continue_with(self, argument: Any) -> None:
        """Run ``handle_continue(argument)`` right after the current callback, before the next
        message (OTP's ``{:continue, arg}``).

        Typically from ``init``, so that slow set-up runs after the supervisor has moved on
        but before any message is handled. One may be pending at a time
        (:class:`~polyn.errors.ActorError` otherwise); ``handle_continue`` may ask for the next.
        Only valid in the actor's own callbacks, not in its helper tasks.

        Example::

            async def init(self):
                self.continue_with("load")

            async def handle_continue(self, argument):
                self.cache = await load_everything()
        """
        self._running().continue_with(argument)

    def send_after(self, delay: float, message: Any) -> Timer:
        """Send ``message`` to this actor's ``handle_info`` after ``delay`` seconds.

        On trio's clock, so ``trio.testing.MockClock`` drives it. The timer belongs to this run:
        it never fires into a restarted instance. Timer messages never wait for room in the
        mailbox. Returns a :class:`~polyn.actors.Timer` for :meth:`cancel_timer`.

        Example::

            async def init(self):
                self.send_after(30, "tick")

            async def handle_info(self, message):
                if message == "tick":
                    await self.flush()
                    self.send_after(30, "tick")
        """
        return self._running().send_after(delay, message)

    def cancel_timer(self, timer: Timer) -> bool:
        """Cancel ``timer``; True if it had not fired yet.

        As with ``erlang:cancel_timer``, a timer that has already fired is not taken back: its
        message may be in the mailbox, and will be handled.
        """
        if not timer.pending:
            return False
        timer.pending = False
        return True

    def monitor(self, ref: ActorRef) -> Monitor:
        """Watch the run ``ref`` reaches now: when it ends, this actor gets a
        :class:`~polyn.actors.Down` info message.

        A ref by name is resolved once, now (as Erlang's monitor of a registered name): the
        monitor watches that run, not its successors. If no actor runs, ``Down`` with reason
        ``"noproc"`` arrives at once. Monitors end with the watching run, or by
        :meth:`demonitor`.

        Example::

            async def init(self):
                self.watch = self.monitor(self.tree.ref("nats"))

            async def handle_info(self, message):
                if isinstance(message, Down) and message.monitor is self.watch:
                    self.stop(("shutdown", "the connection ended"))
        """
        process = self._running()
        target = ref._resolve_or_none()
        return process.monitor(target, ref if target is None else target.ref)

    def demonitor(self, monitor: Monitor) -> bool:
        """Stop ``monitor``; True if it was active. A ``Down`` already delivered stays."""
        return self._running().demonitor(monitor)

    def provide(self, key: Key[T], value: T) -> None:
        """Publish ``value`` under ``key`` for others to read without a mailbox hop.

        Readers use :meth:`Tree.lookup <polyn.actors.Tree.lookup>`, :meth:`Tree.require
        <polyn.actors.Tree.require>` or :meth:`ActorRef.lookup
        <polyn.actors.ActorRef.lookup>`: two dict lookups, cheap enough for every message a
        caller publishes. A later ``provide`` replaces the value; everything this run provided
        is withdrawn when it ends (its mailbox closes), so after a restart readers find the
        successor's value once it provides one, and None meanwhile. Raises ``TypeError`` when
        ``value`` is not an instance of the key's class.

        Example::

            TRANSPORT: Final = Key[Transport]("transport")

            async def init(self):
                self.transport = await connect()
                self.provide(TRANSPORT, self.transport)
        """
        self._running().provide(key, value)

    # -- runtime hooks -----------------------------------------------------------------------

    def _polyn_fresh(self) -> Self:
        args, kwargs = self._polyn_spec
        return type(self)(*map(_fresh, args), **{key: _fresh(v) for key, v in kwargs.items()})

    async def _polyn_child_exit(self, child: _Process) -> None:
        """A child spawned by this actor finished; only supervisors spawn children."""


def _fresh(value: Any) -> Any:
    """``value`` with every plain container in it copied (see the Actor docstring)."""
    kind = type(value)
    if kind is dict:
        return {key: _fresh(item) for key, item in value.items()}
    if kind is list:
        return [_fresh(item) for item in value]
    if kind is set:
        return set(value)  # members are hashable, so not containers to copy
    if kind is tuple:
        items = tuple(_fresh(item) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
