"""The NatsConnection actor and transport_for, on a real nats-server."""

from __future__ import annotations

import threading

import pytest
import trio
from _support import Names

from polyn.actors import Actor, Supervisor
from polyn.config import Config
from polyn.errors import ActorError, NatsConnectionError
from polyn.nats import (
    TRANSPORT,
    NatsConnection,
    NatsTransport,
    set_transport_override,
    transport_for,
)
from polyn.server import NatsServer


def config(url: str, **fields: object) -> Config:
    return Config(domain="com.test", source_root="svc", servers=[url], **fields)  # type: ignore[arg-type]


def polyn_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("polyn-nats")}


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - polls foreign state
            await trio.sleep(0.02)


async def test_connects_to_the_trees_config_and_serves_transport_for(
    nats_url: str, names: Names
) -> None:
    seen: list[bytes] = []

    class Echo(Actor):
        """Inside the tree, transport_for() finds the connection by its default name."""

        async def init(self) -> None:
            self.sub = await transport_for().subscribe(names.subject("in"))
            self.nursery.start_soon(self.loop)

        async def loop(self) -> None:
            async for msg in self.sub:
                seen.append(msg.data)

    before = polyn_threads()
    async with Supervisor([NatsConnection(), Echo()]).run(
        context={"config": config(nats_url)}
    ) as tree:
        transport = transport_for(tree)
        assert transport is transport_for(tree.ref("nats"))
        assert isinstance(transport, NatsTransport)
        assert await tree.ref("nats").call("health") is True
        state = await tree.ref("nats").call("state")
        assert state.connected and state.url is not None
        await transport.publish(names.subject("in"), b"hello")
        await transport.flush()
        await wait_until(lambda: seen == [b"hello"])
        assert len(polyn_threads() - before) == 1
    # stopping the tree closed the connection and ended its thread
    await wait_until(lambda: polyn_threads() <= before)
    assert transport.closed


async def test_explicit_servers_and_options_beat_the_config(nats_url: str) -> None:
    spec = NatsConnection(
        "other", servers=nats_url, reconnect_time_wait=0.2, shutdown=1, connect_timeout=1
    )
    servers, options = spec.connect_options(config("nats://127.0.0.1:1", user="u"))
    assert servers == [nats_url]
    assert options == {"user": "u", "reconnect_time_wait": 0.2, "connect_timeout": 1}
    assert spec.shutdown == 1
    async with Supervisor([spec]).run() as tree:
        assert transport_for(tree.ref("other")).connected_url is not None


async def test_transport_for_outside_a_tree_and_for_unknown_names(nats_url: str) -> None:
    with pytest.raises(ActorError, match="outside a running tree"):
        transport_for("nats")
    async with Supervisor([NatsConnection(servers=nats_url)]).run() as tree:
        with pytest.raises(ActorError, match="nope"):
            transport_for(tree.ref("nope"))


async def test_the_override_hook_is_consulted_first(nats_url: str) -> None:
    async with Supervisor([NatsConnection(servers=nats_url)]).run() as tree:
        real = transport_for(tree)
        other = await NatsTransport.connect(nats_url)
        try:
            set_transport_override(lambda conn: other if conn == "mock-me" else None)
            assert transport_for("mock-me") is other
            assert transport_for(tree) is real  # the hook declined
            set_transport_override(None)
            with pytest.raises(ActorError):
                transport_for("mock-me")
        finally:
            await other.close()


async def test_a_connection_closed_for_good_crashes_the_actor_and_restarts(
    nats_url: str,
) -> None:
    async with Supervisor([NatsConnection(servers=nats_url)], max_restarts=5).run() as tree:
        first = transport_for(tree)
        await first.close()  # closed under the actor's feet: it crashes, its supervisor restarts it
        # The restarted actor is alive while its init still connects: wait for what it provides.
        await wait_until(lambda: tree.lookup("nats", TRANSPORT) not in (None, first))
        second = transport_for(tree)
        assert second.connected_url is not None
        with pytest.raises(NatsConnectionError):
            await first.publish("x", b"")


async def test_a_lost_server_without_reconnects_fails_the_tree(
    fresh_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    spec = NatsConnection(
        servers=fresh_server.url,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.05,
        connect_timeout=0.5,
    )
    with pytest.raises(ActorError) as failed:
        async with Supervisor([spec], max_restarts=1, max_seconds=30).run():
            await trio.to_thread.run_sync(fresh_server.kill)
            await trio.sleep(30)
    # the connection closed for good crashed the actor; its restarts could not connect either
    assert "closed for good" in caplog.text
    assert isinstance(failed.value.__cause__, NatsConnectionError)
    assert "could not connect to NATS" in str(failed.value.__cause__)


async def test_cancellation_during_a_run_ends_the_thread(nats_url: str) -> None:
    before = polyn_threads()
    with trio.move_on_after(0.3):
        async with Supervisor([NatsConnection(servers=nats_url, shutdown=0)]).run():
            await trio.sleep_forever()
    await wait_until(lambda: polyn_threads() <= before)
