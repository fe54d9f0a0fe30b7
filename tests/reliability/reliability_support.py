"""Helpers of the fault-tolerance scenarios (a module of its own, not conftest: several test
folders have a conftest, and test modules import these names)."""

from __future__ import annotations

import collections
import logging
import os
import resource
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from _support import Names

from polyn import codec
from polyn.actors import Actor
from polyn.app import App, Running
from polyn.config import Config
from polyn.event import Event
from polyn.nats import NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

ORDER_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
}


def rss_mb() -> float:
    """This process's resident set size now, in MB (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class LogCounter(logging.Handler):
    """Counts the records (WARNING and above) of some loggers, by level, and keeps none.

    While it is installed (:func:`count_logs`) those loggers do not propagate: pytest's log
    capture would otherwise keep every one of ten thousand records, with its traceback, in the
    test report for the rest of the session.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        record.getMessage()  # the message is still rendered, as a real handler would
        self.counts[(record.name, record.levelname)] += 1


async def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state other tasks change
            await trio.sleep(0.02)


# -- a service on the test's own server -----------------------------------------------------


class Service:
    """One test's config, stream, durable consumer and admin connection.

    ``service.app(*consumers)`` builds the App a user would write: ``NatsConnection`` (with its
    default reconnection settings), ``SchemaStore`` (preloaded with the order schema), then the
    consumers.
    """

    def __init__(self, admin: NatsTransport, url: str, names: Names, kind: str = "order") -> None:
        self.admin = admin
        self.url = url
        token = names.token
        self.names = names
        self.domain = "com.test"
        self.config = Config(domain=self.domain, source_root=f"svc.{token}", servers=[url])
        self.type = f"{kind}{token}.placed.v1"
        self.stream = names.stream(kind)
        self.consumer = f"svc_{token}_{kind}{token}_placed_v1"
        self.schemas = codec.Schemas.from_dict({self.type: ORDER_SCHEMA})

    async def create(self, storage: str = "file", **consumer_config: Any) -> None:
        """The stream capturing the type, and its durable consumer (what migrations create)."""
        await self.admin.create_stream(
            {"name": self.stream, "subjects": [self.type], "storage": storage}
        )
        await self.admin.create_consumer(
            self.stream,
            {
                "durable_name": self.consumer,
                "ack_policy": "explicit",
                "ack_wait": 10,
                **consumer_config,
            },
        )

    def app(self, *children: Actor, schemas: dict[str, Any] | None = None, **options: Any) -> App:
        preloaded = schemas if schemas is not None else {self.type: ORDER_SCHEMA}
        return App(
            self.config,
            [NatsConnection(), SchemaStore(schemas=preloaded), *children],
            **options,
        )

    @asynccontextmanager
    async def run(self, *children: Actor, **options: Any) -> AsyncIterator[Running]:
        async with self.app(*children, **options).run() as running:
            yield running

    def event(self, n: int, **extra: Any) -> Event:
        return Event.new(self.config, self.type, {"n": n, **extra})

    def body(self, event: Event) -> bytes:
        return codec.encode(event, self.schemas, self.config)

    async def consumer_state(self) -> dict[str, int]:
        info = await self.admin.consumer_info(self.stream, self.consumer)
        return {
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
        }

    async def wait_settled(self, timeout: float = 30.0) -> dict[str, int]:
        """Wait until the consumer has nothing pending and nothing awaiting an ack."""
        with trio.fail_after(timeout):
            while True:
                state = await self.consumer_state()
                if state["num_ack_pending"] == 0 and state["num_pending"] == 0:
                    return state
                await trio.sleep(0.1)

    async def stored(self, stream: str | None = None) -> list[Any]:
        """Every message of the stream, read with an ephemeral consumer (headers and body)."""
        stream = stream or self.stream
        reader = f"reader_{self.names.token}_{len(stream)}"
        await self.admin.create_consumer(
            stream,
            {"durable_name": reader, "ack_policy": "none", "inactive_threshold": 30},
        )
        info = await self.admin.stream_info(stream)
        total = int(info.state.get("messages", 0))
        out: list[Any] = []
        with trio.fail_after(60):
            while len(out) < total:
                out.extend(await self.admin.fetch(stream, reader, 1000, expires=1))
        await self.admin.delete_consumer(stream, reader)
        return out
