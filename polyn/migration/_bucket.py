"""The record of run migrations: one key per service in a shared key-value bucket.

Wire format (fact sheet §8.3), shared with Elixir services: bucket ``POLYN_MIGRATIONS`` (the
config's ``migrations_bucket``), key = the service's ``source_root``, value = a compact JSON
array of the run ids **as strings**, sorted as strings: ``["1234","5555"]``. Integer ids (the
protocol's wording) are read too and written back as strings. A missing, deleted or purged key
is the empty list.

Every change is a compare-and-set on the key's revision (create when missing, update only from
the revision read), retried on a conflict from a fresh read: two writers never lose each other's
ids, which a plain read-then-put did (issue 21, finding 12). Elixir writes with a plain put; a
Python writer still never overwrites what an Elixir writer stored meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from polyn.errors import BucketNotFoundError, KeyValueConflictError, MigrationError, PolynError
from polyn.nats.transport import Transport

__all__ = ["MigrationBucket"]

_WRITE_ATTEMPTS = 20


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
        ids, _ = await self._read()
        return ids

    async def _read(self) -> tuple[list[str], int | None]:
        """The recorded ids and the key's revision (None when the key is missing or deleted)."""
        try:
            entry = await self.transport.kv_get(self.bucket, self.key)
        except BucketNotFoundError:
            return [], None
        except PolynError as exc:
            raise MigrationError(f"Error looking up already run migrations, {exc}") from exc
        if entry is None:
            return [], None
        if not entry.value:
            return [], entry.revision
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
        return sorted({str(i) for i in raw}), entry.revision

    async def add(self, migration_id: str) -> list[str]:
        """Record ``migration_id`` as run; returns the new list."""
        return await self._change(lambda ids: sorted({*ids, str(migration_id)}))

    async def remove(self, migration_id: str) -> list[str]:
        """Forget ``migration_id`` (after a rollback); returns the new list."""
        return await self._change(lambda ids: [i for i in ids if i != str(migration_id)])

    async def _change(self, change: Callable[[list[str]], list[str]]) -> list[str]:
        # Read, change, write only if nobody wrote in between (compare-and-set on the key's
        # revision); else read again. A concurrent writer's ids are never overwritten.
        for _ in range(_WRITE_ATTEMPTS):
            current, revision = await self._read()
            ids = change(current)
            value = json.dumps(ids, separators=(",", ":")).encode()
            try:
                if revision is None:
                    await self.transport.kv_create_key(self.bucket, self.key, value)
                else:
                    await self.transport.kv_update(self.bucket, self.key, value, revision)
            except KeyValueConflictError:
                continue
            except PolynError as exc:
                raise MigrationError(
                    f"Could not record migrations in bucket {self.bucket} (key {self.key}): {exc}"
                ) from exc
            return ids
        raise MigrationError(
            f"Could not record migrations in bucket {self.bucket} (key {self.key}): it changed "
            f"under every one of {_WRITE_ATTEMPTS} attempts; is another migration run writing it?"
        )
