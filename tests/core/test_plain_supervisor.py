"""A plain ``polyn.Supervisor`` of Polyn actors is a service (issue 20, point 9).

``trio.run(polyn.Supervisor([polyn.NatsConnection(), polyn.SchemaStore(), MyConsumer()]).main)``
works as the seed's supervisors do: with no config in the tree's context the actors use
``Config.load()`` (``[tool.polyn]`` and ``POLYN_*``, as the command line), once per tree; and
the consumers find their connection again after it restarts, so ``one_for_one`` works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from _support import Names

import polyn
from polyn.nats import NatsTransport

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


async def _prepare(url: str, names: Names) -> dict[str, str]:
    """A schema bucket, a stream and a durable consumer; the settings a service would load."""
    transport = await NatsTransport.connect(url)
    try:
        event_type = f"{names.token}.placed.v1"
        bucket = names.bucket("schemas")
        await transport.kv_create(bucket)
        await transport.kv_put(bucket, event_type, orjson.dumps(SCHEMA))
        stream = names.stream()
        await transport.create_stream(
            {"name": stream, "subjects": [event_type], "storage": "memory"}
        )
        source_root = f"svc.{names.token}"
        consumer = polyn.naming.consumer_name(
            event_type, polyn.Config(domain="com.test", source_root=source_root)
        )
        await transport.create_consumer(
            stream, {"durable_name": consumer, "ack_policy": "explicit", "ack_wait": 30}
        )
    finally:
        await transport.close()
    return {
        "type": event_type,
        "bucket": bucket,
        "stream": stream,
        "POLYN_DOMAIN": "com.test",
        "POLYN_SOURCE_ROOT": source_root,
        "POLYN_SCHEMA_STORE": bucket,
        "NATS_URL": url,
    }


async def _cleanup(url: str, settings: dict[str, str]) -> None:
    transport = await NatsTransport.connect(url)
    try:
        await transport.delete_stream(settings["stream"])
        await transport.kv_delete_bucket(settings["bucket"])
    finally:
        await transport.close()


@pytest.fixture
def service_settings(
    nats_url: str, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The service's settings in POLYN_* variables, run from a folder without pyproject.toml."""
    settings = trio.run(_prepare, nats_url, names)
    monkeypatch.chdir(tmp_path)
    for key, value in settings.items():
        if key.isupper():
            monkeypatch.setenv(key, value)
    yield settings
    trio.run(_cleanup, nats_url, settings)


def test_plain_supervisor_loads_its_config_and_survives_a_connection_restart(
    service_settings: dict[str, str],
) -> None:
    event_type = service_settings["type"]
    pulled: list[int] = []
    heard: list[int] = []
    seen: dict[str, Any] = {}

    async def wait_for(predicate: Any) -> None:
        with trio.fail_after(15):
            while not predicate():  # noqa: ASYNC110 - polls what the consumers record
                await trio.sleep(0.02)

    class Billing(polyn.PullConsumer):
        type = event_type

        async def handle_message(self, event: polyn.Event, msg: Any) -> polyn.Ack:
            pulled.append(event.data["n"])
            return polyn.Ack.ACK

    class Listener(polyn.Subscriber):
        subject = event_type

        async def handle_message(self, event: polyn.Event, msg: Any) -> None:
            heard.append(event.data["n"])

    class Operator(polyn.Actor):
        """Plays the user: publishes, restarts the connection, publishes again, stops."""

        async def init(self) -> None:
            self.nursery.start_soon(self.play)

        async def play(self) -> None:
            tree = self.tree
            try:
                await self.steps(tree)
            except Exception as exc:  # shown by the assertion below, not retried
                seen["error"] = exc
            finally:
                await tree.stop()

        async def steps(self, tree: Any) -> None:
            seen["config"] = polyn.current_app().config
            await polyn.pub("nats", event_type, {"n": 1}, ack=True)
            await wait_for(lambda: 1 in pulled and 1 in heard)
            await tree.terminate_child("nats")
            await tree.restart_child("nats")
            # The schema store follows the new connection (its watch ended with the old one).
            with trio.fail_after(15):
                while True:
                    try:
                        await polyn.pub("nats", event_type, {"n": 2}, ack=True)
                        break
                    except polyn.PolynError:
                        await trio.sleep(0.05)
            await wait_for(lambda: 2 in pulled)
            with trio.fail_after(15):  # the subscriber re-subscribes on the new connection
                while 3 not in heard:
                    await polyn.pub("nats", event_type, {"n": 3})
                    await trio.sleep(0.05)
            seen["healthy"] = polyn.current_app().health()

    supervisor = polyn.Supervisor(
        [polyn.NatsConnection(), polyn.SchemaStore(), Billing(), Listener(), Operator()],
        strategy="one_for_one",
    )
    trio.run(supervisor.main)

    assert "error" not in seen, seen.get("error")
    config = seen["config"]
    assert (config.domain, config.schema_store) == ("com.test", service_settings["bucket"])
    assert pulled[:2] == [1, 2]
    assert heard[0] == 1 and 3 in heard
    assert seen["healthy"] is True


def test_plain_supervisor_without_any_config_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("POLYN_DOMAIN", "POLYN_SOURCE_ROOT"):
        monkeypatch.delenv(key, raising=False)

    class Billing(polyn.PullConsumer):
        type = "order.placed.v1"

    supervisor = polyn.Supervisor([polyn.SchemaStore(schemas={}), Billing()])
    with pytest.raises(polyn.ActorError) as failed:
        trio.run(supervisor.main)
    text = str(failed.value)
    assert "no polyn.Config" in text and "[tool.polyn]" in text and "POLYN_DOMAIN" in text
