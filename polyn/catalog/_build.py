"""Gathering a catalogue's inputs into a :class:`~polyn.catalog.Catalog`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from polyn.app import App
from polyn.catalog._model import Catalog, Durable, Service, Stream
from polyn.catalog._sources import (
    inspect_app,
    load_app,
    read_migrations,
    read_schema_bucket,
    read_schema_folder,
    read_server,
)
from polyn.config import Config, redact_url
from polyn.errors import PolynError
from polyn.nats.transport import Transport

__all__ = ["build_catalog"]


async def build_catalog(
    config: Config,
    *,
    transport: Transport | None = None,
    schemas_dir: str | Path | None = None,
    migrations_dir: str | Path | None = None,
    apps: Iterable[App | str] = (),
    domain: str | None = None,
    title: str | None = None,
    api_version: str = "1.0.0",
) -> Catalog:
    """Read everything a catalogue shows; nothing is written, started or changed.

    - Schemas: the folder ``schemas_dir`` when given, else the schema bucket
      (``config.schema_store``) through ``transport``.
    - Streams and durable consumers: replayed from the migrations folder ``migrations_dir``
      when given (no server needed), else read from the server through ``transport``, else none.
    - ``apps``: App trees, or ``"module:attr"`` strings naming one (or a function returning
      one) to import; inspected, never started.
    - ``config.servers`` become the AsyncAPI servers, redacted. ``domain`` prefixes the event
      types (default ``config.domain``; ``""`` when it is unknown).

    Example::

        async with polyn.migration.open_transport(config) as transport:
            catalog = await build_catalog(config, transport=transport, apps=["shop.main:app"])
        write_catalog(catalog, "catalog")
    """
    if schemas_dir is not None:
        schemas = read_schema_folder(schemas_dir)
        schema_source = f"folder {schemas_dir}"
    elif transport is not None:
        schemas = await read_schema_bucket(transport, config.schema_store)
        schema_source = f"schema bucket {config.schema_store}"
    else:
        raise PolynError("build_catalog needs a schemas folder or a transport to read the bucket")
    streams: list[Stream] = []
    durables: list[Durable] = []
    jetstream_source = ""
    if migrations_dir is not None:
        streams, durables = read_migrations(migrations_dir)
        jetstream_source = f"the migrations in {migrations_dir}"
    elif transport is not None:
        streams, durables = await read_server(transport)
        jetstream_source = "the server"
    services: dict[str, Service] = {}
    for app in apps:
        origin = app if isinstance(app, str) else ""
        service = inspect_app(load_app(app) if isinstance(app, str) else app, origin=origin)
        if service.name in services:  # two Apps of one service (say, a worker and a web app)
            known = services[service.name]
            service = Service(
                name=service.name,
                domain=service.domain,
                origin=", ".join(filter(None, (known.origin, service.origin))),
                receivers=tuple({*known.receivers, *service.receivers}),
                senders=tuple({*known.senders, *service.senders}),
            )
        services[service.name] = service
    if domain is None:
        domain = config.domain
    domain = domain or next((s.domain for s in services.values()), "") or None
    return Catalog(
        schemas=schemas,
        schema_source=schema_source,
        streams=streams,
        durables=durables,
        jetstream_source=jetstream_source,
        services=services.values(),
        servers=tuple(redact_url(url) for url in config.servers),
        domain=domain,
        title=title or (f"{domain} events" if domain else "Event catalogue"),
        api_version=api_version,
    )
