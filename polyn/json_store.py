"""JSONStore: a NATS key-value bucket of JSON values, mirrored in memory and kept current.

The Elixir client's ``Polyn.JSONStore``, with one addition: a key-value *watch* keeps the mirror
current, so a value put by another service is seen here without a restart.

- At start the actor loads every key of ``bucket`` (one watch gives the contents and then every
  change), decoding each value as JSON. A value that is not JSON is skipped and logged, never
  the whole store refused.
- :meth:`JSONStore.get` and :meth:`JSONStore.contents` read the mirror (no NATS round trip).
  :meth:`JSONStore.put` and :meth:`JSONStore.delete` write through to NATS and update the
  mirror at once, so a writer reads its own writes; the watch then confirms them (by revision,
  so a late watch entry never undoes a newer write).
- A bucket that does not exist fails the start (:class:`~polyn.errors.BucketNotFoundError`;
  ``create=True`` creates it instead). A connection that is not running or not connected yet is
  retried ``retries`` times, ``retry_interval`` seconds apart, then the start fails with
  :class:`~polyn.errors.NatsConnectionError` saying which bucket and connection.
- A watch that ends (the connection closed for good, or restarted) is followed to the
  connection's successor: the store waits for the restarted connection (up to
  :data:`RECONNECT_WAIT` seconds, then it crashes for its supervisor) and loads the bucket
  again from it. It does not crash meanwhile, so it works under any restart strategy (under
  ``one_for_one`` nothing restarts it with the connection).

Reach the running store from outside with :meth:`JSONStore.of`, or send it calls:
``("get", key)``, ``("put", key, value)``, ``("delete", key)``, ``"contents"``.

Example::

    app = polyn.App(config, [polyn.NatsConnection(), polyn.JSONStore("SETTINGS", create=True)])
    async with app.run() as running:
        settings = polyn.JSONStore.of(running, "SETTINGS")
        await settings.put("greeting", {"text": "hello"})
        settings.get("greeting")          # {'text': 'hello'}
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
import trio

from polyn.actors import Actor, ActorRef, Key
from polyn.config import config_for
from polyn.errors import ActorError, NatsConnectionError, PolynError
from polyn.nats import Conn, KvEntry, KvWatch, Transport, locate, transport_for

__all__ = ["STORE", "JSONStore"]

log = logging.getLogger("polyn.json_store")

_CATCH_UP_TIMEOUT = 5.0

RECONNECT_WAIT = 30.0
"""Seconds a store whose connection closed waits for the restarted one before it crashes."""


class JSONStore(Actor):
    # The store provides itself under STORE (defined below) once it has loaded its bucket:
    # its methods are its view, found with JSONStore.of without a reach into the runtime.

    """A key-value bucket of JSON values mirrored in memory (see the module doc).

    ``JSONStore(bucket, connection="nats", name=None, *, create=False, retries=5,
    retry_interval=1.0, **actor_options)``; registered under ``name``, by default the bucket
    name.
    """

    def __init__(
        self,
        bucket: str,
        connection: str | ActorRef = "nats",
        name: str | None = None,
        *,
        create: bool = False,
        retries: int = 5,
        retry_interval: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(name=name or bucket, **options)
        self.bucket = bucket
        self.connection = connection
        self.create = create
        self.retries = retries
        self.retry_interval = retry_interval
        self._data: dict[str, Any] = {}
        self._revisions: dict[str, int] = {}
        self._transport: Transport | None = None
        self._watch: KvWatch | None = None

    @classmethod
    def of(cls, conn: Conn, name: str) -> JSONStore:
        """The running store registered as ``name`` in ``conn``'s tree (a handle, tree or ref).

        Follows restarts only until the next call: fetch it again rather than keeping it.
        Raises :class:`~polyn.errors.ActorError` when no such store runs.
        """
        tree, _ = locate(conn)
        store = tree.lookup(name, STORE)
        if store is None:
            tree.ref(name)  # raises when no actor of that name runs
            raise ActorError(f"the actor named {name!r} is not a running JSONStore")
        if not isinstance(store, cls):
            raise ActorError(f"the actor named {name!r} is not a {cls.__name__}")
        return store

    # -- reading and writing -----------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of ``key``, or None when the bucket has no such key."""
        return self._data.get(key)

    def contents(self) -> dict[str, Any]:
        """A copy of the whole mirror, ``{key: value}``."""
        return dict(self._data)

    async def put(self, key: str, value: Any) -> int:
        """Store ``value`` (JSON-encodable) under ``key`` in NATS and here; return its revision.

        Raises ``TypeError`` when ``value`` is not JSON-encodable.
        """
        try:
            body = orjson.dumps(value)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__} values must be JSON, got {value!r}") from exc
        revision = await self._require_transport().kv_put(self.bucket, key, body)
        if self._apply_entry(key, body, revision):
            self._changed({key})
        return revision

    async def delete(self, key: str) -> None:
        """Delete ``key`` in NATS and here (a missing key is fine)."""
        await self._require_transport().kv_delete(self.bucket, key)
        if self._apply_entry(key, None, None):
            self._changed({key})

    # -- subclass hooks ----------------------------------------------------------------------

    def _changed(self, keys: set[str]) -> None:
        """Called after the mirror changed (``keys`` added, replaced or deleted)."""

    def _decode(self, key: str, value: bytes) -> Any:
        return orjson.loads(value)

    # -- the actor ---------------------------------------------------------------------------

    async def init(self) -> None:
        transport = await self._connect()
        if self.create:
            replicas = config_for(self.tree).kv_replicas
            await transport.kv_create(self.bucket, replicas=replicas)
        await self._load(transport)
        self.provide(STORE, self)
        self.nursery.start_soon(self._follow)

    async def _load(self, transport: Transport) -> None:
        """Open the watch on ``transport`` and mirror the bucket's contents from it."""
        watch = await self._open_watch(transport)
        self._watch = watch
        keys = set(self._data)
        self._data.clear()
        for key, value in watch.initial.items():
            self._apply_value(key, value)
        if not watch.initial:
            await self._catch_up(transport, watch)
        self._changed(keys | set(self._data))

    async def _catch_up(self, transport: Transport, watch: KvWatch) -> None:
        # nats-py's watch may call its initial contents complete before the first entry has
        # been read (it checks the consumer's pending count, then what it has received so
        # far), so an empty start is checked against the bucket's stream: read on until the
        # entry with its last sequence number has arrived.
        try:
            info = await transport.stream_info("KV_" + self.bucket)
            last = int(info.state.get("last_seq") or 0)
            if not info.state.get("messages"):
                return
        except PolynError:
            return
        with trio.move_on_after(_CATCH_UP_TIMEOUT) as scope:
            while True:
                entry = await watch.receive()
                self._apply_entry(entry.key, entry.value, entry.revision)
                if entry.revision >= last:
                    return
        if scope.cancelled_caught:
            log.warning(
                "%s %s: the bucket's contents did not all arrive within %s s; going on with "
                "%d keys (the watch adds the rest)",
                type(self).__name__,
                self.bucket,
                _CATCH_UP_TIMEOUT,
                len(self._data),
            )

    async def _open_watch(self, transport: Transport) -> KvWatch:
        return await transport.kv_watch(self.bucket)

    async def _connect(self) -> Transport:
        attempts = max(1, self.retries)
        for attempt in range(1, attempts + 1):
            try:
                transport = transport_for(self.connection)
                if transport.connected_url is None:
                    raise NatsConnectionError("not connected")
                self._transport = transport
                return transport
            except (ActorError, NatsConnectionError) as exc:
                reason = str(exc)
                if attempt == attempts:
                    raise NatsConnectionError(
                        f"Could not connect to Key Value Store {self.bucket} with connection "
                        f"{self.connection!r}, {reason} (tried {attempts} times)"
                    ) from exc
                log.info(
                    "%s %s: connection %r not ready (%s), retrying in %s s",
                    type(self).__name__,
                    self.bucket,
                    self.connection,
                    reason,
                    self.retry_interval,
                )
                await trio.sleep(self.retry_interval)
        raise AssertionError("unreachable")

    async def _follow(self) -> None:
        while True:
            watch = self._watch
            if watch is None:
                return
            try:
                async for entry in watch:
                    self._on_entry(entry)
            except trio.ClosedResourceError:
                if self._watch is None:
                    return  # closed by terminate
                raise
            if self._watch is None:
                return
            await self._follow_successor()

    async def _follow_successor(self) -> None:
        """The watch ended with its connection: wait for the connection's successor (it was
        restarted) and load the bucket again from it, rather than crash. Past
        :data:`RECONNECT_WAIT` seconds the store crashes, for its supervisor to decide."""
        old = self._transport
        log.warning(
            "%s %s: the connection closed under the watch; waiting for it to come back",
            type(self).__name__,
            self.bucket,
        )
        with trio.move_on_after(RECONNECT_WAIT):
            while True:
                try:
                    transport = transport_for(self.connection)
                    if transport is not old and transport.connected_url is not None:
                        self._transport = transport
                        await self._load(transport)
                        log.info("%s %s: following again", type(self).__name__, self.bucket)
                        return
                except (ActorError, NatsConnectionError):
                    pass
                await trio.sleep(0.05)
        raise NatsConnectionError(
            f"the watch of key-value bucket {self.bucket!r} ended (connection closed), and no "
            f"connection {self.connection!r} came back within {RECONNECT_WAIT:.0f} s"
        )

    def _on_entry(self, entry: KvEntry) -> None:
        if self._apply_entry(entry.key, entry.value, entry.revision):
            self._changed({entry.key})

    def _apply_entry(self, key: str, value: bytes | None, revision: int | None) -> bool:
        """Record one change unless a newer revision of ``key`` is already known."""
        known = self._revisions.get(key)
        if revision is not None:
            if known is not None and revision < known:
                return False
            self._revisions[key] = revision
        if value is None:
            if key not in self._data:
                return False
            del self._data[key]
        else:
            self._apply_value(key, value)
        if revision is None:  # a local delete: forget the revision so any later put applies
            self._revisions.pop(key, None)
        return True

    def _apply_value(self, key: str, value: bytes) -> None:
        try:
            self._data[key] = self._decode(key, value)
        except (ValueError, PolynError) as exc:
            # The key's old value is gone either way: the bucket no longer holds it.
            log.warning("%s %s: skipping key %r: %s", type(self).__name__, self.bucket, key, exc)
            self._data.pop(key, None)

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise ActorError(f"{type(self).__name__} {self.bucket!r} is not running")
        return self._transport

    async def handle_call(self, request: Any) -> Any:
        if request == "contents":
            return self.contents()
        if isinstance(request, tuple) and request:
            if request[0] == "get" and len(request) == 2:
                return self.get(request[1])
            if request[0] == "put" and len(request) == 3:
                return await self.put(request[1], request[2])
            if request[0] == "delete" and len(request) == 2:
                return await self.delete(request[1])
        return await super().handle_call(request)

    async def terminate(self, reason: object) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await watch.aclose()


STORE: Final = Key("json store", JSONStore)
"""What a running :class:`JSONStore` (a SchemaStore too) provides to its tree: itself, once
loaded; :meth:`JSONStore.of` finds it by name."""
