"""Timers: messages an actor sends itself later, on trio's clock (``Actor.send_after``)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import trio


class Timer:
    """A message an actor sends itself later: what :meth:`Actor.send_after
    <polyn.actors.Actor.send_after>` returns, for :meth:`Actor.cancel_timer
    <polyn.actors.Actor.cancel_timer>`."""

    __slots__ = ("deadline", "message", "pending")

    def __init__(self, deadline: float, message: Any) -> None:
        self.deadline = deadline
        self.message = message
        self.pending = True

    def __repr__(self) -> str:
        state = "pending" if self.pending else "done"
        return f"<Timer at {self.deadline:.3f} {state} message={self.message!r}>"


class _Timers:
    """An actor's timers: a heap on trio's clock, served by one helper task started lazily."""

    __slots__ = ("heap", "scope", "seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Timer]] = []
        self.scope: trio.CancelScope | None = None
        self.seq = 0

    def add(self, timer: Timer) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (timer.deadline, self.seq, timer))
        scope = self.scope
        if scope is not None and timer.deadline < scope.deadline:
            scope.deadline = timer.deadline

    async def serve(self, deliver: Callable[[Any], None]) -> None:
        heap = self.heap
        while True:
            while heap and not heap[0][2].pending:
                heapq.heappop(heap)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self.scope = scope
                await trio.sleep_forever()
            self.scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                timer = heapq.heappop(heap)[2]
                if timer.pending:
                    timer.pending = False
                    deliver(timer.message)
