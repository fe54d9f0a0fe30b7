"""Concurrent runs (issue 21, finding 12), in one process against a real server: the record's
compare-and-set writes, the migration lock as a lease, and two runs of ``migrate`` at once.
The same with real processes (and a SIGKILLed holder) is in ``test_concurrent_deploys.py``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from _support import Names
from hypothesis import given
from hypothesis import strategies as st

from polyn.config import Config
from polyn.errors import KeyValueConflictError, MigrationError
from polyn.migration import MigrationBucket, lock_key, migrate
from polyn.migration._lock import hold_lock
from polyn.naming import is_valid_source_name
from polyn.nats import NatsTransport

WriteMigration = Callable[[str, str], Path]


@pytest.fixture
async def bucket(transport: NatsTransport, names: Names) -> MigrationBucket:
    bucket = MigrationBucket(transport, names.bucket("migrations"), "user.backend")
    await bucket.ensure()
    return bucket


async def test_kv_create_key_and_update_are_compare_and_set(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    first = await transport.kv_create_key(bucket.bucket, "k", b"1")
    with pytest.raises(KeyValueConflictError, match="exists already"):
        await transport.kv_create_key(bucket.bucket, "k", b"2")
    second = await transport.kv_update(bucket.bucket, "k", b"3", first)
    with pytest.raises(KeyValueConflictError, match=f"changed since revision {first}"):
        await transport.kv_update(bucket.bucket, "k", b"4", first)
    entry = await transport.kv_get(bucket.bucket, "k")
    assert entry is not None and (entry.value, entry.revision) == (b"3", second)
    await transport.kv_delete(bucket.bucket, "k")
    await transport.kv_create_key(bucket.bucket, "k", b"5")  # a deleted key can be created


async def test_concurrent_recording_never_loses_an_id(bucket: MigrationBucket) -> None:
    ids = [f"2024010100{n:04d}" for n in range(12)]
    async with trio.open_nursery() as nursery:
        for migration_id in ids:
            nursery.start_soon(bucket.add, migration_id)
    assert await bucket.ids() == ids
    async with trio.open_nursery() as nursery:
        for migration_id in ids[::2]:
            nursery.start_soon(bucket.remove, migration_id)
    assert await bucket.ids() == ids[1::2]


source_roots = st.from_regex(r"[a-z0-9]+([.:][a-z0-9]+){0,4}", fullmatch=True)


@given(source_roots, source_roots)
def test_the_lock_key_is_never_a_source_root_and_each_service_has_its_own(a: str, b: str) -> None:
    assert is_valid_source_name(a)
    assert not is_valid_source_name(lock_key(a))  # so no record key can be the lock's
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", lock_key(a))  # a key the bucket accepts
    assert (lock_key(a) == lock_key(b)) == (a == b)


async def test_the_lock_is_a_key_of_its_own_removed_after_the_run(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    seen: dict[str, bytes] = {}
    async with hold_lock(transport, bucket.bucket, "user.backend") as lease:
        seen = await transport.kv_entries(bucket.bucket)
        await lease.check()
    assert list(seen) == ["_lock.user.backend"]
    holder = json.loads(seen["_lock.user.backend"])
    assert set(holder) == {"holder", "ttl", "since"} and holder["ttl"] == 30
    assert await transport.kv_entries(bucket.bucket) == {}


async def test_a_second_holder_waits_until_the_first_releases(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    events: list[str] = []

    async def hold(
        name: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with hold_lock(transport, bucket.bucket, "user.backend", say=events.append):
            events.append(f"{name} holds")
            task_status.started()
            await trio.sleep(0.3)
            events.append(f"{name} releases")

    async with trio.open_nursery() as nursery:
        await nursery.start(hold, "first")
        nursery.start_soon(hold, "second")
    assert events[0] == "first holds"
    assert events[1].startswith("Waiting for the migration lock, held by ")
    assert events[2:] == ["first releases", "second holds", "second releases"]


async def test_a_lease_that_is_not_renewed_expires_and_is_taken_over(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    dead = json.dumps({"holder": "dead-host:1:abc", "ttl": 0.5, "since": "x"}).encode()
    await transport.kv_create_key(bucket.bucket, lock_key("user.backend"), dead)
    said: list[str] = []
    with trio.fail_after(10):
        async with hold_lock(transport, bucket.bucket, "user.backend", say=said.append):
            pass
    assert said[-1] == "Migration lock: took over the expired lock of dead-host:1:abc"


async def test_a_live_holder_is_waited_for_then_named(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    async with hold_lock(transport, bucket.bucket, "user.backend", ttl=0.3):
        with pytest.raises(MigrationError) as caught:
            async with hold_lock(transport, bucket.bucket, "user.backend", wait=1.0):
                pass  # pragma: no cover - never taken
        # The holder renewed its 0.3 s lease throughout the second's 1 s wait.
    message = str(caught.value)
    assert message.startswith("The migration lock (_lock.user.backend in bucket ")
    assert "waited 1 s" in message and "`polyn migrate --break-lock`" in message


async def test_break_lock_takes_it_at_once_and_the_old_holder_stops(
    transport: NatsTransport, bucket: MigrationBucket
) -> None:
    said: list[str] = []
    async with hold_lock(transport, bucket.bucket, "user.backend") as old:
        async with hold_lock(
            transport, bucket.bucket, "user.backend", break_lock=True, say=said.append
        ):
            with pytest.raises(MigrationError, match=r"was taken over by .* while this run"):
                await old.check()
        assert said[0].startswith("Migration lock: broke (--break-lock) lock of ")


async def test_two_runs_at_once_run_each_migration_once(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    for number in ("1111", "2222", "3333"):
        write_migration(
            f"{number}_create.py",
            f"""
            def change(m):
                m.create_stream(name="{names.stream(number)}",
                                subjects=["{names.subject(number)}"])
            """,
        )
    outputs: list[list[str]] = [[], []]
    async with trio.open_nursery() as nursery:
        for output in outputs:
            nursery.start_soon(lambda out=output: migrate(transport, config, progress=out.append))
    migrated = [
        line for out in outputs for line in out if line.endswith(")") and "migrated" in line
    ]
    assert sorted(line.split(":")[0] for line in migrated) == [
        "== 1111_create.py",
        "== 2222_create.py",
        "== 3333_create.py",
    ]
    assert ["No pending migrations"] in [out[-1:] for out in outputs]
    bucket = MigrationBucket(transport, config.migrations_bucket, config.source_root)
    assert await bucket.ids() == ["1111", "2222", "3333"]
