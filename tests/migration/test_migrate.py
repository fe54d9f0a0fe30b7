"""Running migrations against a real server: conformance cases 104-114 and the Python additions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from _support import Names

from polyn.config import Config
from polyn.errors import MigrationError, StreamError
from polyn.migration import MigrationBucket, migrate, migration_status
from polyn.nats import NatsTransport

WriteMigration = Callable[[str, str], Path]


async def run_ids(transport: NatsTransport, config: Config) -> list[str]:
    return await MigrationBucket(transport, config.migrations_bucket, config.source_root).ids()


async def stream_exists(transport: NatsTransport, name: str) -> bool:
    try:
        await transport.stream_info(name)
    except StreamError:
        return False
    return True


async def test_an_empty_folder_logs_and_still_creates_the_bucket(
    transport: NatsTransport,
    config: Config,
    migrations_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # case 104
    (migrations_dir / "foo.text").write_text("not a migration")
    with caplog.at_level(logging.INFO, logger="polyn.migration"):
        result = await migrate(transport, config)
    assert result.steps == ()
    assert f"No migrations found at {migrations_dir}" in caplog.text
    assert await stream_exists(transport, f"KV_{config.migrations_bucket}")


async def test_a_missing_folder_is_no_migrations(
    transport: NatsTransport, config: Config, tmp_path: Path
) -> None:
    messages: list[str] = []
    await migrate(transport, config, migrations_dir=tmp_path / "nope", progress=messages.append)
    assert messages == [f"No migrations found at {tmp_path / 'nope'}"]


async def test_create_stream_migration_creates_streams_and_records_its_id(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 105
    test_stream, other_stream = names.stream("test"), names.stream("other")
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{test_stream}", subjects=["{names.subject("test")}"])
            m.create_stream(name="{other_stream}", subjects=["{names.subject("other")}"])
        """,
    )
    result = await migrate(transport, config)
    assert await stream_exists(transport, test_stream)
    assert await stream_exists(transport, other_stream)
    assert await run_ids(transport, config) == ["1234"]
    assert result.ids == ("1234",)
    assert [step.migration.id for step in result.steps] == ["1234"]


async def test_num_replicas_above_max_replicas_is_clamped(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 106
    stream = names.stream()
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"], num_replicas=5)
        """,
    )
    await migrate(transport, attrs.evolve(config, max_replicas=1))
    info = await transport.stream_info(stream)
    assert info.config["num_replicas"] == 1


async def test_invalid_subjects_fail_with_the_file_name_and_reason(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 107
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{names.stream()}", subjects=None)
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert str(caught.value).startswith("Error running migration file 1234_create_stream.py - ")
    assert "subjects must be a list of strings" in str(caught.value)
    assert await run_ids(transport, config) == []


async def test_a_recorded_migration_is_not_run_again(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 108
    stream = names.stream()
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
        """,
    )
    bucket = MigrationBucket(transport, config.migrations_bucket, config.source_root)
    await bucket.ensure()
    await bucket.add("1234")
    result = await migrate(transport, config)
    assert result.steps == ()
    assert not await stream_exists(transport, stream)


