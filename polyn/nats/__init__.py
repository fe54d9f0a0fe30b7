"""Layer 3: the one place that touches nats-py and asyncio.

Above this package everything is trio and plain data: a :class:`Transport` (the real
:class:`NatsTransport` or the sandbox's ``MockNats``), :class:`Message` with its JetStream
acknowledgements, and the value types the transport returns.
"""

from __future__ import annotations

from polyn.nats.connection import (
    TRANSPORT,
    Conn,
    NatsConnection,
    TransportOverride,
    TreeHandle,
    locate,
    set_transport_override,
    transport_for,
)
from polyn.nats.message import Message, Metadata
from polyn.nats.nats_transport import ConnectionState, NatsTransport, PayloadTooLargeError
from polyn.nats.transport import (
    CombinedTransport,
    ConsumerInfo,
    JetStreamAdmin,
    KeyValue,
    KvEntry,
    KvWatch,
    Messaging,
    PubAck,
    StreamInfo,
    Subscription,
    Transport,
)

__all__ = [
    "TRANSPORT",
    "CombinedTransport",
    "Conn",
    "ConnectionState",
    "ConsumerInfo",
    "JetStreamAdmin",
    "KeyValue",
    "KvEntry",
    "KvWatch",
    "Message",
    "Messaging",
    "Metadata",
    "NatsConnection",
    "NatsTransport",
    "PayloadTooLargeError",
    "PubAck",
    "StreamInfo",
    "Subscription",
    "Transport",
    "TransportOverride",
    "TreeHandle",
    "locate",
    "set_transport_override",
    "transport_for",
]
