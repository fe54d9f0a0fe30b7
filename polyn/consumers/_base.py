"""``Consumer``: the one base of Polyn's consumers — options, handler calls, health.

Every consumer (:class:`~polyn.Subscriber`, :class:`~polyn.Responder`,
:class:`~polyn.PullConsumer`, :class:`~polyn.Pipeline`) is an actor built on :class:`Consumer`:

- **Options** are declared once in the class's ``Options`` (attrs) and checked when the spec is
  built (:mod:`polyn.consumers._options`); after construction each is also an attribute
  (``self.prefetch``) and ``self.options`` holds them all.
- **Handlers are called through one door** (:meth:`Consumer._call_handler`). Anything the
  handler's own code raises — any ``Exception``, but also ``SystemExit``, ``KeyboardInterrupt``
  raised by the code, ``asyncio.CancelledError``, a ``trio.Cancelled`` that escaped the
  handler's own cancel scope, or ``handler_timeout`` running out — is a failure of *that
  message*, settled by the consumer (nak, then dead letter at the limit). A handler cannot take
  the consumer, or the App, down. The one exception that passes through is the consumer's own
  cancellation (its supervisor stopping it, the App stopping on a signal): under ``App.main`` a
  Ctrl-C is such a cancellation. (A ``KeyboardInterrupt`` that trio raises inside a handler
  because a tree runs under a bare ``trio.run`` without ``App.main``'s signal handling cannot be
  told from one the code raised, and is a failure of that message too.)
- **Health**: :meth:`Consumer.problem` says why the consumer is not healthy now (a schema
  missing from the store, no progress for ``stall_timeout`` seconds while messages are in hand),
  and :meth:`polyn.Running.health` is False while any consumer has a problem.
- The type or subject may be given with the config's domain (``com.acme.user.created.v1``): it
  is stripped, as the naming rules do for types, so the consumer reads the subject events of that
  type are published to.

A **sandbox hook** (:func:`set_handler_observer`, per trio run) lets ``polyn.testing`` see every
handler failure and every message a handler left unsettled, to fail a test at once with the
handler's own exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, TypeVar

import attrs
import orjson
import trio

from polyn import naming
from polyn._resolve import Resolved, resolve, schemas_for
from polyn.actors import Actor, ActorRef
from polyn.codec import Schemas
from polyn.consumers._options import ACTOR_OPTIONS, build_options, instance, seconds, text
from polyn.errors import PolynError
from polyn.nats import Message

__all__ = ["Consumer", "ConsumerOptions", "Failed", "HandlerTimeout", "set_handler_observer"]

log = logging.getLogger("polyn.consumer")

T = TypeVar("T")


class HandlerTimeout(PolynError, TimeoutError):
    """A handler ran longer than its consumer's ``handler_timeout`` and was cancelled."""


@attrs.frozen
class Failed:
    """What :meth:`Consumer._call_handler` returns when the handler failed: the error."""

    error: BaseException


class HandlerObserver(Protocol):
    """What the sandbox plugs in with :func:`set_handler_observer`."""

    def handler_failed(self, consumer: str, msg: Message | None, error: BaseException) -> None:
        """A handler failed (before its message is settled)."""

    def left_unsettled(self, consumer: str, msg: Message) -> None:
        """A handler returned without settling ``msg`` and asked to settle it later."""


_observer: trio.lowlevel.RunVar[HandlerObserver | None] = trio.lowlevel.RunVar(
    "polyn_handler_observer", default=None
)


_stuck_hook: trio.lowlevel.RunVar[Callable[[str], None] | None] = trio.lowlevel.RunVar(
    "polyn_stuck_consumer_hook", default=None
)

STUCK_GRACE = 1.0
"""Seconds past its ``shutdown`` time after which a consumer still running is reported stuck."""


