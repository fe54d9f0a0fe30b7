"""``SnapshotAdmin``: JetStream administration in the sandbox, answered from a snapshot.

Which streams and consumers exist, and how they are configured, comes from the real nats-server
the sandbox wraps, as the Polyn protocol requires (a misconfigured stream fails in a test as in
production): :meth:`SnapshotAdmin.snapshot` reads every stream and consumer definition once (at
sandbox start, and again on ``sandbox.refresh()``), and every later lookup (``stream_names``,
``stream_info``, ``consumer_info``; and so a consumer's start-up check, ``pub(ack=True)``'s
stream check, the dead-letter stream check) reads that snapshot, never the server. So nothing
crosses into the real transport while a test runs on virtual time (``trio.testing.MockClock``).

Management calls (``create_stream``, ``create_consumer``, ``update_stream``, ``delete_*``) go to
the real server, with virtual time paused, and update the snapshot with its answer. Info calls
report the definition with the state of the sandbox's own contents (messages stored, consumer
delivery state) from :class:`~polyn.testing._jetstream.JetStreamMemory`, which the sandbox's
:class:`~polyn.testing.MockNats` shares.

Without a real server the view keeps the definitions it is given in memory only: handy for unit
tests of one handler, but nothing checks them against a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from polyn.errors import ConsumerError, StreamError
from polyn.nats.jsapi import JetStreamApi
from polyn.nats.transport import ConsumerInfo, StreamInfo, Transport
from polyn.testing._jetstream import JetStreamMemory
from polyn.testing._real import RealServer

__all__ = ["SnapshotAdmin"]


class SnapshotAdmin:
    """The sandbox's :class:`~polyn.nats.JetStreamAdmin` (see the module docstring).

    ``memory`` holds the definitions (and the contents the mock stored); ``server`` is the real
    transport to read the snapshot from and send management calls to (``RealServer(None)``: in
    memory only).
    """

    def __init__(self, memory: JetStreamMemory, server: RealServer[Transport]) -> None:
        self._memory = memory
        self._server = server

    def __repr__(self) -> str:
        return f"<SnapshotAdmin streams={len(self._memory.streams)}>"

    async def snapshot(self) -> None:
        """(Re-)read every stream and consumer definition from the real server.

        Streams keep the messages already stored in the sandbox, and consumers keep their
        delivery state, as long as they still exist on the server.
        """
        with self._server.crossing("reading the server's streams and consumers") as real:
            api = JetStreamApi(real.request)
            streams = await api.list_streams()
            consumers: list[ConsumerInfo] = []

            async def list_consumers(stream: str) -> None:
                consumers.extend(await api.list_consumers(stream))

            async with trio.open_nursery() as nursery:
                for info in streams:
                    if info.state.get("consumer_count", 1):
                        nursery.start_soon(list_consumers, info.name)
        self._memory.replace(streams, consumers)

    def _check_open(self) -> None:
        self._server.check_open()

    # -- lookups: the snapshot --------------------------------------------------------------

    async def stream_names(self, subject: str | None = None) -> list[str]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._memory.stream_names(subject)

    async def stream_info(self, name: str) -> StreamInfo:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._memory.stream_info(name)

    async def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._memory.consumer_info(stream, consumer, trio.current_time())

    # -- changes: the real server, then the snapshot ----------------------------------------

    async def create_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        if self._server.real is None:
            self._check_open()
            name = config.get("name")
            if not name or not isinstance(name, str):
                raise StreamError(f"a stream configuration needs a 'name', got {config!r}")
            info = StreamInfo(name=name, config=dict(config), state={})
        else:
            with self._server.crossing("create_stream") as real:
                info = await real.create_stream(config)
        self._memory.add_stream(info)
        return await self.stream_info(info.name)

    async def update_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        if self._server.real is None:
            self._check_open()
            name = config.get("name")
            if not isinstance(name, str) or name not in self._memory.streams:
                raise StreamError(f"updating stream {name!r}: stream not found", code=404)
            info = StreamInfo(name=name, config=dict(config), state={})
        else:
            with self._server.crossing("update_stream") as real:
                info = await real.update_stream(config)
        self._memory.add_stream(info)
        return await self.stream_info(info.name)

    async def delete_stream(self, name: str) -> None:
        if self._server.real is not None:
            with self._server.crossing("delete_stream") as real:
                await real.delete_stream(name)
        else:
            self._check_open()
            if name not in self._memory.streams:
                raise StreamError(f"deleting stream {name!r}: stream not found", code=404)
        self._memory.remove_stream(name)

    async def create_consumer(self, stream: str, config: Mapping[str, Any]) -> ConsumerInfo:
        name = config.get("durable_name") or config.get("name")
        if not name:
            raise ConsumerError("a consumer configuration needs a durable_name")
        if self._server.real is None:
            self._check_open()
            if stream not in self._memory.streams:
                raise StreamError(f"creating consumer {name!r}: stream not found", code=404)
            info = ConsumerInfo(stream=stream, name=name, config=dict(config))
        else:
            with self._server.crossing("create_consumer") as real:
                info = await real.create_consumer(stream, config)
        self._memory.add_consumer(info)
        return await self.consumer_info(stream, info.name)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        if self._server.real is not None:
            with self._server.crossing("delete_consumer") as real:
                await real.delete_consumer(stream, consumer)
        else:
            self._check_open()
            if (stream, consumer) not in self._memory.consumer_infos:
                raise ConsumerError(f"deleting consumer {consumer!r}: consumer not found", code=404)
        self._memory.remove_consumer(stream, consumer)
