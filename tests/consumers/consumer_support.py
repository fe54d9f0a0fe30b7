"""Helpers for the JetStream consumer tests: a stream, a durable consumer, a running tree.

(A module of its own, not conftest: several test folders have a conftest, and test modules
import these names.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from _support import Names

from polyn import codec
from polyn.actors import Actor, Supervisor, Tree
from polyn.config import Config
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

ORDER_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
}


class Setup:
    """One test's stream, consumer and config; helpers to publish and inspect."""

    def __init__(self, transport: NatsTransport, names: Names, url: str) -> None:
        self.transport = transport
        self.url = url
        token = names.token
        self.domain = "com.test"
        self.config = Config(domain=self.domain, source_root=f"svc.{token}", servers=[url])
        self.type = f"order{token}.placed.v1"
        self.stream = names.stream()
        self.schemas = codec.Schemas.from_dict({self.type: ORDER_SCHEMA})
        self.consumer = f"svc_{token}_order{token}_placed_v1"
        self.deadletters: list[Message] = []

    async def create(self, **consumer_config: Any) -> None:
        await self.transport.create_stream(
            {"name": self.stream, "subjects": [self.type], "storage": "memory"}
        )
        await self.transport.create_consumer(
            self.stream,
            {
                "durable_name": self.consumer,
                "ack_policy": "explicit",
                "ack_wait": 30,
                **consumer_config,
            },
        )

    def event(self, n: int, **extra: Any) -> Event:
        return Event.new(self.config, self.type, {"n": n, **extra})

    async def publish(self, n: int, **extra: Any) -> Event:
        event = self.event(n, **extra)
        await self.publish_raw(codec.encode(event, self.schemas, self.config), msg_id=event.id)
        return event

    async def publish_raw(self, body: bytes, msg_id: str | None = None) -> None:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        await self.transport.js_publish(self.type, body, headers=headers)

    def invalid_body(self, n: int) -> bytes:
        """A CloudEvent whose data breaks the schema (n is a string)."""
        event = self.event(n)
        import orjson

        document = orjson.loads(codec.encode(event, self.schemas, self.config))
        document["data"] = {"n": f"not a number {n}"}
        return orjson.dumps(document)

    async def consumer_state(self) -> dict[str, Any]:
        info = await self.transport.consumer_info(self.stream, self.consumer)
        return {
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
        }

    async def watch_deadletters(self, nursery: trio.Nursery) -> None:
        sub = await self.transport.subscribe(f"polyn.deadletter.{self.type}")

        async def collect() -> None:
            async for msg in sub:
                self.deadletters.append(msg)

        nursery.start_soon(collect)

    @asynccontextmanager
    async def tree(self, *consumers: Actor, **options: Any) -> AsyncIterator[Tree]:
        children: Sequence[Actor] = [
            NatsConnection(),
            SchemaStore(schemas={self.type: ORDER_SCHEMA}),
            *consumers,
        ]
        async with Supervisor(list(children), strategy="rest_for_one", **options).run(
            context={"config": self.config}
        ) as tree:
            yield tree


async def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state other tasks change
            await trio.sleep(0.02)
