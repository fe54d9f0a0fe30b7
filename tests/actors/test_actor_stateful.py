"""Exactly one outcome per send, on generated histories (a Hypothesis state machine).

Hypothesis drives one actor under a supervisor through random steps: bursts of concurrent
callers, casters and senders (with and without timeouts, some sending several messages in a
row), small mailboxes, messages whose handling takes virtual time, calls answered later
(``NO_REPLY`` and a timer), crashes in a callback or in a helper task, normal and abnormal
stops, ``terminate_child`` / ``restart_child``, and the clock moving on. Time is a
``MockClock`` that moves only when a step says so, so mailboxes really fill up and senders
really park.

The trio run lives on a thread of its own and each step runs in it through
``trio.from_thread.run``, settling (every task blocked) before it returns. After every step,
and once more after the tree has stopped at the end, the invariants are checked here, in the
test module, where pytest rewrites asserts (so they hold under ``python -O`` too):

- every sender ends in exactly one outcome (a reply, ``None`` for a cast, ``ActorError`` or
  ``CallTimeout``), never two, never a trio-internal error, and by the end every sender has one;
- every call's reply is the answer to its own request;
- no message is handled twice; messages from one sender to one run are handled in the order
  sent;
- no message is lost by a live actor: a cast, send or call that a run accepted was handled by
  that run, unless the run ended first.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from polyn.actors import NO_REPLY, Actor, ActorRef, Caller, Key, Supervisor, Tree
from polyn.errors import ActorError, CallTimeout

RUN: Final = Key("run", ActorRef)  # the subject's current run, for senders to address it


@dataclass
class Journal:
    """What the test observes, shared by identity with every run of the subject."""

    handled: list[tuple[int, int]] = field(default_factory=list)  # (run serial, message id)
    outcomes: dict[int, object] = field(default_factory=dict)  # message id -> outcome
    accepted: dict[int, int] = field(default_factory=dict)  # message id -> run serial
    senders: dict[int, list[int]] = field(default_factory=dict)  # sender -> its message ids
    ended_runs: set[int] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    runs: int = 0

    def outcome(self, message: int, result: object) -> None:
        if message in self.outcomes:
            self.violations.append(
                f"message {message} got a second outcome {result!r} "
                f"after {self.outcomes[message]!r}"
            )
        self.outcomes[message] = result


class Subject(Actor):
    """Handles ``(id, cost, how)`` messages; ``cost`` seconds of virtual time each."""

    def __init__(self, journal: Journal, **options: Any) -> None:
        super().__init__(**options)
        self.journal = journal
        self.crash_now = trio.Event()

    async def init(self) -> None:
        self.journal.runs += 1
        self.serial = self.journal.runs
        self.provide(RUN, self.ref)
        self.nursery.start_soon(self._helper)

    async def _helper(self) -> None:
        await self.crash_now.wait()
        raise OSError("the helper task failed")

    async def _handle(self, request: tuple[int, float, str]) -> None:
        message, cost, how = request
        self.journal.handled.append((self.serial, message))
        if cost:
            await trio.sleep(cost)
        if how == "crash":
            raise RuntimeError(f"crash on message {message}")
        if how == "stop":
            self.stop()
        elif how == "stop abnormally":
            self.stop("lost its footing")

    async def handle_cast(self, request: Any) -> None:
        await self._handle(request)

    async def handle_call(self, request: Any) -> Any:
        await self._handle(request)
        message, cost, how = request
        if how == "defer":
            self.send_after(cost + 0.25, (self.caller, message))
            return NO_REPLY
        return ("reply", message)

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, tuple) and isinstance(message[0], Caller):
            caller, answer = message
            caller.reply(("reply", answer))
            return
        await self._handle(message)

    async def terminate(self, reason: object) -> None:
        self.journal.ended_runs.add(self.serial)


class Host:
    """A trio run on a thread of its own, on a MockClock that moves only when told to."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.pending: list[concurrent.futures.Future[Any]] = []
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise TimeoutError("the trio thread did not start")

    def _main(self) -> None:
        try:
            trio.run(self._serve, clock=self.clock)
        except BaseException as exc:  # reported by close() and by the step waiting
            self.error = exc
            self.ready.set()
        for waiting in self.pending:
            if not waiting.done():
                waiting.set_exception(RuntimeError(f"the trio run ended: {self.error!r}"))

    async def _serve(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.finish = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.ready.set()
            await self.finish.wait()

    def run(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``afn(*args)`` in the trio run, wait until every task is blocked, return its
        result; fail (rather than hang) if that takes more than 30 s of real time."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.pending.append(done)

        async def settled() -> None:
            try:
                result = await afn(*args)
                await trio.testing.wait_all_tasks_blocked()
            except BaseException as exc:
                done.set_exception(exc)
                raise
            done.set_result(result)

        try:
            self.token.run_sync_soon(self.nursery.start_soon, settled)
        except trio.RunFinishedError:
            raise RuntimeError(f"the trio run has ended: {self.error!r}") from self.error
        try:
            return done.result(timeout=30)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the trio run did not settle: {self.error!r}") from self.error

    def close(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.finish.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the trio run did not end"
        if self.error is not None:
            raise self.error


class OneOutcomePerSend(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.journal = Journal()
        self.next_message = 0
        self.next_sender = 0
        self.host = Host()
        self.tree: Tree | None = None
        self.stopping = trio.Event()

    # -- set-up ---------------------------------------------------------------------------------

    @initialize(mailbox=st.integers(1, 3), shutdown=st.sampled_from([0, 0.5, 5]))
    def start(self, mailbox: int, shutdown: float) -> None:
        spec = Subject(self.journal, name="subject", mailbox_size=mailbox, shutdown=shutdown)
        supervisor = Supervisor([spec], max_restarts=10**6, max_seconds=1)

        async def run_tree(task_status: trio.TaskStatus[Tree]) -> None:
            async with supervisor.run() as tree:
                task_status.started(tree)
                await self.stopping.wait()

        async def start() -> Tree:
            tree: Tree = await self.host.nursery.start(run_tree)
            return tree

        self.tree = self.host.run(start)

    # -- senders --------------------------------------------------------------------------------

    @precondition(lambda self: self.tree is not None)
    @rule(
        kind=st.sampled_from(["call", "cast", "send"]),
        senders=st.integers(1, 6),
        messages=st.integers(1, 3),
        cost=st.sampled_from([0.0, 0.0, 0.5, 1.0]),
        how=st.sampled_from(["ok", "ok", "ok", "defer", "crash", "stop", "stop abnormally"]),
        timeout=st.sampled_from([None, 0.25, 2.0]),
    )
    def burst(
        self, kind: str, senders: int, messages: int, cost: float, how: str, timeout: float | None
    ) -> None:
        assert self.tree is not None
        tree = self.tree
        journal = self.journal
        batches = []
        for _ in range(senders):
            ids = list(range(self.next_message, self.next_message + messages))
            self.next_message += messages
            journal.senders[self.next_sender] = ids
            self.next_sender += 1
            batches.append(ids)

        async def sender(ids: list[int]) -> None:
            for message in ids:
                run = tree.lookup("subject", RUN)
                if run is None:
                    journal.outcome(message, "no run")
                    continue
                # The run this message goes to; its serial is known once it is handled or
                # once the run is found from the ref.
                serial = _serial(run)
                request = (message, cost, how if message == ids[-1] else "ok")
                try:
                    if kind == "call":
                        result: object = await run.call(request, timeout=timeout)
                    elif kind == "cast":
                        result = await run.cast(request, timeout=timeout)
                    else:
                        result = await run.send(request, timeout=timeout)
                except (ActorError, CallTimeout) as exc:
                    result = exc
                if result is None or result == ("reply", message):
                    journal.accepted[message] = serial
                elif not isinstance(result, (ActorError, CallTimeout)):
                    journal.violations.append(f"message {message} got {result!r}")
                journal.outcome(message, result)

        async def spawn() -> None:
            for ids in batches:
                self.host.nursery.start_soon(sender, ids)

        self.host.run(spawn)

    # -- faults and operations ---------------------------------------------------------------

    @precondition(lambda self: self.tree is not None)
    @rule()
    def crash_a_helper(self) -> None:
        async def crash() -> None:
            assert self.tree is not None
            ref = self.tree.whereis("subject")
            if ref is not None and ref.alive:
                subject = ref.running_actor()
                assert isinstance(subject, Subject)
                subject.crash_now.set()

        self.host.run(crash)

    @precondition(lambda self: self.tree is not None)
    @rule(then_restart=st.booleans())
    def terminate_child(self, then_restart: bool) -> None:
        async def terminate() -> None:
            assert self.tree is not None
            async with trio.open_nursery() as nursery:
                # Shutdown waits for the run's current message, which may take virtual time.
                nursery.start_soon(self.tree.terminate_child, "subject")
                await trio.testing.wait_all_tasks_blocked()
                self.host.clock.jump(10)
            if then_restart:
                await self.tree.restart_child("subject")

        self.host.run(terminate)

    @precondition(lambda self: self.tree is not None)
    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        async def advance() -> None:
            self.host.clock.jump(seconds)

        self.host.run(advance)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_sender_woken_twice_or_answered_wrongly(self) -> None:
        assert self.journal.violations == []

    @invariant()
    def no_message_handled_twice_and_each_senders_messages_in_order(self) -> None:
        handled = [message for _serial, message in self.journal.handled]
        assert len(handled) == len(set(handled)), "a message was handled twice"
        position = {message: i for i, message in enumerate(handled)}
        for ids in self.journal.senders.values():
            seen = [position[message] for message in ids if message in position]
            assert seen == sorted(seen), f"messages {ids} handled out of order"

    def teardown(self) -> None:
        live: int | None = None
        try:
            if self.tree is not None:
                tree = self.tree

                async def quiesce() -> int | None:
                    # Let every slow handler, deferred reply and timeout run out: each jump
                    # passes any one pending deadline (the longest is 2 s), until two jumps in
                    # a row change nothing.
                    journal = self.journal
                    still = 0
                    while still < 2:
                        before = (len(journal.handled), len(journal.outcomes))
                        self.host.clock.jump(3)
                        await trio.testing.wait_all_tasks_blocked()
                        still = (
                            still + 1
                            if before
                            == (
                                len(journal.handled),
                                len(journal.outcomes),
                            )
                            else 0
                        )
                    run = tree.lookup("subject", RUN)
                    return None if run is None else _serial(run)

                live = self.host.run(quiesce)
                self.host.run(_set, self.stopping)  # stop the tree: parked senders get errors
        finally:
            self.host.close()
        journal = self.journal
        assert journal.violations == []
        every_message = {m for ids in journal.senders.values() for m in ids}
        assert set(journal.outcomes) == every_message, "a sender has no outcome"
        handled_by = {message: serial for serial, message in journal.handled}
        for message, serial in journal.accepted.items():
            if isinstance(journal.outcomes[message], tuple):
                # A call's reply comes from the run it was sent to, which handled it.
                assert handled_by.get(message) == serial
            elif serial == live:
                # Quiet and still running: the run has handled everything it took in.
                assert handled_by.get(message) == serial, (
                    f"message {message} was accepted by live run {serial} and never handled"
                )


async def _set(event: trio.Event) -> None:
    event.set()


def _serial(run: ActorRef) -> int:
    subject = run.running_actor() if run.alive else None
    return subject.serial if isinstance(subject, Subject) else -1


OneOutcomePerSend.TestCase.settings = settings(
    OneOutcomePerSend.TestCase.settings, stateful_step_count=30, deadline=None
)
test_one_outcome_per_send = OneOutcomePerSend.TestCase
