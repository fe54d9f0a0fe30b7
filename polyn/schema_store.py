"""SchemaStore: the payload schemas of the schema bucket, as an always-current snapshot.

A :class:`~polyn.json_store.JSONStore` over the schema bucket (default ``config.schema_store``,
``POLYN_SCHEMAS``) whose public attribute :attr:`SchemaStore.schemas` is an immutable
:class:`~polyn.codec.Schemas` snapshot, compiled once per schema revision. Publishing and
consumers read it directly (no mailbox hop), through ``polyn._resolve.schemas_for``.

- It registers under its bucket name, which is what ``store=`` names in ``polyn.pub`` and the
  consumers; ``name=`` overrides that.
- **Beyond the Elixir client:** a key-value watch replaces the snapshot (atomically, one new
  object) whenever a schema is added, changed or deleted, so the next validation uses it with
  no restart. A key whose value is not a JSON Schema is skipped and logged; the other schemas are
  kept.
- A missing bucket fails the start with the protocol's text, "The Schema Store has not been
  setup on your NATS server. Make sure you use the Polyn CLI to create it". A connection that is
  not up is retried (``retries`` times, ``retry_interval`` apart), then the start fails with
  :class:`~polyn.errors.SchemaStoreError` naming the bucket and connection.
- ``schemas=`` (a dict of name to schema, or a ``Schemas``) preloads the snapshot and touches no
  NATS at all: the test sandbox uses it, and so can unit tests. ``put`` / ``delete`` then change
  only the memory, as Elixir's ``SchemaStore.save`` does.

Example::

    app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(), Billing()])

    # in a test, without the bucket:
    polyn.SchemaStore(schemas={"user.created.v1": {"type": "object"}})
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from polyn import codec
from polyn.actors import ActorRef, current_tree
from polyn.errors import (
    BucketNotFoundError,
    NatsConnectionError,
    SchemaError,
    SchemaStoreError,
)
from polyn.json_store import JSONStore
from polyn.nats import KvWatch, Transport

__all__ = ["SchemaStore"]

log = logging.getLogger("polyn.schema_store")

MISSING_STORE = (
    "The Schema Store has not been setup on your NATS server. "
    "Make sure you use the Polyn CLI to create it"
)
_DEFAULT_STORE = "POLYN_SCHEMAS"


def _default_store() -> str:
    # A supervisor builds each run's instance in its own task, inside the tree, so the tree's
    # config is known here; a spec built outside any tree gets the protocol's default.
    tree = current_tree()
    config = tree.context.get("config") if tree is not None else None
    store = getattr(config, "schema_store", None)
    return store if isinstance(store, str) else _DEFAULT_STORE


class SchemaStore(JSONStore):
    """The schema bucket as a :class:`~polyn.codec.Schemas` snapshot (see the module doc).

    ``SchemaStore(store=None, connection="nats", schemas=None, name=None, *, retries=5,
    retry_interval=1.0, **actor_options)``.
    """

    schemas: codec.Schemas

    def __init__(
        self,
        store: str | None = None,
        connection: str | ActorRef = "nats",
        schemas: Mapping[str, Any] | codec.Schemas | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        bucket = store or _default_store()
        super().__init__(bucket, connection, name, **options)
        self.store = store
        self.preloaded = schemas
        self.schemas = codec.Schemas()

    # -- reading and writing -----------------------------------------------------------------

    async def put(self, key: str, value: Any) -> int:
        """Check that ``value`` is a JSON Schema, then store it under message name ``key``.

        Raises :class:`~polyn.errors.SchemaError` ("Schemas must be valid JSONSchema documents,
        got ...") when it is not; nothing is written then. Returns the bucket revision (0 for a
        preloaded store, which changes only its memory).
        """
        snapshot = self.schemas.with_schema(key, value)  # raises SchemaError first
        if self._transport is None and self.preloaded is not None:
            self._data[key] = value
            self.schemas = snapshot
            return 0
        return await super().put(key, value)

    async def delete(self, key: str) -> None:
        """Delete message name ``key``'s schema (a missing one is fine)."""
        if self._transport is None and self.preloaded is not None:
            self._data.pop(key, None)
            self.schemas = self.schemas.without(key)
            return
        await super().delete(key)

    # -- the actor ---------------------------------------------------------------------------

    async def init(self) -> None:
        if self.preloaded is not None:
            preloaded = self.preloaded
            snapshot = (
                preloaded
                if isinstance(preloaded, codec.Schemas)
                else codec.Schemas.from_dict(preloaded)
            )
            self._data = {name: snapshot.get(name) for name in snapshot.names()}
            self.schemas = snapshot
            return
        await super().init()

    async def _connect(self) -> Transport:
        try:
            return await super()._connect()
        except NatsConnectionError as exc:
            raise SchemaStoreError(str(exc)) from exc

    async def _open_watch(self, transport: Transport) -> KvWatch:
        try:
            return await transport.kv_watch(self.bucket)
        except BucketNotFoundError as exc:
            raise SchemaStoreError(f"{MISSING_STORE} (bucket {self.bucket!r})") from exc

    def _decode(self, key: str, value: bytes) -> Any:
        return orjson.loads(value)

    def _changed(self, keys: set[str]) -> None:
        data = self._data
        snapshot = self.schemas
        if len(keys) > 1 and not snapshot:
            # The first load: compile all at once, and one by one only if one is bad.
            try:
                self.schemas = codec.Schemas.from_dict(
                    {key: data[key] for key in keys if key in data}
                )
                return
            except SchemaError:
                pass
        for key in sorted(keys):
            if key in data:
                try:
                    snapshot = snapshot.with_schema(key, data[key])
                    continue
                except SchemaError as exc:
                    log.warning("schema store %s: skipping %r: %s", self.bucket, key, exc)
                    del data[key]
            snapshot = snapshot.without(key)
        self.schemas = snapshot
