"""Polyn: event-driven services on NATS JetStream with validated CloudEvents, on trio.

Every event on the bus is a CloudEvent whose ``data`` follows a JSON Schema kept in a NATS
key-value bucket, validated on publish and on receive, wire-compatible with the Elixir and Ruby
Polyn clients. Services are trees of actors under supervisors; ``trio.run(app.main)`` runs one.
"""

from __future__ import annotations

from polyn._version import __version__
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

__all__ = [
    "ActorError",
    "CallTimeout",
    "ConfigError",
    "ConsumerError",
    "MigrationError",
    "NamingError",
    "NatsConnectionError",
    "PolynError",
    "RequestTimeout",
    "SandboxError",
    "SchemaError",
    "SchemaStoreError",
    "ServerError",
    "StreamError",
    "ValidationError",
    "__version__",
]
