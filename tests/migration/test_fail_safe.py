"""Migrations fail safe (issue 20, point 5): every step is checked against the server before any
runs, and a step the server still refuses undoes the creates of its migration.

Each test runs ``migrate`` as a deploy would and asserts what the server then holds, what is
recorded, and what the error tells the user.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from _support import Names

from polyn.config import Config
from polyn.errors import MigrationError, StreamError
from polyn.migration import MigrationBucket, migrate
from polyn.nats import NatsTransport

WriteMigration = Callable[[str, str], Path]
NOTHING_CHANGED = "Nothing was changed: every step is checked before any runs"


async def run_ids(transport: NatsTransport, config: Config) -> list[str]:
    return await MigrationBucket(transport, config.migrations_bucket, config.source_root).ids()


async def stream_exists(transport: NatsTransport, name: str) -> bool:
    try:
        await transport.stream_info(name)
    except StreamError:
        return False
    return True


def typo_migration(names: Names, write_migration: WriteMigration) -> tuple[str, str]:
    """The first-contact report's migration: create AUDIT, then update it under a typo."""
    audit = names.stream("audit")
    typo = audit.replace("AUDIT", "AUDTI")
    write_migration(
        "2222_audit.py",
        f"""
        def change(m):
            m.create_stream(name="{audit}", subjects=["{names.subject("audit.>")}"])
            m.update_stream(name="{typo}", max_age=3600)
        """,
    )
    return audit, typo


async def test_a_step_naming_a_missing_stream_fails_before_the_first_step_runs(
    transport: NatsTransport,
    config: Config,
    names: Names,
    write_migration: WriteMigration,
    migrations_dir: Path,
) -> None:
    audit, typo = typo_migration(names, write_migration)
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert str(caught.value) == (
        f"Error running migration file 2222_audit.py - step 2 of 2 (update_stream {typo}): "
        f"stream {typo} does not exist and no earlier step creates it. {NOTHING_CHANGED}"
    )
    assert not await stream_exists(transport, audit)
    assert await run_ids(transport, config) == []
    # Fixing the typo is all it takes: nothing is left over to collide with.
    path = migrations_dir / "2222_audit.py"
    path.write_text(path.read_text().replace(typo, audit))
    await migrate(transport, config)
    assert (await transport.stream_info(audit)).config["max_age"] == 3600
    assert await run_ids(transport, config) == ["2222"]


async def test_dry_run_runs_the_same_checks_and_changes_nothing(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    audit, typo = typo_migration(names, write_migration)
    with pytest.raises(MigrationError, match=f"stream {typo} does not exist"):
        await migrate(transport, config, dry_run=True)
    assert not await stream_exists(transport, audit)
    assert not await stream_exists(transport, f"KV_{config.migrations_bucket}")


async def test_steps_may_use_what_earlier_steps_of_the_run_create_but_not_what_they_delete(
    transport: NatsTransport,
    config: Config,
    names: Names,
    write_migration: WriteMigration,
    migrations_dir: Path,
) -> None:
    stream = names.stream()
    write_migration(
        "1111_create.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a.>")}"])
        """,
    )
    write_migration(
        "2222_consume.py",
        f"""
        def change(m):
            m.update_stream(name="{stream}", description="described")
            m.create_consumer(stream_name="{stream}", durable_name="c",
                              filter_subject="{names.subject("a.b")}")
        """,
    )
    write_migration(
        "3333_drop.py",
        f"""
        def up(m):
            m.delete_stream("{stream}")
            m.delete_consumer(stream_name="{stream}", durable_name="c")

        def down(m):
            pass
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config, dry_run=True)
    assert str(caught.value) == (
        f"Error running migration file 3333_drop.py - step 2 of 2 (delete_consumer c on stream "
        f"{stream}): stream {stream} does not exist and no earlier step creates it. "
        f"{NOTHING_CHANGED}"
    )
    (migrations_dir / "3333_drop.py").unlink()
    await migrate(transport, config)
    assert (await transport.consumer_info(stream, "c")).config["ack_policy"] == "explicit"
    assert await run_ids(transport, config) == ["1111", "2222"]


