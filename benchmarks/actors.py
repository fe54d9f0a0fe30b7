"""Actor runtime: polyn.actors against triotp 0.3 on the same work, in one process.

Run by hand (not part of the tests or CI). triotp 0.3 needs Python >= 3.13, so use a separate
virtual environment::

    python3.13 -m venv /tmp/bench313
    /tmp/bench313/bin/pip install trio attrs triotp -e .
    /tmp/bench313/bin/python benchmarks/actors.py

Without triotp installed, only Polyn's figures are printed. Tracing is not involved. Crash logs
go to null handlers in both runtimes (stdlib logging for Polyn, logbook for triotp), so the
figures measure the runtimes, not a terminal. Each figure is the best of three runs.

Old against new, interleaved (the way the issues ask for a before/after)::

    git worktree add /tmp/polyn-old b76c8d8
    python benchmarks/actors.py --against /tmp/polyn-old --rounds 7

runs this script's figures in fresh processes, alternating the old checkout (``PYTHONPATH``
pointing at it) and this one, in ABBA order so that drift on a shared machine falls on both,
and prints the median of each figure and the ratio new/old. ``--json`` prints one process's
figures (one run each) and is what the comparison runs. ``--cpu`` times with the process's CPU
time instead of the wall clock: on a machine shared with other work, wall time mostly measures
the neighbours.

- cast: one task casts N messages to one server (by registered name), then one call waits until
  all are handled; messages per second.
- call: one task makes N sequential calls (by name); round trips per second.
- crash -> restart: a supervised server crashes in ``handle_cast``; time from the cast that
  crashes it to the end of its successor's ``init``; mean over K crashes (intensity set high).
- 10,000 idle servers under one supervisor: time from building the specs until every ``init``
  has run, and the memory held afterwards (tracemalloc, run separately from the timing), per
  server, specs and supervisor bookkeeping included.
- contended call (Polyn only): 100 tasks call one server whose mailbox holds 8, so most callers
  wait for room before they wait for their reply; round trips per second over all callers. A
  round in which any caller did not get its own reply is reported as 0 (the runtime before
  issue 16 lost replies here).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from polyn.actors import Actor, Supervisor

# The clock of every figure: wall time, or with --cpu the process's CPU time, which a machine
# shared with other work disturbs much less (the old/new comparison passes it on).
_now = time.process_time if "--cpu" in sys.argv else time.perf_counter

CASTS = 200_000
CALLS = 20_000
CRASHES = 2_000
IDLE = 10_000
CONTENDERS = 100
CONTENDED_MAILBOX = 8
CONTENDED_CALLS = 200  # per caller

Measure = Callable[[], Awaitable[float]]


# -- Polyn ---------------------------------------------------------------------------------


class _Sink(Actor):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.count = 0

    async def handle_cast(self, request: Any) -> None:
        self.count += 1

    async def handle_call(self, request: Any) -> Any:
        return request


class _Started:
    """Where a server's init reports when it ran (registered names are in place by then)."""

    def __init__(self) -> None:
        self.at = 0.0
        self.event = trio.Event()

    def arm(self) -> None:
        self.event = trio.Event()

    def report(self) -> None:
        self.at = _now()
        self.event.set()


class _Phoenix(Actor):
    """Crashes on any cast; its init reports the time it ran."""

    def __init__(self, started: _Started, **options: Any) -> None:
        super().__init__(**options)
        self.started = started

    async def init(self) -> None:
        self.started.report()

    async def handle_cast(self, request: Any) -> None:
        raise RuntimeError("crash")


class _Count:
    """Shared by every run (a plain list argument would be copied per start)."""

    value = 0


class _Idle(Actor):
    def __init__(self, ready: _Count, **options: Any) -> None:
        super().__init__(**options)
        self.ready = ready

    async def init(self) -> None:
        self.ready.value += 1


async def polyn_cast() -> float:
    async with Supervisor([_Sink(name="sink")]).run() as tree:
        sink = tree.ref("sink")
        started = _now()
        for i in range(CASTS):
            await sink.cast(i)
        await sink.call("flush")
        return CASTS / (_now() - started)


async def polyn_call() -> float:
    async with Supervisor([_Sink(name="sink")]).run() as tree:
        sink = tree.ref("sink")
        started = _now()
        for i in range(CALLS):
            await sink.call(i)
        return CALLS / (_now() - started)


async def polyn_contended_call() -> float:
    spec = _Sink(name="sink", mailbox_size=CONTENDED_MAILBOX)
    async with Supervisor([spec]).run() as tree:
        sink = tree.ref("sink")
        wrong = 0

        async def caller(me: int) -> None:
            nonlocal wrong
            for i in range(CONTENDED_CALLS):
                try:
                    if await sink.call((me, i)) != (me, i):
                        wrong += 1
                except Exception:
                    wrong += 1

        started = _now()
        async with trio.open_nursery() as nursery:
            for me in range(CONTENDERS):
                nursery.start_soon(caller, me)
        elapsed = _now() - started
        return 0.0 if wrong else CONTENDERS * CONTENDED_CALLS / elapsed


