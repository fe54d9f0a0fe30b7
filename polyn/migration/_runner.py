"""Running migrations: the algorithm of Elixir's ``Polyn.Migration.Migrator.run`` (§8.4), made
safe for concurrent deploys and half-failed migrations.

1. Make sure the migrations bucket exists (created with the config's ``kv_replicas``), then take
   the service's migration lock (:mod:`polyn.migration._lock`: a lease, waited for while another
   run holds it) and read the ids already run for the config's ``source_root``, under the lock.
2. Up: every file whose id is not recorded, in id order. Down (rollback): only the file of the
   **last** recorded id; with nothing recorded, nothing happens.
3. Read every selected file (a broken file or a bad option stops the run before anything
   changes), then check every command of the run against the server
   (:mod:`polyn.migration._checks`; a problem stops the run before anything changes).
4. Run each migration's commands in the order written, and record (up) or forget (down) its id,
   with a compare-and-set write, only after all of them succeeded.
5. A command the server refuses stops the run with :class:`~polyn.MigrationError`
   ``Error running migration file <file> - <server's reason>``, followed by what was applied and
   what became of it: the streams and consumers **that migration created** are deleted again
   (JetStream has no transactions; updates and deletes are never undone automatically, and the
   message says how to clean them up); the migration is not recorded; migrations finished
   earlier in the run stay recorded. Elixir undoes nothing (compatibility notes).

``--dry-run`` does 1-3 without the lock and without writing anything (not even the bucket).
As in Elixir, a migration that records no commands is not written to the bucket, so a freshly
generated (still empty) migration runs once it has content.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from polyn.config import Config
from polyn.errors import JetStreamError, MigrationError, PolynError
from polyn.migration._bucket import MigrationBucket
from polyn.migration._checks import PlannedMigration, check_run
from polyn.migration._dsl import Command
from polyn.migration._files import Direction, MigrationFile, find_migrations
from polyn.migration._lock import DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT, Lease, hold_lock
from polyn.nats.connection import connection_options
from polyn.nats.nats_transport import NatsTransport
from polyn.nats.transport import Transport

__all__ = [
    "MigrationResult",
    "MigrationStatus",
    "MigrationStep",
    "migrate",
    "migration_status",
    "open_transport",
    "run_migrations",
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
    """What a run did: the migrations it ran, in order, and the ids recorded afterwards.

    ``error`` is None when the run succeeded. The :class:`Migrator` actor answers a failed run
    with a result carrying the error (rather than crashing, which would restart it and run
    its start-up migrations again); :meth:`raise_for_error` raises it.
    """

    direction: Direction
    steps: tuple[MigrationStep, ...]
    ids: tuple[str, ...]
    dry_run: bool = False
    error: PolynError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> MigrationResult:
        """Raise :attr:`error` if the run failed; else return the result itself."""
        if self.error is not None:
            raise self.error
        return self


@attrs.frozen
class MigrationStatus:
    """Which migrations ran (``applied``: ids with their file, or None when the file is gone)
    and which are ``pending``; ``error`` when the Migrator could not read them."""

    applied: tuple[tuple[str, MigrationFile | None], ...]
    pending: tuple[MigrationFile, ...]
    error: PolynError | None = None

    def raise_for_error(self) -> MigrationStatus:
        """Raise :attr:`error` if reading failed; else return the status itself."""
        if self.error is not None:
            raise self.error
        return self


@asynccontextmanager
async def open_transport(config: Config, **options: Any) -> AsyncIterator[NatsTransport]:
    """A transport connected with ``config``'s servers, credentials and TLS, closed on exit.

    Raises :class:`~polyn.NatsConnectionError` (one line: which servers, why) when no server
    can be reached.
    """
    servers, connect_options = connection_options(config)
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
    break_lock: bool = False,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> MigrationResult:
    """Run the pending migrations (``direction="up"``) or roll back the last one (``"down"``).

    With ``dry_run`` nothing is written (not even the bucket) and no lock is taken: the files
    are read and every command is checked against the server; the result lists what would run.
    ``progress`` receives one line per step (default: the ``polyn.migration`` logger).
    ``lock_ttl`` is the lease of the migration lock (renewed every third of it while running),
    ``lock_wait`` how long to wait for another run's lock, ``break_lock`` takes it at once.
    Raises :class:`~polyn.MigrationError` (see the module doc for what a failure leaves).
    """
    result = await run_migrations(
        transport,
        config,
        migrations_dir=migrations_dir,
        direction=direction,
        dry_run=dry_run,
        progress=progress,
        break_lock=break_lock,
        lock_ttl=lock_ttl,
        lock_wait=lock_wait,
    )
    return result.raise_for_error()


async def run_migrations(
    transport: Transport,
    config: Config,
    *,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    dry_run: bool = False,
    progress: Progress | None = None,
    break_lock: bool = False,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> MigrationResult:
    """:func:`migrate`, but a failure is returned as the result's ``error`` (with the steps
    finished before it) instead of raised."""
    if direction not in ("up", "down"):
        raise ValueError(f'direction must be "up" or "down", got {direction!r}')
    run = _Run(transport, config, _directory(config, migrations_dir), direction, dry_run, progress)
    try:
        await run.run(break_lock=break_lock, lock_ttl=lock_ttl, lock_wait=lock_wait)
    except PolynError as exc:
        return run.result(exc)
    return run.result()


@attrs.define
class _Applied:
    """One command that ran: whether it created something new, and what it replaced."""

    command: Command
    created: bool = False
    before: Mapping[str, Any] | None = None  # update_stream: the stream's config before


class _Run:
    """One run of :func:`migrate`: its state, so a failure can still report what it did."""

    def __init__(
        self,
        transport: Transport,
        config: Config,
        folder: Path,
        direction: Direction,
        dry_run: bool,
        progress: Progress | None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.folder = folder
        self.direction = direction
        self.dry_run = dry_run
        self.say = progress or log.info
        self.bucket = MigrationBucket(transport, config.migrations_bucket, config.source_root)
        self.steps: list[MigrationStep] = []
        self.ids: list[str] = []

    def result(self, error: PolynError | None = None) -> MigrationResult:
        return MigrationResult(
            self.direction, tuple(self.steps), tuple(self.ids), self.dry_run, error
        )

    async def run(self, *, break_lock: bool, lock_ttl: float, lock_wait: float) -> None:
        if not self.dry_run:
            await self.bucket.ensure(replicas=self.config.kv_replicas)
        files = find_migrations(self.folder)
        if not files:
            self.ids = await self.bucket.ids()
            self.say(f"No migrations found at {self.folder}")
            return
        if self.dry_run:
            await self._run(files, None)
            return
        async with hold_lock(
            self.transport,
            self.bucket.bucket,
            self.config.source_root,
            ttl=lock_ttl,
            wait=lock_wait,
            break_lock=break_lock,
            say=self.say,
        ) as lease:
            await self._run(files, lease)

    async def _run(self, files: list[MigrationFile], lease: Lease | None) -> None:
        self.ids = await self.bucket.ids()
        selected = _select(files, self.ids, self.direction, self.bucket, self.folder)
        if not selected:
            self.say(
                "No migrations to roll back"
                if self.direction == "down"
                else "No pending migrations"
            )
            return
        planned = [
            PlannedMigration(migration, tuple(migration.commands(self.direction)))
            for migration in selected
        ]
        await check_run(self.transport, self.config, planned)
        for item in planned:
            await self._run_one(item, lease)

    async def _run_one(self, item: PlannedMigration, lease: Lease | None) -> None:
        migration, commands = item.migration, item.commands
        up = self.direction == "up"
        if self.dry_run:
            self.say(f"== {migration.file_name}: {'would migrate' if up else 'would roll back'}")
            for command in commands:
                self.say(f"   {command.describe()}")
            self.steps.append(MigrationStep(migration, commands, False))
            return
        self.say(f"== {migration.file_name}: {'migrating' if up else 'rolling back'}")
        started = time.perf_counter()
        applied: list[_Applied] = []
        for index, command in enumerate(commands, 1):
            self.say(f"   {command.describe()}")
            try:
                if lease is not None:
                    await lease.check()
                applied.append(await execute(self.transport, command, self.config))
            except PolynError as exc:
                await self._fail(item, index, exc, applied, lease)
        if not commands:
            self.say(f"== {migration.file_name}: no commands, not recorded")
            self.steps.append(MigrationStep(migration, commands, False))
            return
        try:
            if lease is not None:
                await lease.check()
            if up:
                self.ids = await self.bucket.add(migration.id)
            else:
                self.ids = await self.bucket.remove(migration.id)
        except PolynError as exc:
            await self._fail(item, None, exc, applied, lease)
        done = "migrated" if up else "rolled back"
        self.say(f"== {migration.file_name}: {done} ({time.perf_counter() - started:.2f}s)")
        self.steps.append(MigrationStep(migration, commands, True))

    async def _fail(
        self,
        item: PlannedMigration,
        index: int | None,
        error: PolynError,
        applied: list[_Applied],
        lease: Lease | None,
    ) -> NoReturn:
        """Undo what the failed migration created, and raise the report of it all."""
        total = len(item.commands)
        alone = lease is None or lease.held
        lines = [
            f"Error running migration file {item.migration.file_name} - {error}",
            (
                f"Step {index} of {total} ({item.commands[index - 1].describe()}) failed."
                if index is not None
                else f"All {total} steps ran, but recording the migration failed."
            ),
        ]
        if applied:
            lines.append("Applied before the failure, and what became of it:")
            for number, note in reversed(list(enumerate(applied, 1))):
                outcome = await _undo(self.transport, note) if alone else _not_alone(note)
                lines.append(f"  step {number} {note.command.describe()}: {outcome}")
        else:
            lines.append("Nothing of it had been applied.")
        lines.append(f"Migration {item.migration.id} was not recorded; fix it and run it again.")
        earlier = [step.migration.file_name for step in self.steps if step.recorded]
        if earlier:
            lines.append(
                f"Migrations finished earlier in this run stay recorded: {', '.join(earlier)}."
            )
        raise MigrationError("\n".join(lines)) from error


def _not_alone(note: _Applied) -> str:
    return (
        "not undone: this run lost the migration lock, so another run may be applying the same "
        "migration now; check the result of that run"
    )


async def _undo(transport: Transport, note: _Applied) -> str:
    command = note.command
    options = command.options
    if command.name in ("create_stream", "create_consumer"):
        if not note.created:
            return "existed before this migration; left as it is"
        try:
            if command.name == "create_stream":
                await transport.delete_stream(options["name"])
            else:
                await transport.delete_consumer(options["stream_name"], options["durable_name"])
        except PolynError as exc:
            what = (
                f"stream {options['name']}"
                if command.name == "create_stream"
                else f"consumer {options['durable_name']} of stream {options['stream_name']}"
            )
            return f"could NOT be undone ({exc}); delete {what} by hand"
        return "undone (deleted again)"
    if command.name == "update_stream":
        before = note.before or {}
        changed = [key for key in options if key != "name"]
        was = ", ".join(f"{key}={before.get(key)!r}" for key in changed)
        return (
            "applied, not undone (updates are never undone automatically); to restore it, "
            f"update_stream(name={options['name']!r}, {was})"
        )
    return "applied, not undone (a delete cannot be undone)"


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


async def execute(transport: Transport, command: Command, config: Config) -> _Applied:
    """Run one recorded command against the server; what it did, for an undo.

    ``update_stream`` reads the stream's current config and merges the given options over it.
    A ``num_replicas`` above the config's ``max_replicas`` is clamped to it (ADR 0018), only
    when the migration gives ``num_replicas``. A create of something that exists already (the
    server accepts the same configuration again) is marked as not created, so an undo leaves it.
    """
    options = dict(command.options)
    if command.name == "create_stream":
        existed = await _exists(transport.stream_info(options["name"]))
        await transport.create_stream(_clamped(options, config))
        return _Applied(command, created=not existed)
    if command.name == "update_stream":
        current = await transport.stream_info(options["name"])
        merged = {**current.config, **_clamped(options, config)}
        await transport.update_stream(merged)
        return _Applied(command, before=current.config)
    if command.name == "delete_stream":
        await transport.delete_stream(options["name"])
    elif command.name == "create_consumer":
        stream = options.pop("stream_name")
        existed = await _exists(transport.consumer_info(stream, options["durable_name"]))
        await transport.create_consumer(stream, options)
        return _Applied(command, created=not existed)
    elif command.name == "delete_consumer":
        await transport.delete_consumer(options["stream_name"], options["durable_name"])
    else:  # pragma: no cover - Command.name is a closed set
        raise MigrationError(f"unknown migration command {command.name!r}")
    return _Applied(command)


async def _exists(lookup: Awaitable[object]) -> bool:
    try:
        await lookup
    except JetStreamError as exc:
        if exc.code == 404:
            return False
        raise
    return True


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
