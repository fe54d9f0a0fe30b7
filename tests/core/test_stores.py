"""JSONStore and SchemaStore on a real bucket: loading, the watch, writes, failures (§13.7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from core_support import Core

from polyn import codec
from polyn.app import App
from polyn.errors import ActorError, BucketNotFoundError, SchemaError, SchemaStoreError
from polyn.event import Event
from polyn.json_store import JSONStore
from polyn.nats import NatsConnection
from polyn.schema_store import MISSING_STORE, SchemaStore


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls foreign state
            await trio.sleep(0.01)


def store_of(running: Any, name: str) -> SchemaStore:
    store = running.ref(name).running_actor()
    assert isinstance(store, SchemaStore)
    return store


async def test_schema_store_loads_every_key_and_registers_under_its_bucket(core: Core) -> None:
    async with core.app().run() as running:
        store = store_of(running, core.bucket)
        assert set(store.schemas.names()) == {core.type(name) for name in core_schema_names()}
        assert store.schemas.get(core.type("pub.test.event.v1")) == {"type": "string"}
        assert store.get(core.type("pub.test.event.v1")) == {"type": "string"}
        assert store.get("not.there.v1") is None  # §13.7 #95
        await store.delete("not.there.v1")


def core_schema_names() -> list[str]:
    from core_support import SCHEMAS

    return list(SCHEMAS)


async def test_empty_bucket_gives_an_empty_snapshot(core: Core) -> None:
    bucket = core.names.bucket("empty")
    await core.transport.kv_create(bucket)
    try:
        async with App(core.config, [NatsConnection(), SchemaStore(bucket)]).run() as running:
            assert store_of(running, bucket).schemas.names() == ()
    finally:
        await core.transport.kv_delete_bucket(bucket)


async def test_watch_adds_changes_and_removes_schemas_while_running(core: Core) -> None:
    new = core.type("order.placed.v1")
    async with core.app().run() as running:
        store = store_of(running, core.bucket)
        before = store.schemas
        await core.transport.kv_put(core.bucket, new, b'{"type": "integer"}')
        await wait_until(lambda: new in store.schemas)
        assert new not in before  # snapshots are replaced, never changed in place
        event = Event.new(core.config, new, 5)
        codec.encode(event, store.schemas, core.config)

        await core.transport.kv_put(core.bucket, new, b'{"type": "string"}')
        await wait_until(lambda: store.schemas.get(new) == {"type": "string"})

        await core.transport.kv_delete(core.bucket, new)
        await wait_until(lambda: new not in store.schemas)


async def test_a_bad_schema_is_skipped_and_the_others_kept(core: Core) -> None:
    bad = core.type("bad.schema.v1")
    await core.transport.kv_put(core.bucket, bad, b'{"type": "not-a-valid-type"}')
    await core.transport.kv_put(core.bucket, core.type("junk.v1"), b"not json")
    async with core.app().run() as running:
        store = store_of(running, core.bucket)
        assert bad not in store.schemas
        assert core.type("junk.v1") not in store.schemas
        assert core.type("user.created.v1") in store.schemas
        # a bad value arriving through the watch is skipped the same way
        good = core.type("good.v1")
        await core.transport.kv_put(core.bucket, core.type("pub.test.event.v1"), b'{"type": 5}')
        await core.transport.kv_put(core.bucket, good, b"true")
        await wait_until(lambda: good in store.schemas)
        assert core.type("pub.test.event.v1") not in store.schemas
        assert core.type("user.created.v1") in store.schemas


async def test_put_refuses_a_document_that_is_not_a_json_schema(core: Core) -> None:
    async with core.app().run() as running:
        store = store_of(running, core.bucket)
        with pytest.raises(SchemaError, match="Schemas must be valid JSONSchema documents, got"):
            await store.put("foo.bar", {"type": "not-a-valid-type"})
        assert await core.transport.kv_get(core.bucket, "foo.bar") is None
        name = core.type("saved.v1")
        await store.put(name, {"type": "null"})
        assert name in store.schemas  # at once, before the watch confirms it
        entry = await core.transport.kv_get(core.bucket, name)
        assert entry is not None and json.loads(entry.value or b"") == {"type": "null"}


async def test_missing_bucket_fails_the_start_with_the_protocol_text(core: Core) -> None:
    missing = core.names.bucket("missing")
    with pytest.raises(ActorError) as caught:
        async with App(core.config, [NatsConnection(), SchemaStore(missing)]).run():
            pass
    cause = caught.value.__cause__
    assert isinstance(cause, SchemaStoreError)
    assert MISSING_STORE in str(cause)
    assert missing in str(cause)


async def test_unreachable_connection_is_retried_then_fails_clearly(core: Core) -> None:
    store = SchemaStore(connection="elsewhere", retries=3, retry_interval=0.01)
    with pytest.raises(ActorError) as caught:
        async with App(core.config, [NatsConnection(), store]).run():
            pass
    cause = caught.value.__cause__
    assert isinstance(cause, SchemaStoreError)
    assert "Could not connect to Key Value Store" in str(cause)
    assert "'elsewhere'" in str(cause) and "tried 3 times" in str(cause)


async def test_preloaded_schemas_need_no_nats_at_all(core: Core) -> None:
    # No NatsConnection in this tree: the store never touches NATS.
    app = App(core.config, [SchemaStore(schemas={"a.v1": {"type": "string"}})])
    async with app.run() as running:
        store = store_of(running, core.bucket)
        assert store.schemas.names() == ("a.v1",)
        await store.put("b.v1", {"type": "null"})
        await store.delete("a.v1")
        assert store.schemas.names() == ("b.v1",)
    snapshot = codec.Schemas.from_dict({"c.v1": True})
    async with App(core.config, [SchemaStore(schemas=snapshot, name="mine")]).run() as running:
        assert store_of(running, "mine").schemas is snapshot


async def test_json_store_mirrors_writes_and_other_writers(core: Core) -> None:
    bucket = core.names.bucket("settings")
    app = App(core.config, [NatsConnection(), JSONStore(bucket, create=True)])
    try:
        async with app.run() as running:
            store = JSONStore.of(running, bucket)
            assert store.contents() == {}
            revision = await store.put("greeting", {"text": "hello"})
            assert revision > 0
            assert store.get("greeting") == {"text": "hello"}
            await core.transport.kv_put(bucket, "other", b"[1, 2]")
            await wait_until(lambda: store.get("other") == [1, 2])
            assert await running.ref(bucket).call(("get", "other")) == [1, 2]
            await running.ref(bucket).call(("delete", "greeting"))
            assert store.contents() == {"other": [1, 2]}
            assert await core.transport.kv_get(bucket, "greeting") is None
            with pytest.raises(TypeError, match="must be JSON"):
                await store.put("bad", {1, 2})
    finally:
        await core.transport.kv_delete_bucket(bucket)


async def test_json_store_without_its_bucket_fails_to_start(core: Core) -> None:
    with pytest.raises(ActorError) as caught:
        async with App(core.config, [NatsConnection(), JSONStore(core.names.bucket("no"))]).run():
            pass
    assert isinstance(caught.value.__cause__, BucketNotFoundError)


# -- hostile and careless keys (issue 21, items 4, 6, 7 and 13; issue 19, combined schemas) ------

DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"


def _deep_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"properties": {"a": schema}}
    return schema


async def test_bad_keys_are_skipped_and_logged_and_never_stop_the_store(
    core: Core, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text('"-----BEGIN PRIVATE KEY----- s3cr3t-k3y"')
    bad = {
        "schema.five.v1": b'{"$schema": 5}',
        "deep.v1": json.dumps(_deep_schema(300)).encode(),
        "junk.v1": b"{not json",
        "not.a.schema.v1": b'{"type": "not-a-valid-type"}',
        "anchor.typo.v1": json.dumps(
            {
                "$schema": DRAFT_2020,
                "$defs": {"address": {"$anchor": "address", "type": "object"}},
                "properties": {"home": {"$ref": "#adress"}},
            }
        ).encode(),
        "dynamic.nowhere.v1": json.dumps(
            {"$schema": DRAFT_2020, "properties": {"a": {"$dynamicRef": "#nowhere"}}}
        ).encode(),
        "metadata.v1": b'{"$dynamicRef": "http://169.254.169.254/latest/meta-data/"}',
        "secret.v1": json.dumps({"$ref": secret.as_uri()}).encode(),
        "backtracking.v1": b'{"pattern": "(a)\\\\1"}',
    }
    for name, value in bad.items():
        await core.transport.kv_put(core.bucket, core.type(name), value)
    for attempt in range(2):  # a fresh start works the same
        caplog.clear()
        async with core.app().run() as running:
            assert running.health()
            store = store_of(running, core.bucket)
            for name in bad:
                assert core.type(name) not in store.schemas
            assert core.type("user.created.v1") in store.schemas
            logged = "\n".join(record.getMessage() for record in caplog.records)
            for name in bad:
                assert f"skipping key {core.type(name)!r}" in logged, (attempt, name)
            assert "$schema 5 is not a string" in logged
            assert "does not resolve inside the schema" in logged
            assert "s3cr3t" not in logged
            with pytest.raises(codec.SchemaNotFoundError):
                codec.encode(
                    Event.new(core.config, core.type("metadata.v1"), 1), store.schemas, core.config
                )


async def test_a_bad_key_arriving_through_the_watch_is_skipped_too(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    async with core.app().run() as running:
        store = store_of(running, core.bucket)
        name, good = core.type("user.created.v1"), core.type("good.v1")
        await core.transport.kv_put(core.bucket, name, json.dumps(_deep_schema(300)).encode())
        await core.transport.kv_put(core.bucket, good, b'{"type": "integer"}')
        await wait_until(lambda: good in store.schemas)
        assert name not in store.schemas
        assert running.health()
        assert f"skipping key {name!r}" in caplog.text


def _combined(payload: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvent schema with the payload inside, as polyn-cli <= 0.2 stored it (§16.18)."""
    envelope = json.loads(
        (Path(codec.__file__).parent / "cloud_event_schema.json").read_text("utf-8")
    )
    envelope["definitions"] = {"datadef": payload}
    envelope["properties"]["data"] = {"$ref": "#/definitions/datadef"}
    return envelope


