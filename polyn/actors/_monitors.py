"""Monitors: one actor watching another's run end (``Actor.monitor``, OTP's ``DOWN``).

The bookkeeping lives on the two processes (:mod:`polyn.actors._process`); these are the values
users hold and receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyn.actors._process import _Process
    from polyn.actors._ref import ActorRef


class Monitor:
    """One actor watching another's run: what :meth:`Actor.monitor
    <polyn.actors.Actor.monitor>` returns, and what the :class:`Down` it causes carries."""

    __slots__ = ("ref", "target", "watcher")

    def __init__(self, watcher: _Process, target: _Process | None, ref: ActorRef) -> None:
        self.watcher = watcher
        self.target = target
        self.ref = ref

    def __repr__(self) -> str:
        return f"<Monitor of {self.ref!r} by actor {self.watcher.label}>"


@dataclass(frozen=True, slots=True)
class Down:
    """The info message a monitor delivers when the run it watches has ended (OTP's ``DOWN``).

    ``ref`` is a ref to the run that ended (it never follows a restart), ``reason`` its exit
    reason (``"normal"``, ``"shutdown"``, the exception that crashed it, ... or ``"noproc"``
    when no actor was running when the monitor was set), ``monitor`` the :class:`Monitor` that
    :meth:`Actor.monitor <polyn.actors.Actor.monitor>` returned.
    """

    ref: ActorRef
    reason: object
    monitor: Monitor
