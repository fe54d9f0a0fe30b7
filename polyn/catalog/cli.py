"""``polyn catalog`` and ``polyn catalog serve``: the command line of :mod:`polyn.catalog`.

``polyn/cli.py`` registers them with :func:`add_catalog_command`; everything else is here.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from polyn.config import Config
from polyn.errors import ConfigError

__all__ = ["add_catalog_command"]

LoadConfig = Callable[..., Config]


def add_catalog_command(
    commands: Any, config_options: argparse.ArgumentParser, load_config: LoadConfig
) -> None:
    """Add ``catalog`` (and ``catalog serve``) to ``polyn``'s subcommands.

    ``config_options`` is the parent parser of the configuration flags and ``load_config(args,
    service=...)`` builds the :class:`~polyn.Config` from them, as the other commands do.
    """
    catalog = commands.add_parser(
        "catalog",
        parents=[config_options],
        help="write the event catalogue: AsyncAPI 3.0 and browsable HTML",
        description=(
            "Write an AsyncAPI 3.0 document and a static HTML catalogue of every event (its "
            "schema, example, streams, durable consumers, senders and versions) into a folder. "
            "Reads the schema bucket and the server's streams and consumers (read-only), or, "
            "with --offline, the schemas and migrations folders; --app adds what services send "
            "and receive."
        ),
    )
    catalog.add_argument(
        "--out", default="catalog", metavar="DIR", help="output folder (default: catalog)"
    )
    catalog.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a service's polyn.App (or a function returning one) to inspect; repeatable. "
        "Imported from the current directory; nothing is started",
    )
    catalog.add_argument(
        "--schemas-dir",
        default=None,
        metavar="DIR",
        help="read the schemas from this folder instead of the schema bucket",
    )
    catalog.add_argument(
        "--offline",
        action="store_true",
        help="connect to nothing: schemas from the schemas folder, streams and consumers from "
        "the migrations folder",
    )
    catalog.add_argument("--title", default=None, help="title of the pages and the document")
    catalog.add_argument(
        "--api-version", default="1.0.0", help="info.version of the AsyncAPI document"
    )
    catalog.set_defaults(handler=lambda args: _build(args, load_config))
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="[serve]")
    serve = catalog_commands.add_parser(
        "serve", help="serve a written catalogue on 127.0.0.1 for browsing"
    )
    serve.add_argument(
        "--dir", default="catalog", metavar="DIR", help="the catalogue folder (default: catalog)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    serve.set_defaults(handler=_serve)


def _config(args: argparse.Namespace, load_config: LoadConfig) -> tuple[Config, str | None]:
    """The config, and the domain when one was configured (a catalogue needs no service)."""
    # The catalogue uses no source root: a placeholder lets a configured domain (flag,
    # POLYN_DOMAIN, pyproject) load on its own.
    with_root = argparse.Namespace(**vars(args))
    with_root.source_root = args.source_root or "polyn.catalog"
    try:
        config = load_config(with_root)
        return config, config.domain
    except ConfigError:
        return load_config(args, service=False), ""


def _build(args: argparse.Namespace, load_config: LoadConfig) -> int:
    from polyn.catalog._build import build_catalog
    from polyn.catalog._html import require_jinja2, write_catalog
    from polyn.catalog._views import undeclared

    require_jinja2()  # before connecting to anything
    config, domain = _config(args, load_config)
    schemas_dir = args.schemas_dir or (config.schemas_dir if args.offline else None)
    options: dict[str, Any] = {
        "schemas_dir": schemas_dir,
        "migrations_dir": config.migrations_dir if args.offline else None,
        "apps": args.app,
        "domain": domain,
        "title": args.title,
        "api_version": args.api_version,
    }

    async def read() -> Any:
        if args.offline:
            return await build_catalog(config, **options)
        from polyn.migration import open_transport

        async with open_transport(config) as transport:
            return await build_catalog(config, transport=transport, **options)

    catalog = trio.run(read)
    written = write_catalog(catalog, args.out)
    for problem in undeclared(catalog):
        print(f"polyn: warning: {problem}", flush=True)
    events = len(catalog.schemas)
    print(
        f"Wrote the catalogue of {events} event{'' if events == 1 else 's'} "
        f"({len(written)} files) to {args.out}: {Path(args.out) / 'index.html'}, "
        f"{Path(args.out) / 'asyncapi.json'}",
        flush=True,
    )
    print(f"Browse it: polyn catalog serve --dir {args.out}", flush=True)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    from polyn.catalog._serve import CatalogServer

    server = CatalogServer(args.dir, port=args.port)
    # Ctrl-C and SIGTERM both stop it, even when started in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Serving the catalogue in {args.dir} at {server.url} ; Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped", flush=True)
    return 0
