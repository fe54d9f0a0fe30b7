"""The seam between Polyn and NATS: the protocols layer 4 uses and the values they return.

The seam is cut by what the layers above use: :class:`Messaging` (publish, request, subscribe,
flush, JetStream publish, fetch, acknowledgements: the hot paths), :class:`JetStreamAdmin`
(streams, consumers, listing: start-up checks and migrations) and :class:`KeyValue` (buckets:
the schema store, JSON stores, the migrations record). :class:`Transport` is the three together,
what ``transport_for(conn)`` returns. :class:`polyn.nats.NatsTransport` is the real one over
nats-py; in the test sandbox, messaging is ``polyn.testing.MockNats`` (in memory),
administration a snapshot of the real server's definitions and key-value the real server. The
real transport and the sandbox pass the same behaviour tests.

Everything here is plain data and trio: subscriptions and watches are trio receive channels,
stream and consumer configurations are dicts spelled as JetStream's API spells them (and as
nats-py's ``StreamConfig`` / ``ConsumerConfig`` do), with durations in **seconds** (floats)
rather than the API's nanoseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import trio

from polyn.nats.message import Message

__all__ = [
    "ConsumerInfo",
    "JetStreamAdmin",
    "KeyValue",
    "KvEntry",
    "KvWatch",
    "Messaging",
    "PubAck",
    "StreamInfo",
    "Subscription",
    "Transport",
]


@attrs.frozen
class PubAck:
    """The server's acknowledgement of a JetStream publish."""

    stream: str
    seq: int
    duplicate: bool = False
    domain: str | None = None


@attrs.frozen
class StreamInfo:
    """A stream's configuration (durations in seconds) and state, as the server reports them."""

    name: str
    config: Mapping[str, Any]
    state: Mapping[str, Any]
    cluster: Mapping[str, Any] | None = None

    @property
    def subjects(self) -> list[str]:
        return list(self.config.get("subjects") or [])


@attrs.frozen
class ConsumerInfo:
    """A durable consumer's configuration (durations in seconds) and delivery state."""

    stream: str
    name: str
    config: Mapping[str, Any]
    num_pending: int = 0
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class KvEntry:
    """One change in a key-value bucket: ``value`` is ``None`` for a delete or purge."""

    bucket: str
    key: str
    value: bytes | None
    revision: int
    operation: Literal["PUT", "DEL", "PURGE"] = "PUT"


class Subscription(trio.abc.ReceiveChannel[Message]):
    """Messages of one subscription, as a trio receive channel. ``aclose()`` unsubscribes."""

    subject: str
    queue: str | None

    async def receive_batch(self, max_items: int) -> list[Message]:
        """Wait for one message, then return up to ``max_items`` of those already delivered."""
        raise NotImplementedError

    def receive_nowait(self) -> Message:
        """A message already delivered, or :class:`trio.WouldBlock`."""
        raise NotImplementedError


class KvWatch(trio.abc.ReceiveChannel[KvEntry]):
    """The changes of a key-value bucket after its initial contents. ``aclose()`` stops it."""

    initial: dict[str, bytes]


