"""The record of run migrations, byte for byte as Elixir writes it (conformance cases 99-103)."""

from __future__ import annotations

import pytest
from _support import Names

from polyn.errors import MigrationError
from polyn.migration import MigrationBucket
from polyn.nats import NatsTransport


@pytest.fixture
async def bucket(transport: NatsTransport, names: Names) -> MigrationBucket:
    bucket = MigrationBucket(transport, names.bucket("migrations"), "user.backend")
    await bucket.ensure()
    return bucket


async def stored(bucket: MigrationBucket) -> dict[str, bytes]:
    return await bucket.transport.kv_entries(bucket.bucket)


async def test_adding_an_id_stores_a_json_array_of_strings_under_the_source_root(
    bucket: MigrationBucket,
) -> None:  # case 99
    await bucket.add("1234")
    assert await stored(bucket) == {"user.backend": b'["1234"]'}


async def test_ids_are_kept_sorted_whatever_order_they_are_added(
    bucket: MigrationBucket,
) -> None:  # case 100
    await bucket.add("5555")
    await bucket.add("1234")
    assert await stored(bucket) == {"user.backend": b'["1234","5555"]'}


async def test_removing_an_id_keeps_the_others(bucket: MigrationBucket) -> None:  # case 101
    await bucket.add("5555")
    await bucket.add("1234")
    await bucket.remove("1234")
    assert await stored(bucket) == {"user.backend": b'["5555"]'}


async def test_a_deleted_key_means_nothing_has_run(bucket: MigrationBucket) -> None:  # case 102
    await bucket.add("1234")
    await bucket.transport.kv_delete(bucket.bucket, bucket.key)
    assert await bucket.ids() == []


async def test_recording_without_the_bucket_raises_migration_error(
    transport: NatsTransport, names: Names
) -> None:  # case 103
    missing = MigrationBucket(transport, names.bucket("missing"), "user.backend")
    with pytest.raises(MigrationError, match="Could not record migrations"):
        await missing.add("1234")


async def test_an_elixir_written_value_is_read_and_extended(bucket: MigrationBucket) -> None:
    await bucket.transport.kv_put(bucket.bucket, bucket.key, b'["1234","5555"]')
    assert await bucket.ids() == ["1234", "5555"]
    await bucket.add("20240101000000")
    assert await stored(bucket) == {"user.backend": b'["1234","20240101000000","5555"]'}


async def test_integer_ids_are_read_and_written_back_as_strings(bucket: MigrationBucket) -> None:
    await bucket.transport.kv_put(bucket.bucket, bucket.key, b"[5555, 1234]")
    assert await bucket.ids() == ["1234", "5555"]
    await bucket.remove("5555")
    assert await stored(bucket) == {"user.backend": b'["1234"]'}


async def test_a_value_that_is_not_a_list_of_ids_is_reported(bucket: MigrationBucket) -> None:
    await bucket.transport.kv_put(bucket.bucket, bucket.key, b'{"oops": 1}')
    with pytest.raises(MigrationError, match="not a JSON array of migration ids"):
        await bucket.ids()


async def test_keys_of_other_services_are_left_alone(bucket: MigrationBucket) -> None:
    other = MigrationBucket(bucket.transport, bucket.bucket, "orders.payments")
    await other.add("1111")
    await bucket.add("2222")
    assert await stored(bucket) == {
        "orders.payments": b'["1111"]',
        "user.backend": b'["2222"]',
    }
