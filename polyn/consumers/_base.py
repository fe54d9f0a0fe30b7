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
- **Typed events**: the option ``data_type`` (or the generic form, ``PullConsumer[OrderPlacedV1]``)
  names the class of the events' data. The consumer then builds an instance from each validated
  event's ``data`` (:class:`polyn.typed.Decoder`: cattrs, the schema revision judged once per
  schema snapshot) and hands the handler an ``Event[OrderPlacedV1]``. A class generated for
  another message, or one cattrs cannot build, is refused when the spec is built. An event of a
  schema revision the class cannot read (:class:`~polyn.errors.IncompatibleSchemaError`: another
  team made a breaking change) is a configuration fault like a missing schema, never a poison
  message: JetStream consumers nak it with backoff without counting it towards
  ``max_failures``, core consumers record it as a missing schema is recorded, and
  :meth:`Consumer.problem` reports it until the class can read the store's revision again.
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
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Protocol, TypeVar

import attrs
import orjson
import trio

from polyn import naming
from polyn.actors import Actor, ActorRef, Key
from polyn.codec import Schemas
from polyn.consumers._options import (
    ACTOR_OPTIONS,
    a_class,
    build_options,
    instance,
    seconds,
    text,
)
from polyn.errors import (
    ActorError,
    ConsumerError,
    IncompatibleSchemaError,
    NatsConnectionError,
    OptionError,
    PolynError,
    SchemaStoreError,
)
from polyn.event import DataT, Event
from polyn.nats import Message
from polyn.resolve import Resolved, resolve, schemas_for

if TYPE_CHECKING:
    from polyn.typed import Decoder

__all__ = [
    "PROBLEM",
    "Consumer",
    "ConsumerOptions",
    "Failed",
    "HandlerTimeout",
    "set_handler_observer",
]

log = logging.getLogger("polyn.consumer")

T = TypeVar("T")


PROBLEM: Final = Key[Callable[[], "str | None"]]("consumer problem")
"""What a running consumer provides to its tree: its :meth:`Consumer.problem`, which
``running.health()`` calls (no reach into the actor instance)."""

CONNECTION_WAIT = 30.0
"""Seconds a consumer whose connection restarted waits for the new one before it gives up and
crashes (for its supervisor to decide)."""

_CONNECTION_POLL = 0.05


