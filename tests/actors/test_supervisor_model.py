"""Supervisor semantics against a small model of OTP's rules, on generated histories.

Hypothesis generates a supervisor (children with restart types, a strategy, an intensity) and a
sequence of operations: a child crashes, a child exits normally, a child's next start fails, the
clock advances. Each history runs in one ``trio.run`` on ``trio.testing.MockClock``, so restart
times are exact; after every operation the tree settles, and in the end the lifecycle it
recorded (every ``init``, failed ``init`` and ``terminate``, in order) must equal the model's, and
the supervisor must give up at exactly the operation where the model does.

The model transcribes OTP's ``supervisor.erl``: ``do_restart`` (which exits restart),
``add_restart`` (intensity: a restart at ``t`` counts while ``t >= now - period``), ``restart/3``
per strategy with ``terminate_children`` (reverse order, temporary children dropped) and
``start_children`` (start order, aborting at the first failure, which then becomes the trigger
of the next attempt, as ``try_again_restart`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from actor_support import Log, real_deadline
from hypothesis import event, given
from hypothesis import strategies as st

from polyn.actors import Actor, Restart, Strategy, Supervisor
from polyn.errors import ActorError

Event = tuple[str, ...]


class Flags(set[str]):
    """A set shared with every run of the children (a plain set would be copied per start)."""


class Child(Actor):
    """Records its lifecycle; crashes or exits normally on command; fails init on demand."""

    def __init__(self, log: list[Event], fail_next: set[str], **options: Any) -> None:
        super().__init__(**options)
        self.log = log
        self.fail_next = fail_next

    async def init(self) -> None:
        assert self.name is not None
        if self.name in self.fail_next:
            self.fail_next.discard(self.name)
            self.log.append(("init-failed", self.name))
            raise OSError(f"{self.name} cannot start")
        self.log.append(("init", self.name))

    async def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError("crash")
        self.stop()

    async def terminate(self, reason: object) -> None:
        assert self.name is not None
        crashed = isinstance(reason, RuntimeError)
        self.log.append(("terminate", self.name, "crash" if crashed else str(reason)))


@dataclass
class _ModelChild:
    name: str
    restart: Restart
    running: bool = False


@dataclass
class OtpModel:
    """OTP's supervisor rules over a list of children, recording the lifecycle events."""

    children: list[_ModelChild]
    strategy: Strategy
    max_restarts: int
    max_seconds: float
    now: float = 0.0
    restarts: list[float] = field(default_factory=list)
    fail_next: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    dead: bool = False

    def start(self) -> None:
        for child in self.children:
            child.running = True
            self.events.append(("init", child.name))

    def find(self, name: str) -> _ModelChild | None:
        return next((c for c in self.children if c.name == name and c.running), None)

    def exit(self, name: str, reason: str) -> None:
        child = self.find(name)
        assert child is not None and not self.dead
        child.running = False
        self.events.append(("terminate", name, reason))
        if child.restart is Restart.PERMANENT or (
            child.restart is Restart.TRANSIENT and reason == "crash"
        ):
            self.restart(child)
        elif child.restart is Restart.TEMPORARY:
            self.children.remove(child)

    def add_restart(self) -> bool:
        threshold = self.now - self.max_seconds
        self.restarts = [t for t in self.restarts if t >= threshold] + [self.now]
        return len(self.restarts) <= self.max_restarts

    def restart(self, trigger: _ModelChild) -> None:
        while True:
            if not self.add_restart():
                self.stop_all()
                self.dead = True
                return
            if self.strategy is Strategy.ONE_FOR_ONE:
                group = [trigger]
            else:
                first = 0 if self.strategy is Strategy.ONE_FOR_ALL else self.children.index(trigger)
                for child in reversed(self.children[first:]):
                    self.shut_down(child)
                self.children = [
                    child
                    for i, child in enumerate(self.children)
                    if i < first or child is trigger or child.restart is not Restart.TEMPORARY
                ]
                group = self.children[first:]
            failed = None
            for child in group:
                if child.name in self.fail_next:
                    self.fail_next.discard(child.name)
                    self.events.append(("init-failed", child.name))
                    failed = child
                    break
                child.running = True
                self.events.append(("init", child.name))
            if failed is None:
                return
            trigger = failed

    def shut_down(self, child: _ModelChild) -> None:
        if child.running:
            child.running = False
            self.events.append(("terminate", child.name, "shutdown"))

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.shut_down(child)