def set_stuck_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or remove) what happens when a consumer's handler ignores cancellation past its
    shutdown deadline; ``hook(description)``. :meth:`polyn.App.main` installs one that ends the
    process with an error, since trio cannot finish a run while a task ignores cancellation."""
    _stuck_hook.set(hook)


def set_handler_observer(observer: HandlerObserver | None) -> None:
    """Install (or remove, with None) the observer of handler failures for this trio run.

    Used by :mod:`polyn.testing`; production code never sets it.
    """
    _observer.set(observer)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


async def being_cancelled() -> bool:
    """Whether the calling task is inside a cancelled scope now (no checkpoint otherwise)."""
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        return True
    return False


@attrs.frozen(kw_only=True)
class ConsumerOptions:
    """The options of every consumer.

    - ``connection``: the NatsConnection's name or ref (default ``"nats"``);
    - ``store``: the SchemaStore's name (default the config's ``schema_store``);
    - ``handler_timeout``: seconds a handler may run before it is cancelled and its message
      failed (default None: no limit).
    """

    connection: str | ActorRef = instance(  # noqa: RUF009 - an attrs field
        (str, ActorRef), "nats", what="a connection name or an ActorRef"
    )
    store: str | None = text(None)
    handler_timeout: float | None = seconds(None, optional=True)


class Consumer(Actor):
    """The base of every Polyn consumer (see the module doc). Not used directly."""

    Options: ClassVar[type[Any]] = ConsumerOptions
    options: Any

    connection: str | ActorRef
    store: str | None
    handler_timeout: float | None

    def __init__(self, **options: Any) -> None:
        actor_options = {key: options.pop(key) for key in ACTOR_OPTIONS if key in options}
        super().__init__(**actor_options)
        built = build_options(type(self), self.Options, options)
        self.options = built
        for field in attrs.fields(type(built)):
            setattr(self, field.name, getattr(built, field.name))
        self._resolved: Resolved | None = None
        self._missing_schemas: dict[str, int] = {}  # message name -> events met without one

    @property
    def consumer_name(self) -> str:
        """How logs and dead letters name this consumer."""
        return self.name or type(self).__name__

    # -- the tree -----------------------------------------------------------------------------

    def _resolve(self) -> Resolved:
        self._resolved = resolve(self.connection)
        return self._resolved

    def _schemas(self) -> Schemas:
        assert self._resolved is not None
        return schemas_for(self._resolved, self.store)

    def _strip_domain(self, name: str) -> str:
        assert self._resolved is not None
        return naming.trim_domain_prefix(name, self._resolved.config.domain)

    # -- handlers -----------------------------------------------------------------------------

    async def _call_handler(
        self, what: str, handler: Callable[..., Awaitable[T]], *args: Any
    ) -> T | Failed:
        """``await handler(*args)``; a :class:`Failed` for anything its code raised (module
        doc). Only the consumer's own cancellation propagates."""
        try:
            if self.handler_timeout is None:
                return await handler(*args)
            with trio.move_on_after(self.handler_timeout) as scope:
                result = await handler(*args)
            if scope.cancelled_caught:
                return Failed(
                    HandlerTimeout(
                        f"{what} of {self.consumer_name} ran longer than its handler_timeout "
                        f"of {self.handler_timeout} s and was cancelled"
                    )
                )
            return result
        except BaseException as exc:
            return await self._handler_raised(exc)

    async def _handler_raised(self, exc: BaseException) -> Failed:
        """What a handler raised, as its message's failure; re-raised only when it is this
        consumer's own cancellation. (Hot paths call the handler themselves, then this.)"""
        if _is_cancellation(exc) and await being_cancelled():
            raise exc
        return Failed(exc)

    def _observe_failure(self, msg: Message | None, error: BaseException) -> None:
        observer = _observer.get()
        if observer is not None:
            observer.handler_failed(self.consumer_name, msg, error)

    def _observe_unsettled(self, msg: Message) -> None:
        observer = _observer.get()
        if observer is not None:
            observer.left_unsettled(self.consumer_name, msg)

    # -- stopping -----------------------------------------------------------------------------

    def _watch_stop(self, finished: trio.Event) -> None:
        """From ``terminate``: report the consumer by name if it has not finished
        ``shutdown`` + :data:`STUCK_GRACE` seconds later (a handler ignoring cancellation)."""
        if not (0 < self.shutdown < float("inf")):
            return
        self.nursery.start_soon(self._stop_watchdog, finished, self.shutdown + STUCK_GRACE)

    async def _stop_watchdog(self, finished: trio.Event, patience: float) -> None:
        # Shielded: the actor's own cancellation (its shutdown deadline) must not end the watch.
        with trio.CancelScope(shield=True):
            with trio.move_on_after(patience):
                await finished.wait()
                return
            description = (
                f"consumer {self.consumer_name} ({type(self).__name__}) has not stopped "
                f"{patience:.1f} s after it was asked to, past its shutdown of {self.shutdown} s: "
                "a handler ignores cancellation (a shielded cancel scope, or blocking code)"
            )
            log.critical("%s", description)
            hook = _stuck_hook.get()
            if hook is not None:
                hook(description)

    # -- missing schemas ----------------------------------------------------------------------

    def _schema_missing(self, msg: Message, error: BaseException) -> str:
        """Record that ``msg``'s type has no schema; log loudly; its message name."""
        name = _message_name(msg, self._strip_domain)
        count = self._missing_schemas.get(name, 0) + 1
        self._missing_schemas[name] = count
        if count == 1 or count % 100 == 0:
            log.error(
                "consumer %s: no schema for %s in the schema store (%d events met so far); "
                "this is a configuration fault, not a bad event: load the schema "
                "(`polyn schemas load`). %s",
                self.consumer_name,
                name,
                count,
                error,
            )
        return name

    def _schema_back(self, name: str) -> None:
        if self._missing_schemas.pop(name, None) is not None:
            log.warning("consumer %s: the schema for %s is back", self.consumer_name, name)

    # -- health -------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why this consumer is unhealthy now, or None (see :meth:`polyn.Running.health`)."""
        if self._missing_schemas and self._resolved is not None:
            try:
                present = set(self._schemas().names())
            except PolynError:
                present = set()
            for name in list(self._missing_schemas):
                if name in present:
                    self._schema_back(name)
            if self._missing_schemas:
                names = ", ".join(sorted(self._missing_schemas))
                return f"{self.consumer_name}: no schema in the store for {names}"
        return None


def _message_name(msg: Message, strip: Callable[[str], str]) -> str:
    try:
        document = orjson.loads(msg.data)
        name = document.get("type") if isinstance(document, dict) else None
    except orjson.JSONDecodeError:
        name = None
    return strip(name) if isinstance(name, str) and name else msg.subject


def monotonic() -> float:
    """Wall-clock seconds for health checks (read outside trio too)."""
    return time.monotonic()
