"""JetStream migrations: each service creates the streams and consumers it owns (ADRs 0016-0018).

A migration is a file ``migrations/<YYYYMMDDHHMMSS>_<name>.py`` defining ``change(m)``, or
``up(m)`` and ``down(m)``; ``m`` (a :class:`Migration`) records JetStream commands, given as
typed configurations (:class:`StreamConfig`, :class:`ConsumerConfig`) or as keyword arguments
with JetStream's own option names (durations in seconds), checked as they are recorded::

    # migrations/20240501093000_create_orders.py
    from polyn.migration import ConsumerConfig, Migration, StreamConfig

    def change(m: Migration) -> None:
        m.create_stream(StreamConfig(name="ORDERS", subjects=["order.>"], num_replicas=3))
        m.create_consumer(ConsumerConfig(stream_name="ORDERS",
                                         durable_name="orders_payments_order_placed_v1",
                                         filter_subject="order.placed.v1"))

Run them with ``polyn migrate`` (``polyn rollback`` undoes the last one), with the
:class:`Migrator` actor in the service's tree, or from a deployment script::

    import polyn, polyn.migration
    polyn.migration.run(polyn.Config.load())               # direction="up"

All three go through the :class:`Migrator` actor (the command line and :func:`run` in a small
tree of their own, :func:`migrator_tree`), and every run takes the service's migration lock
(a lease in the migrations bucket), so two deploys at once run each migration once. Every
command of a run is checked against the server before any runs; a command the server still
refuses undoes what its migration created (see ``polyn.migration._runner``).

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
with no commands is not recorded (as in Elixir); files are read and every step of the run is
checked before any command runs, so a problem in a later migration stops the earlier ones too;
the migration lock is the key ``_lock.<source_root>`` of the bucket (:func:`lock_key`), which no
record key can be; a consumer created without ``ack_policy`` gets ``"explicit"``, as Elixir's
does; the :class:`Migrator` answers a failed call with a result carrying the error instead of
crashing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio

from polyn.config import Config
from polyn.migration._bucket import MigrationBucket
from polyn.migration._config import ConsumerConfig, StreamConfig
from polyn.migration._dsl import Command, Migration
from polyn.migration._files import Direction, MigrationFile, find_migrations
from polyn.migration._generator import generate_migration
from polyn.migration._lock import DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT, lock_key
from polyn.migration._migrator import MigrateRequest, Migrator, StatusRequest, migrator_tree
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
    "DEFAULT_LOCK_TTL",
    "DEFAULT_LOCK_WAIT",
    "Command",
    "ConsumerConfig",
    "MigrateRequest",
    "Migration",
    "MigrationBucket",
    "MigrationFile",
    "MigrationResult",
    "MigrationStatus",
    "MigrationStep",
    "Migrator",
    "StatusRequest",
    "StreamConfig",
    "find_migrations",
    "generate_migration",
    "lock_key",
    "migrate",
    "migration_status",
    "migrator_tree",
    "open_transport",
    "run",
    "run_async",
    "status_async",
]


async def run_async(
    config: Config,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    break_lock: bool = False,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> MigrationResult:
    """Start a :func:`migrator_tree` with ``config``, run the migrations through its
    :class:`Migrator`, stop the tree (see :func:`run`)."""
    async with migrator_tree(
        config, migrations_dir, lock_ttl=lock_ttl, lock_wait=lock_wait
    ) as migrator:
        request = MigrateRequest(direction, dry_run, break_lock, progress)
        result: MigrationResult = await migrator.call(request, timeout=None)
    return result.raise_for_error()


async def status_async(config: Config, migrations_dir: str | Path | None = None) -> MigrationStatus:
    """The applied and pending migrations, read through a :func:`migrator_tree`."""
    async with migrator_tree(config, migrations_dir) as migrator:
        status: MigrationStatus = await migrator.call(StatusRequest(), timeout=None)
    return status.raise_for_error()


def run(
    config: Config,
    migrations_dir: str | Path | None = None,
    direction: Direction = "up",
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    break_lock: bool = False,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> MigrationResult:
    """Run the pending migrations (or, with ``direction="down"``, roll back the last one).

    The entry point for deployments: it connects with ``config`` (servers, credentials, TLS),
    runs, and disconnects, in a trio run of its own. ``migrations_dir`` defaults to
    ``config.migrations_dir``. Waits up to ``lock_wait`` seconds for another run of the same
    service to finish (``break_lock`` takes its lock at once). Raises
    :class:`~polyn.MigrationError` when a migration fails and
    :class:`~polyn.NatsConnectionError` when no server is reachable.

    Example::

        polyn.migration.run(polyn.Config.load(), migrations_dir="/app/migrations")
    """
    return trio.run(
        functools.partial(
            run_async,
            config,
            migrations_dir,
            direction,
            dry_run=dry_run,
            progress=progress,
            break_lock=break_lock,
            lock_ttl=lock_ttl,
            lock_wait=lock_wait,
        )
    )
