"""A running tree: its name registry and read-only context, and how code finds its own tree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from polyn.errors import ActorError

if TYPE_CHECKING:
    from polyn.actors._actor import Actor
    from polyn.actors._key import Key
    from polyn.actors._process import _Process
    from polyn.actors._ref import ActorRef
    from polyn.actors._supervisor import ChildCounts, ChildInfo, Supervisor

T = TypeVar("T")

# Set in the root actor's task only. Trio copies the spawning task's contextvars into every new
# task, and every actor is spawned by its supervisor's task (helpers by their actor's task), so
# the whole tree inherits it and nothing outside the tree sees it.
_current: Final[ContextVar[Tree | None]] = ContextVar("polyn.actors.tree", default=None)


class Tree:
    """A running supervision tree, and the handle its starter gets back.

    :meth:`Supervisor.run() <polyn.actors.Supervisor.run>` yields one; inside the tree,
    :func:`current_tree` and every actor's :attr:`~polyn.actors.Actor.tree` return the same
    object. It holds the tree's name registry (names never leak between trees, so two trees in
    one process, say two tests, never see each other's actors), the read-only ``context``
    mapping given by whoever started the tree, and the typed values its actors provide
    (:meth:`lookup`, :meth:`require`). The root supervisor's children are managed and inspected
    through it as through :func:`~polyn.actors.start_child` and its siblings, and synchronously
    with :meth:`which_children_nowait` / :meth:`count_children_nowait`.

    Example::

        async with Supervisor([Counter(name="counter")]).run(context={"env": "test"}) as tree:
            await tree.ref("counter").cast("bump")
            assert tree.context["env"] == "test"
    """

    __slots__ = ("_cache", "_context", "_names", "_root", "_seq")

    def __init__(self, context: Mapping[str, Any] | None = None) -> None:
        self._context: Mapping[str, Any] = MappingProxyType(dict(context or {}))
        self._cache: dict[Key[Any], Any] = {}
        self._names: dict[str, _Process] = {}
        self._root: _Process | None = None
        self._seq = 0

    def __repr__(self) -> str:
        root = "not started" if self._root is None else self._root.label
        return f"<Tree root={root} names={len(self._names)}>"

    @property
    def context(self) -> Mapping[str, Any]:
        """The read-only mapping given when the tree was started (empty if none was)."""
        return self._context

    @property
    def root(self) -> ActorRef:
        """A ref to the tree's root supervisor (the very process, not its name)."""
        if self._root is None:
            raise ActorError("the tree has not started yet")
        return self._root.ref

    @property
    def running(self) -> bool:
        """Whether the root is still running."""
        return self._root is not None and not self._root.finished

    def whereis(self, name: str) -> ActorRef | None:
        """A ref following the actor registered as ``name``, or None if none runs now.

        The ref resolves the name again at every use, so it reaches the actor across restarts.
        """
        if name not in self._names:
            return None
        from polyn.actors._ref import ActorRef

        return ActorRef._for_name(self, name)

    def ref(self, name: str) -> ActorRef:
        """Like :meth:`whereis`, but raises :class:`~polyn.errors.ActorError` if none runs now."""
        ref = self.whereis(name)
        if ref is None:
            raise ActorError(self._unknown(name))
        return ref

    def lookup(self, name: str, key: Key[T]) -> T | None:
        """What the actor registered as ``name`` provides under ``key`` now, else None.

        Two dict lookups, no mailbox hop: cheap enough for every message. None while no actor
        holds the name (between a crash and its restart, say) or before it has provided a value.
        See :meth:`Actor.provide <polyn.actors.Actor.provide>`.

        Example::

            transport = tree.lookup("nats", TRANSPORT)
            if transport is not None:
                await transport.publish(subject, body)
        """
        process = self._names.get(name)
        if process is None:
            return None
        values = process.values
        if values is None:
            return None
        return values.get(key)

    def require(self, name: str, key: Key[T]) -> T:
        """Like :meth:`lookup`, but raises :class:`~polyn.errors.ActorError` naming the actor and
        the key when there is no value."""
        value = self.lookup(name, key)
        if value is None:
            process = self._names.get(name)
            if process is None or process.closed:
                raise ActorError(
                    f"no actor named {name!r} is running in this tree, "
                    f"so nothing is provided under {key!r}"
                )
            raise ActorError(f"actor {process.label} provides nothing under {key!r}")
        return value

    def cached(self, key: Key[T], make: Callable[[], T]) -> T:
        """The tree-wide value under ``key``: ``make()`` the first time, the same value after.

        For what belongs to the tree as a whole rather than to one actor (``polyn.Config``
        loaded once per tree when its context has none). It lives as long as the tree handle;
        when ``make`` raises, nothing is stored and the next call tries again. The value is
        checked against the key's type as :meth:`Actor.provide <polyn.actors.Actor.provide>`
        checks it.

        Example::

            LOADED = Key("loaded config", Config)
            config = tree.cached(LOADED, Config.load)
        """
        try:
            found: T = self._cache[key]
        except KeyError:
            found = self._cache[key] = key.checked(make(), "tree cache")
        return found

    async def wait_finished(self) -> None:
        """Wait until the tree's root, and so every actor of the tree, has finished."""
        root = self._root
        if root is None:
            raise ActorError("the tree has not started yet")
        await root.wait_finished()

    async def start_child(
        self, spec: Actor, *, supervisor: ActorRef | str | None = None
    ) -> ActorRef | None:
        """Start ``spec`` under ``supervisor`` (the root by default); see :func:`start_child`."""
        from polyn.actors._supervisor import start_child

        return await start_child(self._supervisor(supervisor), spec)

    async def terminate_child(
        self, child: ActorRef | str | Actor, *, supervisor: ActorRef | str | None = None
    ) -> None:
        """Stop ``child`` of ``supervisor`` (the root by default); see :func:`terminate_child`."""
        from polyn.actors._supervisor import terminate_child

        await terminate_child(self._supervisor(supervisor), child)

    async def restart_child(
        self, child: ActorRef | str | Actor, *, supervisor: ActorRef | str | None = None
    ) -> ActorRef | None:
        """Start a terminated ``child`` again from its spec; see :func:`restart_child`."""
        from polyn.actors._supervisor import restart_child

        return await restart_child(self._supervisor(supervisor), child)

    async def delete_child(
        self, child: ActorRef | str | Actor, *, supervisor: ActorRef | str | None = None
    ) -> None:
        """Forget a terminated ``child`` and its spec; see :func:`delete_child`."""
        from polyn.actors._supervisor import delete_child

        await delete_child(self._supervisor(supervisor), child)

    async def which_children(self, *, supervisor: ActorRef | str | None = None) -> list[ChildInfo]:
        """The children of ``supervisor`` (the root by default); see :func:`which_children`."""
        from polyn.actors._supervisor import which_children

        return await which_children(self._supervisor(supervisor))

    async def count_children(self, *, supervisor: ActorRef | str | None = None) -> ChildCounts:
        """How many children ``supervisor`` has; see :func:`count_children`."""
        from polyn.actors._supervisor import count_children

        return await count_children(self._supervisor(supervisor))

    def which_children_nowait(self, *, supervisor: ActorRef | str | None = None) -> list[ChildInfo]:
        """:meth:`which_children` read now, synchronously, without a mailbox hop.

        For health checks and other synchronous code. What it shows is the supervisor's state
        at this instant: a restart in progress, and exits still in the supervisor's mailbox,
        show as they are (an ended child may still have a ``ref`` whose ``alive`` is False),
        where :meth:`which_children` answers after every earlier message was handled.
        """
        return self._supervisor_actor(supervisor)._which_children()

    def count_children_nowait(self, *, supervisor: ActorRef | str | None = None) -> ChildCounts:
        """:meth:`count_children` read now, synchronously (see :meth:`which_children_nowait`).

        ``active`` counts the children whose run is alive at this instant, so
        ``counts.active == counts.specs`` says "every child is running".

        Example::

            def healthy(tree):
                counts = tree.count_children_nowait()
                return tree.running and counts.active == counts.specs
        """
        return self._supervisor_actor(supervisor)._count_children()

    async def stop(self) -> None:
        """Stop the whole tree gracefully (children in reverse start order).

        From outside the tree, waits until every actor has finished. From inside (an actor
        stopping its own tree), only asks for the stop and returns: waiting would mean waiting
        for the caller itself.
        """
        root = self._root
        if root is None:
            return
        if _current.get() is self:
            root.stopped_by_parent = True
            root.request_stop("shutdown")
            await trio.lowlevel.checkpoint()
        else:
            await root.shutdown(root.actor.shutdown)

    def _supervisor(self, supervisor: ActorRef | str | None) -> ActorRef:
        if supervisor is None:
            return self.root
        if isinstance(supervisor, str):
            return self.ref(supervisor)
        return supervisor

    def _supervisor_actor(self, supervisor: ActorRef | str | None) -> Supervisor:
        from polyn.actors._supervisor import Supervisor

        process = self._supervisor(supervisor)._resolve()
        actor = process.actor
        if not isinstance(actor, Supervisor):
            raise ActorError(f"actor {process.label} is not a supervisor")
        return actor

    def _unknown(self, name: str) -> str:
        return f"no actor named {name!r} is running in this tree"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _register(self, process: _Process) -> None:
        name = process.name
        if name is None:
            return
        if name in self._names:
            raise ActorError(
                f"the name {name!r} is already taken in this tree "
                f"by {self._names[name].actor!r}; names are unique within a tree"
            )
        self._names[name] = process

    def _unregister(self, process: _Process) -> None:
        name = process.name
        if name is not None and self._names.get(name) is process:
            del self._names[name]


def current_tree() -> Tree | None:
    """The tree the calling task runs in, or None outside any tree.

    Every actor of a tree, and every task an actor spawns, sees its tree; code outside uses the
    handle that :meth:`Supervisor.run() <polyn.actors.Supervisor.run>` returned.

    Example::

        tree = current_tree()
        env = tree.context.get("env") if tree is not None else None
    """
    return _current.get()


def whereis(name: str) -> ActorRef | None:
    """Find the actor registered as ``name`` in the calling task's tree; None if none runs.

    Raises :class:`~polyn.errors.ActorError` when called outside any tree (use the tree's
    handle there). The ref returned follows the name across restarts.

    Example::

        nats = whereis("nats")
        if nats is not None:
            await nats.cast("ping")
    """
    tree = _current.get()
    if tree is None:
        raise ActorError(
            f"whereis({name!r}) was called outside a running tree; "
            "use the handle returned by Supervisor.run() instead"
        )
    return tree.whereis(name)