async def polyn_restart() -> float:
    started = _Started()
    spec = Supervisor([_Phoenix(started, name="phoenix")], max_restarts=10**9, max_seconds=1)
    async with spec.run() as tree:
        total = 0.0
        for _ in range(CRASHES):
            started.arm()
            crash = _now()
            await tree.ref("phoenix").cast("crash")
            await started.event.wait()
            total += started.at - crash
        return total / CRASHES


async def polyn_idle(measure_memory: bool) -> float:
    ready = _Count()
    gc.collect()
    if measure_memory:
        tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0] if measure_memory else 0
    started = _now()
    async with Supervisor([_Idle(ready) for _ in range(IDLE)]).run():
        assert ready.value == IDLE
        elapsed = _now() - started
        if measure_memory:
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - baseline
            tracemalloc.stop()
            return held / IDLE
    return elapsed


# -- triotp --------------------------------------------------------------------------------


def _triotp_module(name: str, **callbacks: Callable[..., Awaitable[Any]]) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in callbacks.items():
        setattr(module, key, value)
    return module


def _triotp() -> dict[str, Callable[..., Awaitable[float]]] | None:
    try:
        import logbook
        from triotp import gen_server, mailbox, supervisor
    except ImportError:
        return None

    async def init_state(arg: Any) -> Any:
        arg.report()
        return 0

    async def reply(message: Any, caller: Any, state: Any) -> Any:
        return gen_server.Reply(payload=message), state

    async def count(message: Any, state: Any) -> Any:
        return gen_server.NoReply(), state + 1

    async def quiet(reason: Any, state: Any) -> None:
        pass

    sink = _triotp_module(
        "bench_sink", init=init_state, handle_call=reply, handle_cast=count, terminate=quiet
    )

    async def with_sink(body: Callable[[], Awaitable[float]]) -> float:
        mailbox._init()
        opts = supervisor.options(max_restarts=3, max_seconds=5)
        started = _Started()
        spec = supervisor.child_spec(id="sink", task=gen_server.start, args=[sink, started, "sink"])
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.start, [spec], opts)
            await started.event.wait()
            result = await body()
            nursery.cancel_scope.cancel()
        return result

    async def cast() -> float:
        async def body() -> float:
            started = _now()
            for i in range(CASTS):
                await gen_server.cast("sink", i)
            await gen_server.call("sink", "flush")
            return CASTS / (_now() - started)

        return await with_sink(body)

    async def call() -> float:
        async def body() -> float:
            started = _now()
            for i in range(CALLS):
                await gen_server.call("sink", i)
            return CALLS / (_now() - started)

        return await with_sink(body)

    async def restart() -> float:
        started = _Started()

        async def init_phoenix(arg: Any) -> Any:
            started.report()
            return arg

        async def crash(message: Any, state: Any) -> Any:
            raise RuntimeError("crash")

        phoenix = _triotp_module(
            "bench_phoenix", init=init_phoenix, handle_cast=crash, terminate=quiet
        )
        mailbox._init()
        opts = supervisor.options(max_restarts=10**9, max_seconds=1)
        spec = supervisor.child_spec(
            id="phoenix", task=gen_server.start, args=[phoenix, 0, "phoenix"]
        )
        total = 0.0
        with logbook.NullHandler().applicationbound():
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.start, [spec], opts)
                await started.event.wait()
                for _ in range(CRASHES):
                    started.arm()
                    at = _now()
                    await gen_server.cast("phoenix", "crash")
                    await started.event.wait()
                    total += started.at - at
                nursery.cancel_scope.cancel()
        return total / CRASHES

    async def idle(measure_memory: bool) -> float:
        ready = [0]
        done = trio.Event()

        async def init_idle(arg: Any) -> Any:
            ready[0] += 1
            if ready[0] == IDLE:
                done.set()
            return arg

        module = _triotp_module("bench_idle", init=init_idle, terminate=quiet)
        mailbox._init()
        opts = supervisor.options()
        gc.collect()
        if measure_memory:
            tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0] if measure_memory else 0
        started = _now()
        specs = [
            supervisor.child_spec(id=f"idle{i}", task=gen_server.start, args=[module, 0, None])
            for i in range(IDLE)
        ]
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.start, specs, opts)
            await done.wait()
            elapsed = _now() - started
            result = elapsed
            if measure_memory:
                gc.collect()
                result = (tracemalloc.get_traced_memory()[0] - baseline) / IDLE
                tracemalloc.stop()
            nursery.cancel_scope.cancel()
        return result

    return {"cast": cast, "call": call, "restart": restart, "idle": idle}


# -- report --------------------------------------------------------------------------------


def _best(run: Callable[[], float], lower_is_better: bool) -> float:
    results = [run() for _ in range(3)]
    return min(results) if lower_is_better else max(results)


