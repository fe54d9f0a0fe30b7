"""Checking a whole run against the server before any of it runs.

JetStream has no transactions, so a migration that fails at its third command has already run
its first two. Most such failures can be seen beforehand, from the server's current streams and
consumers and the commands in order, so the runner checks every command of every selected
migration first (reads only) and changes nothing if one would fail:

- a stream that ``update_stream``, ``delete_stream``, ``create_consumer`` or ``delete_consumer``
  names must exist on the server or be created by an earlier command of the run (and not
  deleted since); a consumer that ``delete_consumer`` names likewise;
- ``create_stream`` of a stream that exists already must not change its configuration (the
  server would refuse: "stream name already in use with a different configuration"), and its
  subjects must not overlap another stream's;
- ``create_consumer``'s ``filter_subject`` must be inside the stream's subjects (a consumer that
  exists already is left to the server, which changes what can be changed).

Option names, values and names themselves were checked when the commands were recorded
(:mod:`polyn.migration._config`). What only the server can refuse (limits of the account, a
cluster without enough nodes for ``num_replicas``) is still found while running: the runner then
undoes what the failing migration created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from polyn.config import Config
from polyn.errors import JetStreamError, MigrationError, PolynError
from polyn.migration._dsl import Command
from polyn.migration._files import MigrationFile
from polyn.nats.transport import Transport

__all__ = ["PlannedMigration", "check_run", "subject_within", "subjects_overlap"]


@attrs.frozen
class PlannedMigration:
    """A selected migration and the commands it will run."""

    migration: MigrationFile
    commands: tuple[Command, ...]


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both subject filters ``a`` and ``b`` (NATS semantics).

    >>> subjects_overlap("order.>", "*.placed"), subjects_overlap("order.*", "payment.*")
    (True, False)
    """
    left, right = a.split("."), b.split(".")
    for index in range(min(len(left), len(right))):
        x, y = left[index], right[index]
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(left) == len(right)


def subject_within(inner: str, outer: str) -> bool:
    """Whether every subject ``inner`` matches is also matched by ``outer``.

    >>> subject_within("order.placed.v1", "order.>"), subject_within("order.>", "order.*")
    (True, False)
    """
    small, big = inner.split("."), outer.split(".")
    for index, token in enumerate(big):
        if token == ">":
            return len(small) > index
        if index >= len(small):
            return False
        if token == "*":
            if small[index] == ">":
                return False
        elif small[index] != token:
            return False
    return len(small) == len(big)


class _Server:
    """The server's streams and consumers as the run would change them, read lazily."""

    def __init__(self, transport: Transport, config: Config) -> None:
        self.transport = transport
        self.config = config
        self.streams: dict[str, Mapping[str, Any] | None] = {}  # name -> config (None: gone)
        self.created: set[str] = set()  # streams created by this run
        self.consumers: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    async def stream(self, name: str) -> Mapping[str, Any] | None:
        if name not in self.streams:
            try:
                self.streams[name] = (await self.transport.stream_info(name)).config
            except JetStreamError as exc:
                if exc.err_code != 10059 and exc.code != 404:
                    raise
                self.streams[name] = None
        return self.streams[name]

    async def consumer(self, stream: str, durable: str) -> Mapping[str, Any] | None:
        key = (stream, durable)
        if key not in self.consumers:
            if stream in self.created or await self.stream(stream) is None:
                self.consumers[key] = None
            else:
                try:
                    info = await self.transport.consumer_info(stream, durable)
                    self.consumers[key] = info.config
                except JetStreamError as exc:
                    if exc.code != 404:
                        raise
                    self.consumers[key] = None
        return self.consumers[key]

    async def overlapping(self, name: str, subjects: Sequence[str]) -> tuple[str, str] | None:
        """Another stream (and its subject) whose subjects overlap ``subjects``."""
        for other, config in self.streams.items():
            if other == name or config is None or other not in self.created:
                continue
            for mine in subjects:
                for theirs in config.get("subjects") or ():
                    if subjects_overlap(mine, theirs):
                        return other, theirs
        for mine in subjects:
            for other in await self.transport.stream_names(mine):
                if other == name or other in self.created:
                    continue
                if await self.stream(other) is not None:  # not deleted by this run
                    return other, mine
        return None


