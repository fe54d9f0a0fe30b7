"""The record of run migrations: one key per service in a shared key-value bucket.

Wire format (fact sheet §8.3), shared with Elixir services: bucket ``POLYN_MIGRATIONS`` (the
config's ``migrations_bucket``), key = the service's ``source_root``, value = a compact JSON
array of the run ids **as strings**, sorted as strings: ``["1234","5555"]``. Integer ids (the
protocol's wording) are read too and written back as strings. A missing, deleted or purged key
is the empty list.
"""

from __future__ import annotations

import json

from polyn.errors import BucketNotFoundError, MigrationError, PolynError
from polyn.nats.transport import Transport

__all__ = ["MigrationBucket"]


class MigrationBucket:
    """Read and change one service's list of run migrations.

    Example::

        bucket = MigrationBucket(transport, "POLYN_MIGRATIONS", "orders.payments")
        await bucket.ensure(replicas=1)
        await bucket.add("20240501093000")
        await bucket.ids()        # ['20240501093000']
    """

    def __init__(self, transport: Transport, bucket: str, key: str) -> None:
        self.transport = transport
        self.bucket = bucket
        self.key = key

    async def ensure(self, *, replicas: int = 1) -> None:
        """Create the bucket when it is missing (an existing one is kept as it is)."""
        try:
            await self.transport.kv_create(
                self.bucket, replicas=replicas, description="Polyn: run JetStream migrations"
            )
        except PolynError as exc:
            raise MigrationError(
                f"Could not create the migrations bucket {self.bucket}: {exc}"
            ) from exc

    async def ids(self) -> list[str]:
        """The ids of the migrations already run, sorted; ``[]`` when nothing is recorded."""
        try:
            entry = await self.transport.kv_get(self.bucket, self.key)
        except BucketNotFoundError:
            return []
        except PolynError as exc:
            raise MigrationError(f"Error looking up already run migrations, {exc}") from exc
        if entry is None or not entry.value:
            return []
        try:
            raw = json.loads(entry.value)
        except ValueError:
            raw = None
        if not isinstance(raw, list) or not all(
            isinstance(i, str | int) and not isinstance(i, bool) for i in raw
        ):
            raise MigrationError(
                f"Error looking up already run migrations, key {self.key!r} of bucket "
                f"{self.bucket} holds {entry.value!r}, not a JSON array of migration ids"
            )
        return sorted({str(i) for i in raw})

    async def add(self, migration_id: str) -> list[str]:
        """Record ``migration_id`` as run; returns the new list."""
        ids = sorted({*await self.ids(), str(migration_id)})
        await self._write(ids)
        return ids

    async def remove(self, migration_id: str) -> list[str]:
        """Forget ``migration_id`` (after a rollback); returns the new list."""
        ids = [i for i in await self.ids() if i != str(migration_id)]
        await self._write(ids)
        return ids

    async def _write(self, ids: list[str]) -> None:
        value = json.dumps(ids, separators=(",", ":")).encode()
        try:
            await self.transport.kv_put(self.bucket, self.key, value)
        except PolynError as exc:
            raise MigrationError(
                f"Could not record migrations in bucket {self.bucket} (key {self.key}): {exc}"
            ) from exc
