"""``SandboxKeyValue``: key-value in the sandbox is the real server's.

Buckets (JSON stores, the migrations record, schemas) are real in a sandbox: every call goes to
the real transport's :class:`~polyn.nats.KeyValue`, with virtual time paused while it runs
(:func:`~polyn.testing.real_time`) and counted in the sandbox's ``crossings``. One exception
keeps start-up off the server: reads of the schema bucket (``kv_get``, ``kv_keys``,
``kv_entries``) are answered from the schemas read once per session (the ``polyn_schemas``
fixture), when the sandbox was given them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import trio

from polyn.nats.transport import KeyValue, KvEntry, KvWatch
from polyn.testing._real import RealServer

__all__ = ["SandboxKeyValue"]


class SandboxKeyValue:
    """The sandbox's :class:`~polyn.nats.KeyValue` (see the module docstring).

    Args:
        server: the real key-value to call (``RealServer(None)``: every call is refused with
            :class:`~polyn.errors.SandboxError`).
        schemas: the schema bucket's contents (message name to JSON Schema, as a dict or as
            the stored JSON text), answered from memory; ``None`` reads the real bucket.
        schema_bucket: the name of that bucket (the config's ``schema_store``).
    """

    def __init__(
        self,
        server: RealServer[Any],
        *,
        schemas: Mapping[str, Any] | None = None,
        schema_bucket: str = "POLYN_SCHEMAS",
    ) -> None:
        self._server: RealServer[KeyValue] = server
        self.schema_bucket = schema_bucket
        self._schemas: dict[str, bytes] | None = None
        if schemas is not None:
            self._schemas = {
                name: value if isinstance(value, bytes) else _json_bytes(value)
                for name, value in schemas.items()
            }

    def __repr__(self) -> str:
        return f"<SandboxKeyValue schema_bucket={self.schema_bucket!r}>"

    def _schema_snapshot(self, bucket: str) -> dict[str, bytes] | None:
        return self._schemas if bucket == self.schema_bucket else None

    async def kv_create(
        self,
        bucket: str,
        *,
        replicas: int = 1,
        history: int = 1,
        description: str | None = None,
    ) -> None:
        with self._server.crossing("kv_create") as real:
            await real.kv_create(
                bucket, replicas=replicas, history=history, description=description
            )

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._server.check_open()
            await trio.lowlevel.checkpoint()
            value = schemas.get(key)
            return None if value is None else KvEntry(bucket, key, value, 0, "PUT")
        with self._server.crossing("kv_get") as real:
            return await real.kv_get(bucket, key)

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        with self._server.crossing("kv_put") as real:
            return await real.kv_put(bucket, key, value)

    async def kv_create_key(self, bucket: str, key: str, value: bytes) -> int:
        with self._server.crossing("kv_create_key") as real:
            return await real.kv_create_key(bucket, key, value)

    async def kv_update(self, bucket: str, key: str, value: bytes, last_revision: int) -> int:
        with self._server.crossing("kv_update") as real:
            return await real.kv_update(bucket, key, value, last_revision)

    async def kv_delete(self, bucket: str, key: str) -> None:
        with self._server.crossing("kv_delete") as real:
            await real.kv_delete(bucket, key)

    async def kv_keys(self, bucket: str) -> list[str]:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._server.check_open()
            await trio.lowlevel.checkpoint()
            return list(schemas)
        with self._server.crossing("kv_keys") as real:
            return await real.kv_keys(bucket)

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        schemas = self._schema_snapshot(bucket)
        if schemas is not None:
            self._server.check_open()
            await trio.lowlevel.checkpoint()
            return dict(schemas)
        with self._server.crossing("kv_entries") as real:
            return await real.kv_entries(bucket)

    async def kv_watch(self, bucket: str) -> KvWatch:
        with self._server.crossing("kv_watch") as real:
            return await real.kv_watch(bucket)

    async def kv_delete_bucket(self, bucket: str) -> None:
        with self._server.crossing("kv_delete_bucket") as real:
            await real.kv_delete_bucket(bucket)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
