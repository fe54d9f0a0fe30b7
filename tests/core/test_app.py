"""The App: running a tree with its config, the Running handle, current_app, health."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
from core_support import Core

from polyn.actors import Actor, Strategy
from polyn.app import App, Running, current_app
from polyn.config import Config
from polyn.errors import ActorError, ConfigError, PolynError, SchemaStoreError
from polyn.nats import NatsConnection, NatsTransport
from polyn.resolve import resolve, schemas_for
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls foreign state
            await trio.sleep(0.02)


class Probe(Actor):
    """Records what current_app() shows from inside the tree."""

    seen: ClassVar[list[Any]] = []

    def __init__(self, **options: Any) -> None:
        super().__init__(name="probe", **options)

    async def init(self) -> None:
        app = current_app()
        Probe.seen.append((app.config, app.whereis("nats") is not None))


async def test_run_yields_a_handle_with_config_registry_and_health(core: Core) -> None:
    Probe.seen = []
    async with core.app(Probe()).run() as running:
        assert isinstance(running, Running)
        assert running.config is core.config
        assert running.context["config"] is core.config
        assert running.whereis("probe") is not None
        assert running.whereis("nobody") is None
        assert running.ref(core.bucket).alive
        with pytest.raises(ActorError):
            running.ref("nobody")
        assert running.health() is True
        assert Probe.seen == [(core.config, True)]
        # the handle is a connection for layer 4 calls from outside the tree
        resolved = resolve(running)
        assert isinstance(resolved.transport, NatsTransport)
        assert resolved.config is core.config
        assert core.type("pub.test.event.v1") in schemas_for(resolved)
    assert running.health() is False
    assert not running.tree.running


async def test_app_defaults_to_rest_for_one() -> None:
    app = App(Config(domain="com.test", source_root="svc"), [])
    assert app.supervisor.strategy is Strategy.REST_FOR_ONE
    assert App(app.config, [], strategy="one_for_one").supervisor.strategy is Strategy.ONE_FOR_ONE


async def test_current_app_outside_a_tree_raises() -> None:
    with pytest.raises(PolynError, match="outside a running App"):
        current_app()


async def test_resolving_a_name_outside_a_tree_or_a_tree_without_config_raises(
    core: Core,
) -> None:
    with pytest.raises(ActorError, match="outside a running tree"):
        resolve("nats")
    from polyn.actors import Supervisor

    async with Supervisor([NatsConnection(servers=core.url)]).run() as tree:
        with pytest.raises(ConfigError, match=r"no polyn\.Config"):
            resolve(tree)


async def test_schemas_for_names_the_missing_store(core: Core) -> None:
    async with App(core.config, [NatsConnection()]).run() as running:
        with pytest.raises(SchemaStoreError, match=core.bucket):
            schemas_for(resolve(running))
        with pytest.raises(SchemaStoreError, match="OTHER"):
            schemas_for(resolve(running), "OTHER")


async def test_health_follows_the_connection(core: Core) -> None:
    with NatsServer() as server:
        config = Config(
            domain="com.test",
            source_root="user.backend",
            servers=[server.url],
            schema_store=core.bucket,
        )
        preloaded = SchemaStore(schemas={})
        async with App(config, [NatsConnection(), preloaded]).run() as running:
            assert running.health()
            server.kill()
            await wait_until(lambda: not running.health())
            server.restart()
            await wait_until(running.health)


async def test_main_returns_when_cancelled_and_runs_terminate(core: Core) -> None:
    stopped: list[object] = []

    class Worker(Actor):
        async def terminate(self, reason: object) -> None:
            stopped.append(reason)

    app = core.app(Worker())
    with trio.move_on_after(1):
        await app.main()
    assert stopped == ["shutdown"]


async def test_a_child_failing_to_start_fails_the_run(core: Core) -> None:
    class Broken(Actor):
        async def init(self) -> None:
            raise RuntimeError("boom")

    with pytest.raises(ActorError, match="boom"):
        async with core.app(Broken()).run():
            pass
