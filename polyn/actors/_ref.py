"""ActorRef: how anyone talks to an actor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from polyn.actors._key import Key
from polyn.actors._process import _CAST, _INFO, _Process
from polyn.errors import ActorError

if TYPE_CHECKING:
    from polyn.actors._actor import Actor
    from polyn.actors._tree import Tree

T = TypeVar("T")


class ActorRef:
    """A reference to an actor: ``call``, ``cast`` and ``send`` go through its mailbox.

    A ref comes in two kinds, as in Erlang, and both behave the same way once resolved:

    - a ref **by name** (from :meth:`Tree.whereis`, :meth:`Tree.ref` or
      :func:`~polyn.actors.whereis`) looks the name up in its tree at every use, so it follows
      the registered actor across restarts; while no actor holds the name (between a crash and
      the restart, say), every operation raises :class:`~polyn.errors.ActorError` at once;
    - a ref **to one run** of an actor (``self.ref`` inside the actor, the ref that
      :func:`~polyn.actors.start_child` returns) is like a pid: it never reaches a restarted
      instance, and raises :class:`~polyn.errors.ActorError` once that run has stopped.

    Every operation waits while the mailbox is full (backpressure), never drops a message, and
    raises :class:`~polyn.errors.ActorError` if the actor is not running. Messages already in
    the mailbox when an actor stops are discarded; the callers among them get ActorError. Each
    ``call``, ``cast`` and ``send`` ends in exactly one outcome for its sender, whatever the
    number of senders waiting and whatever happens to the actor meanwhile.

    :meth:`lookup` and :meth:`require` read what the actor publishes with
    :meth:`Actor.provide <polyn.actors.Actor.provide>`, without a mailbox hop.

    Example::

        counter = tree.ref("counter")
        await counter.cast("bump")
        assert await counter.call("get", timeout=1) == 1
    """

    __slots__ = ("_name", "_process", "_tree")

    _tree: Tree
    _name: str | None  # always a str when _process is None
    _process: _Process | None

    def __init__(self) -> None:
        raise TypeError("ActorRef objects come from a tree, a supervisor or an actor's .ref")

    @classmethod
    def _for_process(cls, process: _Process) -> ActorRef:
        ref = object.__new__(cls)
        ref._tree = process.tree
        ref._name = process.name
        ref._process = process
        return ref

    @classmethod
    def _for_name(cls, tree: Tree, name: str) -> ActorRef:
        ref = object.__new__(cls)
        ref._tree = tree
        ref._name = name
        ref._process = None
        return ref

    def _resolve(self) -> _Process:
        process = self._process
        if process is None:
            process = self._tree._names.get(self._name)  # type: ignore[arg-type]
            if process is None:
                raise ActorError(self._tree._unknown(self._name))  # type: ignore[arg-type]
        return process

    def _resolve_or_none(self) -> _Process | None:
        process = self._process
        if process is None:
            return self._tree._names.get(self._name)  # type: ignore[arg-type]
        return process

    @property
    def name(self) -> str | None:
        """The name this ref follows, or the registered name of the run it points to."""
        return self._name

    @property
    def tree(self) -> Tree:
        """The tree the actor runs in."""
        return self._tree

    @property
    def context(self) -> Mapping[str, Any]:
        """The read-only context mapping of the actor's tree."""
        return self._tree.context

    @property
    def alive(self) -> bool:
        """Whether an operation would reach a running actor now."""
        process = self._process
        if process is None:
            process = self._tree._names.get(self._name)  # type: ignore[arg-type]
        return process is not None and not process.closed

    def running_actor(self) -> Actor:
        """The actor instance running now (after a restart, the new one).

        For the actors layer and tests only: code elsewhere finds what an actor offers through
        :meth:`lookup` and a :class:`~polyn.actors.Key`, which is typed and survives restarts
        without holding on to an old instance. Read public attributes only; send messages to
        change anything. Raises :class:`~polyn.errors.ActorError` when no actor runs.
        """
        process = self._resolve()
        if process.closed or process.finished:
            raise ActorError(f"actor {process.label} is not running")
        return process.actor

    def lookup(self, key: Key[T]) -> T | None:
        """The value the actor provides under ``key`` now, or None (none running, none provided).

        No mailbox hop: cheap enough for every message. See :meth:`Actor.provide
        <polyn.actors.Actor.provide>`.
        """
        process = self._process
        if process is None:
            process = self._tree._names.get(self._name)  # type: ignore[arg-type]
            if process is None:
                return None
        values = process.values
        if values is None:
            return None
        return values.get(key)

    def require(self, key: Key[T]) -> T:
        """Like :meth:`lookup`, but raises :class:`~polyn.errors.ActorError` naming the actor
        and the key when there is no value."""
        value = self.lookup(key)
        if value is None:
            raise ActorError(_missing(self._resolve_or_none(), self._name, key))
        return value

    async def call(self, request: Any, timeout: float | None = 5) -> Any:
        """Send ``request`` to ``handle_call`` and return its return value.

        Waits at most ``timeout`` seconds in all (``None``: no limit), including the wait for
        room in a full mailbox, then raises :class:`~polyn.errors.CallTimeout` (a
        ``TimeoutError``). The actor is not affected by a timeout: it still handles the request
        and its late reply is discarded. Raises :class:`~polyn.errors.ActorError` at once if the
        actor is not running, or as soon as it stops or crashes before replying (chained to the
        crash), including while the call waits for room. Calling yourself raises ActorError
        instead of waiting forever. Exactly one of these ends every call, however many callers
        wait.
        """
        return await self._resolve().call(request, timeout)

    async def cast(self, request: Any, *, timeout: float | None = None) -> None:
        """Queue ``request`` for ``handle_cast`` and return without waiting for it.

        Waits only while the mailbox is full: at most ``timeout`` seconds if given, then raises
        :class:`~polyn.errors.CallTimeout` and the message is not queued. Raises
        :class:`~polyn.errors.ActorError` if the actor is not running, or stops while the cast
        waits for room (unlike Erlang's cast, which drops it silently). Once ``cast`` has
        returned, the message is in the mailbox: the actor handles it unless its run ends first.
        """
        await self._resolve().put((_CAST, request, None), timeout)

    async def send(self, message: Any, *, timeout: float | None = None) -> None:
        """Queue ``message`` for ``handle_info`` (Erlang's ``!``); otherwise like :meth:`cast`."""
        await self._resolve().put((_INFO, message, None), timeout)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        if self._process is not None or other._process is not None:
            return self._process is other._process
        return self._tree is other._tree and self._name == other._name

    def __hash__(self) -> int:
        if self._process is not None:
            return hash(self._process)
        return hash((id(self._tree), self._name))

    def __repr__(self) -> str:
        if self._process is None:
            return f"<ActorRef name={self._name!r}>"
        state = "stopped" if self._process.finished else "running"
        return f"<ActorRef {self._process.label} {state}>"


def _missing(process: _Process | None, name: str | None, key: Key[Any]) -> str:
    if process is None or process.closed:
        who = f"actor {process.label}" if process is not None else f"actor {name!r}"
        return f"{who} is not running, so nothing is provided under {key!r}"
    return f"actor {process.label} provides nothing under {key!r}"