# name -> (measure, unit, lower is better); one trio.run each.
FIGURES: dict[str, tuple[Callable[[], Awaitable[float]], str, bool]] = {
    "cast": (polyn_cast, "msgs/s", False),
    "call": (polyn_call, "round trips/s", False),
    "contended call": (polyn_contended_call, "round trips/s", False),
    "crash -> restart": (lambda: _scaled(polyn_restart, 1e6), "µs", True),
    f"start {IDLE:,} idle": (lambda: polyn_idle(False), "s", True),
    "memory per idle server": (lambda: polyn_idle(True), "bytes", True),
}


def _quiet() -> None:
    quiet = logging.getLogger("polyn.actors")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False


def _json() -> None:
    _quiet()
    figures: dict[str, object] = {name: trio.run(m) for name, (m, _, _) in FIGURES.items()}
    figures["source"] = sys.modules[Actor.__module__].__file__
    print(json.dumps(figures))


def _compare(old: str, rounds: int) -> None:
    here = str(Path(__file__).resolve().parents[1])
    script = str(Path(__file__).resolve())
    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}

    def one(which: str) -> None:
        env = dict(os.environ, PYTHONPATH=old if which == "old" else here)
        done = subprocess.run(
            [sys.executable, script, "--json", *(["--cpu"] if "--cpu" in sys.argv else [])],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the {which} run failed:\n{done.stderr}")
        figures = json.loads(done.stdout.splitlines()[-1])
        source = figures.pop("source")
        expected = old if which == "old" else here
        if not str(Path(source).resolve()).startswith(str(Path(expected).resolve())):
            raise SystemExit(f"the {which} run imported polyn from {source}, not {expected}")
        for name, value in figures.items():
            results[which].setdefault(name, []).append(value)

    for i in range(rounds):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        for which in order:
            one(which)
        print(f"round {i + 1}/{rounds} done", file=sys.stderr)
    clock = "CPU time" if "--cpu" in sys.argv else "wall time"
    print(
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"{rounds} rounds, medians, {clock}"
    )
    print(f"{'figure':34} {'old':>12} {'new':>12} {'new/old':>8} {'better by':>10}")
    for name, (_, unit, lower) in FIGURES.items():
        a = statistics.median(results["old"][name])
        b = statistics.median(results["new"][name])
        shown = f"{name} ({unit})"
        if a and b:
            better = (a / b if lower else b / a) - 1
            tail = f"{b / a:8.3f} {better:>+10.1%}"
        else:
            tail = f"{'n/a':>8} {'n/a':>10}"
        print(f"{shown:34} {a:>12,.3f} {b:>12,.3f} {tail}")


def main() -> None:
    if "--json" in sys.argv:
        _json()
        return
    if "--against" in sys.argv:
        old = sys.argv[sys.argv.index("--against") + 1]
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
        _compare(old, rounds)
        return
    _quiet()

    triotp = _triotp()
    print(f"Python {platform.python_version()}, trio {trio.__version__}, {platform.machine()}")
    rows: list[tuple[str, str, float, float | None, bool]] = []

    def figure(label: str, unit: str, ours: Measure, theirs: Measure | None, lower: bool) -> None:
        a = _best(lambda: trio.run(ours), lower)
        b = _best(lambda: trio.run(theirs), lower) if theirs is not None else None
        rows.append((label, unit, a, b, lower))

    figure("cast", "msgs/s", polyn_cast, triotp and triotp["cast"], False)
    figure("call", "round trips/s", polyn_call, triotp and triotp["call"], False)
    figure(
        "contended call (100 callers, mailbox 8)",
        "round trips/s",
        polyn_contended_call,
        None,
        False,
    )
    figure(
        "crash -> restart",
        "µs",
        lambda: _scaled(polyn_restart, 1e6),
        triotp and (lambda: _scaled(triotp["restart"], 1e6)),
        True,
    )
    figure(
        f"start {IDLE:,} idle",
        "s",
        lambda: polyn_idle(False),
        triotp and (lambda: triotp["idle"](False)),
        True,
    )
    figure(
        "memory per idle server",
        "bytes",
        lambda: polyn_idle(True),
        triotp and (lambda: triotp["idle"](True)),
        True,
    )

    print(f"{'figure':34} {'polyn':>12} {'triotp 0.3':>12} {'polyn ahead by':>15}")
    for label, unit, ours, theirs, lower in rows:
        shown = f"{label} ({unit})"
        spec = ",.3f" if unit == "s" else ",.1f"
        if theirs is None:
            print(f"{shown:34} {ours:>12{spec}} {'-':>12}")
            continue
        ratio = theirs / ours if lower else ours / theirs
        print(f"{shown:34} {ours:>12{spec}} {theirs:>12{spec}} {ratio:>14.2f}x")
    if triotp is None:
        print("triotp is not installed here (it needs Python >= 3.13): Polyn's figures only.")
    sys.stdout.flush()


async def _scaled(measure: Callable[[], Awaitable[float]], factor: float) -> float:
    return await measure() * factor


if __name__ == "__main__":
    main()
