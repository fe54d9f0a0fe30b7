"""SchemaStore: the payload schemas of the schema bucket, as an always-current snapshot.

A :class:`~polyn.json_store.JSONStore` over the schema bucket (default ``config.schema_store``,
``POLYN_SCHEMAS``) whose public attribute :attr:`SchemaStore.schemas` is an immutable
:class:`~polyn.codec.Schemas` snapshot, compiled once per schema revision. Publishing and
consumers read it directly (no mailbox hop), through ``polyn._resolve.schemas_for``.

- It registers under its bucket name, which is what ``store=`` names in ``polyn.pub`` and the
  consumers; ``name=`` overrides that.
- **Beyond the Elixir client:** a key-value watch replaces the snapshot (atomically, one new
  object) whenever a schema is added, changed or deleted, so the next validation uses it with
  no restart.
- **One bad key never takes a service down.** A key whose value is not a schema Polyn takes
  (not JSON, not a JSON Schema, an unknown ``$schema``, a reference out of the document, a
  pattern the linear-time engine cannot compile, nested too deeply: see
  :mod:`polyn._validator`) is skipped and logged with the key and the reason, at the start and
  when it arrives through the watch; the other schemas are kept, and the store never crashes
  on a key's content. Events of a skipped type then fail as a missing schema.
- A combined schema written by polyn-cli 0.2 or older (the whole CloudEvent schema with the
  payload under ``definitions.datadef``) is applied to the whole event, as the clients of that
  time did, and logged once with the key and the command that converts it
  (``polyn schemas load``, which stores the payload schema).
- **The bucket going away ends the store.** The watch alone would not notice (it waits
  silently), so every ``bucket_check_interval`` seconds (default 5) the store reads the bucket's
  stream: if it is gone, was recreated (its sequence went back), or moved on while the watch
  delivered nothing for two checks, the store logs an error and crashes, and its supervisor
  restarts it; the new instance loads the bucket as it is then (a recreated bucket's schemas
  included), or fails its start with the missing-bucket text.
- Memory: the store keeps each schema as compact JSON text and compiles a validator only for
  the schemas something validates against (see :mod:`polyn._validator`); 10,000 schemas take a
  few megabytes.
- A missing bucket fails the start with the protocol's text, "The Schema Store has not been
  setup on your NATS server. Make sure you use the Polyn CLI to create it", followed by the
  bucket's name and the command that creates it, ``polyn schemas load``. A connection that is
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
from typing import Any, NoReturn

import trio

from polyn import codec
from polyn._resolve import SCHEMAS
from polyn.actors import ActorRef, current_tree
from polyn.errors import (
    BucketNotFoundError,
    NatsConnectionError,
    PolynError,
    SchemaStoreError,
    StreamError,
)
from polyn.json_store import JSONStore
from polyn.nats import KvEntry, KvWatch, Transport

__all__ = ["SchemaStore"]

log = logging.getLogger("polyn.schema_store")

MISSING_STORE = (
    "The Schema Store has not been setup on your NATS server. "
    "Make sure you use the Polyn CLI to create it"
)
_DEFAULT_STORE = "POLYN_SCHEMAS"
_STREAM_NOT_FOUND = 10059


def _stream_missing(exc: StreamError) -> bool:
    return exc.err_code == _STREAM_NOT_FOUND or exc.code == 404


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
    retry_interval=1.0, bucket_check_interval=5.0, **actor_options)``.
    """

    def __init__(
        self,
        store: str | None = None,
        connection: str | ActorRef = "nats",
        schemas: Mapping[str, Any] | codec.Schemas | None = None,
        name: str | None = None,
        *,
        bucket_check_interval: float = 5.0,
        **options: Any,
    ) -> None:
        bucket = store or _default_store()
        super().__init__(bucket, connection, name, **options)
        self.store = store
        self.preloaded = schemas
        self.bucket_check_interval = bucket_check_interval
        self._schemas = codec.Schemas()
        self._seen = 0  # the newest bucket revision the store has seen
        self._lagging_at: int | None = None

    @property
    def schemas(self) -> codec.Schemas:
        """The current snapshot (what the store provides to its tree under ``SCHEMAS``)."""
        return self._schemas

    @schemas.setter
    def schemas(self, snapshot: codec.Schemas) -> None:
        self._schemas = snapshot
        self.provide(SCHEMAS, snapshot)

    # -- reading and writing -----------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The schema document of message name ``key``, or None when the store has none."""
        return self.schemas.get(key)

    def contents(self) -> dict[str, Any]:
        """Every schema document, by message name (keys that were skipped are not in it)."""
        return {name: self.schemas.get(name) for name in self.schemas.names()}

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
        revision = await super().put(key, value)
        self._seen = max(self._seen, revision)
        return revision

    async def delete(self, key: str) -> None:
        """Delete message name ``key``'s schema (a missing one is fine)."""
        if self._transport is None and self.preloaded is not None:
            self._data.pop(key, None)
            self.schemas = self.schemas.without(key)
            return
        await super().delete(key)

    # -- the actor ---------------------------------------------------------------------------

    async def init(self) -> None:
        self.schemas = self._schemas  # provided from the start, then replaced on every change
        if self.preloaded is not None:
            preloaded = self.preloaded
            snapshot = (
                preloaded
                if isinstance(preloaded, codec.Schemas)
                else codec.Schemas.from_dict(preloaded)
            )
            self._data = {name: True for name in snapshot.names()}
            self.schemas = snapshot
            return
        await super().init()
        transport = self._require_transport()
        try:
            info = await transport.stream_info("KV_" + self.bucket)
            self._seen = max(self._seen, int(info.state.get("last_seq") or 0))
        except PolynError:
            pass  # the checks below try again
        self.nursery.start_soon(self._check_bucket, transport)

    async def _connect(self) -> Transport:
        try:
            return await super()._connect()
        except NatsConnectionError as exc:
            # The protocol's text (§13 case 94) names the connection that is not alive.
            raise SchemaStoreError(
                f"Could not connect to Key Value Store {self.bucket} with connection "
                f"{self.connection!r}, NATS server {self.connection!r} not alive "
                f"(tried {max(1, self.retries)} times: {exc.__cause__ or exc})"
            ) from exc

    async def _open_watch(self, transport: Transport) -> KvWatch:
        try:
            return await transport.kv_watch(self.bucket)
        except StreamError as exc:
            # A bucket deleted after this connection first used it is reported as its missing
            # stream rather than a missing bucket: the same fault.
            if not isinstance(exc, BucketNotFoundError) and not _stream_missing(exc):
                raise
            raise SchemaStoreError(
                f"{MISSING_STORE} (bucket {self.bucket!r}): `polyn schemas load` creates it "
                "with the schemas folder's schemas"
            ) from exc

    def _decode(self, key: str, value: bytes) -> Any:
        # The JSON text itself: the snapshot parses and checks it, once.
        return value

    def _on_entry(self, entry: KvEntry) -> None:
        self._seen = max(self._seen, entry.revision)
        super()._on_entry(entry)

    def _changed(self, keys: set[str]) -> None:
        data = self._data
        snapshot, refused = self.schemas._updated({key: data.get(key) for key in keys})
        for key in sorted(refused):
            log.warning("schema store %s: skipping key %r: %s", self.bucket, key, refused[key])
            del data[key]
        for key in sorted(keys):
            compiled = snapshot._lookup(key)
            if compiled is not None and compiled.whole_event:
                log.warning(
                    "schema store %s: key %r holds a combined CloudEvent schema (written by "
                    "polyn-cli 0.2 or older); it is applied to the whole event, as the clients "
                    "of that time did. Once no such client reads it, `polyn schemas load` "
                    "replaces it with the payload schema",
                    self.bucket,
                    key,
                )
        self.schemas = snapshot

    async def _check_bucket(self, transport: Transport) -> None:
        """Crash when the bucket is gone or the watch no longer follows it (module doc)."""
        while True:
            await trio.sleep(self.bucket_check_interval)
            try:
                info = await transport.stream_info("KV_" + self.bucket)
            except StreamError as exc:
                if not _stream_missing(exc):
                    continue
                self._gone(f"the schema bucket {self.bucket!r} was deleted ({exc})")
            except PolynError:
                continue  # the connection's trouble, reported by the connection
            last = int(info.state.get("last_seq") or 0)
            if last < self._seen:
                self._gone(
                    f"the schema bucket {self.bucket!r} was recreated (its stream is at "
                    f"revision {last}, the store had seen {self._seen})"
                )
            if last > self._seen:
                if self._lagging_at == self._seen:
                    self._gone(
                        f"the watch of schema bucket {self.bucket!r} stopped following it (the "
                        f"bucket is at revision {last}, the watch delivered nothing past "
                        f"{self._seen})"
                    )
                self._lagging_at = self._seen
            else:
                self._lagging_at = None

    def _gone(self, reason: str) -> NoReturn:
        log.error("schema store %s: %s; stopping for a restart", self.bucket, reason)
        raise SchemaStoreError(
            f"{reason}; the SchemaStore stops so that its supervisor restarts it"
        )