@runtime_checkable
class Messaging(Protocol):
    """Messages: core publish / request / subscribe, JetStream publish and pull, acks.

    What the hot paths use, and what the sandbox's ``MockNats`` implements in memory. All
    methods are called from trio. Core publishes and acknowledgements are queued (they return
    once queued, and the queue is flushed in order); everything that has an answer waits for
    it. Errors are Polyn's own (:mod:`polyn.errors`), never nats-py's or asyncio's.
    """

    @property
    def connected_url(self) -> str | None:
        """The URL of the server currently connected to, or ``None`` while disconnected."""

    @property
    def max_payload(self) -> int:
        """The largest message body (plus headers) the server accepts, in bytes."""

    # -- core NATS -----------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Queue a core NATS publish."""

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """Publish with a reply subject and return the first reply.

        Raises :class:`~polyn.errors.RequestTimeout` when none comes in ``timeout`` seconds and
        :class:`~polyn.errors.NoRespondersError` when nobody listens on ``subject``.
        """

    async def subscribe(
        self, subject: str, *, queue: str | None = None, max_pending: int = 65_536
    ) -> Subscription:
        """Subscribe to ``subject`` (wildcards allowed), optionally in a queue group.

        Interest is registered on the server when this returns. A subscriber more than
        ``max_pending`` messages behind loses the excess, as core NATS does with slow consumers
        (counted in the connection's state and logged); JetStream consumers never lose messages.
        """

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has reached the server."""

    # -- JetStream messages --------------------------------------------------------------------

    async def js_publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> PubAck:
        """Publish into JetStream and wait for the stream's acknowledgement.

        Raises :class:`~polyn.errors.StreamError` when no stream captures ``subject``.
        """

    async def fetch(
        self,
        stream: str,
        consumer: str,
        batch: int,
        *,
        expires: float | None = None,
        no_wait: bool = False,
    ) -> list[Message]:
        """Pull up to ``batch`` messages from an existing durable consumer.

        With ``no_wait`` the server answers at once with what it has (maybe nothing); otherwise
        it answers when ``batch`` messages are delivered or ``expires`` seconds have passed.
        """

    def enqueue_ack(self, subject: str, body: bytes) -> None:
        """Queue an acknowledgement body on a ``$JS.ACK`` subject (a Message's ``ack()``)."""

    async def ack_and_wait(self, subject: str, body: bytes, timeout: float) -> None:
        """Publish an acknowledgement and wait for the server's confirmation."""


@runtime_checkable
class JetStreamAdmin(Protocol):
    """JetStream administration: streams and consumers, their definitions and listing.

    :class:`~polyn.nats.jsapi.JetStreamApi` implements it over any request function; in the
    sandbox it is a snapshot of the real server's definitions (``polyn.testing``).
    """

    async def stream_names(self, subject: str | None = None) -> list[str]:
        """Names of the streams (capturing ``subject``, when given)."""

    async def stream_info(self, name: str) -> StreamInfo:
        """Raises :class:`~polyn.errors.StreamError` when the stream does not exist."""

    async def create_stream(self, config: Mapping[str, Any]) -> StreamInfo: ...

    async def update_stream(self, config: Mapping[str, Any]) -> StreamInfo: ...

    async def delete_stream(self, name: str) -> None: ...

    async def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        """Raises :class:`~polyn.errors.ConsumerError` when the consumer does not exist."""

    async def create_consumer(self, stream: str, config: Mapping[str, Any]) -> ConsumerInfo: ...

    async def delete_consumer(self, stream: str, consumer: str) -> None: ...


@runtime_checkable
class KeyValue(Protocol):
    """Key-value buckets (schemas, JSON stores, the migrations record): always the real server."""


    async def kv_create(
        self,
        bucket: str,
        *,
        replicas: int = 1,
        history: int = 1,
        description: str | None = None,
    ) -> None:
        """Create a bucket; an existing bucket is left as it is."""

    async def kv_get(self, bucket: str, key: str) -> KvEntry | None:
        """The key's current entry, or ``None`` when it is missing or deleted."""

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        """Store ``value`` and return the new revision."""

    async def kv_create_key(self, bucket: str, key: str, value: bytes) -> int:
        """Store ``value`` only if ``key`` is missing (or deleted); return the new revision.

        Raises :class:`~polyn.errors.KeyValueConflictError` when the key holds a value.
        """

    async def kv_update(self, bucket: str, key: str, value: bytes, last_revision: int) -> int:
        """Store ``value`` only if ``key``'s latest revision is ``last_revision``; return the
        new revision. Raises :class:`~polyn.errors.KeyValueConflictError` otherwise."""

    async def kv_delete(self, bucket: str, key: str) -> None: ...

    async def kv_keys(self, bucket: str) -> list[str]: ...

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        """Every key's current value."""

    async def kv_watch(self, bucket: str) -> KvWatch:
        """The bucket's current contents (``watch.initial``) and a channel of later changes."""

    async def kv_delete_bucket(self, bucket: str) -> None: ...


@runtime_checkable
class Transport(Messaging, JetStreamAdmin, KeyValue, Protocol):
    """Every NATS operation Polyn needs: :class:`Messaging`, :class:`JetStreamAdmin` and
    :class:`KeyValue`. Layer 4 holds one (``transport_for(conn)``) and each part of it uses
    only the protocol it needs."""
