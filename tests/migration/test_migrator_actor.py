"""The Migrator actor in a supervision tree, and ``polyn.migration.run`` for deployments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import Names

import polyn.migration
from polyn.actors import Supervisor
from polyn.config import Config
from polyn.errors import ActorError, MigrationError
from polyn.migration import (
    MigrateRequest,
    MigrationBucket,
    MigrationResult,
    MigrationStatus,
    Migrator,
    StatusRequest,
)
from polyn.nats import NatsConnection, NatsTransport

WriteMigration = Callable[[str, str], Path]


def create_stream_source(stream: str, subject: str) -> str:
    return f'def change(m):\n    m.create_stream(name="{stream}", subjects=["{subject}"])\n'


async def test_migrator_runs_pending_migrations_when_it_starts_and_answers_calls(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    write_migration("1111_create.py", create_stream_source(stream, names.subject("a")))
    tree = Supervisor([NatsConnection(), Migrator()])
    async with tree.run(context={"config": config}) as running:
        # Started: the stream exists before any later sibling would start.
        assert (await transport.stream_info(stream)).name == stream
        migrator = running.ref("polyn_migrator")
        write_migration("2222_create.py", create_stream_source(stream + "2", names.subject("b")))
        status = await migrator.call("status")
        assert isinstance(status, MigrationStatus)
        assert [f.id for f in status.pending] == ["2222"]
        result = await migrator.call("migrate")
        assert isinstance(result, MigrationResult) and result.ids == ("1111", "2222")
        result = await migrator.call("rollback")
        assert result.ids == ("1111",)
    bucket = MigrationBucket(transport, config.migrations_bucket, config.source_root)
    assert await bucket.ids() == ["1111"]


async def test_a_failing_migration_fails_the_start_with_the_migration_error(
    config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    write_migration("1111_bad.py", f'def change(m):\n    m.update_stream(name="{stream}")\n')
    tree = Supervisor([NatsConnection(), Migrator()])
    with pytest.raises(ActorError) as caught:
        async with tree.run(context={"config": config}):
            pass  # pragma: no cover - the start fails
    cause: BaseException | None = caught.value
    while cause is not None and not isinstance(cause, MigrationError):
        cause = cause.__cause__
    assert cause is not None
    assert str(cause).startswith(
        f"Error running migration file 1111_bad.py - step 1 of 1 (update_stream {stream}): "
        f"stream {stream} does not exist and no earlier step creates it."
    )


def test_run_is_a_one_line_deployment_entry(config: Config, names: Names, tmp_path: Path) -> None:
    folder = tmp_path / "deploy_migrations"
    folder.mkdir()
    stream = names.stream()
    (folder / "1111_create.py").write_text(create_stream_source(stream, names.subject("a")))
    result = polyn.migration.run(config, migrations_dir=folder)
    assert result.ids == ("1111",)
    assert polyn.migration.run(config, migrations_dir=folder).steps == ()
    result = polyn.migration.run(config, migrations_dir=folder, direction="down")
    assert result.ids == ()


async def test_a_failing_call_answers_with_the_error_and_the_migrator_stays_up(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    """A failed rollback must not crash the Migrator: its restart would run the start-up
    migrations again, and past the restart intensity take the service down."""
    stream = names.stream()
    await transport.create_stream({"name": stream, "subjects": [names.subject("a")]})
    write_migration("1111_drop.py", f'def change(m):\n    m.delete_stream("{stream}")\n')
    tree = Supervisor([NatsConnection(), Migrator()], max_restarts=0)
    async with tree.run(context={"config": config}) as running:
        migrator = running.ref("polyn_migrator")
        result = await migrator.call("rollback")
        assert isinstance(result.error, MigrationError)
        assert "can't be reversed" in str(result.error)
        with pytest.raises(MigrationError, match="can't be reversed"):
            result.raise_for_error()
        status = await migrator.call(StatusRequest())
        assert [i for i, _ in status.applied] == ["1111"]
        dry = await migrator.call(MigrateRequest("up", dry_run=True))
        assert dry.ok and dry.steps == ()
