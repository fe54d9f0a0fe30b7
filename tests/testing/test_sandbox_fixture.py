"""The pytest plugin's fixtures, the sandbox's snapshot rule and virtual time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing
from _support import Names

from polyn.app import App
from polyn.config import Config
from polyn.errors import ActorError, NatsConnectionError
from polyn.nats import NatsConnection, NatsTransport, transport_for
from polyn.schema_store import SchemaStore
from polyn.testing import MockNats, Sandbox, SandboxTransport
from polyn.testing.plugin import read_schemas


@pytest.fixture
async def publisher_in_a_fixture(polyn_sandbox: Sandbox, names: Names) -> AsyncIterator[None]:
    """Another fixture of the test: its task resolves to the same sandbox."""
    await transport_for("nats").publish(names.subject("from.fixture"), b"fixture")
    yield


async def test_the_test_body_and_its_fixtures_use_the_test_mock(
    polyn_sandbox: Sandbox, publisher_in_a_fixture: None, names: Names
) -> None:
    assert transport_for("nats") is polyn_sandbox.transport
    await transport_for("nats").publish(names.subject("from.body"), b"body")
    assert [m.data for m in polyn_sandbox.published(names.subject("from.*"))] == [
        b"fixture",
        b"body",
    ]


async def test_published_and_dead_letter_helpers(polyn_sandbox: Sandbox, names: Names) -> None:
    mock = transport_for("nats")
    subject = names.subject("order.placed.v1")
    await mock.publish(subject, json.dumps({"id": 1}).encode())
    await mock.publish("polyn.deadletter." + subject, b"{bad", headers={"Polyn-Error": "not JSON"})
    await mock.publish("polyn.deadletter." + names.subject("other.v1"), b"x")
    assert polyn_sandbox.published_json(subject) == [{"id": 1}]
    (letter,) = polyn_sandbox.dead_letters(subject)
    assert (letter.data, letter.headers["Polyn-Error"]) == (b"{bad", "not JSON")
    assert len(polyn_sandbox.dead_letters()) == 2
    assert len(polyn_sandbox.published()) == 3


async def test_definitions_are_a_snapshot_until_refresh(
    polyn_sandbox: Sandbox, nats_url: str, names: Names
) -> None:
    stream = names.stream()
    real = await NatsTransport.connect(nats_url)
    try:  # changed behind the sandbox's back
        await real.create_stream({"name": stream, "subjects": [names.subject(">")]})
        await real.create_consumer(stream, {"durable_name": "late", "ack_policy": "explicit"})
    finally:
        await real.close()
    mock = polyn_sandbox.transport
    assert await mock.stream_names(names.subject("x")) == []
    await polyn_sandbox.refresh()
    assert await mock.stream_names(names.subject("x")) == [stream]
    assert (await mock.consumer_info(stream, "late")).name == "late"
    await mock.js_publish(names.subject("x"), b"in memory")
    assert [m.data for m in await mock.fetch(stream, "late", 5, no_wait=True)] == [b"in memory"]


async def test_management_through_the_mock_reaches_the_server(
    polyn_sandbox: Sandbox, nats_url: str, names: Names
) -> None:
    stream = names.stream()
    await polyn_sandbox.transport.create_stream({"name": stream, "subjects": [names.subject(">")]})
    real = await NatsTransport.connect(nats_url)
    try:
        assert (await real.stream_info(stream)).subjects == [names.subject(">")]
    finally:
        await real.close()


async def test_autojump_from_the_start_redelivers_after_ack_wait_without_waiting(
    polyn_sandbox: Sandbox, autojump_clock: trio.testing.MockClock, names: Names
) -> None:
    mock = polyn_sandbox.transport
    stream = names.stream()
    await mock.create_stream({"name": stream, "subjects": [names.subject(">")]})
    await mock.create_consumer(
        stream, {"durable_name": "slow", "ack_policy": "explicit", "ack_wait": 30, "max_deliver": 3}
    )
    crossings, virtual, wall = mock.crossings, trio.current_time(), time.monotonic()
    await mock.js_publish(names.subject("job"), b"job")
    deliveries = []
    for _ in range(4):  # never acked: delivered at 0, 30 and 60 s, then max_deliver stops it
        got = await mock.fetch(stream, "slow", 1, expires=100)
        deliveries.append([m.metadata.num_delivered for m in got if m.metadata])
    assert deliveries == [[1], [2], [3], []]
    assert trio.current_time() - virtual >= 160  # 60 s of ack_wait, then a full 100 s expiry
    assert time.monotonic() - wall < 2
    assert mock.crossings == crossings  # nothing crossed into the real transport meanwhile


async def test_autojump_switched_on_after_start_up_makes_nak_delays_instant(
    polyn_sandbox: Sandbox, mock_clock: trio.testing.MockClock, names: Names
) -> None:
    mock = polyn_sandbox.transport
    stream = names.stream()
    await mock.create_stream({"name": stream, "subjects": [names.subject(">")]})
    await mock.create_consumer(stream, {"durable_name": "c", "ack_policy": "explicit"})
    mock_clock.autojump_threshold = 0  # start-up done: virtual time from here on
    await mock.js_publish(names.subject("retry"), b"retry")
    (msg,) = await mock.fetch(stream, "c", 1, expires=1)
    await msg.nak(delay=600)
    start = trio.current_time()
    again = await mock.fetch(stream, "c", 1, expires=3600)
    assert [m.data for m in again] == [b"retry"]
    assert 600 <= trio.current_time() - start < 601


async def test_start_and_teardown_leave_nothing_behind(nats_url: str) -> None:
    async with Sandbox.start(nats_url) as sandbox:
        assert transport_for("nats") is sandbox.transport
        assert Sandbox.mapped_tasks() == {trio.lowlevel.current_task(): sandbox.mock}
    assert Sandbox.mapped_tasks() == {}
    with pytest.raises(ActorError):
        transport_for("nats")
    with pytest.raises(NatsConnectionError, match="closed"):
        await sandbox.transport.publish("a.b", b"late")


async def test_closing_the_mock_ends_its_subscriptions() -> None:
    mock = MockNats()
    sub = await mock.subscribe("a.>")
    await mock.aclose()
    with pytest.raises(trio.EndOfChannel):
        await sub.receive()


async def test_schema_bucket_is_read_once_into_plain_data_and_served_from_memory(
    nats_url: str, names: Names
) -> None:
    bucket = names.bucket("schemas")
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    real = await NatsTransport.connect(nats_url)
    try:
        await real.kv_create(bucket)
        await real.kv_put(bucket, "user.created.v1", json.dumps(schema).encode())
        schemas = await trio.to_thread.run_sync(read_schemas, nats_url, bucket)
        assert schemas == {"user.created.v1": schema}
        mock = SandboxTransport(real, schemas=schemas, schema_bucket=bucket)
        entry = await mock.kv_get(bucket, "user.created.v1")
        assert entry is not None and json.loads(entry.value or b"") == schema
        assert await mock.kv_get(bucket, "missing.v1") is None
        assert list(await mock.kv_entries(bucket)) == ["user.created.v1"]
        assert mock.crossings == 0
        await real.kv_delete_bucket(bucket)
    finally:
        await real.close()


def test_a_missing_schema_bucket_reads_as_no_schemas(nats_url: str, names: Names) -> None:
    assert read_schemas(nats_url, names.bucket("absent")) == {}


def test_the_plugin_imports_neither_pytest_trio_nor_hypothesis() -> None:
    code = (
        "import sys, polyn.testing.plugin\n"
        "heavy = [m for m in ('pytest_trio', 'hypothesis', 'hypothesis_jsonschema', "
        ") if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_sandbox_config_points_an_app_at_the_sandbox_server(
    polyn_sandbox: Sandbox, nats_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = Config(domain="com.test", source_root="orders")
    assert polyn_sandbox.url == nats_server
    assert polyn_sandbox.config(given) == attrs.evolve(given, servers=(nats_server,))
    assert polyn_sandbox.config(given, source_root="billing").source_root == "billing"
    monkeypatch.setenv("POLYN_DOMAIN", "com.loaded")
    monkeypatch.setenv("POLYN_SOURCE_ROOT", "from.env")
    loaded = polyn_sandbox.config()  # the project's own configuration
    assert (loaded.domain, loaded.source_root, loaded.servers) == (
        "com.loaded",
        "from.env",
        (nats_server,),
    )


async def test_sandbox_run_starts_and_stops_an_app_on_virtual_time_without_real_waits(
    polyn_sandbox: Sandbox, autojump_clock: trio.testing.MockClock, names: Names
) -> None:
    config = polyn_sandbox.config(Config(domain="com.test", source_root="sandbox"))
    app = App(config, [NatsConnection(), SchemaStore(schemas={})])
    wall = time.monotonic()
    async with polyn_sandbox.run(app) as running:
        assert running.health()  # the connection really connected, with the autojump paused
        await trio.sleep(3600)
        assert transport_for(running) is polyn_sandbox.transport
    assert running.whereis("nats") is None
    assert time.monotonic() - wall < 5
    assert autojump_clock.autojump_threshold == 0  # restored after the crossings
