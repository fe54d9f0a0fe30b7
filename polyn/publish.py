"""Publishing validated events: :func:`pub`, :func:`request` and :func:`reply`.

Each call builds an :class:`~polyn.Event` (``Event.new``: the Elixir client's defaults), validates
and encodes it with the schema store's current snapshot (:func:`polyn.codec.encode`: nothing is
sent when it is invalid), and publishes it with two headers: ``Nats-Msg-Id`` = the event id, so
JetStream drops a duplicate, and ``traceparent`` from the send span (:mod:`polyn.tracing`, when an
OpenTelemetry SDK is installed).

- The **subject** is the message name: ``event_type`` without the config's domain, the event's
  ``type`` is ``<domain>.<message name>``, as the Elixir and Ruby clients do. A type given with
  the domain (``com.acme.user.created.v1``) is stripped of it
  (:func:`polyn.naming.trim_domain_prefix`, the rule consumers follow), so it goes to the
  subject a consumer of ``user.created.v1`` reads: :func:`pub`, :func:`request`, :func:`reply`
  and the portal's calls alike.
- ``conn`` is a connection name inside the tree (default ``"nats"``), an
  :class:`~polyn.actors.ActorRef`, or the App's running handle (from a script or a test body).
- ``data`` is a JSON value, or an attrs instance, a dataclass or a pydantic model (anything with
  ``model_dump``), converted to JSON first with :func:`polyn.typed.unstructure` (nested
  instances, enums, ``json_key`` renames; an unset optional field of a generated class is left
  out, as the schema may not allow ``null``). pydantic is not needed by Polyn.
- **Typed publishing**: an instance of a class ``polyn schemas codegen`` wrote carries its
  message name, so ``pub(running, OrderPlacedV1(...))`` needs no event type (``request`` and
  ``reply`` likewise); ``request(..., reply_type=StockReportedV1)`` returns an
  ``Event[StockReportedV1]``. A plain JSON value skips all of this: the conversion costs one
  type check (``polyn.typed`` and cattrs are loaded on first use).
- ``store`` names the SchemaStore (its registered name, by default the config's
  ``schema_store``).
- A core publish (``ack=False``, the default, as in Elixir) only queues the message into the
  connection's outgoing pump and returns: many tasks publishing at once share the batched path,
  never one thread crossing per event. ``await resolve(conn).transport.flush()`` waits until
  the server has it.
- ``ack=True`` publishes through JetStream and returns the :class:`~polyn.nats.PubAck`. A
  timeout or a lost connection is retried (at most :data:`ACK_ATTEMPTS` attempts, backing off)
  with the **same** ``Nats-Msg-Id``, so the stream stores the event once even if an earlier
  attempt did arrive (the retry's ack then says ``duplicate=True``; the stream's duplicate
  window, two minutes by default, bounds this). A stream that exists but has no leader for the
  moment (a cluster electing a new one after losing a node: nats-server takes up to about ten
  seconds) is waited for, up to :data:`LEADER_WAIT` seconds, before those attempts count. When no
  stream captures the subject it raises :class:`~polyn.errors.StreamError`.

Example::

    await polyn.pub(running, "user.created.v1", {"name": "Ada"})
    ack = await polyn.pub(running, OrderPlacedV1(order_id="A-1", ...), ack=True)

    answer = await polyn.request(running, "quote.requested.v1", {"sku": "A1"}, timeout=2)
    # in a Responder, or by hand:
    await polyn.reply("nats", msg.reply_to, "quote.given.v1", {"price": 10})
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, cast, overload

import attrs
import orjson
import trio
from typing_extensions import TypeVar

from polyn import codec, tracing
from polyn.config import Config, config_for
from polyn.errors import (
    NatsConnectionError,
    PermissionDeniedError,
    PolynError,
    RequestTimeout,
    StreamError,
    ValidationError,
)
from polyn.event import Event, next_event_id, now_text
from polyn.naming import trim_domain_prefix
from polyn.nats import Message, PayloadTooLargeError, PubAck
from polyn.resolve import SCHEMAS, Resolved, resolve, schemas_for

if TYPE_CHECKING:
    from polyn.actors import Tree
    from polyn.resolve import Conn
    from polyn.typed import Decoder, Generated

__all__ = [
    "ACK_ATTEMPTS",
    "LEADER_WAIT",
    "event_type_and_data",
    "pub",
    "publish_event",
    "reply",
    "request",
]

log = logging.getLogger("polyn.publish")

ACK_ATTEMPTS: Final = 5
"""How many times ``pub(..., ack=True)`` tries a JetStream publish before giving up."""
LEADER_WAIT: Final = 20.0
"""How long ``pub(..., ack=True)`` waits for a stream that exists to answer again (a new leader)."""
_ACK_TIMEOUT: Final = 5.0
_BACKOFF: Final = (0.1, 0.25, 0.5, 1.0)
_ELECTION_POLL: Final = 0.25

_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})

R = TypeVar("R", default=Any)
"""The data class of a typed reply (``request(..., reply_type=R)``)."""


class _NoData:
    def __repr__(self) -> str:
        return "<no data>"


_NO_DATA: Any = _NoData()


def event_type_and_data(event_type: object, data: Any = _NO_DATA) -> tuple[str, Any]:
    """The event type and JSON data to publish for ``(event_type, data)`` or ``(instance,)``.

    What :func:`pub`, :func:`request`, :func:`reply` and a Responder's answer do with their
    arguments: a message name with a JSON value is returned as it is (one type check, the hot
    path); any other ``data``, or an instance of a generated class alone, goes through
    :func:`polyn.typed.event_type_and_data` (loaded on first use). Raises ``TypeError`` for a
    message name without data, an instance of a class that stands for no message, or both an
    instance and data.

    Example::

        event_type_and_data("user.created.v1", {"name": "Ada"})  # ('user.created.v1', {...})
        event_type_and_data(OrderPlacedV1(order_id="A-1", ...))   # ('order.placed.v1', {...})
    """
    if type(event_type) is str:
        if type(data) in _PLAIN:
            return event_type, data
        if data is _NO_DATA:
            raise TypeError(
                f"Publishing a {event_type} event needs its data: pub(conn, {event_type!r}, "
                "data), or pass an instance of a class generated by `polyn schemas codegen` "
                "instead of the event type"
            )
    from polyn import typed

    if data is _NO_DATA:
        return typed.event_type_and_data(event_type)
    return typed.event_type_and_data(event_type, data)


# Headers Polyn sets itself: a user header of the same name, in any case, is dropped, so it can
# never shadow the event id (JetStream's de-duplication) or the trace context.
_RESERVED_HEADERS = frozenset({"nats-msg-id", "traceparent"})


def _headers(user: Mapping[str, str] | None) -> dict[str, str]:
    if not user:
        return {}
    return {
        key: value
        for key, value in user.items()
        if not (isinstance(key, str) and key.lower() in _RESERVED_HEADERS)
    }


async def publish_event(
    resolved: Resolved,
    event: Event,
    *,
    headers: Mapping[str, str] | None = None,
    reply_to: str | None = None,
    store: str | None = None,
    ack: bool = False,
    subject: str | None = None,
    destination: str | None = None,
) -> PubAck | None:
    """Validate, encode and publish an already built ``event``; the engine of :func:`pub`.

    ``subject`` defaults to the event's message name (its ``type`` without the domain);
    ``destination`` names the send span (``<destination> send``) and defaults to the subject.
    Adds ``Nats-Msg-Id`` (= ``event.id``, replacing any given) and ``traceparent`` to a copy of
    ``headers``. Returns the PubAck with ``ack=True``, else None.
    """
    config = resolved.config
    if subject is None:
        subject = trim_domain_prefix(event.type, config.domain)
    schemas = schemas_for(resolved, store)
    return await _send(
        resolved,
        subject,
        destination or subject,
        event.id,
        lambda: codec.encode(event, schemas, config),
        headers,
        reply_to,
        ack,
    )


async def _send(
    resolved: Resolved,
    subject: str,
    destination: str,
    event_id: str,
    encode: Callable[[], bytes],
    headers: Mapping[str, str] | None,
    reply_to: str | None,
    ack: bool,
) -> PubAck | None:
    """Encode (inside the send span) and publish one event, core or JetStream."""
    hdrs = _headers(headers)
    with tracing.send_span(destination, hdrs) as span:
        body = encode()
        hdrs["Nats-Msg-Id"] = event_id
        transport = resolved.transport
        if span.is_recording():
            tracing.set_send_attributes(span, destination, event_id, body, transport)
        if ack:
            try:
                return await _js_publish(resolved, subject, body, hdrs)
            except PolynError as exc:
                exc.event_id = event_id
                if isinstance(exc, RequestTimeout | NatsConnectionError):
                    # The event may be stored: say how to retry it without a duplicate.
                    exc.args = (
                        f"{exc} (event id {event_id}: the stream may have stored it; retry "
                        f"with pub(..., id={event_id!r}) to store it at most once)",
                    )
                raise
        await transport.publish(subject, body, headers=hdrs, reply_to=reply_to)
        return None


# -- the hot path: the envelope from a template ---------------------------------------------------


class _Template:
    """The bytes of every event of one ``(config, event_type, source)`` but its id, time, data.

    ``codec.encode`` writes the nine attributes with orjson in a fixed order; all but ``id``,
    ``time`` and ``data`` are the same for every event :func:`pub` makes for one event type and
    source, so they are encoded once. A template is used only after one event of its kind went
    through ``codec.encode`` (``verified``), so the envelope it writes is one the codec accepts.
    """

    __slots__ = ("middle", "name", "tail", "verified")

    def __init__(self, event: Event, name: str) -> None:
        dumps = orjson.dumps
        self.name = name
        self.middle = b"".join(
            (
                b',"specversion":',
                dumps(event.specversion),
                b',"type":',
                dumps(event.type),
                b',"source":',
                dumps(event.source),
                b',"time":',
            )
        )
        self.tail = b"".join(
            (
                b',"datacontenttype":',
                dumps(event.datacontenttype),
                b',"dataschema":null,"polyndata":',
                dumps(event.polyndata),
                b"}",
            )
        )
        self.verified = False

    def render(self, event_id: str, time: str, data: Any) -> bytes:
        dumps = orjson.dumps
        parts = (b'{"id":', dumps(event_id), self.middle, dumps(time), b',"data":')
        return b"".join((*parts, dumps(data), self.tail))


def _template(config: Config, event_type: str, source: str | None) -> _Template:
    """The template of ``event_type`` events from ``source`` (NamingError for bad names).

    A module-level cache: templates are pure functions of their (immutable) key, shared by
    every App in the process, at most 1,024 of them. The last config seen is matched by
    identity first: hashing a ``Config`` (all its fields) for the cache cost more than the rest
    of the lookup."""
    # One tuple, replaced as a whole: trio runs in other threads (portals) may publish too.
    last_config, templates = _LAST_TEMPLATES[0]
    if last_config is config:
        template: _Template | None = templates.get((event_type, source))
        if template is not None:
            return template
    else:
        templates = {}
        _LAST_TEMPLATES[0] = (config, templates)
    template = _built_template(config, event_type, source)
    if len(templates) < 1024:
        templates[(event_type, source)] = template
    return template


# [(the last config seen, {(event_type, source): its template})]
_LAST_TEMPLATES: list[tuple[Config | None, dict[tuple[str, str | None], _Template]]] = [(None, {})]


def _clear_templates() -> None:
    """Forget every template (tests: the next ``pub`` of each type takes the codec's path)."""
    _LAST_TEMPLATES[0] = (None, {})
    _built_template.cache_clear()


@functools.lru_cache(maxsize=1024)
def _built_template(config: Config, event_type: str, source: str | None) -> _Template:
    event = Event.new(config, event_type, None, source=source, id="-", time="-")
    return _Template(event, trim_domain_prefix(event.type, config.domain))


_INT_RANGE = (-(2**63), 2**64)


_LEAVES = frozenset({str, bool, type(None)})


def _plain_json(value: Any, depth: int = 0) -> bool:
    """True when orjson writes ``value`` exactly as ``codec.encode`` would: JSON types only,
    string keys, finite floats, 64-bit integers. False means "let the codec decide"."""
    kind = type(value)
    if kind is dict:
        if depth > 32:
            return False
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind in _LEAVES:
                continue
            if kind is list and depth < 32:  # strings in a list, as usual: no call per item
                for element in item:
                    if type(element) is not str and not _plain_json(element, depth + 2):
                        return False
            elif not _plain_json(item, depth + 1):
                return False
        return True
    if kind is list:
        if depth > 32:
            return False
        for item in value:
            if type(item) not in _LEAVES and not _plain_json(item, depth + 1):
                return False
        return True
    if kind in _LEAVES:
        return True
    if kind is int:
        return bool(_INT_RANGE[0] <= value < _INT_RANGE[1])
    if kind is float:
        return bool(value - value == 0)
    return False


async def _js_publish(
    resolved: Resolved, subject: str, body: bytes, headers: dict[str, str]
) -> PubAck:
    transport = resolved.transport
    attempt = 0
    leaderless_until: float | None = None  # waiting out a leader election until then
    while True:
        attempt += 1
        electing = False
        try:
            return await transport.js_publish(subject, body, headers=headers, timeout=_ACK_TIMEOUT)
        except StreamError as exc:
            if exc.code != 503:
                raise
            # No responders: no stream captures the subject, or JetStream is not ready yet
            # (a server that is starting up), or the stream has no leader for the moment (a
            # cluster that lost the leader's node elects another). Only the first is final.
            try:
                captured = bool(await transport.stream_names(subject))
                known = True
            except (RequestTimeout, NatsConnectionError, StreamError):
                captured, known = True, False  # cannot tell now: try again
            if not captured:
                raise StreamError(
                    f"no JetStream stream captures the subject {subject!r}; create one "
                    "(a migration) or publish without ack=True",
                    code=503,
                ) from None
            if known:
                # The stream exists but did not answer: its election does not use up attempts.
                now = trio.current_time()
                if leaderless_until is None:
                    leaderless_until = now + LEADER_WAIT
                if now < leaderless_until:
                    attempt -= 1
                    electing = True
            error: Exception = exc
        except (PermissionDeniedError, PayloadTooLargeError):
            raise
        except (RequestTimeout, NatsConnectionError) as exc:
            if getattr(transport, "closed", False):
                raise
            error = exc
        if attempt >= ACK_ATTEMPTS:
            raise error
        log.info(
            "JetStream publish to %r failed (%s), retrying with the same Nats-Msg-Id %s",
            subject,
            error,
            headers.get("Nats-Msg-Id"),
        )
        if electing:
            await trio.sleep(_ELECTION_POLL)
        else:
            await trio.sleep(_BACKOFF[min(attempt - 1, len(_BACKOFF) - 1)])


@overload
async def pub(
    conn: Conn,
    event_type: str,
    data: object,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    reply_to: str | None = None,
    store: str | None = None,
    ack: bool = False,
    id: str | None = None,
) -> PubAck | None: ...


@overload
async def pub(
    conn: Conn,
    event_type: Generated,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    reply_to: str | None = None,
    store: str | None = None,
    ack: bool = False,
    id: str | None = None,
) -> PubAck | None: ...


async def pub(
    conn: Conn,
    event_type: str | Generated,
    data: Any = _NO_DATA,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    reply_to: str | None = None,
    store: str | None = None,
    ack: bool = False,
    id: str | None = None,
) -> PubAck | None:
    """Publish ``data`` as a new ``event_type`` event on the subject of its message name.

    Or publish an instance of a class ``polyn schemas codegen`` wrote, alone: its message is
    the event type (``pub(running, OrderPlacedV1(...))``).

    ``source`` refines the event's source (``<domain>:<source_root>:<source>``); ``headers`` are
    sent too; ``reply_to`` sets the message's reply subject. ``id`` is the event's id (and
    ``Nats-Msg-Id``), a new UUID when not given: to retry a ``pub(..., ack=True)`` that raised
    (the event may have been stored), pass the failed one's ``err.event_id``, and the stream
    stores the event once (within its duplicate window). See the module doc for ``conn``,
    ``data``, ``store`` and ``ack``.

    Raises :class:`~polyn.errors.ValidationError` (nothing is sent) when the event is invalid,
    :class:`~polyn.errors.NamingError` for a bad ``event_type`` or ``source``,
    :class:`~polyn.errors.SchemaStoreError` when no schema store runs, and with ``ack=True``
    :class:`~polyn.errors.StreamError` when no stream captures the subject.

    Example::

        await polyn.pub(running, "user.created.v1", {"name": "Ada"}, source="signup")
        await polyn.pub(running, UserCreatedV1(name="Ada"), source="signup")
    """
    resolved = resolve(conn)
    if type(event_type) is str and type(data) in _PLAIN:  # the hot path: a JSON value
        payload = data
    else:
        event_type, payload = event_type_and_data(event_type, data)
    config = resolved.config
    template = _template(config, event_type, source)
    if template.verified and (id is None or (type(id) is str and id)):
        event_id = next_event_id() if id is None else id
        schemas = schemas_for(resolved, store)

        def encode() -> bytes:
            # A combined (old-CLI) schema judges the whole event, which only the codec builds.
            compiled = schemas._lookup(template.name)
            if (
                compiled is not None
                and not compiled.whole_event
                and _plain_json(payload)
                and compiled.is_valid(payload)
            ):
                try:
                    return template.render(event_id, now_text(), payload)
                except orjson.JSONEncodeError:  # a lone surrogate: the codec words it
                    pass
            event = Event.new(config, event_type, payload, source=source, id=event_id)
            return codec.encode(event, schemas, config)

        return await _send(
            resolved, template.name, template.name, event_id, encode, headers, reply_to, ack
        )
    if id is None:
        event = Event.new(config, event_type, payload, source=source)
    else:
        event = Event.new(config, event_type, payload, source=source, id=id)
    ack_or_none = await publish_event(
        resolved,
        event,
        headers=headers,
        reply_to=reply_to,
        store=store,
        ack=ack,
        subject=template.name,
    )
    if event.datacontenttype == "application/json" and event.polyndata == _POLYNDATA:
        template.verified = True  # one event of this kind passed codec.encode
    return ack_or_none


_POLYNDATA = Event(type="x", source="x").polyndata


# -- prepared in another thread (the portal) -----------------------------------------------------


def prepare_pub(
    tree: Tree, event_type: object, data: Any, source: str | None, store: str | None
) -> tuple[str, str, bytes] | None:
    """The subject, id and body of a core :func:`pub` of ``data``, validated and encoded in the
    calling thread, or ``None`` when the event must take :func:`pub`'s own path.

    For a portal's callers: they validate and encode their own events (an asyncio loop's or a
    worker thread's time, not the App's trio thread's), and the crossing carries ready bytes
    to :func:`pub_prepared`. Safe in any thread: it reads the tree's config and schema
    snapshot (immutable, replaced as a whole), the template cache (entries replaced as a
    whole) and per-thread ids. Only the usual event qualifies: a message name and a plain JSON
    value that its schema accepts, of an ``(event_type, source)`` whose template a :func:`pub`
    has verified. Anything else, an invalid event included, returns ``None``, and :func:`pub`
    then words the error as usual.

    Example::

        prepared = prepare_pub(running.tree, "user.created.v1", data, None, None)
        if prepared is not None:
            await pub_prepared(running, *prepared)   # in the trio run
    """
    if type(event_type) is not str or type(data) not in _PLAIN:
        return None
    try:
        config = config_for(tree)  # a ConfigError: pub words it
        template = _template(config, event_type, source)
        if not template.verified or not _plain_json(data):
            return None
        schemas = tree.lookup(store or config.schema_store, SCHEMAS)
        if schemas is None or not schemas.is_valid(template.name, data):
            return None
        event_id = next_event_id()
        # The subject is the message name, as pub's (a type given with the domain loses it).
        return template.name, event_id, template.render(event_id, now_text(), data)
    except Exception:  # a bad name, a lone surrogate: pub raises it, worded
        return None


async def pub_prepared(
    conn: Conn,
    subject: str,
    event_id: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    reply_to: str | None = None,
) -> None:
    """Publish what :func:`prepare_pub` made, as :func:`pub` publishes (send span, headers,
    ``Nats-Msg-Id``, the connection's transport), with the body ready."""
    await _send(resolve(conn), subject, subject, event_id, lambda: body, headers, reply_to, False)


@overload
async def request(
    conn: Conn,
    event_type: str,
    data: object,
    *,
    timeout: float = 5,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
    with_message: Literal[False] = False,
    reply_type: type[R] | None = None,
) -> Event[R]: ...


@overload
async def request(
    conn: Conn,
    event_type: str,
    data: object,
    *,
    timeout: float = 5,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
    with_message: Literal[True],
    reply_type: type[R] | None = None,
) -> tuple[Event[R], Message]: ...


@overload
async def request(
    conn: Conn,
    event_type: Generated,
    *,
    timeout: float = 5,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
    with_message: Literal[False] = False,
    reply_type: type[R] | None = None,
) -> Event[R]: ...


@overload
async def request(
    conn: Conn,
    event_type: Generated,
    *,
    timeout: float = 5,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
    with_message: Literal[True],
    reply_type: type[R] | None = None,
) -> tuple[Event[R], Message]: ...


async def request(
    conn: Conn,
    event_type: str | Generated,
    data: Any = _NO_DATA,
    *,
    timeout: float = 5,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
    with_message: bool = False,
    reply_type: type[R] | None = None,
) -> Event[R] | tuple[Event[R], Message]:
    """Publish ``data`` as an ``event_type`` event and return the reply, validated, as an Event.

    ``event_type`` and ``data`` are taken as :func:`pub` takes them (an instance of a generated
    class alone will do). With ``reply_type`` (a class generated for the reply's message, an
    attrs class, a dataclass or a pydantic model) the reply's ``data`` is an instance of it and
    the result an ``Event[reply_type]``, built as a typed consumer builds its events; a reply of
    a schema revision the class cannot read raises :class:`~polyn.errors.IncompatibleSchemaError`.
    With ``with_message=True`` it returns ``(event, message)``: the reply's
    :class:`~polyn.nats.Message` as well, for its ``headers`` and ``subject`` (the pair a
    Responder's ``handle_request`` gets). The reply is decoded with the same schema store, so
    its type needs a schema too. Raises
    :class:`~polyn.errors.RequestTimeout` (a ``TimeoutError``) when no reply comes within
    ``timeout`` seconds (recorded on the send span), its subclass
    :class:`~polyn.errors.NoRespondersError` at once when nobody listens on the subject,
    :class:`~polyn.errors.ResponderError` when a Polyn :class:`~polyn.Responder` failed on the
    request (its error reply carries the error type and a one-line reason), and
    :class:`~polyn.errors.ValidationError` when the request or the reply is invalid.

    Example::

        quote = await polyn.request(running, "quote.requested.v1", {"sku": "A1"}, timeout=2)
        quote.data["price"]
        quote, msg = await polyn.request(running, "quote.requested.v1", {}, with_message=True)
        msg.headers.get("X-Region")
        stock = await polyn.request(running, StockRequestedV1(sku="A1", quantity=2),
                                    reply_type=StockReportedV1)
        stock.data.reserved                       # mypy knows it is a bool
    """
    resolved = resolve(conn)
    config = resolved.config
    transport = resolved.transport
    event_type, payload = event_type_and_data(event_type, data)
    event = Event.new(config, event_type, payload, source=source)
    event_type = trim_domain_prefix(event.type, config.domain)  # the subject, as pub's
    schemas = schemas_for(resolved, store)
    hdrs = _headers(headers)
    with tracing.send_span(event_type, hdrs) as span:
        body = codec.encode(event, schemas, config)
        hdrs["Nats-Msg-Id"] = event.id
        if span.is_recording():
            tracing.set_send_attributes(span, event_type, event.id, body, transport)
        try:
            answer = await transport.request(event_type, body, headers=hdrs, timeout=timeout)
        except RequestTimeout as exc:
            # As the Elixir client does: the timeout is recorded on the send span with the
            # payload, and the caller gets an error (Python raises where Elixir returns).
            tracing.record_error(
                span,
                RequestTimeout(f"request for {event_type} timeout. payload: \n{body.decode()}"),
            )
            exc.args = (f"request for {event_type}: {exc}",)
            raise exc from None
    from polyn.consumers import raise_if_error_reply  # the Responder's error replies

    raise_if_error_reply(answer, event_type)
    with tracing.receive_span(tracing.TEMPORARY, answer) as span:
        reply_event = _decode_reply(answer, schemas, resolved, event_type)
        if reply_type is not None:
            try:
                reply_event = _typed_reply(reply_event, reply_type, schemas, config)
            except PolynError as exc:
                tracing.record_error(span, exc)
                raise
        if span.is_recording():
            tracing.set_receive_attributes(
                span, reply_event, answer, transport, destination=tracing.TEMPORARY
            )
        return (reply_event, answer) if with_message else reply_event


@functools.lru_cache(maxsize=256)
def _reply_decoder(reply_type: type[Any]) -> Decoder[Any]:
    """One decoder per reply class, so each schema revision is judged (and logged) once.

    A module-level cache like ``_template``'s: a decoder's state is its verdict per schema
    snapshot, the same for every App of the process."""
    from polyn.typed import Decoder

    return Decoder(reply_type)


def _typed_reply(
    reply_event: Event[Any], reply_type: type[R], schemas: codec.Schemas, config: Config
) -> Event[R]:
    decoder: Decoder[R] = _reply_decoder(cast(Any, reply_type))
    name = trim_domain_prefix(reply_event.type, config.domain)
    data = decoder.decode(reply_event.data, name=name, schemas=schemas)
    return attrs.evolve(reply_event, data=data)


def _decode_reply(
    answer: Message, schemas: codec.Schemas, resolved: Resolved, event_type: str
) -> Event:
    try:
        return codec.decode(answer.data, schemas, resolved.config)
    except ValidationError as exc:
        exc.args = (f"the reply to a {event_type} request is not valid: {exc}",)
        raise


@overload
async def reply(
    conn: Conn,
    reply_to: str,
    event_type: str,
    data: object,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
) -> None: ...


@overload
async def reply(
    conn: Conn,
    reply_to: str,
    event_type: Generated,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
) -> None: ...


async def reply(
    conn: Conn,
    reply_to: str,
    event_type: str | Generated,
    data: Any = _NO_DATA,
    *,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    store: str | None = None,
) -> None:
    """Publish ``data`` as an ``event_type`` event on ``reply_to``, a request's reply subject.

    Validated like :func:`pub`, and takes ``event_type`` and ``data`` as it does (an instance
    of a generated class alone will do); its span is ``(temporary) send``. Raises
    ``ValueError`` when ``reply_to`` is empty (the message was not a request).

    Example::

        await polyn.reply("nats", msg.reply_to, "quote.given.v1", {"price": 10})
        await polyn.reply("nats", msg.reply_to, QuoteGivenV1(price=10))
    """
    if not reply_to:
        raise ValueError("reply() needs the request's reply subject; this message has none")
    resolved = resolve(conn)
    event_type, payload = event_type_and_data(event_type, data)
    event = Event.new(resolved.config, event_type, payload, source=source)
    await publish_event(
        resolved,
        event,
        headers=headers,
        store=store,
        subject=reply_to,
        destination=tracing.TEMPORARY,
    )
