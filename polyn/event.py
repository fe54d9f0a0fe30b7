"""The Polyn event: a CloudEvent (JSON format) with the ``polyndata`` extension.

:class:`Event` is a frozen value with exactly the nine attributes the Elixir client puts on the
wire. :meth:`Event.new` builds an event to publish with the Elixir client's defaults; received
events come from :func:`polyn.codec.decode` and keep what the sender sent (its ``source``,
``polyndata`` and ``time`` as written, naive or whole-second times included).

``time`` is kept as the wire string rather than a :class:`~datetime.datetime`, so a received
event re-encodes byte-for-byte the same and odd but accepted senders' times survive; parse it
with ``datetime.fromisoformat(event.time)`` when you need a value.

Example::

    event = Event.new(config, "user.created.v1", {"name": "Ada"}, source="signup")
    event.type      # 'com.acme.user.created.v1'
    event.source    # 'com:acme:orders:payments:signup'
"""

from __future__ import annotations

import os
import platform
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic

import attrs
from typing_extensions import TypeVar

from polyn._version import __version__
from polyn.naming import full_source, full_type

if TYPE_CHECKING:
    from polyn.config import Config

__all__ = ["DataT", "Event", "next_event_id", "now_text"]

DataT = TypeVar("DataT", default=Any)
"""The type of an event's ``data``: ``Event[OrderPlacedV1]`` for a typed consumer's events; a
bare ``Event`` is ``Event[Any]`` (a JSON value)."""

SPECVERSION = "1.0.1"
_JSON = "application/json"


class _Ids:
    """UUID v4 ids from the OS's random source, as ``uuid.uuid4()`` makes them, but reading
    16 x 256 random bytes per system call (ids are made on the publish path). Each thread has
    its own (several trio runs, or a portal's callers, may make ids at once: a shared pool
    could hand two of them the same bytes). A forked child drops the parent's unused bytes, so
    two processes never hand out the same ids."""

    def __init__(self) -> None:
        self.pool = b""
        self.offset = 0

    def reset(self) -> None:
        self.pool = b""
        self.offset = 0

    def next(self) -> str:
        offset = self.offset
        if offset >= len(self.pool):
            self.pool = os.urandom(16 * 256)
            offset = 0
        self.offset = offset + 16
        raw = bytearray(self.pool[offset : offset + 16])
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_every_ids: weakref.WeakSet[_Ids] = weakref.WeakSet()
_per_thread = threading.local()


def _reset_ids_after_fork() -> None:
    for ids in list(_every_ids):
        ids.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_ids_after_fork)


def _new_id() -> str:
    try:
        ids: _Ids = _per_thread.ids
    except AttributeError:
        ids = _per_thread.ids = _Ids()
        _every_ids.add(ids)
    return ids.next()


# The last second formatted and its text, replaced as one tuple (any thread may read it).
_second: tuple[int, str] = (-1, "")


def _now() -> str:
    # Elixir's DateTime.to_iso8601(DateTime.utc_now()): microseconds and a "Z". The date and
    # time of day are formatted once per second.
    global _second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    last = _second
    if second != last[0]:
        last = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = last
    return f"{last[1]}.{micros:06d}Z"


_PYTHON_VERSION = platform.python_version()

next_event_id = _new_id
"""A new event id (UUID v4 text), as :class:`Event` makes them; for the publish hot path."""
now_text = _now
"""The current time as events carry it (UTC, microseconds, ``Z``); for the publish hot path."""


def _polyndata() -> dict[str, Any]:
    return {
        "clientlang": "python",
        "clientlangversion": _PYTHON_VERSION,
        "clientversion": __version__,
    }


