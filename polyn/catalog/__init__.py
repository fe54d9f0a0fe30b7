"""The event catalogue: which events exist, what is in them, who sends and who reads each one.

``polyn catalog`` reads what Polyn already knows — the payload schemas (the schema bucket, or a
schemas folder), JetStream's streams and durable consumers (the server, or the migrations
folder), and, optionally, services' App trees (imported and inspected, never started) — and
writes into a folder:

- ``asyncapi.json``, an **AsyncAPI 3.0** document: channels are subjects, messages are
  CloudEvents with their payload schema (``schemaFormat`` from the schema's ``$schema``),
  operations are each service's sends and receives, servers come from the config with no
  credentials (:mod:`polyn.catalog._asyncapi`);
- a **static HTML catalogue**: ``index.html`` with search and filters by domain (the first
  token of the message name) and by service, and a page per event with its schema as a table,
  an example, the streams capturing it, the durable consumers and subscribers reading it, the
  services sending it, and its versions side by side with the compatibility verdict of
  ``polyn schemas check``.

``polyn catalog serve`` serves the folder on ``127.0.0.1`` for browsing.

Senders are declared, since nothing else tells who publishes what: ``polyn.App(...,
publishes=["order.placed.v1"])`` for what the service publishes outside its actors, a
``publishes`` class attribute on any actor, and ``reply_type`` on a Responder. Receivers come
from the consumers' own class attributes (``type``, ``source``, ``stream_name``, ``subject``,
``queue_group``) and the durable name :func:`polyn.naming.consumer_name` gives, the one a
PullConsumer or Pipeline looks up when it starts.

The HTML needs Jinja2 (``pip install 'polyn[catalog]'``); services in production do not.

Example::

    import polyn.catalog
    from polyn.migration import open_transport

    async with open_transport(config) as transport:
        catalog = await polyn.catalog.build_catalog(config, transport=transport,
                                                    apps=["shop.service:app"])
    polyn.catalog.write_catalog(catalog, "catalog")
"""

from __future__ import annotations

from polyn.catalog._asyncapi import asyncapi_document, asyncapi_schema
from polyn.catalog._build import build_catalog
from polyn.catalog._html import write_catalog
from polyn.catalog._model import Catalog, Durable, Receiver, Sender, Service, Stream
from polyn.catalog._serve import CatalogServer
from polyn.catalog._sources import (
    inspect_app,
    load_app,
    read_migrations,
    read_schema_bucket,
    read_schema_folder,
    read_server,
)
from polyn.catalog._views import EventView, event_views

__all__ = [
    "Catalog",
    "CatalogServer",
    "Durable",
    "EventView",
    "Receiver",
    "Sender",
    "Service",
    "Stream",
    "asyncapi_document",
    "asyncapi_schema",
    "build_catalog",
    "event_views",
    "inspect_app",
    "load_app",
    "read_migrations",
    "read_schema_bucket",
    "read_schema_folder",
    "read_server",
    "write_catalog",
]
