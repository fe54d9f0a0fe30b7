"""Helpers of the layer-4 core tests: a config and a schema bucket of the test's own.

The ``core`` fixture (``conftest.py``) gives each test a :class:`Core`: an admin transport on
the session's server, a ``Config`` whose ``schema_store`` is a bucket unique to the test
(created and filled with :data:`SCHEMAS`), and ``core.app(...)`` to build an App on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from _support import Names

from polyn.actors import Actor
from polyn.app import App
from polyn.config import Config
from polyn.nats import NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

# The schemas of the fact sheet's §13.5 cases, under names unique to each test.
SCHEMAS: dict[str, Any] = {
    "pub.test.event.v1": {"type": "string"},
    "request.test.request.v1": {"type": "string"},
    "request.test.response.v1": {"type": "string"},
    "reply.test.event.v1": {"type": "string"},
    "user.created.v1": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    },
}


class Core:
    def __init__(self, transport: NatsTransport, url: str, names: Names) -> None:
        self.transport = transport
        self.url = url
        self.names = names
        self.bucket = names.bucket("schemas")
        self.config = Config(
            domain="com.test", source_root="user.backend", servers=[url], schema_store=self.bucket
        )

    def type(self, name: str) -> str:
        """A message name unique to this test: ``t1234.pub.test.event.v1``."""
        return self.names.subject(name)

    async def load_schemas(self, schemas: dict[str, Any] | None = None) -> None:
        await self.transport.kv_create(self.bucket)
        for name, schema in (SCHEMAS if schemas is None else schemas).items():
            await self.transport.kv_put(self.bucket, self.type(name), json.dumps(schema).encode())

    def app(self, *children: Actor, config: Config | None = None, **options: Any) -> App:
        extra: Iterable[Actor] = children
        return App(
            config or self.config,
            [NatsConnection(), SchemaStore(), *extra],
            **options,
        )
