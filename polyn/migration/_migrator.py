"""The :class:`Migrator` actor: run a service's migrations as part of its supervision tree.

The command line (``polyn migrate``, ``rollback``, ``migrations status``) and
:func:`polyn.migration.run` use it too, in a small tree of their own (:func:`migrator_tree`:
``NatsConnection`` + ``Migrator``), so a deploy script and a service's own tree go one path:
the same connection handling, errors and migration lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from polyn.actors import Actor, ActorRef, Supervisor
from polyn.config import Config, config_for
from polyn.errors import ActorError, PolynError
from polyn.migration._files import Direction
from polyn.migration._lock import DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT
from polyn.migration._runner import (
    MigrationResult,
    MigrationStatus,
    Progress,
    migration_status,
    run_migrations,
)
from polyn.nats.connection import NatsConnection, transport_for

__all__ = ["MigrateRequest", "Migrator", "StatusRequest", "migrator_tree"]


@attrs.frozen
class MigrateRequest:
    """A call to :class:`Migrator`: run up (``direction="up"``) or roll back the last migration.

    ``dry_run`` checks and lists without changing anything; ``break_lock`` takes the migration
    lock even if another run holds it; ``progress`` receives one line per step (called in the
    Migrator's task).
    """

    direction: Direction = "up"
    dry_run: bool = False
    break_lock: bool = False
    progress: Progress | None = attrs.field(default=None, eq=False)


@attrs.frozen
class StatusRequest:
    """A call to :class:`Migrator`: which migrations ran and which are pending."""


class Migrator(Actor):
    """Runs JetStream migrations through the tree's connection, with the tree's config.

    Placed after the ``NatsConnection`` (and before the consumers that need the streams), it
    runs the pending migrations while it starts, so the service starts only once its streams
    and consumers exist; a failed migration fails the start with the
    :class:`~polyn.MigrationError` as cause. Replicas starting at once take turns (the
    migration lock). Afterwards it answers calls:

    - ``"migrate"`` / ``"rollback"`` or a :class:`MigrateRequest`: a :class:`MigrationResult`;
    - ``"status"`` or a :class:`StatusRequest`: a :class:`MigrationStatus`.

    A run that fails does not crash the Migrator (a restart would run the start-up migrations
    again): the answer carries the error; ``result.raise_for_error()`` raises it.

    Arguments: ``migrations_dir`` (default the config's ``migrations_dir``), ``conn`` (the
    connection's name or ref, default ``"nats"``), ``run_on_start`` (default True),
    ``lock_ttl`` / ``lock_wait`` (the lock's lease and how long to wait for it, seconds), and
    the actor options. It registers as ``"polyn_migrator"`` unless given another ``name``.

    Example::

        app = polyn.App(config, children=[
            polyn.NatsConnection(), Migrator(), polyn.SchemaStore(), Billing(),
        ])
        # later, from a test or a script:
        result = await running.ref("polyn_migrator").call("rollback", timeout=30)
        result.raise_for_error()
    """

    def __init__(
        self,
        migrations_dir: str | Path | None = None,
        *,
        conn: str | ActorRef = "nats",
        run_on_start: bool = True,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        **options: Any,
    ) -> None:
        options.setdefault("name", "polyn_migrator")
        super().__init__(**options)
        if not lock_ttl > 0:
            raise ValueError(f"lock_ttl must be > 0 seconds, not {lock_ttl!r}")
        if not lock_wait >= 0:
            raise ValueError(f"lock_wait must be >= 0 seconds, not {lock_wait!r}")
        self.migrations_dir = migrations_dir
        self.conn = conn
        self.run_on_start = run_on_start
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait

    @property
    def config(self) -> Config:
        return config_for(self.tree)

    async def init(self) -> None:
        if self.run_on_start:
            (await self._run(MigrateRequest())).raise_for_error()

    async def handle_call(self, request: Any) -> Any:
        if request == "migrate":
            request = MigrateRequest("up")
        elif request == "rollback":
            request = MigrateRequest("down")
        elif request == "status":
            request = StatusRequest()
        if isinstance(request, MigrateRequest):
            return await self._run(request)
        if isinstance(request, StatusRequest):
            try:
                return await migration_status(
                    transport_for(self.conn), self.config, migrations_dir=self.migrations_dir
                )
            except PolynError as exc:
                return MigrationStatus((), (), error=exc)
        return await super().handle_call(request)

    async def _run(self, request: MigrateRequest) -> MigrationResult:
        return await run_migrations(
            transport_for(self.conn),
            self.config,
            migrations_dir=self.migrations_dir,
            direction=request.direction,
            dry_run=request.dry_run,
            progress=request.progress,
            break_lock=request.break_lock,
            lock_ttl=self.lock_ttl,
            lock_wait=self.lock_wait,
        )


@asynccontextmanager
async def migrator_tree(
    config: Config,
    migrations_dir: str | Path | None = None,
    *,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> AsyncIterator[ActorRef]:
    """A supervised ``NatsConnection`` + ``Migrator`` (not running on start) with ``config``;
    yields the Migrator's ref. What :func:`polyn.migration.run` and the command line use.

    A start that fails raises its cause (say :class:`~polyn.NatsConnectionError` when no
    server is reachable), not the supervisor's wrapping of it.

    Example::

        async with migrator_tree(config) as migrator:
            result = await migrator.call(MigrateRequest(dry_run=True), timeout=None)
    """
    tree = Supervisor(
        [
            NatsConnection(),
            Migrator(migrations_dir, run_on_start=False, lock_ttl=lock_ttl, lock_wait=lock_wait),
        ],
        strategy="rest_for_one",
    )
    started = False
    try:
        async with tree.run(context={"config": config}) as running:
            started = True
            yield running.ref("polyn_migrator")
    except ActorError as exc:
        if started:
            raise
        raise start_cause(exc) from None


def start_cause(error: ActorError) -> PolynError:
    """The error that made a tree's start fail, out of the supervisors' wrappings of it."""
    cause: BaseException = error
    while isinstance(cause, ActorError) and isinstance(cause.__cause__, PolynError):
        cause = cause.__cause__
    return cause if isinstance(cause, PolynError) else error
