"""What each page shows, derived from a :class:`~polyn.catalog.Catalog` (no I/O).

One :class:`EventView` per message name with a schema: its description, schema table, example,
the streams capturing its subject, the durable consumers reading it (and which services' actors
use them), the core NATS subscribers, the declared senders, and its versions (``…v1``, ``…v2``)
with the compatibility verdict of :func:`polyn.schema_compat.breaking_changes` between each
version and the one before it, the check ``polyn schemas check`` runs.

The **domain** of an event, for the index's filter, is the first token of its message name
(``order`` for ``order.placed.v1``): the business area it belongs to. The ``domain`` of the
config (``com.acme``) is the same for every event of a bus and only prefixes the ``type``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from polyn.catalog._model import Catalog, Durable, Receiver, Sender, Stream
from polyn.catalog._schema_view import (
    Row,
    example_is_valid,
    example_of,
    schema_format,
    schema_rows,
)
from polyn.event import SPECVERSION
from polyn.naming import dot_to_colon
from polyn.schema_compat import breaking_changes

__all__ = ["DurableUse", "EventView", "Verdict", "event_views", "family_of", "undeclared"]

_VERSIONED = re.compile(r"(?P<family>.+)\.v(?P<version>[0-9]+)")


def family_of(name: str) -> tuple[str, int | None]:
    """``("order.placed", 2)`` for ``order.placed.v2``; ``(name, None)`` without a version."""
    match = _VERSIONED.fullmatch(name)
    if match is None:
        return name, None
    return match["family"], int(match["version"])


@attrs.frozen
class DurableUse:
    """A durable consumer reading an event, and the services' actors that read through it."""

    durable: Durable
    used_by: tuple[Receiver, ...]


@attrs.frozen
class Verdict:
    """Whether ``new`` can replace ``old`` (``breaking`` empty) or why not."""

    old: str
    new: str
    breaking: tuple[str, ...]

    @property
    def compatible(self) -> bool:
        return not self.breaking


@attrs.frozen
class EventView:
    """Everything one event's page shows (see the module doc)."""

    name: str
    type: str | None
    family: str
    version: int | None
    domain: str
    title: str
    description: str | None
    schema: Any
    schema_format: str
    rows: tuple[Row, ...]
    example: Any
    example_given: bool
    example_valid: bool
    streams: tuple[Stream, ...]
    durables: tuple[DurableUse, ...]
    subscribers: tuple[Receiver, ...]
    receivers: tuple[Receiver, ...]
    senders: tuple[Sender, ...]
    versions: tuple[str, ...]
    previous: str | None
    verdict: Verdict | None
    services: tuple[str, ...]
    reply_to: tuple[str, ...] = ()

    @property
    def example_event(self) -> dict[str, Any]:
        """The example as a whole CloudEvent, with fixed ``id`` and ``time`` (deterministic)."""
        source = "example"
        if self.senders and self.type is not None:
            domain = self.type[: -len(self.name) - 1]
            source = dot_to_colon(f"{domain}:{self.senders[0].service}")
        return {
            "specversion": SPECVERSION,
            "type": self.type or self.name,
            "source": source,
            "id": "00000000-0000-4000-8000-000000000000",
            "time": "2024-01-01T12:00:00Z",
            "datacontenttype": "application/json",
            "data": self.example,
        }

    @property
    def search_text(self) -> str:
        """What the index's search box matches, lowercased."""
        words = [
            self.name,
            self.type or "",
            self.title,
            self.description or "",
            *(row.path for row in self.rows),
            *self.services,
            *(stream.name for stream in self.streams),
            *(use.durable.name for use in self.durables),
            *(receiver.actor for receiver in self.receivers),
            *(sender.actor or "" for sender in self.senders),
        ]
        return " ".join(word for word in words if word).lower()


def _title(name: str, schema: Any) -> tuple[str, str | None]:
    if not isinstance(schema, Mapping):
        return name, None
    title = schema.get("title") if isinstance(schema.get("title"), str) else None
    description = schema.get("description")
    description = description if isinstance(description, str) and description else None
    return title or name, description


def event_views(catalog: Catalog) -> list[EventView]:
    """One view per schema of the catalogue, sorted by message name."""
    families: dict[str, list[tuple[int, str]]] = {}
    for name in catalog.schemas:
        family, version = family_of(name)
        if version is not None:
            families.setdefault(family, []).append((version, name))
    for members in families.values():
        members.sort()
    receivers = [r for service in catalog.services for r in service.receivers]
    senders = [s for service in catalog.services for s in service.senders]
    streams_by_name = {stream.name: stream for stream in catalog.streams}
    views = []
    for name, schema in catalog.schemas.items():
        family, version = family_of(name)
        title, description = _title(name, schema)
        example, given = example_of(schema)
        streams = tuple(stream for stream in catalog.streams if stream.captures(name))
        durables = []
        for durable in catalog.durables:
            if durable.reads(name, streams_by_name.get(durable.stream)):
                durables.append(DurableUse(durable, _users(durable, receivers)))
        reading = tuple(r for r in receivers if r.receives(name))
        sending = tuple(s for s in senders if s.message == name)
        versions = tuple(n for _, n in families.get(family, [])) if version is not None else ()
        previous = versions[versions.index(name) - 1] if versions.index(name) > 0 else None
        verdict = None
        if previous is not None:
            problems = breaking_changes(catalog.schemas[previous], schema)
            verdict = Verdict(previous, name, tuple(problems))
        views.append(
            EventView(
                name=name,
                type=f"{catalog.domain}.{name}" if catalog.domain else None,
                family=family,
                version=version,
                domain=name.split(".", 1)[0],
                title=title,
                description=description,
                schema=schema,
                schema_format=schema_format(schema),
                rows=tuple(schema_rows(schema)),
                example=example,
                example_given=given,
                example_valid=example_is_valid(schema, example),
                streams=streams,
                durables=tuple(durables),
                subscribers=tuple(r for r in reading if not r.jetstream),
                receivers=reading,
                senders=sending,
                versions=versions,
                previous=previous,
                verdict=verdict,
                services=tuple(sorted({r.service for r in reading} | {s.service for s in sending})),
                reply_to=tuple(sorted({r.subject for r in receivers if r.reply_type == name})),
            )
        )
    return sorted(views, key=lambda view: view.name)


def _users(durable: Durable, receivers: list[Receiver]) -> tuple[Receiver, ...]:
    return tuple(
        r
        for r in receivers
        if r.jetstream and r.durable == durable.name and r.stream in (None, durable.stream)
    )


def undeclared(catalog: Catalog) -> list[str]:
    """Problems worth a warning: declared sends or receives of messages with no schema, and
    JetStream consumers in a service whose durable consumer does not exist."""
    problems = []
    known = set(catalog.schemas)
    for service in catalog.services:
        for sender in service.senders:
            if sender.message not in known:
                problems.append(
                    f"{sender.who} declares that it sends {sender.message}, which has no schema"
                )
        for receiver in service.receivers:
            if not any(receiver.receives(name) for name in known):
                problems.append(
                    f"{service.name} ({receiver.actor}) receives {receiver.subject}, "
                    "which matches no schema"
                )
            if receiver.jetstream and not any(
                d.name == receiver.durable and receiver.stream in (None, d.stream)
                for d in catalog.durables
            ):
                problems.append(
                    f"{service.name} ({receiver.actor}) reads the durable consumer "
                    f"{receiver.durable}, which does not exist"
                    + ("" if catalog.jetstream_source else " (no streams or consumers were read)")
                )
    return problems
