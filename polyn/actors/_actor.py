"""Actor: the base class of everything that runs in a tree, and its restart types."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Self

import trio

from polyn.actors._process import NORMAL, _Process
from polyn.errors import ActorError

if TYPE_CHECKING:
    from polyn.actors._ref import ActorRef
    from polyn.actors._tree import Tree

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
      cause) and ``terminate`` is not called.
    - ``await handle_call(request)``: for :meth:`ActorRef.call`; its return value is the
      reply. The default raises ``NotImplementedError``, which crashes the actor.
    - ``await handle_cast(request)``: for :meth:`ActorRef.cast`. The default raises
      ``NotImplementedError``, which crashes the actor.
    - ``await handle_info(message)``: for :meth:`ActorRef.send`. The default logs the
      unexpected message at WARNING level and goes on.
    - ``await terminate(reason)``: runs once when a started actor stops, with the reason:
      ``"normal"`` (it called :meth:`stop`), ``"shutdown"`` (its supervisor or tree stopped it),
      the exception that crashed it, or the reason given to :meth:`stop`. By then the mailbox
      is closed: callers still waiting got :class:`~polyn.errors.ActorError`. The actor's
      helper tasks are still running (except when one of them crashed the actor) and are
      cancelled after ``terminate`` returns. It does not run when the actor is cancelled
      (``shutdown=0``, or a shutdown timeout that ran out).

    An exception raised by a callback, or by a helper task started in :attr:`nursery`, crashes
    the actor: the call being handled fails with ActorError at once, ``terminate(exc)`` runs,
    the crash is logged on the ``polyn.actors`` logger (name, reason, traceback), and the
    supervisor applies its restart rules.

    **An instance handed to a supervisor is a spec, never run itself**: every start and restart
    builds a fresh instance from the same constructor arguments (``Actor.__new__`` records
    them), so no state survives a restart. Options, as keyword arguments (passed on by a
    subclass's ``__init__`` to ``super().__init__(**options)``) or as class attributes:

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

    async def init(self) -> None:
        """Prepare the actor; runs before any message is handled. Raising fails the start."""

    async def handle_call(self, request: Any) -> Any:
        """Answer a :meth:`ActorRef.call`; the return value is the reply."""
        raise NotImplementedError(f"{type(self).__name__} has no handle_call for {request!r}")

    async def handle_cast(self, request: Any) -> None:
        """Handle a :meth:`ActorRef.cast`."""
        raise NotImplementedError(f"{type(self).__name__} has no handle_cast for {request!r}")

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

        ``"normal"`` (the default) and ``"shutdown"`` are normal exits: a transient child is
        not restarted and nothing is logged. Any other reason is an abnormal exit. Messages
        still in the mailbox are not handled; their callers get ActorError. Called from
        ``init``, the actor stops right after ``init`` returns.
        """
        self._running().request_stop(reason)

    # -- runtime hooks -----------------------------------------------------------------------

    def _polyn_fresh(self) -> Self:
        args, kwargs = self._polyn_spec
        return type(self)(*args, **kwargs)

    async def _polyn_child_exit(self, child: _Process) -> None:
        """A child spawned by this actor finished; only supervisors spawn children."""
