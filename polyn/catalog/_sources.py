"""Reading a catalogue's inputs: schemas, streams and durable consumers, services' App trees.

Everything here only reads. The server is asked through the :class:`~polyn.nats.Transport`
(``stream_names``, ``stream_info``, ``consumer_info``, ``kv_entries`` and one core ``request``
to JetStream's ``CONSUMER.NAMES`` API, which the transport has no call for); the migrations
folder is read by recording its commands (as ``polyn migrate --dry-run`` does) and replaying
them in memory; App trees are walked through ``App.supervisor.children`` and the actors'
public class attributes, never started.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from polyn import naming
from polyn.actors import Actor, Supervisor
from polyn.app import App
from polyn.catalog._model import Durable, Receiver, ReceiverKind, Sender, Service, Stream
from polyn.errors import BucketNotFoundError, PolynError, SchemaStoreError, StreamError
from polyn.nats.transport import Transport

__all__ = [
    "inspect_app",
    "load_app",
    "read_migrations",
    "read_schema_bucket",
    "read_schema_folder",
    "read_server",
]

# The JetStream API prefix of the account (no JetStream domain: Polyn never sets one).
_JS_API = "$JS.API"
_STORE_PREFIXES = ("$KV.", "$O.")


# -- schemas ---------------------------------------------------------------------------------


async def read_schema_bucket(transport: Transport, bucket: str) -> dict[str, Any]:
    """Every payload schema of the key-value ``bucket``, by message name.

    Raises :class:`~polyn.SchemaStoreError` when the bucket is missing or a value is not JSON.
    """
    try:
        entries = await transport.kv_entries(bucket)
    except BucketNotFoundError as exc:
        raise SchemaStoreError(
            f"There is no schema bucket {bucket}: load the schemas first (`polyn schemas load`) "
            "or build from a folder with --schemas-dir"
        ) from exc
    schemas = {}
    for name, value in sorted(entries.items()):
        try:
            schemas[name] = json.loads(value)
        except ValueError as exc:
            raise SchemaStoreError(
                f"The schema of {name} in bucket {bucket} is not JSON: {exc}"
            ) from None
    return schemas


def read_schema_folder(directory: str | Path) -> dict[str, Any]:
    """Every payload schema of a schemas folder, by message name, checked as ``polyn schemas
    load`` checks them (:func:`polyn.schema_loader.read_schemas`)."""
    from polyn.schema_loader import read_schemas

    return {name: file.document for name, file in sorted(read_schemas(directory).items())}


# -- streams and durable consumers ----------------------------------------------------------


def _stream(config: Mapping[str, Any]) -> Stream:
    return Stream(
        name=str(config["name"]),
        subjects=tuple(str(s) for s in config.get("subjects") or ()),
        description=config.get("description") or None,
    )


def _durable(stream: str, config: Mapping[str, Any]) -> Durable | None:
    name = config.get("durable_name") or config.get("name")
    if not name:
        return None  # an ephemeral consumer: nobody's durable reader
    filters = [config["filter_subject"]] if config.get("filter_subject") else []
    filters += list(config.get("filter_subjects") or ())
    return Durable(
        stream=stream,
        name=str(name),
        filter_subjects=tuple(str(f) for f in filters),
        description=config.get("description") or None,
    )


async def read_server(transport: Transport) -> tuple[list[Stream], list[Durable]]:
    """The streams of the server's account and their durable consumers (read-only).

    The streams behind key-value buckets and object stores (subjects ``$KV.…`` / ``$O.…``)
    hold no events and are left out.
    """
    streams: list[Stream] = []
    durables: list[Durable] = []
    for name in sorted(await transport.stream_names()):
        try:
            info = await transport.stream_info(name)
        except StreamError:
            continue  # deleted while we looked
        stream = _stream({**info.config, "name": info.name})
        if stream.subjects and all(s.startswith(_STORE_PREFIXES) for s in stream.subjects):
            continue  # a key-value bucket or object store (the schemas'), not events
        streams.append(stream)
        for consumer in await _consumer_names(transport, name):
            try:
                consumer_info = await transport.consumer_info(name, consumer)
            except PolynError:
                continue
            durable = _durable(name, {"durable_name": consumer, **consumer_info.config})
            if durable is not None and consumer_info.config.get("durable_name"):
                durables.append(durable)
    return streams, durables


async def _consumer_names(transport: Transport, stream: str) -> list[str]:
    names: list[str] = []
    while True:
        reply = await transport.request(
            f"{_JS_API}.CONSUMER.NAMES.{stream}", json.dumps({"offset": len(names)}).encode()
        )
        answer = json.loads(reply.data)
        if "error" in answer:
            error = answer["error"]
            raise StreamError(
                f"Could not list the consumers of stream {stream}: "
                f"{error.get('description', error)}"
            )
        page = answer.get("consumers") or []
        names.extend(page)
        if not page or len(names) >= answer.get("total", 0):
            return sorted(names)


def read_migrations(directory: str | Path) -> tuple[list[Stream], list[Durable]]:
    """The streams and durable consumers that running every migration of ``directory`` would
    leave, without a server: each file's ``up`` commands replayed in order."""
    from polyn.migration import find_migrations

    streams: dict[str, dict[str, Any]] = {}
    durables: dict[tuple[str, str], Durable] = {}
    for migration in find_migrations(directory):
        for command in migration.commands("up"):
            options = command.options
            if command.name == "create_stream":
                streams[str(options["name"])] = dict(options)
            elif command.name == "update_stream":
                name = str(options["name"])
                streams[name] = {**streams.get(name, {}), **options}
            elif command.name == "delete_stream":
                streams.pop(str(options["name"]), None)
                durables = {key: d for key, d in durables.items() if key[0] != options["name"]}
            elif command.name == "create_consumer":
                stream = str(options["stream_name"])
                durable = _durable(stream, options)
                if durable is not None:
                    durables[(stream, durable.name)] = durable
            elif command.name == "delete_consumer":
                durables.pop((str(options["stream_name"]), str(options["durable_name"])), None)
    return [_stream(config) for config in streams.values()], list(durables.values())


