"""The public surface is pinned: what each public package exports, that every error Polyn
raises can be caught by a public name, and that reprs and tracebacks show public paths.

Adding a public name means editing the expected list here: a deliberate, reviewed change.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import polyn
import polyn.actors
import polyn.errors
import polyn.nats
import polyn.testing

EXPECTED = {
    "polyn": [
        "Ack", "Actor", "ActorError", "ActorRef", "App", "AppContext", "AsyncPortal",
        "BatchInfo", "BatcherSpec", "CallTimeout", "Config", "ConfigError", "ConsumerError",
        "DynamicSupervisor", "Event", "HandlerTimeout", "HeaderError",
        "IncompatibleSchemaError", "JSONStore", "MessageFailed", "MigrationError", "Nak",
        "NamingError", "NatsConnection", "NatsConnectionError", "OptionError",
        "PayloadTooLargeError", "Pipeline", "PipelineMessage", "PolynError", "Portal",
        "ProcessorSpec", "PullConsumer", "RequestTimeout", "Responder", "ResponderError",
        "Restart", "Running", "SandboxError", "SchemaError", "SchemaNotFoundError",
        "SchemaStore", "SchemaStoreError", "ServerError", "Strategy", "StreamError",
        "Subscriber", "Supervisor", "ValidationError", "__version__", "codec", "current_app",
        "dead_letter", "naming", "pub", "reply", "request", "tracing", "transport_for",
    ],
    "polyn.actors": [
        "Actor", "ActorRef", "Caller", "ChildCounts", "ChildInfo", "DEFAULT_MAILBOX_SIZE",
        "Down", "DynamicSupervisor", "IGNORE", "Key", "Monitor", "NO_REPLY", "Restart",
        "Strategy", "Supervisor", "Timer", "Tree", "count_children", "current_tree",
        "delete_child", "restart_child", "start_child", "terminate_child", "whereis",
        "which_children",
    ],
    "polyn.nats": [
        "CombinedTransport", "Conn", "ConnectionState", "ConsumerInfo", "JetStreamAdmin",
        "KeyValue", "KvEntry", "KvWatch", "Message", "Messaging", "Metadata", "NatsConnection",
        "NatsTransport", "PayloadTooLargeError", "PubAck", "StreamInfo", "Subscription",
        "TRANSPORT", "Transport", "TransportOverride", "TreeHandle", "locate",
        "set_transport_override", "transport_for",
    ],
    "polyn.testing": ["DEADLETTER_PREFIX", "MockNats", "Sandbox", "SandboxTransport", "real_time"],
}  # fmt: skip

# Errors with private names that never reach a caller under their own name, and why.
PRIVATE_ERRORS = {
    # raised by encode() for a non-Event; caught as the public ValidationError / TypeError
    "polyn.codec._NotAnEvent",
}

PACKAGES = {name: importlib.import_module(name) for name in EXPECTED}


def _all_modules() -> list[ModuleType]:
    modules = [polyn]
    for info in pkgutil.walk_packages(polyn.__path__, "polyn."):
        modules.append(importlib.import_module(info.name))
    return modules


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_public_package_exports_exactly_the_expected_names(name: str) -> None:
    module = PACKAGES[name]
    assert sorted(module.__all__) == sorted(EXPECTED[name])
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names {exported}, which is missing"


def test_every_error_polyn_defines_is_reachable_from_polyn_or_polyn_errors() -> None:
    _all_modules()  # every subclass defined anywhere in the package is now loaded

    def subclasses(cls: type) -> list[type]:
        found = []
        for sub in cls.__subclasses__():
            found += [sub, *subclasses(sub)]
        return found

    public = {id(getattr(polyn, n)) for n in polyn.__all__}
    public |= {id(getattr(polyn.errors, n)) for n in polyn.errors.__all__}
    defined = [c for c in subclasses(polyn.PolynError) if c.__module__.startswith("polyn")]
    assert defined, "no error classes found"
    missing = [
        f"{c.__module__}.{c.__qualname__}"
        for c in defined
        if id(c) not in public
        and not c.__qualname__.startswith("_")
        and not c.__module__.startswith("polyn.testing.")  # test-only helpers
    ]
    assert missing == []
    private = {
        f"{c.__module__}.{c.__qualname__}" for c in defined if c.__qualname__.startswith("_")
    }
    assert private <= PRIVATE_ERRORS, "a new private error class: make it public or list why"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exported_classes_and_functions_show_a_public_module_path(name: str) -> None:
    module = PACKAGES[name]
    shown = {}
    for exported in module.__all__:
        value = getattr(module, exported)
        if inspect.isclass(value) or inspect.isfunction(value):
            shown[exported] = value.__module__
    private = {k: v for k, v in shown.items() if any(p.startswith("_") for p in v.split("."))}
    assert private == {}
    for exported, path in shown.items():
        assert getattr(importlib.import_module(path), exported) is getattr(module, exported)
