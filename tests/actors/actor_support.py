"""Actors the runtime tests share (importable as ``actor_support``: pytest puts this folder on
``sys.path`` because it has no ``__init__.py``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import trio
import trio.testing

from polyn.actors import Actor


class Log(list[Any]):
    """A list a test shares with its actors.

    A start copies plain ``list``, ``dict`` and ``set`` constructor arguments (so a restart
    starts from the spec) but passes every other object by identity, subclasses included: a
    ``Log`` is the same object in the test and in every run of the actor.
    """


def kind(reason: object) -> str:
    """A reason as a test compares it: ``"normal"``, ``"shutdown"`` or the exception's class."""
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return str(reason)


class Recorder(Actor):
    """Appends its lifecycle to a shared ``log`` and obeys a few commands.

    Casts: ``"crash"`` raises RuntimeError, ``"stop"`` stops normally, ``("stop", reason)``
    stops with ``reason``. Calls: ``"ping"`` answers ``"pong"``, ``("sleep", s)`` sleeps then
    answers ``"slept"``, ``"crash"`` raises. Every instance gets a fresh ``serial`` so a test can
    tell runs apart.
    """

    runs = 0

    def __init__(
        self,
        log: list[tuple[Any, ...]],
        *,
        fail_init: bool = False,
        terminate_sleep: float = 0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.log = log
        self.fail_init = fail_init
        self.terminate_sleep = terminate_sleep
        Recorder.runs += 1
        self.serial = Recorder.runs

    async def init(self) -> None:
        if self.fail_init:
            self.log.append(("init-failed", self.name))
            raise ValueError(f"{self.name} refuses to start")
        self.log.append(("init", self.name))

    async def handle_call(self, request: Any) -> Any:
        if request == "ping":
            return "pong"
        if request == "serial":
            return self.serial
        if request == "crash":
            raise RuntimeError(f"{self.name} crashed in a call")
        if isinstance(request, tuple) and request[0] == "sleep":
            await trio.sleep(request[1])
            return "slept"
        return await super().handle_call(request)

    async def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if request == "stop":
            self.stop()
        elif isinstance(request, tuple) and request[0] == "stop":
            self.stop(request[1])
        else:
            self.log.append(("cast", self.name, request))

    async def handle_info(self, message: Any) -> None:
        self.log.append(("info", self.name, message))

    async def terminate(self, reason: object) -> None:
        self.log.append(("terminate", self.name, kind(reason)))
        if self.terminate_sleep:
            await trio.sleep(self.terminate_sleep)
            self.log.append(("terminated", self.name))


def events(log: list[tuple[Any, ...]], *kinds: str) -> list[tuple[Any, ...]]:
    """The entries of ``log`` whose first element is one of ``kinds``."""
    return [entry for entry in log if entry[0] in kinds]


async def settle() -> None:
    """Wait until every task is blocked: crashes handled, restarts done."""
    await trio.testing.wait_all_tasks_blocked()


@contextlib.contextmanager
def real_deadline(seconds: float, what: str) -> Iterator[None]:
    """Cancel the block after ``seconds`` of real time and raise TimeoutError.

    A runtime regression tends to show as a hang, and under a MockClock with nothing left to
    jump to, trio's own deadlines never fire: a thread's timer does.
    """
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:

        def expire() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    if scope.cancelled_caught:
        raise TimeoutError(f"{what} ran for more than {seconds} s")