@dataclass
class Scenario:
    restarts: list[Restart]
    strategy: Strategy
    max_restarts: int
    max_seconds: int
    ops: list[tuple[str, Any]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 4))
    # Crashes and exits weigh more than the rest: histories are about restarts.
    kinds = ["crash", "crash", "crash", "exit", "exit", "fail_next", "advance", "advance"]
    op = st.sampled_from(kinds).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            # Halves and whole seconds add up exactly in binary, so restarts can fall exactly
            # on the edge of the intensity window, where OTP still counts them.
            st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0])
            if kind == "advance"
            else st.integers(0, n - 1),
        )
    )
    return Scenario(
        restarts=draw(st.lists(st.sampled_from(list(Restart)), min_size=n, max_size=n)),
        strategy=draw(st.sampled_from(list(Strategy))),
        max_restarts=draw(st.sampled_from([0, 1, 2, 3, 4, 5])),
        max_seconds=draw(st.integers(1, 5)),
        ops=draw(st.lists(op, min_size=3, max_size=40)),
    )


async def _observe(scenario: Scenario, clock: trio.testing.MockClock) -> tuple[Any, ...]:
    names = [f"c{i}" for i in range(len(scenario.restarts))]
    log: list[Event] = Log()
    fail_next: set[str] = Flags()
    model = OtpModel(
        children=[_ModelChild(n, r) for n, r in zip(names, scenario.restarts, strict=True)],
        strategy=scenario.strategy,
        max_restarts=scenario.max_restarts,
        max_seconds=scenario.max_seconds,
    )
    model.start()
    specs = zip(names, scenario.restarts, strict=True)
    supervisor = Supervisor(
        [Child(log, fail_next, name=name, restart=restart) for name, restart in specs],
        strategy=scenario.strategy,
        max_restarts=scenario.max_restarts,
        max_seconds=scenario.max_seconds,
    )
    model_gave_up_at = real_gave_up_at = None
    step = -1
    with real_deadline(60, "one history"):
        try:
            async with supervisor.run() as tree:
                for step, (op, arg) in enumerate(scenario.ops):
                    if op == "advance":
                        clock.jump(arg)
                        model.now += arg
                    elif op == "fail_next":
                        fail_next.add(names[arg])
                        model.fail_next.add(names[arg])
                    elif model.find(names[arg]) is not None:
                        model.exit(names[arg], "crash" if op == "crash" else "normal")
                        if model.dead:
                            model_gave_up_at = step
                        await tree.ref(names[arg]).cast(op)
                    # The tree settles; if its root gives up, this is where the block is
                    # cancelled, and run() raises.
                    await trio.testing.wait_all_tasks_blocked()
                    if model.dead:
                        break
        except ActorError as exc:
            if "maximum restart intensity" not in str(exc):
                raise
            real_gave_up_at = step
    if not model.dead:
        model.stop_all()
    return log, model.events, real_gave_up_at, model_gave_up_at


def events_of(log: list[Event], kind: str) -> list[Event]:
    return [entry for entry in log if entry[0] == kind]


@given(scenarios())
def test_supervisor_restarts_exactly_as_the_otp_model_says(scenario: Scenario) -> None:
    clock = trio.testing.MockClock()
    log, expected, real_gave_up_at, model_gave_up_at = trio.run(
        _observe, scenario, clock, clock=clock
    )
    # What the generated histories covered, for --hypothesis-show-statistics.
    event(f"strategy {scenario.strategy.value}")
    event("supervisor gave up" if model_gave_up_at is not None else "supervisor survived")
    event("a start failed" if events_of(log, "init-failed") else "no start failed")
    restarts = len(events_of(log, "init")) - len(scenario.restarts)
    event("restarts: " + ("0" if restarts == 0 else "1-3" if restarts <= 3 else "more than 3"))
    # Compared by hand: pytest's rich diff of two long lists, done for every failing example
    # Hypothesis tries while shrinking, would take minutes.
    same = log == expected
    assert same, "\n".join(["observed:", *map(repr, log), "the OTP model:", *map(repr, expected)])
    assert real_gave_up_at == model_gave_up_at


def test_the_model_gives_up_past_its_intensity() -> None:
    # A check of the checker: three quick crashes with max_restarts=2 end the supervisor.
    model = OtpModel([_ModelChild("a", Restart.PERMANENT)], Strategy.ONE_FOR_ONE, 2, 5)
    model.start()
    for _ in range(3):
        model.exit("a", "crash")
    assert model.dead
    assert model.events[-1] == ("terminate", "a", "crash")


@pytest.mark.parametrize("strategy", list(Strategy))
def test_the_model_restarts_a_failed_start_as_the_trigger_of_a_new_attempt(
    strategy: Strategy,
) -> None:
    children = [_ModelChild("a", Restart.PERMANENT), _ModelChild("b", Restart.PERMANENT)]
    model = OtpModel(children, strategy, 5, 5)
    model.start()
    model.fail_next.add("b")
    model.exit("b", "crash")
    assert ("init-failed", "b") in model.events
    assert model.events[-1] == ("init", "b")
    assert len(model.restarts) == 2
