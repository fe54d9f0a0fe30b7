"""The AsyncAPI 3.0 document of a catalogue.

- **servers**: the config's NATS URLs, through :mod:`polyn.config`'s redaction and then without
  any user information at all (``host`` is ``host:port``): a published document carries no
  credentials, not even a user name.
- **channels**: one per message name with a schema; its ``address`` is the subject, which is
  the message name (``order.placed.v1``), as :func:`polyn.pub` publishes it.
- **messages** (``components.messages``): the CloudEvent as it travels, content type
  ``application/cloudevents+json``; the payload is a multi-format schema whose
  ``schemaFormat`` follows the payload schema's ``$schema`` (draft-07 when it names none): Polyn's
  CloudEvent envelope with ``type`` fixed to ``<domain>.<name>`` (when the domain is known) and
  ``data`` the payload schema. A payload schema with local ``$ref`` pointers gets an ``$id``
  (``urn:polyn:schema:<name>``) so the pointers still resolve inside it.
- **operations**: each service's receives (its consumers; a Responder's with a ``reply`` on a
  channel with a dynamic address, the request's inbox) and sends (its declared ``publishes``).
  Durable consumer and stream names go in ``x-polyn-durable`` / ``x-polyn-stream``; a core
  subscriber's queue group in the NATS operation binding.

The document is checked in the tests against the AsyncAPI 3.0 JSON Schema vendored in
``polyn/catalog/asyncapi/`` (:func:`asyncapi_schema`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from polyn.catalog._model import Catalog, Receiver
from polyn.catalog._views import EventView, event_views
from polyn.config import redact_url

__all__ = ["asyncapi_document", "asyncapi_schema", "server_host"]

CONTENT_TYPE = "application/cloudevents+json"


def asyncapi_schema() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 JSON Schema (from the ``@asyncapi/specs`` package, Apache-2.0; see
    ``polyn/catalog/asyncapi/NOTICE``)."""
    text = resources.files("polyn.catalog").joinpath("asyncapi/3.0.0.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _envelope() -> dict[str, Any]:
    text = resources.files("polyn").joinpath("cloud_event_schema.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def server_host(url: str) -> tuple[str, str]:
    """``(protocol, host)`` of a server URL for AsyncAPI: the URL is redacted first, then its
    user information is dropped whole."""
    redacted = redact_url(url)
    scheme, sep, rest = redacted.partition("://")
    if not sep:
        scheme, rest = "nats", redacted
    host = rest.rpartition("@")[2].split("/", 1)[0]
    protocol = {"tls": "nats", "nats": "nats", "ws": "ws", "wss": "wss"}.get(scheme, scheme)
    return protocol, host


def _has_local_refs(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            return True
        return any(_has_local_refs(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_has_local_refs(value) for value in schema)
    return False


def _payload(view: EventView, envelope: Mapping[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(view.schema)
    schema = copy.deepcopy(dict(envelope))
    schema.pop("$id", None)
    if isinstance(data, dict):
        dialect = data.pop("$schema", None)
        if isinstance(dialect, str):
            schema["$schema"] = dialect
        if "$id" not in data and _has_local_refs(data):
            data = {"$id": f"urn:polyn:schema:{view.name}", **data}
    schema["title"] = f"{view.name} (CloudEvent)"
    properties = dict(schema.get("properties", {}))
    if view.type is not None:
        properties["type"] = {**properties.get("type", {}), "const": view.type}
    properties["data"] = data
    schema["properties"] = properties
    schema["required"] = sorted({*schema.get("required", []), "data"})
    return {"schemaFormat": view.schema_format, "schema": schema}


def _message(view: EventView, envelope: Mapping[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": view.name,
        "title": view.title,
        "contentType": CONTENT_TYPE,
    }
    if view.description:
        message["description"] = view.description
    message["payload"] = _payload(view, envelope)
    if view.example_valid:
        message["examples"] = [{"name": "example", "payload": view.example_event}]
    message["tags"] = [{"name": view.domain}]
    return message


def _ref(*parts: str) -> dict[str, str]:
    escaped = [part.replace("~", "~0").replace("/", "~1") for part in parts]
    return {"$ref": "#/" + "/".join(escaped)}


def _receive(receiver: Receiver, view: EventView) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "receive",
        "channel": _ref("channels", view.name),
        "title": f"{receiver.service}: {receiver.actor} receives {view.name}",
        "summary": f"{receiver.actor} ({receiver.kind})",
        "messages": [_ref("channels", view.name, "messages", view.name)],
        "tags": [{"name": f"service:{receiver.service}"}],
    }
    if receiver.durable is not None:
        operation["x-polyn-durable"] = receiver.durable
    if receiver.stream is not None:
        operation["x-polyn-stream"] = receiver.stream
    if receiver.queue_group:
        operation["bindings"] = {"nats": {"queue": receiver.queue_group, "bindingVersion": "0.1.0"}}
    return operation


def asyncapi_document(catalog: Catalog) -> dict[str, Any]:
    """The catalogue as an AsyncAPI 3.0.0 document (a JSON-ready dict; see the module doc)."""
    views = event_views(catalog)
    known = {view.name for view in views}
    envelope = _envelope()
    info: dict[str, Any] = {"title": catalog.title, "version": catalog.api_version}
    info["description"] = (
        "Every event is a CloudEvent whose data follows the JSON Schema of its message name"
        + (f" (schemas from the {catalog.schema_source})" if catalog.schema_source else "")
        + ". Generated by polyn catalog."
    )
    document: dict[str, Any] = {"asyncapi": "3.0.0", "info": info}
    servers: dict[str, Any] = {}
    for number, url in enumerate(catalog.servers, 1):
        protocol, host = server_host(url)
        key = "nats" if len(catalog.servers) == 1 else f"nats-{number}"
        servers[key] = {"host": host, "protocol": protocol}
    if servers:
        document["servers"] = servers
    document["defaultContentType"] = CONTENT_TYPE
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for view in views:
        messages[view.name] = _message(view, envelope)
        channel: dict[str, Any] = {
            "address": view.name,
            "title": view.name,
            "messages": {view.name: _ref("components", "messages", view.name)},
        }
        if view.streams:
            channel["x-polyn-streams"] = [stream.name for stream in view.streams]
        channels[view.name] = channel
    for view in views:
        for receiver in view.receivers:
            key = f"{receiver.service}.{receiver.actor}.receive.{view.name}"
            operation = _receive(receiver, view)
            if receiver.reply_type in known:
                assert receiver.reply_type is not None
                reply_channel = f"{view.name}.reply"
                channels[reply_channel] = {
                    "address": None,
                    "description": f"The reply subject (an inbox) of a {view.name} request",
                    "messages": {
                        receiver.reply_type: _ref("components", "messages", receiver.reply_type)
                    },
                }
                operation["reply"] = {
                    "channel": _ref("channels", reply_channel),
                    "messages": [_ref("channels", reply_channel, "messages", receiver.reply_type)],
                }
            operations[key] = operation
        for sender in view.senders:
            if sender.how == "replies":
                continue  # the Responder's receive operation has it as its reply
            key = f"{sender.service}.{sender.actor or 'app'}.send.{view.name}"
            operations[key] = {
                "action": "send",
                "channel": _ref("channels", view.name),
                "title": f"{sender.who} sends {view.name}",
                "messages": [_ref("channels", view.name, "messages", view.name)],
                "tags": [{"name": f"service:{sender.service}"}],
            }
    document["channels"] = dict(sorted(channels.items()))
    if operations:
        document["operations"] = dict(sorted(operations.items()))
    document["components"] = {"messages": messages}
    return document
