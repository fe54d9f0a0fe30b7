"""The sandbox's calls into the real server: with virtual time paused, and counted.

A call into the real transport waits for its loop thread; to an autojumping
:class:`trio.testing.MockClock` that looks idle, so it would jump past every timeout of the call
at once. :func:`real_time` pauses the autojump for such a call, and :class:`RealServer` makes
every call of the sandbox's administration and key-value views go through it, counted in
``crossings`` (a test on virtual time can assert that none happened).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import trio
import trio.testing

from polyn.errors import NatsConnectionError, SandboxError

__all__ = ["RealServer", "real_time"]

T = TypeVar("T")


@contextmanager
def real_time() -> Iterator[None]:
    """Pause a :class:`trio.testing.MockClock`'s autojump for the block (no-op on a real clock).

    A call into the real transport waits for another thread; to an autojumping MockClock that
    looks idle, so it would jump past every timeout of the call at once. Polyn's sandbox wraps
    its own calls into the real server (start-up, snapshots, management calls, key-value,
    teardown) in this, so a test may use ``autojump_clock`` from the start.
    """
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        yield
        return
    saved = clock.autojump_threshold
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        clock.autojump_threshold = saved


class RealServer(Generic[T]):
    """The real object a sandbox view calls (``None``: the sandbox has no server)."""

    def __init__(self, real: T | None) -> None:
        self.real = real
        self.crossings = 0
        """How many calls went to the real server."""
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise NatsConnectionError("the sandbox is closed (its test has ended)")

    @contextmanager
    def crossing(self, what: str) -> Iterator[T]:
        """A call into the real server, with virtual time paused while it runs."""
        self.check_open()
        if self.real is None:
            raise SandboxError(
                f"{what} needs a real NATS server, and this sandbox wraps none; "
                "start it with Sandbox.start(url_or_transport) or use the polyn_sandbox fixture"
            )
        self.crossings += 1
        with real_time():
            yield self.real