@attrs.frozen(kw_only=True)
class Event(Generic[DataT]):
    """One event: the CloudEvent attributes Polyn puts on the wire.

    - ``id``: unique id, also the ``Nats-Msg-Id`` that deduplicates publishes (UUID v4).
    - ``specversion``: ``"1.0.1"`` for events built here (Ruby sends ``"1.0"``).
    - ``type``: ``<domain>.<message name>``, e.g. ``com.acme.user.created.v1``.
    - ``source``: colon form ``<domain>:<source_root>[:<source>]``.
    - ``time``: ISO 8601 text, UTC with microseconds and ``Z`` for events built here.
    - ``data``: the payload, a JSON value, checked against the message's JSON Schema. In a typed
      consumer (``data_type = OrderPlacedV1``) the handler gets an ``Event[OrderPlacedV1]``
      whose ``data`` is an instance of that class, built after validation
      (docs/guide/typed-events.md).
    - ``datacontenttype``: ``"application/json"`` unless given.
    - ``dataschema``: ``None``; no Polyn client sets it.
    - ``polyndata``: ``{"clientlang", "clientlangversion", "clientversion"}`` of the sender.

    Build events to publish with :meth:`new`; constructing one directly takes the values as they
    are (this is what the decoder does), with a fresh ``id`` and ``time`` when not given.

    Example::

        Event(id="1", type="com.acme.user.created.v1", source="com:acme:orders", data={})
    """

    id: str = attrs.field(factory=_new_id)
    specversion: str = SPECVERSION
    type: str
    source: str
    time: str | None = attrs.field(factory=_now)
    data: DataT = None  # type: ignore[assignment]  # None is the default of Event[Any]
    datacontenttype: str | None = _JSON
    dataschema: str | None = None
    polyndata: dict[str, Any] = attrs.field(factory=_polyndata)

    @staticmethod
    def new_event_id() -> str:
        """A new event id: a UUID v4, lowercase and hyphenated (Elixir's ``new_event_id/0``).

        Example::

            Event.new_event_id()     # '9b2d4c6e-1f3a-4b5c-8d7e-0a1b2c3d4e5f'
        """
        return _new_id()

    @staticmethod
    def new_timestamp() -> str:
        """The current time as events carry it: UTC ISO 8601 with microseconds and ``Z``
        (Elixir's ``new_timestamp/0``, ``DateTime.to_iso8601(DateTime.utc_now())``).

        Example::

            Event.new_timestamp()    # '2026-11-26T23:45:48.123456Z'
        """
        return _now()

    @classmethod
    def new(
        cls,
        config: Config,
        event_type: str,
        data: DataT,
        source: str | None = None,
        **fields: Any,
    ) -> Event[DataT]:
        """A new event to publish, with the Elixir client's defaults.

        ``type`` is :func:`~polyn.naming.full_type` of ``event_type`` and ``source`` is
        :func:`~polyn.naming.full_source` of ``source`` (both raise :class:`~polyn.NamingError`
        for invalid names). The other attributes may be given in ``fields`` (``id``, ``time``,
        ``specversion``, ``datacontenttype``, ``dataschema``, ``polyndata``). A given
        ``polyndata`` without ``"clientversion"`` gets this library's version added, as the Elixir
        client does.

        Example::

            Event.new(config, "user.created.v1", {"name": "Ada"})
            Event.new(config, "user.xml.v1", "<a/>", datacontenttype="application/xml")
        """
        if "type" in fields:
            raise TypeError("Event.new() takes the type from event_type, not type=")
        if "polyndata" in fields:
            polyndata = dict(fields["polyndata"])
            polyndata.setdefault("clientversion", __version__)
            fields["polyndata"] = polyndata
        return cls(
            type=full_type(event_type, config),
            source=full_source(config, source),
            data=data,
            **fields,
        )


# The envelope's attributes in the order Polyn writes them on the wire (the codec's fast path
# reads a document in this order; the trusted constructor sets the slots in it).
_WIRE_ORDER = (
    "id",
    "specversion",
    "type",
    "source",
    "time",
    "data",
    "datacontenttype",
    "dataschema",
    "polyndata",
)


def _trusted_setters() -> Any:
    slots = Event.__dict__
    return tuple(slots[name].__set__ for name in _WIRE_ORDER)


def _make_trusted() -> Callable[
    [str, str, str, str, str | None, Any, str, dict[str, Any]], Event[Any]
]:
    s_id, s_spec, s_type, s_source, s_time, s_data, s_content, s_schema, s_polyn = (
        _trusted_setters()
    )
    new = object.__new__

    def trusted(
        event_id: str,
        specversion: str,
        event_type: str,
        source: str,
        time: str | None,
        data: Any,
        datacontenttype: str,
        polyndata: dict[str, Any],
    ) -> Event[Any]:
        # Each slot set through its descriptor: what attrs' __init__ does for a frozen class,
        # without the keyword parsing, the defaults and a bound object.__setattr__ per field
        # (less than half the cost; this runs once per received event).
        event = new(Event)
        s_id(event, event_id)
        s_spec(event, specversion)
        s_type(event, event_type)
        s_source(event, source)
        s_time(event, time)
        s_data(event, data)
        s_content(event, datacontenttype)
        s_schema(event, None)
        s_polyn(event, polyndata)
        return event

    return trusted


_trusted = _make_trusted()
"""An :class:`Event` from values the decoder has already checked (``dataschema`` None): for
the receive hot path only. Equal to ``Event(...)`` of the same values."""

