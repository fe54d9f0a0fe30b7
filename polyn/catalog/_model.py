"""What a catalogue is made of: the inputs, read once, as frozen values.

A :class:`Catalog` holds what was read — the payload schemas, the streams and durable
consumers, the services' declared receivers and senders — and nothing derived; the pages and the
AsyncAPI document are computed from it (:mod:`polyn.catalog._views`), so the same inputs always
give the same output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs

from polyn.naming import subject_matches

__all__ = ["Catalog", "Durable", "Receiver", "Sender", "Service", "Stream"]

ReceiverKind = Literal["pull consumer", "pipeline", "subscriber", "responder"]


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(value.items())))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _sort_key(value: Any) -> Any:
    # None sorts first; nested values compare field by field, so any two entries compare.
    if value is None:
        return (0, "")
    if attrs.has(type(value)):
        return (1, tuple(_sort_key(getattr(value, f.name)) for f in attrs.fields(type(value))))
    if isinstance(value, tuple):
        return (1, tuple(_sort_key(item) for item in value))
    return (1, value)


def _sorted_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(sorted(value, key=_sort_key))


@attrs.frozen
class Stream:
    """A JetStream stream: its ``name``, the ``subjects`` it captures, its ``description``."""

    name: str
    subjects: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    description: str | None = attrs.field(default=None)

    def captures(self, subject: str) -> bool:
        """Whether a message published to ``subject`` is stored in this stream."""
        return any(subject_matches(pattern, subject) for pattern in self.subjects)


@attrs.frozen
class Durable:
    """A durable JetStream consumer: ``name``, its ``stream``, its filter subjects (none: it
    reads everything the stream captures) and its ``description``."""

    stream: str
    name: str
    filter_subjects: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    description: str | None = attrs.field(default=None)

    def reads(self, subject: str, stream: Stream | None) -> bool:
        """Whether this consumer delivers messages published to ``subject``."""
        if stream is None or not stream.captures(subject):
            return False
        if not self.filter_subjects:
            return True
        return any(subject_matches(pattern, subject) for pattern in self.filter_subjects)


@attrs.frozen
class Receiver:
    """A consumer in a service's tree, as declared by its class (never started).

    ``subject`` is the message name (or, for a core NATS subscriber, maybe a pattern);
    ``durable`` and ``stream`` are set for the JetStream kinds (``stream`` only when the class
    names one; otherwise the stream capturing the subject is meant); ``queue_group`` and
    ``reply_type`` for the core NATS kinds.
    """

    service: str
    actor: str
    kind: ReceiverKind
    subject: str
    durable: str | None = None
    stream: str | None = None
    queue_group: str | None = None
    reply_type: str | None = None

    @property
    def jetstream(self) -> bool:
        return self.kind in ("pull consumer", "pipeline")

    def receives(self, subject: str) -> bool:
        return subject_matches(self.subject, subject)


@attrs.frozen
class Sender:
    """A declared send: ``service`` (and its ``actor``, None for the App itself) sends
    ``message``; ``how`` is ``"publishes"`` (``publishes`` attribute) or ``"replies"`` (a
    Responder's ``reply_type``)."""

    service: str
    message: str
    actor: str | None = None
    how: Literal["publishes", "replies"] = "publishes"

    @property
    def who(self) -> str:
        return self.service if self.actor is None else f"{self.service} ({self.actor})"


@attrs.frozen
class Service:
    """One service's App tree as declared: its ``name`` (the config's ``source_root``), its
    ``domain``, where it was imported from (``module:attr``), what it receives and sends."""

    name: str
    domain: str = attrs.field()
    origin: str = attrs.field(default="")
    receivers: tuple[Receiver, ...] = attrs.field(default=(), converter=_sorted_tuple, order=False)
    senders: tuple[Sender, ...] = attrs.field(default=(), converter=_sorted_tuple)


@attrs.frozen
class Catalog:
    """Everything a catalogue shows, as read: see :func:`polyn.catalog.build_catalog`.

    - ``schemas``: message name -> payload JSON Schema (as stored);
    - ``schema_source``: where they came from (``"bucket POLYN_SCHEMAS"``, ``"folder schemas"``);
    - ``streams``, ``durables``: JetStream's streams and durable consumers (from the server or
      the migrations folder, per ``jetstream_source``);
    - ``services``: the App trees inspected;
    - ``servers``: the NATS server URLs, already redacted (no credentials);
    - ``domain``: the events' domain (``com.acme``), None when unknown;
    - ``title`` and ``api_version`` head the pages and the AsyncAPI document.
    """

    schemas: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    schema_source: str = ""
    streams: tuple[Stream, ...] = attrs.field(default=(), converter=_sorted_tuple)
    durables: tuple[Durable, ...] = attrs.field(default=(), converter=_sorted_tuple)
    jetstream_source: str = ""
    services: tuple[Service, ...] = attrs.field(default=(), converter=_sorted_tuple)
    servers: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    domain: str | None = None
    title: str = "Event catalogue"
    api_version: str = "1.0.0"

    def stream(self, name: str) -> Stream | None:
        """The stream called ``name``, or None."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        return None