# -- services --------------------------------------------------------------------------------


def load_app(target: str) -> App:
    """Import ``"module:attr"`` and return the :class:`~polyn.App` it names.

    ``attr`` (dotted for nested attributes) is an App, or a callable that takes no argument and
    returns one (a factory). The current directory is put on ``sys.path`` first, as a console
    script does not have it there. Nothing is started or connected.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise PolynError(f"--app needs MODULE:ATTRIBUTE (e.g. myservice.main:app), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolynError(f"Cannot import {module_name!r} for --app {target}: {exc}") from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise PolynError(f"{module_name!r} has no attribute {attribute!r} (--app)") from None
    if not isinstance(value, App) and callable(value):
        value = value()
    if not isinstance(value, App):
        raise PolynError(
            f"--app {target} is {type(value).__name__}, not a polyn.App or a function returning one"
        )
    return value


def _actors(children: Iterable[Actor]) -> Iterator[Actor]:
    for actor in children:
        yield actor
        if isinstance(actor, Supervisor):
            yield from _actors(actor.children)


def _names(value: object, where: str) -> tuple[str, ...]:
    """A ``publishes`` declaration as validated message names."""
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    for item in items:
        if not naming.is_valid_message_name(item):
            raise PolynError(
                f"{where} declares a message name that is not one: {item!r} (message names are "
                "lowercase, alphanumeric and dot separated, e.g. order.placed.v1)"
            )
    return items


def _receiver(service: str, actor: Actor, config: Any) -> Receiver | None:
    # Public classes only; the consumers' own modules may move.
    import polyn

    cls = type(actor).__name__
    kind: ReceiverKind
    if isinstance(actor, polyn.PullConsumer | polyn.Pipeline):
        kind = "pipeline" if isinstance(actor, polyn.Pipeline) else "pull consumer"
        event_type = str(actor.type)
        source = getattr(actor, "source", None)
        return Receiver(
            service=service,
            actor=cls,
            kind=kind,
            subject=naming.trim_domain_prefix(event_type, config.domain),
            # The name the consumer looks up when it starts (polyn.naming).
            durable=naming.consumer_name(event_type, config, source),
            stream=getattr(actor, "stream_name", None),
        )
    if isinstance(actor, polyn.Responder | polyn.Subscriber):
        kind = "responder" if isinstance(actor, polyn.Responder) else "subscriber"
        reply_type = getattr(actor, "reply_type", None) if kind == "responder" else None
        return Receiver(
            service=service,
            actor=cls,
            kind=kind,
            subject=naming.trim_domain_prefix(str(actor.subject), config.domain),
            queue_group=getattr(actor, "queue_group", None),
            reply_type=_names(reply_type, f"{cls}.reply_type")[0] if reply_type else None,
        )
    return None


def inspect_app(app: App, *, origin: str = "") -> Service:
    """What ``app`` receives and sends, from its children's declarations (nothing starts).

    Receivers are its ``PullConsumer``, ``Pipeline``, ``Subscriber`` and ``Responder`` actors
    (nested supervisors included); senders are the App's ``publishes``, every actor's
    ``publishes`` attribute and each Responder's ``reply_type``.
    """
    config = app.config
    service = config.source_root
    receivers: list[Receiver] = []
    senders = [
        Sender(service, naming.trim_domain_prefix(name, config.domain))
        for name in _names(getattr(app, "publishes", ()), "App(publishes=...)")
    ]
    for actor in _actors(app.supervisor.children):
        cls = type(actor).__name__
        receiver = _receiver(service, actor, config)
        if receiver is not None:
            receivers.append(receiver)
            if receiver.reply_type:
                senders.append(Sender(service, receiver.reply_type, cls, "replies"))
        for name in _names(getattr(actor, "publishes", None), f"{cls}.publishes"):
            senders.append(Sender(service, naming.trim_domain_prefix(name, config.domain), cls))
    return Service(
        name=service,
        domain=config.domain,
        origin=origin,
        receivers=tuple(set(receivers)),
        senders=tuple(set(senders)),
    )