def connection_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` (maybe an exception group from a nursery) is only the connection or the
    schema store going away: what a consumer outlives by attaching to their successors."""
    if isinstance(exc, NatsConnectionError | SchemaStoreError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        found, rest = exc.split((NatsConnectionError, SchemaStoreError))
        if found is None:
            return False
        return rest is None or rest.split(trio.Cancelled)[1] is None
    return False


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
      failed (default None: no limit);
    - ``data_type``: the class of the events' data (typed events; default None: ``event.data``
      is the JSON value). A class generated by ``polyn schemas codegen`` for the consumer's
      message, an attrs class, a dataclass or a pydantic model.
    """

    connection: str | ActorRef = instance(  # noqa: RUF009 - an attrs field
        (str, ActorRef), "nats", what="a connection name or an ActorRef"
    )
    store: str | None = text(None)
    handler_timeout: float | None = seconds(None, optional=True)
    data_type: type[Any] | None = a_class(  # noqa: RUF009 - an attrs field
        None, what="a class (the events' data class) or None"
    )


def _generic_data_type(cls: type) -> type[Any] | None:
    """The class ``X`` of ``class C(PullConsumer[X])`` (or of any generic consumer base)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, Consumer)):
            continue
        args = typing.get_args(base)
        if len(args) == 1 and isinstance(args[0], type):
            found: type[Any] = args[0]
            return found
    return None


class Consumer(Actor, Generic[DataT]):
    """The base of every Polyn consumer (see the module doc). Not used directly.

    Generic in the events' data class (``DataT``, default ``Any``): ``PullConsumer[X]`` sets the
    ``data_type`` option to ``X`` and types the handler's event as ``Event[X]`` for mypy.
    """

    Options: ClassVar[type[Any]] = ConsumerOptions
    options: Any

    connection: str | ActorRef
    store: str | None
    handler_timeout: float | None
    data_type: type[DataT] | None

    _polyn_generic_data_type: ClassVar[type[Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = _generic_data_type(cls)
        if found is None:
            return
        declared = cls.__dict__.get("data_type")
        if declared is not None and declared is not found:
            raise OptionError(
                f"{cls.__name__}: option 'data_type' is {declared.__qualname__}, but the class "
                f"is declared for {found.__qualname__} (its generic base); name one class"
            )
        cls._polyn_generic_data_type = found
        if declared is None:
            setattr(cls, "data_type", found)  # noqa: B010 - mypy: generic attribute via class

    def __init__(self, **options: Any) -> None:
        actor_options = {key: options.pop(key) for key in ACTOR_OPTIONS if key in options}
        super().__init__(**actor_options)
        built = build_options(type(self), self.Options, options)
        self.options = built
        for field in attrs.fields(type(built)):
            setattr(self, field.name, getattr(built, field.name))
        self._resolved: Resolved | None = None
        self._reconnecting = False
        self._stopping = False  # set by the subclasses' terminate
        self._missing_schemas: dict[str, int] = {}  # message name -> events met without one
        self._decoder: Decoder[DataT] | None = None
        self._names: dict[str, str] = {}  # event type -> message name, for the decoder
        # message name -> (events its data class could not read, the latest reason)
        self._unreadable: dict[str, tuple[int, IncompatibleSchemaError]] = {}

    @property
    def consumer_name(self) -> str:
        """How logs and dead letters name this consumer."""
        return self.name or type(self).__name__

    # -- typed events -------------------------------------------------------------------------

    def _set_up_data_type(self, name: str, *, exact: bool = False) -> None:
        """Make the decoder of ``data_type`` for events of ``name`` (the consumer's type or
        subject); refuse a class generated for another message, or one cattrs cannot build.

        Called when the spec is built (``name`` as given, maybe with the domain) and again at
        start (``exact``: the domain stripped)."""
        data_type = self.data_type
        if data_type is None:
            return
        owner = type(self).__name__
        generic = type(self)._polyn_generic_data_type
        if generic is not None and data_type is not generic:
            raise OptionError(
                f"{owner}: option 'data_type' is {data_type.__qualname__}, but {owner} is "
                f"declared for {generic.__qualname__}"
            )
        if self._decoder is None:
            from polyn.typed import Decoder  # cattrs is loaded by typed consumers only

            try:
                self._decoder = Decoder(data_type)
            except TypeError as exc:
                raise OptionError(f"{owner}: option 'data_type': {exc}") from None
        message = self._decoder.message
        if message is None or name == message or (not exact and name.endswith("." + message)):
            return
        raise OptionError(
            f"{owner}: option 'data_type' is {data_type.__qualname__}, generated for {message}, "
            f"but {owner} consumes {name}; use the class generated for {name}"
        )

    def _typed(self, event: Event[Any], schemas: Schemas) -> Event[DataT]:
        """``event`` with its ``data`` as an instance of ``data_type`` (the decoder is set).

        Raises :class:`~polyn.errors.IncompatibleSchemaError` when the event's schema revision
        breaks the class, or the data does not fit it."""
        decoder = self._decoder
        assert decoder is not None
        name = self._names.get(event.type)
        if name is None:
            name = self._strip_domain(event.type)
            if len(self._names) < 1024:
                self._names[event.type] = name
        data = decoder.decode(event.data, name=name, schemas=schemas)
        if self._unreadable:
            self._readable_again(name)
        # The event is the codec's fresh object, which nothing else has seen yet: its data is
        # replaced in place rather than by a copy (``attrs.evolve`` costs a third of a whole
        # decode on a small event; this costs nothing). The handler gets a frozen event as ever.
        object.__setattr__(event, "data", data)
        return event

    def _schema_unreadable(self, event: Event[Any], error: IncompatibleSchemaError) -> str:
        """Record that ``event``'s data could not become a ``data_type``; its message name."""
        name = self._names.get(event.type) or self._strip_domain(event.type)
        count = self._unreadable.get(name, (0, error))[0] + 1
        self._unreadable[name] = (count, error)
        if count == 1 or count % 100 == 0:
            log.error(
                "consumer %s: %d %s event(s) so far that its data class cannot read: a "
                "configuration fault, not a bad event (regenerate the class, or restore a "
                "revision it reads): %s",
                self.consumer_name,
                count,
                name,
                error,
            )
        return name

    def _readable_again(self, name: str) -> None:
        if self._unreadable.pop(name, None) is not None:
            log.warning(
                "consumer %s: its data class reads %s events again", self.consumer_name, name
            )

    # -- the tree -----------------------------------------------------------------------------

    def _resolve(self) -> Resolved:
        """Find the connection, config and tree (from ``init``); provide :data:`PROBLEM`."""
        self._resolved = resolve(self.connection)
        self.provide(PROBLEM, self.problem)
        return self._resolved

    async def _reconnect(self, error: BaseException) -> Resolved | None:
        """The connection (or the schema store) went away under a running consumer: wait for
        a connected successor and the store's snapshot, and resolve again.

        This is how a consumer outlives its connection's restart under any strategy (with
        ``one_for_one`` nothing restarts the consumer itself). Waits up to
        :data:`CONNECTION_WAIT` seconds, then raises :class:`~polyn.errors.ConsumerError` for
        the supervisor; returns None when the consumer is asked to stop meanwhile.
        :meth:`problem` reports the wait.
        """
        # A transport that raised NatsConnectionError is closed for good (a disconnection
        # only makes calls wait): only a successor will do. The store alone going away
        # leaves the transport as it was.
        lost = isinstance(error, NatsConnectionError) or (
            isinstance(error, BaseExceptionGroup)
            and error.split(NatsConnectionError)[0] is not None
        )
        old = self._resolved.transport if self._resolved is not None and lost else None
        if old is not None and old.connected_url is not None:
            try:
                current = resolve(self.connection).transport
            except PolynError:
                current = None
            if current is old:  # still connected: not a lost connection (too large a message?)
                raise error
        self._reconnecting = True
        shown = error
        while isinstance(shown, BaseExceptionGroup):
            shown = shown.exceptions[0]
        log.warning(
            "consumer %s: its connection went away (%s); waiting for it to come back",
            self.consumer_name,
            shown,
        )
        try:
            with trio.move_on_after(CONNECTION_WAIT):
                while not self._stopping:
                    try:
                        resolved = resolve(self.connection)
                        if resolved.transport is not old and resolved.transport.connected_url:
                            schemas_for(resolved, self.store)
                            self._resolved = resolved
                            log.info("consumer %s: connected again", self.consumer_name)
                            return resolved
                    except (ActorError, NatsConnectionError, SchemaStoreError):
                        pass
                    await trio.sleep(_CONNECTION_POLL)
        finally:
            self._reconnecting = False
        if self._stopping:
            return None

        raise ConsumerError(
            f"consumer {self.consumer_name}: its connection {self.connection!r} did not come "
            f"back within {CONNECTION_WAIT:.0f} s ({error})"
        ) from error

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
        try:
            nursery = self.nursery
        except ActorError:
            return  # terminate after a crash: the actor's tasks have ended already
        nursery.start_soon(self._stop_watchdog, finished, self.shutdown + STUCK_GRACE)

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
        if self._reconnecting:
            return f"{self.consumer_name}: waiting for its connection {self.connection!r}"
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
        if self._unreadable and self._resolved is not None:
            return self._unreadable_problem()
        return None

    def _unreadable_problem(self) -> str | None:
        decoder = self._decoder
        assert decoder is not None
        try:
            schemas: Schemas | None = self._schemas()
        except PolynError:
            schemas = None
        for name in list(self._unreadable):
            if schemas is None:
                break
            verdict = decoder.compatibility(schemas, name)
            if verdict.judged and verdict.compatible:  # the store's revision fits again
                self._readable_again(name)
        if not self._unreadable:
            return None
        name = min(self._unreadable)
        count, error = self._unreadable[name]
        others = len(self._unreadable) - 1
        more = f" (and {others} other message{'s' if others > 1 else ''})" if others else ""
        return (
            f"{self.consumer_name}: {count} {name} event(s) its data class cannot read{more}: "
            f"{str(error).strip()}"
        )


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
