"""Polyn: event-driven services on NATS JetStream with validated CloudEvents, on trio.

Every event on the bus is a CloudEvent whose ``data`` follows a JSON Schema kept in a NATS
key-value bucket, validated on publish and on receive, wire-compatible with the Elixir and Ruby
Polyn clients. Services are trees of actors under supervisors; ``trio.run(app.main)`` runs one.
"""

from __future__ import annotations

from polyn import codec, naming
from polyn._version import __version__
from polyn.actors import Actor, ActorRef, DynamicSupervisor, Restart, Strategy, Supervisor
from polyn.config import Config
from polyn.errors import (
    ActorError,
    CallTimeout,
    ConfigError,
    ConsumerError,
    MigrationError,
    NamingError,
    NatsConnectionError,
    PolynError,
    RequestTimeout,
    SandboxError,
    SchemaError,
    SchemaStoreError,
    ServerError,
    StreamError,
    ValidationError,
)
from polyn.event import Event
from polyn.nats import NatsConnection, transport_for

__all__ = [
    "Actor",
    "ActorError",
    "ActorRef",
    "CallTimeout",
    "Config",
    "ConfigError",
    "ConsumerError",
    "DynamicSupervisor",
    "Event",
    "MigrationError",
    "NamingError",
    "NatsConnection",
    "NatsConnectionError",
    "PolynError",
    "RequestTimeout",
    "Restart",
    "SandboxError",
    "SchemaError",
    "SchemaStoreError",
    "ServerError",
    "Strategy",
    "StreamError",
    "Supervisor",
    "ValidationError",
    "__version__",
    "codec",
    "naming",
    "transport_for",
]