async def check_run(
    transport: Transport, config: Config, planned: Sequence[PlannedMigration]
) -> None:
    """Check every command of ``planned``, in order, against the server (see the module doc).

    Raises :class:`~polyn.MigrationError` for the first command that would fail, naming the
    file, the step and why; nothing has been changed then.
    """
    server = _Server(transport, config)
    for item in planned:
        total = len(item.commands)
        for index, command in enumerate(item.commands, 1):
            try:
                problem = await _check(server, command)
            except PolynError as exc:
                problem = f"could not check it against the server: {exc}"
            if problem is not None:
                raise MigrationError(
                    f"Error running migration file {item.migration.file_name} - step {index} of "
                    f"{total} ({command.describe()}): {problem}. Nothing was changed: every "
                    "step is checked before any runs"
                )


async def _check(server: _Server, command: Command) -> str | None:
    options = command.options
    if command.name == "create_stream":
        return await _check_create_stream(server, options)
    if command.name in ("update_stream", "delete_stream"):
        name = options["name"]
        current = await server.stream(name)
        if current is None:
            return f"stream {name} does not exist and no earlier step creates it"
        if command.name == "delete_stream":
            server.streams[name] = None
            server.created.discard(name)
            for consumer in [k for k in server.consumers if k[0] == name]:
                server.consumers[consumer] = None
        else:
            merged = dict(current)
            for key, value in options.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            server.streams[name] = merged
        return None
    stream = options["stream_name"]
    durable = options["durable_name"]
    stream_config = await server.stream(stream)
    if stream_config is None:
        return f"stream {stream} does not exist and no earlier step creates it"
    existing = await server.consumer(stream, durable)
    if command.name == "delete_consumer":
        if existing is None:
            return f"consumer {durable} of stream {stream} does not exist"
        server.consumers[(stream, durable)] = None
        return None
    filters = [options["filter_subject"]] if options.get("filter_subject") else []
    filters += list(options.get("filter_subjects") or [])
    subjects = list(stream_config.get("subjects") or [])
    for subject in filters:
        if subjects and not any(subject_within(subject, mine) for mine in subjects):
            return (
                f"filter_subject {subject!r} is not within the subjects of stream {stream} "
                f"({', '.join(subjects)}), so the consumer would receive nothing"
            )
    server.consumers[(stream, durable)] = dict(options)
    return None


async def _check_create_stream(server: _Server, options: Mapping[str, Any]) -> str | None:
    name = options["name"]
    existing = await server.stream(name)
    if existing is not None:
        wanted = dict(options)
        replicas = wanted.get("num_replicas")
        limit = server.config.max_replicas
        if limit is not None and isinstance(replicas, int) and replicas > limit:
            wanted["num_replicas"] = limit
        different = _differences(wanted, existing)
        if different:
            return (
                f"stream {name} exists already with a different configuration ({different}); "
                "use update_stream to change it"
            )
        return None  # the server accepts the same configuration again: nothing to create
    overlap = await server.overlapping(name, options.get("subjects") or [])
    if overlap is not None:
        other, subject = overlap
        return f"its subjects overlap those of stream {other} ({subject})"
    server.streams[name] = dict(options)
    server.created.add(name)
    return None


def _differences(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The options of ``wanted`` whose value differs from ``current``'s, as ``key: a -> b``."""
    out = []
    for key, value in wanted.items():
        if key not in current or isinstance(value, Mapping):
            continue
        have = current[key]
        if _same(value, have):
            continue
        out.append(f"{key}: {have!r} -> {value!r}")
    return ", ".join(out)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-6
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
