"""What an idle actor costs: the runtime promises at most 5 KB each, specs included."""

from __future__ import annotations

import gc
import tracemalloc

from polyn.actors import Actor, Supervisor

BUDGET = 5 * 1024
COUNT = 2_000


async def test_an_idle_actor_under_a_supervisor_holds_at_most_5_kb() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        async with Supervisor([Actor() for _ in range(COUNT)]).run():
            gc.collect()
            per_actor = (tracemalloc.get_traced_memory()[0] - baseline) / COUNT
    finally:
        tracemalloc.stop()
    assert per_actor <= BUDGET, f"{per_actor:.0f} bytes per idle actor"
