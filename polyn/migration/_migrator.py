"""The :class:`Migrator` actor: run a service's migrations as part of its supervision tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyn.actors import Actor, ActorRef
from polyn.config import Config
from polyn.errors import ConfigError
from polyn.migration._runner import MigrationResult, migrate, migration_status
from polyn.nats.connection import transport_for

__all__ = ["Migrator"]


class Migrator(Actor):
    """Runs JetStream migrations through the tree's connection, with the tree's config.

    Placed after the ``NatsConnection`` (and before the consumers that need the streams), it
    runs the pending migrations while it starts, so the service starts only once its streams
    and consumers exist; a failed migration fails the start with the
    :class:`~polyn.MigrationError` as cause. Afterwards it answers calls:

    - ``"migrate"`` / ``"rollback"``: run up / roll back the last migration, returning a
      :class:`MigrationResult`;
    - ``"status"``: a :class:`MigrationStatus` (applied and pending).

    Arguments: ``migrations_dir`` (default the config's ``migrations_dir``), ``conn`` (the
    connection's name or ref, default ``"nats"``), ``run_on_start`` (default True), and the
    actor options. It registers as ``"polyn_migrator"`` unless given another ``name``.

    Example::

        app = polyn.App(config, children=[
            polyn.NatsConnection(), Migrator(), polyn.SchemaStore(), Billing(),
        ])
        # later, from a test or a script:
        result = await running.ref("polyn_migrator").call("rollback", timeout=30)
    """

    def __init__(
        self,
        migrations_dir: str | Path | None = None,
        *,
        conn: str | ActorRef = "nats",
        run_on_start: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("name", "polyn_migrator")
        super().__init__(**options)
        self.migrations_dir = migrations_dir
        self.conn = conn
        self.run_on_start = run_on_start

    @property
    def config(self) -> Config:
        config = self.context.get("config")
        if not isinstance(config, Config):
            raise ConfigError(
                "Migrator needs a polyn.Config in its tree's context: run it in a polyn.App, "
                'or a Supervisor started with context={"config": config}'
            )
        return config

    async def init(self) -> None:
        if self.run_on_start:
            await self._run("up")

    async def handle_call(self, request: Any) -> Any:
        if request == "migrate":
            return await self._run("up")
        if request == "rollback":
            return await self._run("down")
        if request == "status":
            return await migration_status(
                transport_for(self.conn), self.config, migrations_dir=self.migrations_dir
            )
        return await super().handle_call(request)

    async def _run(self, direction: Any) -> MigrationResult:
        return await migrate(
            transport_for(self.conn),
            self.config,
            migrations_dir=self.migrations_dir,
            direction=direction,
        )
