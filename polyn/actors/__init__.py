"""Polyn's actor runtime: OTP's actors and supervisors on trio (layer 1, usable on its own).

An :class:`Actor` is a ``gen_server``: async callbacks ``init``, ``handle_call``,
``handle_cast``, ``handle_info`` and ``terminate``, run one message at a time in the actor's own
trio task, fed by a **bounded** mailbox (senders wait while it is full; nothing is dropped).
Talk to it through an :class:`ActorRef`: ``await ref.call(request, timeout=5)``,
``await ref.cast(request)``, ``await ref.send(message)``.

A :class:`Supervisor` starts its children in order and restarts them by their
:class:`Restart` type and its :class:`Strategy`, within a restart intensity
(``max_restarts`` in ``max_seconds``) counted per supervisor; past it, it stops its children and
fails to its own supervisor. :class:`DynamicSupervisor` (or :func:`start_child` on any
supervisor) adds children at run time. An actor instance given to a supervisor is a spec: each
start builds a fresh instance from the same constructor arguments.

A running tree has a name registry and a read-only ``context`` mapping, both scoped to the tree:
:meth:`Supervisor.run` yields its :class:`Tree` handle, :func:`current_tree` and
:func:`whereis` find it from inside.

Example::

    import trio
    from polyn.actors import Actor, Supervisor

    class Counter(Actor):
        def __init__(self, **options):
            super().__init__(**options)
            self.count = 0

        async def handle_cast(self, request):
            self.count += 1

        async def handle_call(self, request):
            return self.count

    async def main():
        async with Supervisor([Counter(name="counter")]).run() as tree:
            counter = tree.ref("counter")
            await counter.cast("bump")
            assert await counter.call("get") == 1

    trio.run(main)

Decisions where OTP and Python differ are written down in the README ("Actors") and in the
docstrings: casting to a stopped actor raises ActorError instead of vanishing; a failed call or
cast never crashes the caller; ``terminate_child`` forgets the child's spec.
"""

from __future__ import annotations

from polyn.actors._actor import DEFAULT_MAILBOX_SIZE, Actor, Restart
from polyn.actors._process import IGNORE, NO_REPLY, Caller, Down, Key, Monitor, Timer
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
