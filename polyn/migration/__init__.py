"""JetStream migrations: each service creates the streams and consumers it owns (ADRs 0016-0018).

A migration is a file ``migrations/<YYYYMMDDHHMMSS>_<name>.py`` defining ``change(m)``, or
``up(m)`` and ``down(m)``; ``m`` (a :class:`Migration`) records JetStream commands with
JetStream's own option names (durations in seconds)::

    # migrations/20240501093000_create_orders.py
    def change(m):
        m.create_stream(name="ORDERS", subjects=["order.>"], num_replicas=3)
        m.create_consumer(stream_name="ORDERS", durable_name="orders_billing",
                          filter_subject="order.placed.v1")

Run them with ``polyn migrate`` (``polyn rollback`` undoes the last one), with the
:class:`Migrator` actor in the service's tree, or from a deployment script::

    import polyn, polyn.migration
    polyn.migration.run(polyn.Config.load())               # direction="up"

Elixir needs ``mix polyn.gen.release`` because a release has no Mix to run ``mix polyn.migrate``;
Python has no such gap: the ``polyn`` console script is installed with the package, so a
deployment runs ``polyn migrate`` (or calls :func:`run`) wherever the service runs.

Wire compatibility (fact sheet §8): run ids are recorded in the key-value bucket
``config.migrations_bucket`` (default ``POLYN_MIGRATIONS``, created with ``config.kv_replicas``
when missing) under the key ``config.source_root``, as a sorted JSON array of id strings, so
Elixir and Python services share the bucket. ``num_replicas`` above ``config.max_replicas`` is
clamped. The rules of a run are in :func:`migrate`'s module, ``polyn.migration._runner``.

Decisions where the protocol is silent: ``run`` is synchronous (it starts its own trio run;
inside trio use :func:`run_async`); a rollback with nothing recorded does nothing; a migration
with no commands is not recorded (as in Elixir); files are read before any command runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio

from polyn.config import Config
from polyn.migration._bucket import MigrationBucket
from polyn.migration._dsl import Command, Migration
from polyn.migration._files import Direction, MigrationFile, find_migrations
from polyn.migration._generator import generate_migration
from polyn.migration._migrator import Migrator
from polyn.migration._runner import (
    MigrationResult,
    MigrationStatus,
    MigrationStep,
    Progress,
    migrate,
    migration_status,
    open_transport,
)

__all__ = [
    "Command",
    "Migration",
    "MigrationBucket",
    "MigrationFile",
    "MigrationResult",
    "MigrationStatus",
    "MigrationStep",
    "Migrator",
    "find_migrations",
    "generate_migration",
    "migrate",
    "migration_status",
    "open_transport",
    "run",
    "run_async",
]


async def run_async(
    config: Config,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> MigrationResult:
    """Connect with ``config``, run the migrations, disconnect (see :func:`run`)."""
    async with open_transport(config) as transport:
        return await migrate(
            transport,
            config,
            migrations_dir=migrations_dir,
            direction=direction,
            dry_run=dry_run,
            progress=progress,
        )


def run(
    config: Config,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> MigrationResult:
    """Run the pending migrations (or, with ``direction="down"``, roll back the last one).

    The entry point for deployments: it connects with ``config`` (servers, credentials, TLS),
    runs, and disconnects, in a trio run of its own. ``migrations_dir`` defaults to
    ``config.migrations_dir``. Raises :class:`~polyn.MigrationError` when a migration fails and
    :class:`~polyn.NatsConnectionError` when no server is reachable.

    Example::

        polyn.migration.run(polyn.Config.load(), migrations_dir="/app/migrations")
    """
    return trio.run(
        functools.partial(
            run_async, config, migrations_dir, direction, dry_run=dry_run, progress=progress
        )
    )
