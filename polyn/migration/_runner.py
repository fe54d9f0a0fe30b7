"""Running migrations: the algorithm of Elixir's ``Polyn.Migration.Migrator.run`` (§8.4).

1. Make sure the migrations bucket exists (created with the config's ``kv_replicas``) and read
   the ids already run for the config's ``source_root``.
2. Up: every file whose id is not recorded, in id order. Down (rollback): only the file of the
   **last** recorded id; with nothing recorded, nothing happens.
3. Read every selected file first (so a broken file stops the run before anything changes),
   then run each migration's commands in the order written, and record (up) or forget (down)
   its id only after all of them succeeded.
4. A failing command stops the run with :class:`~polyn.MigrationError`
   ``Error running migration file <file> - <server's reason>``. There is no automatic undo:
   commands of the failed migration that already ran stay applied, it is not recorded, and
   migrations finished earlier in the run stay recorded.

As in Elixir, a migration that records no commands is not written to the bucket, so a freshly
generated (still empty) migration runs once it has content.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from polyn.config import Config
from polyn.errors import MigrationError, PolynError
from polyn.migration._bucket import MigrationBucket
from polyn.migration._dsl import Command
from polyn.migration._files import Direction, MigrationFile, find_migrations
from polyn.nats.connection import NatsConnection
from polyn.nats.nats_transport import NatsTransport
from polyn.nats.transport import Transport

__all__ = [
    "MigrationResult",
    "MigrationStatus",
    "MigrationStep",
    "migrate",
    "migration_status",
    "open_transport",
]

log = logging.getLogger("polyn.migration")

Progress = Callable[[str], None]


@attrs.frozen
class MigrationStep:
    """One migration of a run: its file and the commands it ran (or would run)."""

    migration: MigrationFile
    commands: tuple[Command, ...]
    recorded: bool  # False for an empty migration (and in a dry run)


@attrs.frozen
class MigrationResult:
    """What a run did: the migrations it ran, in order, and the ids recorded afterwards."""

    direction: Direction
    steps: tuple[MigrationStep, ...]
    ids: tuple[str, ...]
    dry_run: bool = False


@attrs.frozen
class MigrationStatus:
    """Which migrations ran (``applied``: ids with their file, or None when the file is gone)
    and which are ``pending``."""

    applied: tuple[tuple[str, MigrationFile | None], ...]
    pending: tuple[MigrationFile, ...]


@asynccontextmanager
async def open_transport(config: Config, **options: Any) -> AsyncIterator[NatsTransport]:
    """A transport connected with ``config``'s servers, credentials and TLS, closed on exit.

    Raises :class:`~polyn.NatsConnectionError` (one line: which servers, why) when no server
    can be reached.
    """
    servers, connect_options = NatsConnection().connect_options({"config": config})
    connect_options.update(options)
    transport = await NatsTransport.connect(servers, **connect_options)
    try:
        yield transport
    finally:
        with trio.CancelScope(shield=True):
            await transport.close()


def _directory(config: Config, migrations_dir: str | Path | None) -> Path:
    return Path(config.migrations_dir if migrations_dir is None else migrations_dir)


async def migrate(
    transport: Transport,
    config: Config,
    *,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> MigrationResult:
    """Run the pending migrations (``direction="up"``) or roll back the last one (``"down"``).

    With ``dry_run`` nothing is written (not even the bucket): the result lists what would run.
    ``progress`` receives one line per step (default: the ``polyn.migration`` logger).
    """
    if direction not in ("up", "down"):
        raise ValueError(f'direction must be "up" or "down", got {direction!r}')
    say = progress or log.info
    folder = _directory(config, migrations_dir)
    bucket = MigrationBucket(transport, config.migrations_bucket, config.source_root)
    if not dry_run:
        await bucket.ensure(replicas=config.kv_replicas)
    done = await bucket.ids()
    files = find_migrations(folder)
    if not files:
        say(f"No migrations found at {folder}")
        return MigrationResult(direction, (), tuple(done), dry_run)
    selected = _select(files, done, direction, bucket, folder)
    if not selected:
        say("No migrations to roll back" if direction == "down" else "No pending migrations")
        return MigrationResult(direction, (), tuple(done), dry_run)
    planned = [(migration, migration.commands(direction)) for migration in selected]
    steps = []
    for migration, commands in planned:
        steps.append(
            await _run_one(transport, config, bucket, migration, commands, direction, dry_run, say)
        )
    ids = done if dry_run else await bucket.ids()
    return MigrationResult(direction, tuple(steps), tuple(ids), dry_run)


def _select(
    files: list[MigrationFile],
    done: list[str],
    direction: Direction,
    bucket: MigrationBucket,
    folder: Path,
) -> list[MigrationFile]:
    if direction == "up":
        recorded = set(done)
        return [migration for migration in files if migration.id not in recorded]
    if not done:
        return []
    last = done[-1]
    for migration in files:
        if migration.id == last:
            return [migration]
    raise MigrationError(
        f"Migration {last} is the last one recorded for {bucket.key} in bucket {bucket.bucket}, "
        f"but no file {last}_*.py is in {folder}; restore the file to roll it back"
    )


async def _run_one(
    transport: Transport,
    config: Config,
    bucket: MigrationBucket,
    migration: MigrationFile,
    commands: list[Command],
    direction: Direction,
    dry_run: bool,
    say: Progress,
) -> MigrationStep:
    verb = (
        ("would migrate" if direction == "up" else "would roll back")
        if dry_run
        else ("migrating" if direction == "up" else "rolling back")
    )
    say(f"== {migration.file_name}: {verb}")
    started = time.perf_counter()
    for command in commands:
        say(f"   {command.describe()}")
        if not dry_run:
            try:
                await execute(transport, command, config)
            except PolynError as exc:
                raise MigrationError(
                    f"Error running migration file {migration.file_name} - {exc}"
                ) from exc
    recorded = bool(commands) and not dry_run
    if recorded:
        if direction == "up":
            await bucket.add(migration.id)
        else:
            await bucket.remove(migration.id)
    if dry_run:
        return MigrationStep(migration, tuple(commands), False)
    if not commands:
        say(f"== {migration.file_name}: no commands, not recorded")
    else:
        done = "migrated" if direction == "up" else "rolled back"
        say(f"== {migration.file_name}: {done} ({time.perf_counter() - started:.2f}s)")
    return MigrationStep(migration, tuple(commands), recorded)


async def execute(transport: Transport, command: Command, config: Config) -> None:
    """Run one recorded command against the server.

    ``update_stream`` reads the stream's current config and merges the given options over it.
    A ``num_replicas`` above the config's ``max_replicas`` is clamped to it (ADR 0018), only
    when the migration gives ``num_replicas``.
    """
    options = dict(command.options)
    if command.name == "create_stream":
        await transport.create_stream(_clamped(options, config))
    elif command.name == "update_stream":
        current = await transport.stream_info(options["name"])
        merged = {**current.config, **_clamped(options, config)}
        await transport.update_stream(merged)
    elif command.name == "delete_stream":
        await transport.delete_stream(options["name"])
    elif command.name == "create_consumer":
        stream = options.pop("stream_name")
        await transport.create_consumer(stream, options)
    elif command.name == "delete_consumer":
        await transport.delete_consumer(options["stream_name"], options["durable_name"])
    else:  # pragma: no cover - Command.name is a closed set
        raise MigrationError(f"unknown migration command {command.name!r}")


def _clamped(options: Mapping[str, Any], config: Config) -> dict[str, Any]:
    out = dict(options)
    replicas = out.get("num_replicas")
    if (
        config.max_replicas is not None
        and isinstance(replicas, int)
        and replicas > config.max_replicas
    ):
        out["num_replicas"] = config.max_replicas
    return out


async def migration_status(
    transport: Transport, config: Config, *, migrations_dir: str | Path | None = None
) -> MigrationStatus:
    """The migrations already run for the config's ``source_root`` and those pending.

    Reads only: a missing bucket means nothing has run.
    """
    files = find_migrations(_directory(config, migrations_dir))
    by_id = {migration.id: migration for migration in files}
    done = await MigrationBucket(transport, config.migrations_bucket, config.source_root).ids()
    recorded = set(done)
    return MigrationStatus(
        applied=tuple((i, by_id.get(i)) for i in done),
        pending=tuple(migration for migration in files if migration.id not in recorded),
    )