@pytest.mark.parametrize(
    ("consumer", "problem"),
    [
        (
            'stream_name="{missing}", durable_name="c"',
            "stream {missing} does not exist and no earlier step creates it",
        ),
        (
            'stream_name="{stream}", durable_name="c", filter_subject="elsewhere.x"',
            "filter_subject 'elsewhere.x' is not within the subjects of stream {stream} "
            "({subject}), so the consumer would receive nothing",
        ),
    ],
)
async def test_a_consumer_the_server_would_refuse_or_starve_fails_before_anything_runs(
    transport: NatsTransport,
    config: Config,
    names: Names,
    write_migration: WriteMigration,
    consumer: str,
    problem: str,
) -> None:
    stream, missing, subject = names.stream(), names.stream("missing"), names.subject("a.>")
    values = {"stream": stream, "missing": missing, "subject": subject}
    write_migration(
        "1111_consumer.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{subject}"])
            m.create_consumer({consumer.format(**values)})
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert "step 2 of 2 (create_consumer c on stream " in str(caught.value)
    assert f"): {problem.format(**values)}. {NOTHING_CHANGED}" in str(caught.value)
    assert not await stream_exists(transport, stream)


async def test_creating_an_existing_stream_with_other_options_fails_before_anything_runs(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    existing, new = names.stream("existing"), names.stream("new")
    subject = names.subject("existing")
    await transport.create_stream({"name": existing, "subjects": [subject], "max_age": 3600})
    write_migration(
        "1111_again.py",
        f"""
        def change(m):
            m.create_stream(name="{new}", subjects=["{names.subject("new")}"])
            m.create_stream(name="{existing}", subjects=["{subject}"], max_age=60)
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert f"step 2 of 2 (create_stream {existing}): stream {existing} exists already with a " in (
        str(caught.value)
    )
    assert "(max_age: 3600.0 -> 60); use update_stream to change it" in str(caught.value)
    assert not await stream_exists(transport, new)


async def test_a_step_the_server_refuses_undoes_the_creates_of_its_migration_and_says_so(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    good, created, kept, big = (
        names.stream("good"),
        names.stream("created"),
        names.stream("kept"),
        names.stream("big"),
    )
    await transport.create_stream({"name": kept, "subjects": [names.subject("kept")]})
    write_migration(
        "1111_good.py",
        f"""
        def change(m):
            m.create_stream(name="{good}", subjects=["{names.subject("good")}"])
        """,
    )
    # Only the server knows that a single node cannot hold three replicas: the checks pass.
    write_migration(
        "2222_bad.py",
        f"""
        def up(m):
            m.create_stream(name="{created}", subjects=["{names.subject("created.>")}"])
            m.create_consumer(stream_name="{created}", durable_name="c")
            m.create_stream(name="{kept}", subjects=["{names.subject("kept")}"])
            m.update_stream(name="{good}", description="changed")
            m.create_stream(name="{big}", subjects=["{names.subject("big")}"], num_replicas=3)

        def down(m):
            pass
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert str(caught.value) == "\n".join(
        [
            f"Error running migration file 2222_bad.py - creating stream '{big}': "
            "replicas > 1 not supported in non-clustered mode",
            f"Step 5 of 5 (create_stream {big}) failed.",
            "Applied before the failure, and what became of it:",
            f"  step 4 update_stream {good}: applied, not undone (updates are never undone "
            f"automatically); to restore it, update_stream(name='{good}', description=None)",
            f"  step 3 create_stream {kept}: existed before this migration; left as it is",
            f"  step 2 create_consumer c on stream {created}: undone (deleted again)",
            f"  step 1 create_stream {created}: undone (deleted again)",
            "Migration 2222 was not recorded; fix it and run it again.",
            "Migrations finished earlier in this run stay recorded: 1111_good.py.",
        ]
    )
    assert not await stream_exists(transport, created)
    assert await stream_exists(transport, kept)
    assert (await transport.stream_info(good)).config["description"] == "changed"
    assert await run_ids(transport, config) == ["1111"]


async def test_num_replicas_is_checked_after_clamping_to_max_replicas(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    subject = names.subject("a")
    await transport.create_stream({"name": stream, "subjects": [subject]})
    write_migration(
        "1111_same.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{subject}"], num_replicas=3)
        """,
    )
    await migrate(transport, attrs.evolve(config, max_replicas=1))
    assert await run_ids(transport, config) == ["1111"]
