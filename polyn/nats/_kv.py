"""Key-value buckets on the real transport, through nats-py's KV objects on the loop thread.

Key-value calls are not on a hot path: each runs as one coroutine on the loop
(:meth:`~polyn.nats._bridge.LoopThread.run`), with nats-py's ``KeyValue`` objects cached per
bucket for the connection's life. A watch forwards its changes into an
:class:`~polyn.nats._bridge.Inbox` read by trio.

:class:`KeyValueClient` is a mixin of :class:`~polyn.nats.NatsTransport`; it uses the
transport's bridge, client and permission errors, declared below for the type checker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

from polyn.errors import NatsConnectionError, PermissionDeniedError, PolynError, RequestTimeout
from polyn.nats import kv_cas
from polyn.nats._bridge import Inbox, LoopThread
from polyn.nats._errors import translate
from polyn.nats.transport import KvEntry, KvWatch

__all__ = ["KV_INITIAL_GRACE", "KV_OPERATIONS", "KeyValueClient"]

T = TypeVar("T")

KV_OPERATIONS: dict[str, Literal["PUT", "DEL", "PURGE"]] = {
    "PUT": "PUT",
    "DEL": "DEL",
    "PURGE": "PURGE",
}

KV_INITIAL_GRACE = 1.0


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _KvWatchChannel(KvWatch):
    def __init__(self, inbox: Inbox[KvEntry], initial: dict[str, bytes]) -> None:
        self._inbox = inbox
        self.initial = initial

    async def receive(self) -> KvEntry:
        return await self._inbox.receive()

    async def aclose(self) -> None:
        await self._inbox.aclose()


class KeyValueClient:
    """The key-value calls of :class:`~polyn.nats.NatsTransport` (a mixin: see the module doc)."""

    _bridge: LoopThread
    _nc: Client | None
    _kv_cache: dict[str, Any]
    _denied: dict[str, str]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

    async def _kv(self, bucket: str) -> Any:  # loop thread
        kv = self._kv_cache.get(bucket)
        if kv is None:
            assert self._nc is not None
            kv = await self._nc.jetstream().key_value(bucket)
            self._kv_cache[bucket] = kv
        return kv

    def _bucket_denied(self, bucket: str, error: PolynError) -> PolynError:
        """``error``, or why: the server refused a subject of the bucket meanwhile.

        Key-value operations run inside nats-py, which waits out its timeout when the server
        refuses one of its requests; the refusal itself arrives as an asynchronous error.
        """
        stream, prefix = f".kv_{bucket}".lower(), f"$kv.{bucket}.".lower()
        for subject, text in self._denied.items():
            if stream in subject or subject.startswith(prefix):
                return PermissionDeniedError(
                    f"the NATS server refused access to the key-value bucket {bucket!r}: {text}"
                )
        return error

    async def _run_kv(self, fn: Callable[[Any], Awaitable[T]], bucket: str) -> T:
        self._check_open()

        async def op() -> T:
            return await fn(await self._kv(bucket))

        try:
            return await self._bridge.run(op, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

    async def kv_create(
        self,
        bucket: str,
        *,
        replicas: int = 1,
        history: int = 1,
        description: str | None = None,
    ) -> None:
        self._check_open()

        async def create() -> None:
            assert self._nc is not None
            js = self._nc.jetstream()
            try:
                await js.key_value(bucket)
                return  # an existing bucket is kept as it is
            except nats.js.errors.BucketNotFoundError:
                pass
            config = KeyValueConfig(
                bucket=bucket, replicas=replicas, history=history, description=description
            )
            try:
                self._kv_cache[bucket] = await js.create_key_value(config)
            except nats.js.errors.APIError as exc:
                if getattr(exc, "err_code", None) != 10058:  # created meanwhile by someone else
                    raise

        try:
            await self._bridge.run(create, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

    async def kv_delete_bucket(self, bucket: str) -> None:
        self._check_open()

        async def delete() -> None:
            assert self._nc is not None
            self._kv_cache.pop(bucket, None)
            await self._nc.jetstream().delete_key_value(bucket)

        await self._bridge.run(delete, translate)

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        async def get(kv: Any) -> KvEntry | None:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return KvEntry(bucket, key, entry.value, entry.revision or 0, "PUT")

        return await self._run_kv(get, bucket)

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        async def put(kv: Any) -> int:
            revision: int = await kv.put(key, value)
            return revision

        return await self._run_kv(put, bucket)

    async def kv_create_key(self, bucket: str, key: str, value: bytes) -> int:
        """Store ``value`` only if ``key`` is missing; see :func:`polyn.nats.kv_cas.create_key`."""
        return await self._run_kv(lambda kv: kv_cas.create_key(kv, bucket, key, value), bucket)

    async def kv_update(self, bucket: str, key: str, value: bytes, last_revision: int) -> int:
        """Store ``value`` only if ``key`` is still at ``last_revision``; see
        :func:`polyn.nats.kv_cas.update_key`."""
        return await self._run_kv(
            lambda kv: kv_cas.update_key(kv, bucket, key, value, last_revision), bucket
        )

    async def kv_delete(self, bucket: str, key: str) -> None:
        async def delete(kv: Any) -> None:
            await kv.delete(key)

        await self._run_kv(delete, bucket)

    async def kv_keys(self, bucket: str) -> list[str]:
        async def keys(kv: Any) -> list[str]:
            try:
                return list(await kv.keys())
            except nats.js.errors.NoKeysError:
                return []

        return await self._run_kv(keys, bucket)

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        watch = await self.kv_watch(bucket)
        await watch.aclose()
        return watch.initial

    async def kv_watch(self, bucket: str) -> KvWatch:
        """The bucket's current contents and a channel of every later change."""
        self._check_open()
        inbox: Inbox[KvEntry] = Inbox(self._bridge, limit=10_000)
        initial: dict[str, bytes] = {}
        ready: asyncio.Future[None] | None = None

        async def start() -> Any:
            nonlocal ready
            kv = await self._kv(bucket)
            # nats-py can announce the end of the initial contents before it delivered them
            # (its ordered consumer sometimes starts with no pending count). The bucket's last
            # sequence, read first, says when they are all in: the newest entry of the stream is
            # always among the latest-per-key entries a watch starts with.
            assert self._nc is not None
            info = await self._nc.jetstream().stream_info(f"KV_{bucket}")
            last_seq = info.state.last_seq or 0
            watcher = await kv.watchall()
            ready = asyncio.get_running_loop().create_future()
            seen = 0
            marker = False

            async def forward() -> None:
                nonlocal seen, marker
                assert ready is not None
                try:
                    async for entry in watcher:
                        if entry is None:
                            marker = True
                            if not ready.done():
                                if seen >= last_seq:
                                    ready.set_result(None)
                                else:  # the newest entry may have expired (a bucket's TTL)
                                    loop = asyncio.get_running_loop()
                                    loop.call_later(KV_INITIAL_GRACE, _settle, ready)
                            continue
                        op = KV_OPERATIONS.get(entry.operation or "PUT", "PUT")
                        value = entry.value if op == "PUT" else None
                        if not ready.done():
                            seen = max(seen, entry.revision or 0)
                            if value is None:
                                initial.pop(entry.key, None)
                            else:
                                initial[entry.key] = value
                            if marker and seen >= last_seq:
                                ready.set_result(None)
                            continue
                        await inbox.put(KvEntry(bucket, entry.key, value, entry.revision or 0, op))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not ready.done():
                        ready.set_exception(exc)
                    inbox.finish(translate(exc))
                    return
                inbox.finish()

            task = asyncio.get_running_loop().create_task(forward())
            await ready
            return watcher, task

        try:
            watcher, task = await self._bridge.run(start, translate)
        except RequestTimeout as exc:
            raise self._bucket_denied(bucket, exc) from exc

        async def stop() -> None:
            if not self._bridge.alive:
                return

            async def stop_watch() -> None:
                task.cancel()
                try:
                    await watcher.stop()
                except nats.errors.Error:
                    pass

            try:
                await self._bridge.run(stop_watch, translate)
            except NatsConnectionError:
                pass

        inbox._on_close = stop
        return _KvWatchChannel(inbox, initial)
