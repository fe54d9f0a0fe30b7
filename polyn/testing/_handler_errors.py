"""Handler errors in the sandbox: a handler's bug fails the test at once, with its own traceback.

In production an exception in a handler naks its message with backoff (see
:mod:`polyn.consumers`). In a test that turns a ``KeyError`` into a timeout somewhere else, and a
log line. So, under the ``polyn_sandbox`` fixture, **an exception raised by a handler fails the
test before the message's first retry**, re-raised as the original exception with its original
traceback — on by default, as FastStream's test broker does. And a message that a
``PullConsumer``'s handler left unsettled (it returned ``None`` and never acked) is **reported
when the test ends**, failing it.

Opting out, for tests of failure paths:

- per test, with a marker: ``@pytest.mark.polyn_allow_handler_errors`` (every exception) or
  ``@pytest.mark.polyn_allow_handler_errors(types=(PaymentDeclinedError, KeyError))`` (those
  types and their subclasses; ``types=`` because pytest takes a lone class given positionally
  for the object being marked); ``@pytest.mark.polyn_allow_unsettled`` for unsettled messages;
- or in the test body: ``polyn_sandbox.allow_handler_errors(PaymentDeclinedError)`` /
  ``polyn_sandbox.allow_handler_errors()`` / ``polyn_sandbox.allow_unsettled()``.

An allowed error is handled as in production (nak with backoff, dead letter at the limit).
:meth:`Sandbox.start` used directly (property tests with a sandbox per example) does not check:
only the fixture does (``HandlerChecks.watch``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from polyn.consumers import set_handler_observer
from polyn.errors import SandboxError
from polyn.nats import Message

if TYPE_CHECKING:
    from polyn.testing.mock_nats import MockNats
    from polyn.testing.sandbox import Sandbox

__all__ = ["HandlerChecks"]


class HandlerChecks:
    """One test's record of handler failures and unsettled messages (see the module doc)."""

    def __init__(self) -> None:
        self.allowed: tuple[type[BaseException], ...] | None = ()  # None: every type
        self.unsettled_allowed = False
        self.failures: list[tuple[str, Message | None, BaseException]] = []
        self.unsettled: list[tuple[str, Message]] = []
        self._send, self._receive = trio.open_memory_channel[BaseException](math.inf)

    def allow(self, *types: type[BaseException]) -> None:
        """Let handlers raise ``types`` (every exception when none is given)."""
        if not types:
            self.allowed = None
        elif self.allowed is not None:
            self.allowed = (*self.allowed, *types)

    def allow_unsettled(self) -> None:
        """Do not report messages a handler left unsettled."""
        self.unsettled_allowed = True

    def handler_failed(self, consumer: str, msg: Message | None, error: BaseException) -> None:
        self.failures.append((consumer, msg, error))
        if self.allowed is None or isinstance(error, self.allowed):
            return
        self._send.send_nowait(error)

    def left_unsettled(self, consumer: str, msg: Message) -> None:
        self.unsettled.append((consumer, msg))

    def check_unsettled(self) -> None:
        """Raise :class:`~polyn.errors.SandboxError` naming the messages still unsettled."""
        if self.unsettled_allowed:
            return
        left = [(consumer, msg) for consumer, msg in self.unsettled if msg.acked is None]
        if left:
            lines = "\n".join(f"  - {msg.subject} (consumer {consumer})" for consumer, msg in left)
            raise SandboxError(
                f"{len(left)} message{'s' if len(left) > 1 else ''} left unsettled: the handler "
                "returned None (\"I will settle it later\") and never acked, naked or "
                f"terminated it:\n{lines}\nJetStream would redeliver each after ack_wait. Return "
                "polyn.Ack.ACK (or settle through msg), or mark the test with "
                "@pytest.mark.polyn_allow_unsettled"
            )

    async def _raise_first(self) -> None:
        async for error in self._receive:
            raise error

    @asynccontextmanager
    async def watch(self, sandbox: Sandbox) -> AsyncIterator[None]:
        """Check ``sandbox``'s handlers for the block's duration (what the fixture does):
        raise a disallowed handler error at once, and report unsettled messages at the end."""
        registry = _registry()
        registry[sandbox.mock] = self
        set_handler_observer(_OBSERVER)
        failure: BaseException | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._raise_first)
                    yield
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # Show the handler's own exception, not a group around it.
                matched, _ = group.split(lambda exc: any(exc is f for _, _, f in self.failures))
                if matched is None:
                    raise
                failure = matched.exceptions[0]
                while isinstance(failure, BaseExceptionGroup):
                    failure = failure.exceptions[0]
            if failure is not None:
                raise failure from None  # its own traceback, without the cancellation around it
            self.check_unsettled()
        finally:
            registry.pop(sandbox.mock, None)


_checks: trio.lowlevel.RunVar[dict[MockNats, HandlerChecks]] = trio.lowlevel.RunVar(
    "polyn_sandbox_handler_checks"
)


def _registry() -> dict[MockNats, HandlerChecks]:
    try:
        return _checks.get()
    except LookupError:
        registry: dict[MockNats, HandlerChecks] = {}
        _checks.set(registry)
        return registry


def _current() -> HandlerChecks | None:
    from polyn.testing.sandbox import Sandbox

    registry = _registry()
    if not registry:
        return None
    try:
        mock = Sandbox.mock_for()
    except SandboxError:
        return None
    return registry.get(mock)


class _Observer:
    def handler_failed(self, consumer: str, msg: Message | None, error: BaseException) -> None:
        checks = _current()
        if checks is not None:
            checks.handler_failed(consumer, msg, error)

    def left_unsettled(self, consumer: str, msg: Message) -> None:
        checks = _current()
        if checks is not None:
            checks.left_unsettled(consumer, msg)


_OBSERVER = _Observer()
