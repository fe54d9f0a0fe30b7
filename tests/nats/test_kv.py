"""Key-value buckets through the real transport."""

from __future__ import annotations

import pytest
import trio
from _support import Names

from polyn.errors import BucketNotFoundError
from polyn.nats import KvEntry, NatsTransport


async def test_put_get_delete_keys_and_entries(transport: NatsTransport, names: Names) -> None:
    bucket = names.bucket()
    await transport.kv_create(bucket)
    assert await transport.kv_keys(bucket) == []
    assert await transport.kv_entries(bucket) == {}
    revision = await transport.kv_put(bucket, "user.created.v1", b'{"type":"object"}')
    entry = await transport.kv_get(bucket, "user.created.v1")
    assert entry == KvEntry(bucket, "user.created.v1", b'{"type":"object"}', revision, "PUT")
    await transport.kv_put(bucket, "other.v1", b"{}")
    assert sorted(await transport.kv_keys(bucket)) == ["other.v1", "user.created.v1"]
    await transport.kv_delete(bucket, "other.v1")
    assert await transport.kv_get(bucket, "other.v1") is None
    assert await transport.kv_get(bucket, "never") is None
    assert await transport.kv_entries(bucket) == {"user.created.v1": b'{"type":"object"}'}
    await transport.kv_delete_bucket(bucket)


async def test_creating_an_existing_bucket_keeps_it(transport: NatsTransport, names: Names) -> None:
    bucket = names.bucket()
    await transport.kv_create(bucket, description="first")
    await transport.kv_put(bucket, "k", b"v")
    await transport.kv_create(bucket, description="second")
    assert await transport.kv_entries(bucket) == {"k": b"v"}
    await transport.kv_delete_bucket(bucket)


async def test_missing_bucket_is_reported(transport: NatsTransport, names: Names) -> None:
    with pytest.raises(BucketNotFoundError):
        await transport.kv_get(names.bucket("absent"), "k")


async def test_watch_gives_initial_contents_then_puts_and_deletes(
    transport: NatsTransport, names: Names
) -> None:
    bucket = names.bucket()
    await transport.kv_create(bucket)
    await transport.kv_put(bucket, "a", b"1")
    await transport.kv_put(bucket, "b", b"2")
    await transport.kv_delete(bucket, "b")
    watch = await transport.kv_watch(bucket)
    assert watch.initial == {"a": b"1"}
    await transport.kv_put(bucket, "c", b"3")
    await transport.kv_put(bucket, "a", b"4")
    await transport.kv_delete(bucket, "c")
    with trio.fail_after(5):
        changes = [await watch.receive() for _ in range(3)]
    assert [(c.key, c.value, c.operation) for c in changes] == [
        ("c", b"3", "PUT"),
        ("a", b"4", "PUT"),
        ("c", None, "DEL"),
    ]
    await watch.aclose()
    await transport.kv_delete_bucket(bucket)


async def test_watch_of_an_empty_bucket_starts_empty(
    transport: NatsTransport, names: Names
) -> None:
    bucket = names.bucket()
    await transport.kv_create(bucket)
    watch = await transport.kv_watch(bucket)
    assert watch.initial == {}
    await transport.kv_put(bucket, "k", b"v")
    with trio.fail_after(5):
        assert (await watch.receive()).value == b"v"
    await watch.aclose()
    await transport.kv_delete_bucket(bucket)


async def test_initial_contents_are_complete_every_time(
    transport: NatsTransport, names: Names
) -> None:
    """nats-py may announce the end of a watch's initial contents before delivering them; the
    transport waits for the bucket's last sequence, so no read ever comes back short."""
    bucket = names.bucket()
    await transport.kv_create(bucket)
    expected = {f"key{i}": f"value {i}".encode() for i in range(150)}
    for key, value in expected.items():
        await transport.kv_put(bucket, key, value)
    await transport.kv_delete(bucket, "key0")
    del expected["key0"]
    try:
        for _ in range(15):
            assert await transport.kv_entries(bucket) == expected
            watch = await transport.kv_watch(bucket)
            try:
                assert watch.initial == expected
            finally:
                await watch.aclose()
    finally:
        await transport.kv_delete_bucket(bucket)
