"""Polyn: event-driven services on NATS JetStream with validated CloudEvents, on trio.

Every event on the bus is a CloudEvent whose ``data`` follows a JSON Schema kept in a NATS
key-value bucket, validated on publish and on receive, wire-compatible with the Elixir and Ruby
Polyn clients. Services are trees of actors under supervisors; ``trio.run(app.main)`` runs one.

Where the code departs from the developers' design (new packages, typed values found by key,
one config home, module-level caches): ``docs/explanation/architecture.md``.
"""

from __future__ import annotations

from polyn import codec, naming, tracing
from polyn._version import __version__
from polyn.actors import Actor, ActorRef, DynamicSupervisor, Restart, Strategy, Supervisor
from polyn.app import App, AppContext, Running, current_app
from polyn.config import Config
from polyn.consumers import (
    Ack,
    BatcherSpec,
    BatchInfo,
    HandlerTimeout,
    MessageFailed,
    Nak,
    Pipeline,
    PipelineMessage,
    ProcessorSpec,
    PullConsumer,
    Responder,
    Subscriber,
    dead_letter,
)
from polyn.errors import (
    ActorError,
    CallTimeout,
    ConfigError,
    ConsumerError,
    HeaderError,
    IncompatibleSchemaError,
    MigrationError,
    NamingError,
    NatsConnectionError,
    OptionError,
    PayloadTooLargeError,
    PolynError,
    RequestTimeout,
    ResponderError,
    SandboxError,
    SchemaError,
    SchemaNotFoundError,
    SchemaStoreError,
    ServerError,
    StreamError,
    ValidationError,
)
from polyn.event import Event
from polyn.json_store import JSONStore
from polyn.nats import NatsConnection, transport_for
from polyn.portal import AsyncPortal, Portal
from polyn.publish import pub, reply, request
from polyn.schema_store import SchemaStore

__all__ = [
    "Ack",
    "Actor",
    "ActorError",
    "ActorRef",
    "App",
    "AppContext",
    "AsyncPortal",
    "BatchInfo",
    "BatcherSpec",
    "CallTimeout",
    "Config",
    "ConfigError",
    "ConsumerError",
    "DynamicSupervisor",
    "Event",
    "HandlerTimeout",
    "HeaderError",
    "IncompatibleSchemaError",
    "JSONStore",
    "MessageFailed",
    "MigrationError",
    "Nak",
    "NamingError",
    "NatsConnection",
    "NatsConnectionError",
    "OptionError",
    "PayloadTooLargeError",
    "Pipeline",
    "PipelineMessage",
    "PolynError",
    "Portal",
    "ProcessorSpec",
    "PullConsumer",
    "RequestTimeout",
    "Responder",
    "ResponderError",
    "Restart",
    "Running",
    "SandboxError",
    "SchemaError",
    "SchemaNotFoundError",
    "SchemaStore",
    "SchemaStoreError",
    "ServerError",
    "Strategy",
    "StreamError",
    "Subscriber",
    "Supervisor",
    "ValidationError",
    "__version__",
    "codec",
    "current_app",
    "dead_letter",
    "naming",
    "pub",
    "reply",
    "request",
    "tracing",
    "transport_for",
]
