"""Polyn's actor runtime: OTP's actors and supervisors on trio (layer 1, usable on its own).

An :class:`Actor` is a ``gen_server``: async callbacks ``init``, ``handle_call``,
``handle_cast``, ``handle_info``, ``handle_continue`` and ``terminate``, run one message at a
time in the actor's own trio task, fed by a **bounded** mailbox (senders wait while it is full;
nothing is dropped). Talk to it through an :class:`ActorRef`: ``await ref.call(request,
timeout=5)``, ``await ref.cast(request)``, ``await ref.send(message)``. Every one of them ends in
exactly one outcome for its sender (the reply, ``ActorError`` or ``CallTimeout``) however many
senders wait and whatever happens to the actor meanwhile.

A :class:`Supervisor` starts its children in order and restarts them by their
:class:`Restart` type and its :class:`Strategy`, within a restart intensity
(``max_restarts`` in ``max_seconds``) counted per supervisor; past it, it stops its children and
exits with ``("shutdown", error)``, as OTP's ``shutdown``. :class:`DynamicSupervisor` (or
:func:`start_child` on any supervisor) adds children at run time; :func:`terminate_child`,
:func:`restart_child`, :func:`delete_child`, :func:`which_children` and :func:`count_children`
are OTP's. An actor instance given to a supervisor is a spec: each start builds a fresh instance
from the same constructor arguments (plain ``dict`` / ``list`` / ``set`` arguments copied, other
objects shared).

The OTP pieces: deferred replies (``handle_call`` returns :data:`NO_REPLY`, and
:attr:`Actor.caller` gives the :class:`Caller` to answer later), ``handle_continue``
(:meth:`Actor.continue_with`), timers on trio's clock (:meth:`Actor.send_after` returns a
:class:`Timer`), monitors (:meth:`Actor.monitor` returns a :class:`Monitor`; a :class:`Down`
message follows), and ``init`` returning :data:`IGNORE`.

A running tree has a name registry, a read-only ``context`` mapping and **typed values**, all
scoped to the tree: :meth:`Supervisor.run` yields its :class:`Tree` handle, :func:`current_tree`
and :func:`whereis` find it from inside. An actor publishes what others use directly under a
:class:`Key` with :meth:`Actor.provide`; anyone finds it with :meth:`Tree.lookup` /
:meth:`Tree.require` or :meth:`ActorRef.lookup` (and a tree-wide value, made once, with
:meth:`Tree.cached`): typed for mypy, checked with ``isinstance``
when the key's type is a class, two dict reads (no mailbox hop), withdrawn when the run that
provided it ends. This is how code above this layer finds a transport or a snapshot, instead of
``getattr`` on another actor's instance; :meth:`ActorRef.running_actor` remains for this layer
and for tests. Synchronous code (a health check) reads a supervisor's children with
:meth:`Tree.which_children_nowait` / :meth:`Tree.count_children_nowait` and waits for a tree
with :meth:`Tree.wait_finished`.

Example::

    import trio
    from polyn.actors import Actor, Key, Supervisor

    TOTAL = Key("total", int)

    class Counter(Actor):
        def __init__(self, **options):
            super().__init__(**options)
            self.count = 0

        async def init(self):
            self.provide(TOTAL, 0)

        async def handle_cast(self, request):
            self.count += 1
            self.provide(TOTAL, self.count)

        async def handle_call(self, request):
            return self.count

    async def main():
        async with Supervisor([Counter(name="counter")]).run() as tree:
            counter = tree.ref("counter")
            await counter.cast("bump")
            assert await counter.call("get") == 1
            assert tree.require("counter", TOTAL) == 1

    trio.run(main)

Decisions where OTP and Python differ are written down in ``docs/explanation/actors.md``
("Where Python and OTP differ") and in the docstrings: casting to a stopped actor raises
ActorError instead of vanishing; a failed call or cast never crashes the caller; mailboxes are
bounded; a supervisor that gives up exits with ``("shutdown", error)``.
"""

from __future__ import annotations

from polyn.actors._actor import DEFAULT_MAILBOX_SIZE, Actor, Restart
from polyn.actors._key import Key
from polyn.actors._monitors import Down, Monitor
from polyn.actors._process import IGNORE, NO_REPLY, Caller
from polyn.actors._ref import ActorRef
from polyn.actors._supervisor import (
    ChildCounts,
    ChildInfo,
    DynamicSupervisor,
    Strategy,
    Supervisor,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from polyn.actors._timers import Timer
from polyn.actors._tree import Tree, current_tree, whereis

__all__ = [
    "DEFAULT_MAILBOX_SIZE",
    "IGNORE",
    "NO_REPLY",
    "Actor",
    "ActorRef",
    "Caller",
    "ChildCounts",
    "ChildInfo",
    "Down",
    "DynamicSupervisor",
    "Key",
    "Monitor",
    "Restart",
    "Strategy",
    "Supervisor",
    "Timer",
    "Tree",
    "count_children",
    "current_tree",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "whereis",
    "which_children",
]

# Reprs and tracebacks show the public path, as trio's names do.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        if _value.__module__.startswith("polyn.actors._"):
            _value.__module__ = __name__
del _name, _value
