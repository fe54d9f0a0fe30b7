"""Helpers of the portal tests: an App factory, the server's connection count, and a watcher.

:class:`ServerWatch` sees the server through a plain nats-py client of its own (on an asyncio
loop in a thread of its own), independent of Polyn: what a portal published is checked where
it arrived, on the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.js.api

import polyn
from polyn.server import NatsServer

T = TypeVar("T")

DOMAIN = "com.test"
SCHEMAS: dict[str, Any] = {
    "user.created.v1": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer"}},
    },
    "quote.requested.v1": {"type": "object", "required": ["sku"]},
    "quote.given.v1": {"type": "object", "required": ["price"]},
}


def schemas(token: str) -> dict[str, Any]:
    """:data:`SCHEMAS` under the test's own message names (``t1234.user.created.v1``)."""
    return {f"{token}.{name}": schema for name, schema in SCHEMAS.items()}


def make_app(url: str, token: str, *children: polyn.Actor, **options: Any) -> polyn.App:
    config = polyn.Config(domain=DOMAIN, source_root="portal.test", servers=[url])
    return polyn.App(
        config,
        [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas(token)), *children],
        **options,
    )


def connections(server: NatsServer) -> int:
    """How many client connections the server has now (its ``/connz`` monitoring endpoint)."""
    assert server.monitor_url is not None, "start the server with monitoring=True"
    with urllib.request.urlopen(f"{server.monitor_url}/connz", timeout=5) as response:
        return int(json.load(response)["num_connections"])


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(0.01)


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not alive in ``before``, except trio's idle thread cache.

    ``trio.to_thread`` keeps its finished worker threads ("Trio thread N") idle for ten seconds
    for reuse, process-wide; they run nothing and exit by themselves.
    """
    return [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("Trio thread")
    ]


class ServerWatch:
    """A plain nats-py client on a thread of its own: subscriptions, streams, buckets."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server-watch")
        self._thread.start()
        self.nc: Any = self._run(nats.connect(url))
        self.js = self.nc.jetstream()
        self.received: dict[str, list[Any]] = {}

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self._run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    def subscribe(self, subject: str) -> list[Any]:
        """Collect every message on ``subject`` from now on; returns the (growing) list."""
        received = self.received.setdefault(subject, [])

        async def on_message(msg: Any) -> None:
            received.append(msg)

        async def subscribe() -> None:
            await self.nc.subscribe(subject, cb=on_message)
            await self.nc.flush()

        self._run(subscribe())
        return received

    def events(self, subject: str) -> list[dict[str, Any]]:
        """The CloudEvents received on ``subject`` so far, decoded."""
        return [json.loads(m.data) for m in list(self.received.get(subject, []))]

    def add_stream(self, name: str, subjects: list[str]) -> None:
        self._run(self.js.add_stream(name=name, subjects=subjects))

    def delete_stream(self, name: str) -> None:
        self._run(self.js.delete_stream(name))

    def stream_events(self, name: str) -> list[dict[str, Any]]:
        """Every message stored in stream ``name``, decoded, in order."""

        async def read() -> list[dict[str, Any]]:
            info = await self.js.stream_info(name)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if info.state.messages == 0:
                    break
                msg = await self.js.get_msg(name, seq)
                out.append(json.loads(msg.data))
            return out

        return self._run(read())

    def stream_count(self, name: str) -> int:
        async def count() -> int:
            return int((await self.js.stream_info(name)).state.messages)

        return self._run(count())

    def kv_get(self, bucket: str, key: str) -> Any:
        async def get() -> Any:
            kv = await self.js.key_value(bucket)
            return json.loads((await kv.get(key)).value)

        return self._run(get())

    def delete_bucket(self, bucket: str) -> None:
        self._run(self.js.delete_key_value(bucket))