async def test_a_combined_schema_from_the_old_cli_is_applied_to_the_whole_event(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    name = core.type("old.widget.v1")
    payload = {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}
    await core.transport.kv_put(core.bucket, name, json.dumps(_combined(payload)).encode())
    async with core.app().run() as running:
        assert running.health()
        store = store_of(running, core.bucket)
        assert name in store.schemas
        assert f"key {name!r} holds a combined CloudEvent schema" in caplog.text
        assert "`polyn schemas load`" in caplog.text
        body = codec.encode(Event.new(core.config, name, {"size": 3}), store.schemas, core.config)
        assert codec.decode(body, store.schemas, core.config).data == {"size": 3}
        with pytest.raises(codec.ValidationError, match="Property: `#/data/size` - 'big'"):
            codec.encode(Event.new(core.config, name, {"size": "big"}), store.schemas, core.config)
        assert store.schemas.is_valid(name, {"size": 3})
        assert not store.schemas.is_valid(name, {"size": "big"})


async def test_pub_applies_a_combined_schema_to_the_whole_event_on_every_path(
    core: Core,
) -> None:
    """Audit of issue 19: ``pub``'s template fast path validated only the payload of a
    combined (old-CLI) schema, so an event the schema refuses for its envelope was sent once a
    first event of its kind had gone through the codec."""
    from polyn._resolve import resolve
    from polyn.publish import _clear_templates, _template, pub

    name = core.type("old.order.v1")
    combined = _combined({"type": "object", "properties": {"size": {"type": "integer"}}})
    combined["properties"]["id"] = {"type": "string", "pattern": "^[0-9a-f-]{36}$"}  # UUIDs only
    await core.transport.kv_put(core.bucket, name, json.dumps(combined).encode())
    sub = await core.transport.subscribe(name)
    try:
        async with core.app().run() as running:
            refused: list[str] = []
            for fresh_template in (True, False):  # the codec's path, then the template's
                if fresh_template:
                    _clear_templates()
                else:
                    await pub(running, name, {"size": 1})  # marks the template verified
                    assert _template(core.config, name, None).verified
                with pytest.raises(codec.ValidationError) as failed:
                    await pub(running, name, {"size": 2}, id="order-2")
                refused.append(
                    "\n".join(
                        line for line in str(failed.value).splitlines() if "Property" in line
                    )
                )
            assert refused[0] == refused[1] and "#/id" in refused[0], refused
            await resolve(running).transport.flush()
        with trio.fail_after(5):
            sent = json.loads((await sub.receive()).data)
        assert sent["data"] == {"size": 1}  # only the valid event went out
        with trio.move_on_after(0.2):
            extra = await sub.receive()
            pytest.fail(f"an event the schema refuses was sent: {extra.data!r}")
    finally:
        await sub.aclose()


async def test_a_deleted_and_recreated_bucket_restarts_the_store_which_sees_the_new_schemas(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    name = core.type("user.created.v1")
    app = App(core.config, [NatsConnection(), SchemaStore(bucket_check_interval=0.1)])
    async with app.run() as running:
        first = store_of(running, core.bucket)
        assert first.schemas.is_valid(name, {"name": "Ada"})
        await core.transport.kv_delete_bucket(core.bucket)
        await core.transport.kv_create(core.bucket)
        stricter = {"type": "object", "required": ["name", "email"]}
        await core.transport.kv_put(core.bucket, name, json.dumps(stricter).encode())

        def restarted_with_stricter_schema() -> bool:
            actor = running.whereis(core.bucket)
            try:
                store = actor.running_actor() if actor is not None else None
            except ActorError:
                return False  # between the crash and the restart
            return (
                isinstance(store, SchemaStore)
                and store is not first
                and store.schemas.get(name) == stricter
            )

        await wait_until(restarted_with_stricter_schema)
        assert "was recreated" in caplog.text
        await wait_until(running.health)  # the new instance finishes its start


async def test_a_deleted_bucket_crashes_the_store_with_a_logged_reason(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(core.config, [NatsConnection(), SchemaStore(bucket_check_interval=0.1)])
    # The store crashes, its restarts fail (no bucket), and the tree gives up: not silent.
    with pytest.raises(BaseException) as caught:
        with trio.fail_after(30):
            async with app.run():
                await core.transport.kv_delete_bucket(core.bucket)
                await trio.sleep_forever()
    assert not isinstance(caught.value, trio.TooSlowError)
    assert f"the schema bucket {core.bucket!r} was deleted" in caplog.text
    assert MISSING_STORE in _every_message(caught.value)  # why the restarts failed


def _every_message(error: BaseException) -> str:
    found, pending = [], [error]
    while pending:
        current = pending.pop()
        found.append(str(current))
        pending.extend(getattr(current, "exceptions", ()))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return "\n".join(found)


async def test_a_connection_that_is_not_alive_is_named_as_the_protocol_does(core: Core) -> None:
    store = SchemaStore(connection="bad_connection", retries=1, retry_interval=0.01)
    with pytest.raises(ActorError) as caught:
        async with App(core.config, [NatsConnection(), store]).run():
            pass
    assert "NATS server 'bad_connection' not alive" in str(caught.value.__cause__)