async def test_migrations_run_in_id_order_not_listing_order(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 109
    stream = names.stream()
    write_migration(
        "222_update_stream.py",
        f"""
        def change(m):
            m.update_stream(name="{stream}", description="updated")
        """,
    )
    write_migration(
        "111_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
        """,
    )
    await migrate(transport, config)
    info = await transport.stream_info(stream)
    assert info.config["description"] == "updated"
    assert info.config["subjects"] == [names.subject("a")]  # merged over the current config
    assert await run_ids(transport, config) == ["111", "222"]


async def test_updating_a_missing_stream_fails(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 110
    write_migration(
        "1234_update_stream.py",
        f"""
        def change(m):
            m.update_stream(name="{names.stream()}", description="x")
        """,
    )
    with pytest.raises(MigrationError, match=r"^Error running migration file 1234_update_stream"):
        await migrate(transport, config)


async def test_commands_run_in_the_order_written(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 111
    stream = names.stream()
    write_migration(
        "1234_create_and_delete.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
            m.delete_stream("{stream}")
        """,
    )
    await migrate(transport, config)
    assert not await stream_exists(transport, stream)
    assert await run_ids(transport, config) == ["1234"]


async def test_rolling_back_a_change_deletes_what_it_created(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 112
    stream, consumer = names.stream(), names.consumer()
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
            m.create_consumer(stream_name="{stream}", durable_name="{consumer}",
                              ack_policy="explicit", ack_wait=10)
        """,
    )
    await migrate(transport, config)
    info = await transport.consumer_info(stream, consumer)
    assert info.config["ack_wait"] == 10
    result = await migrate(transport, config, direction="down")
    assert [c.name for c in result.steps[0].commands] == ["delete_consumer", "delete_stream"]
    assert not await stream_exists(transport, stream)
    assert await run_ids(transport, config) == []
    assert await transport.kv_entries(config.migrations_bucket) == {"user.backend": b"[]"}


async def test_a_change_with_delete_stream_cannot_be_rolled_back(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 113
    stream = names.stream()
    await transport.create_stream({"name": stream, "subjects": [names.subject("a")]})
    write_migration(
        "1234_delete_stream.py",
        f"""
        def change(m):
            m.delete_stream("{stream}")
        """,
    )
    await migrate(transport, config)
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config, direction="down")
    assert str(caught.value) == (
        "Migration command :delete_stream in file 1234_delete_stream.py can't be reversed. "
        "Please implement the `up(m)` and `down(m)` functions explicitly in your migration "
        "module."
    )
    assert await run_ids(transport, config) == ["1234"]


async def test_explicit_up_and_down(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:  # case 114
    stream = names.stream()
    await transport.create_stream({"name": stream, "subjects": [names.subject("a")]})
    write_migration(
        "1234_describe.py",
        f"""
        def up(m):
            m.update_stream(name="{stream}", description="described")

        def down(m):
            m.update_stream(name="{stream}", description=None)
        """,
    )
    await migrate(transport, config)
    assert (await transport.stream_info(stream)).config["description"] == "described"
    await migrate(transport, config, direction="down")
    assert (await transport.stream_info(stream)).config.get("description") is None
    assert await run_ids(transport, config) == []


async def test_rollback_undoes_only_the_last_migration(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    first, second = names.stream("first"), names.stream("second")
    for number, stream in (("1111", first), ("2222", second)):
        write_migration(
            f"{number}_create_{stream.lower()}.py",
            f"""
            def change(m):
                m.create_stream(name="{stream}", subjects=["{names.subject(stream.lower())}"])
            """,
        )
    await migrate(transport, config)
    await migrate(transport, config, direction="down")
    assert await stream_exists(transport, first)
    assert not await stream_exists(transport, second)
    assert await run_ids(transport, config) == ["1111"]


async def test_rollback_with_nothing_recorded_does_nothing(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    write_migration("1234_noop.py", "def change(m):\n    pass\n")
    messages: list[str] = []
    result = await migrate(transport, config, direction="down", progress=messages.append)
    assert result.steps == ()
    assert messages == ["No migrations to roll back"]


async def test_a_bad_later_migration_stops_the_run_before_anything_changes(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    good, bad = names.stream("good"), names.stream("bad")
    write_migration(
        "1111_good.py",
        f"""
        def change(m):
            m.create_stream(name="{good}", subjects=["{names.subject("good")}"])
        """,
    )
    write_migration(
        "2222_bad.py",
        f"""
        def change(m):
            m.create_stream(name="{bad}", subjects=["{names.subject("bad")}"])
            m.create_stream(name="{bad}2", subjects=["{names.subject("bad")}"])
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    assert str(caught.value) == (
        f"Error running migration file 2222_bad.py - step 2 of 2 (create_stream {bad}2): its "
        f"subjects overlap those of stream {bad} ({names.subject('bad')}). Nothing was changed: "
        "every step is checked before any runs"
    )
    assert await run_ids(transport, config) == []
    assert not await stream_exists(transport, good)
    assert not await stream_exists(transport, bad)


async def test_an_unknown_option_is_refused_with_the_valid_ones_before_the_server_sees_it(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    write_migration(
        "1234_typo.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
            m.create_consumer(stream_name="{stream}", durable_name="c", ack_wiat=30)
        """,
    )
    with pytest.raises(MigrationError) as caught:
        await migrate(transport, config)
    message = str(caught.value)
    assert message.startswith(
        "Error running migration file 1234_typo.py - create_consumer: unknown option 'ack_wiat' "
        "(did you mean 'ack_wait'?); valid options: ack_policy, ack_wait, backoff, "
    )
    assert not await stream_exists(transport, stream)


async def test_a_file_without_change_or_up_is_refused(
    transport: NatsTransport, config: Config, write_migration: WriteMigration
) -> None:
    write_migration("1234_empty.py", "X = 1\n")
    with pytest.raises(MigrationError, match=r"1234_empty.py does not define a up\(m\)"):
        await migrate(transport, config)


async def test_a_broken_file_stops_the_run_before_anything_changes(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    write_migration(
        "1111_good.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
        """,
    )
    write_migration("2222_broken.py", "def change(m)\n")
    with pytest.raises(MigrationError, match=r"2222_broken\.py - SyntaxError"):
        await migrate(transport, config)
    assert not await stream_exists(transport, stream)


async def test_an_empty_migration_is_not_recorded(
    transport: NatsTransport, config: Config, write_migration: WriteMigration
) -> None:
    write_migration("1234_later.py", "def change(m):\n    pass\n")
    result = await migrate(transport, config)
    assert [step.recorded for step in result.steps] == [False]
    assert await run_ids(transport, config) == []


async def test_dry_run_reports_and_writes_nothing(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    stream = names.stream()
    write_migration(
        "1234_create_stream.py",
        f"""
        def change(m):
            m.create_stream(name="{stream}", subjects=["{names.subject("a")}"])
        """,
    )
    messages: list[str] = []
    result = await migrate(transport, config, dry_run=True, progress=messages.append)
    assert messages == [
        "== 1234_create_stream.py: would migrate",
        f"   create_stream {stream}",
    ]
    assert result.dry_run and [step.migration.id for step in result.steps] == ["1234"]
    assert not await stream_exists(transport, stream)
    assert not await stream_exists(transport, f"KV_{config.migrations_bucket}")


async def test_status_lists_applied_and_pending(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    write_migration(
        "1111_first.py",
        f"""
        def change(m):
            m.create_stream(name="{names.stream()}", subjects=["{names.subject("a")}"])
        """,
    )
    await migrate(transport, config)
    write_migration("2222_second.py", "def change(m):\n    pass\n")
    status = await migration_status(transport, config)
    assert [(i, f.name if f else None) for i, f in status.applied] == [("1111", "first")]
    assert [f.id for f in status.pending] == ["2222"]
