"""The ``polyn`` command line: migrations, schemas and a development nats-server.

Commands (``polyn COMMAND --help`` shows each one's options)::

    polyn migrate [--dry-run] [--break-lock]
                                         run the pending migrations in the migrations folder
    polyn rollback [--dry-run]           roll back the last migration run
    polyn migrations status              list applied and pending migrations
    polyn gen migration NAME [--stream S --subjects SUBJ... | --consumer TYPE]
                                         write migrations/<timestamp>_<name>.py
    polyn schemas init [DIR]             create a schemas folder with an example schema
    polyn schemas check [DIR] [--prune [KEY ...] | --prune-all]
                                         compare DIR with the schema bucket; write nothing
    polyn schemas load [DIR] [--prune [KEY ...] | --prune-all [--yes]] [--allow-breaking]
                                         put DIR's schemas into the schema bucket
    polyn schemas codegen [DIR] [--from-bucket] [--out PATH] [--check]
                                         write one frozen class per schema (typed events)
    polyn deadletters list               list the stored dead letters (type, consumer, reason)
    polyn deadletters replay --seq N ...  republish dead letters to their original subject
    polyn server [--port 4222]           a nats-server with JetStream, its store under .polyn/
    polyn catalog [--app MODULE:ATTR] [--out DIR] [--offline]
                                         write the event catalogue (AsyncAPI 3.0 and HTML)
    polyn catalog serve [--port 8000]    serve it on 127.0.0.1 for browsing

Configuration comes from :meth:`polyn.Config.load`: command-line flags beat ``POLYN_*`` and
``NATS_URL`` / ``NATS_SERVERS`` / ``NATS_CREDENTIALS`` / ``NATS_CA_FILE`` variables, which beat
``[tool.polyn]`` in the nearest ``pyproject.toml``. Commands that do not name a service
(``schemas``, ``gen``, ``server``) work without ``domain`` and ``source_root``. Passwords and
tokens are read from ``POLYN_PASSWORD`` / ``POLYN_TOKEN`` only, never from flags, which other
users of the machine could read in the process list.

Deployments run ``polyn migrate`` (or call :func:`polyn.migration.run`) where the service runs:
the console script is installed with the package. Elixir needs ``mix polyn.gen.release`` to
generate a release module because releases ship without Mix; Python has no such gap.

``migrate``, ``rollback`` and ``migrations status`` run through the
:class:`~polyn.migration.Migrator` actor in a small supervised tree (``NatsConnection`` +
``Migrator``), the path a service's own tree takes, migration lock included.

Exit codes: 0 success, 1 failure (one ``polyn: error: ...`` paragraph on stderr, no traceback;
``--log-level debug`` adds the one traceback of the cause), 2 wrong usage, 130 interrupted.
Each subcommand is a function taking the parsed arguments and
returning the exit code (``handler``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from polyn._version import __version__
from polyn.config import Config
from polyn.errors import ConfigError, PolynError
from polyn.nats.transport import Transport
from polyn.typed import _cli as typed_cli

__all__ = ["build_parser", "main"]

# (flag, Config field, help)
_CONFIG_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--server", "servers", "NATS server URL(s), comma separated (NATS_URL, POLYN_SERVERS)"),
    ("--domain", "domain", "the service's domain, e.g. com.acme (POLYN_DOMAIN)"),
    ("--source-root", "source_root", "the service's source root (POLYN_SOURCE_ROOT)"),
    ("--schema-bucket", "schema_store", "schema bucket (default POLYN_SCHEMAS)"),
    ("--migrations-bucket", "migrations_bucket", "migrations bucket (default POLYN_MIGRATIONS)"),
    ("--migrations-dir", "migrations_dir", "migrations folder (default migrations)"),
    ("--max-replicas", "max_replicas", "cap for num_replicas in migrations"),
    ("--kv-replicas", "kv_replicas", "replicas of the buckets Polyn creates (default 1)"),
    ("--creds", "credentials", "NATS credentials (.creds) file (NATS_CREDENTIALS)"),
    ("--nkeys-seed", "nkeys_seed", "NATS nkeys seed file"),
    ("--user", "user", "NATS user name (the password comes from POLYN_PASSWORD)"),
    ("--tls-ca", "tls_ca_file", "CA certificate file for TLS (NATS_CA_FILE)"),
    ("--tls-cert", "tls_cert_file", "client certificate file for TLS"),
    ("--tls-key", "tls_key_file", "client key file for TLS"),
)
_INT_FLAGS = frozenset({"max_replicas", "kv_replicas"})
# A command that does not name a service still needs a Config; these values are never used.
_ANONYMOUS = {"domain": "polyn.cli", "source_root": "polyn.cli"}


def _metavar(field: str) -> str:
    if field == "servers":
        return "URL"
    if field in _INT_FLAGS:
        return "N"
    if field.endswith(("_dir",)):
        return "DIR"
    if field.endswith(("_file", "credentials", "seed")):
        return "FILE"
    return "NAME"


def _config_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("configuration (flags beat environment beat pyproject)")
    for flag, field, text in _CONFIG_FLAGS:
        group.add_argument(
            flag,
            dest=field,
            type=int if field in _INT_FLAGS else str,
            default=None,
            metavar=_metavar(field),
            help=text,
        )
    group.add_argument(
        "--pyproject", default=None, metavar="FILE", help="read [tool.polyn] from this file"
    )
    _add_log_level(options)
    return options


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``polyn`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="polyn",
        description=(
            "Polyn for Python: validated CloudEvents on NATS JetStream. "
            "Manage schemas, JetStream migrations and a development nats-server."
        ),
    )
    parser.add_argument("--version", action="version", version=f"polyn {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the NATS connection's events too"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    config = _config_options()

    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=None,
        help="log level (default warning; debug adds tracebacks of failures)",
    )
    logs = _log_options()

    migrate = commands.add_parser(
        "migrate", parents=[config], help="run the pending JetStream migrations"
    )
    _migration_run_options(migrate)
    migrate.set_defaults(handler=_migrate)

    rollback = commands.add_parser(
        "rollback", parents=[config], help="roll back the last migration run"
    )
    _migration_run_options(rollback)
    rollback.set_defaults(handler=_rollback)

    migrations = commands.add_parser("migrations", help="inspect migrations")
    migrations_commands = migrations.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    migrations_commands.required = True
    status = migrations_commands.add_parser(
        "status", parents=[config], help="list applied and pending migrations"
    )
    status.set_defaults(handler=_status)

    gen = commands.add_parser("gen", help="generate files")
    gen_commands = gen.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    gen_commands.required = True
    gen_migration = gen_commands.add_parser(
        "migration",
        parents=[config],
        help="write a new migration file",
        description=(
            "Write migrations/<timestamp>_<name>.py: an empty change(m); with --stream and "
            "--subjects a create_stream; with --stream and --consumer TYPE the durable "
            "consumer a PullConsumer / Pipeline of TYPE reads (its name computed from the "
            "service's source_root, ack_policy explicit)."
        ),
    )
    gen_migration.add_argument("name", help="snake_case name, e.g. create_orders")
    gen_migration.add_argument(
        "--stream", metavar="NAME", help="the stream to create, or that holds --consumer's events"
    )
    gen_migration.add_argument(
        "--subjects", nargs="+", metavar="SUBJECT", help="create --stream with these subjects"
    )
    gen_migration.add_argument(
        "--consumer", metavar="TYPE", help="create the durable consumer of this event type"
    )
    gen_migration.add_argument(
        "--source", metavar="SOURCE", help="the consumer's source option, if it has one"
    )
    gen_migration.set_defaults(handler=_gen_migration)

    schemas = commands.add_parser("schemas", help="manage the payload schemas")
    schemas_commands = schemas.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    schemas_commands.required = True
    init = schemas_commands.add_parser(
        "init", parents=[config], help="create a schemas folder with an example schema"
    )
    init.add_argument("dir", nargs="?", help="the folder (default: the config's schemas_dir)")
    init.set_defaults(handler=_schemas_init)
    for name, handler, text in (
        ("load", _schemas_load, "put the folder's schemas into the schema bucket"),
        ("check", _schemas_check, "compare the folder with the schema bucket; write nothing"),
    ):
        command = schemas_commands.add_parser(name, parents=[config], help=text)
        command.add_argument(
            "dir", nargs="?", help="the schemas folder (default: the config's schemas_dir)"
        )
        command.add_argument(
            "--prune",
            nargs="*",
            default=None,
            metavar="KEY",
            help=(
                "delete these bucket keys, which are not on disk (other services may own them; "
                "without KEY: asks on a terminal, refuses otherwise)"
            ),
        )
        command.add_argument(
            "--prune-all",
            action="store_true",
            help="delete every bucket key that is not on disk (load: with --yes, or asks)",
        )
        if name == "load":
            command.add_argument(
                "--yes", action="store_true", help="confirm --prune-all without asking"
            )
            command.add_argument(
                "--allow-breaking",
                action="store_true",
                help="write backwards-incompatible changes too",
            )
        else:
            typed_cli.add_check_option(command)
        command.set_defaults(handler=handler)
    typed_cli.add_codegen_command(schemas_commands, config)

    from polyn.consumers import deadletters

    deadletters.add_command(
        commands, config, lambda args: _load_config(args, service=False), _connected
    )

    server = commands.add_parser(
        "server", parents=[logs], help="run a nats-server with JetStream for development"
    )
    server.add_argument("--port", type=int, default=4222, help="client port (default 4222)")
    server.add_argument(
        "--store-dir",
        default=str(Path(".polyn") / "jetstream"),
        help="JetStream store (default .polyn/jetstream)",
    )
    server.set_defaults(handler=_server)

    from polyn.catalog._cli import add_catalog_command  # its own module: polyn/catalog/

    add_catalog_command(commands, config, _load_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``polyn`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    # The command's logging set-up is the process's only while the command runs: main() called
    # from a program (or a test) leaves the caller's loggers as they were.
    with _logging_for_command(args.verbose, getattr(args, "log_level", None)):
        try:
            return handler(args)
        except PolynError as exc:
            print(f"polyn: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("polyn: interrupted", file=sys.stderr)
            return 130


# -- helpers ---------------------------------------------------------------------------------


_COMMAND_LOGGERS = ("asyncio", "polyn.nats", "polyn.actors")


@contextlib.contextmanager
def _logging_for_command(verbose: bool, level_name: str | None = None) -> Iterator[None]:
    """Configure logging for one command and put everything back as it was afterwards.

    ``basicConfig`` and the levels set here are process-wide: without the restore, a program
    (or a test) calling :func:`main` in-process would keep ``polyn.nats`` at ``ERROR`` and
    ``polyn.actors`` at ``CRITICAL`` for the rest of its life.
    """
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {name: logging.getLogger(name).level for name in _COMMAND_LOGGERS}
    try:
        _configure_logging(verbose, level_name)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        for handler in root.handlers[:]:
            if handler not in saved_root[1]:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(saved_root[0])


def _configure_logging(verbose: bool, level_name: str | None = None) -> None:
    level = logging.INFO if verbose else logging.WARNING
    if level_name is not None:
        level = getattr(logging, level_name.upper())
    logging.basicConfig(
        level=level,
        format="polyn: %(levelname)s: %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The NATS client's event loop runs in a thread of its own; its asyncio chatter is not ours.
    logging.getLogger("asyncio").setLevel(max(level, logging.WARNING))
    if level > logging.INFO:
        # Connection trouble ends in one error line of its own; retries are noise here.
        logging.getLogger("polyn.nats").setLevel(logging.ERROR)
    if level > logging.DEBUG:
        # A failure in the migrations' tree is the command's own error line; the actor
        # layer's report of it (with its traceback) is shown with --log-level debug only.
        logging.getLogger("polyn.actors").setLevel(logging.CRITICAL)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    _add_log_level(options)
    return options


def _add_log_level(options: argparse.ArgumentParser) -> None:
    # Every command takes it after its name too; SUPPRESS keeps the top-level value when absent.
    options.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="log level (default warning; debug adds the traceback of a failure)",
    )


def _migration_run_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="read the migrations and check every step against the server; change nothing",
    )
    command.add_argument(
        "--break-lock",
        action="store_true",
        help="take the migration lock even if another run holds it (a run known to be dead)",
    )
    command.add_argument(
        "--lock-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the lock's lease: how long a killed run blocks others (default 30)",
    )
    command.add_argument(
        "--lock-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for another run's lock before failing (default 600)",
    )


def _load_config(args: argparse.Namespace, *, service: bool = True) -> Config:
    overrides: dict[str, Any] = {field: getattr(args, field, None) for _, field, _ in _CONFIG_FLAGS}
    pyproject = getattr(args, "pyproject", None)
    try:
        return Config.load(pyproject=pyproject, **overrides)
    except ConfigError:
        if service:
            raise
        anonymous = {key: overrides.get(key) or value for key, value in _ANONYMOUS.items()}
        return Config.load(pyproject=pyproject, **{**overrides, **anonymous})


def _connected(config: Config, work: Callable[[Transport], Awaitable[int]]) -> int:
    from polyn.migration import open_transport

    async def run() -> int:
        async with open_transport(config) as transport:
            return await work(transport)

    return trio.run(run)


def _say(line: str) -> None:
    print(line, flush=True)


# -- migrations ------------------------------------------------------------------------------


def _lock_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for flag in ("lock_ttl", "lock_wait"):
        value = getattr(args, flag, None)
        if value is not None:
            if not value > 0:
                raise ConfigError(f"--{flag.replace('_', '-')} must be > 0 seconds, not {value}")
            options[flag] = value
    return options


def _run_migrations(args: argparse.Namespace, direction: Any) -> int:
    from polyn.migration import run_async

    config = _load_config(args)
    lock = _lock_options(args)

    async def work() -> int:
        result = await run_async(
            config,
            direction=direction,
            dry_run=args.dry_run,
            progress=_say,
            break_lock=args.break_lock,
            **lock,
        )
        count = len(result.steps)
        noun = "migration" if count == 1 else "migrations"
        where = f"{config.source_root} in bucket {config.migrations_bucket}"
        if args.dry_run:
            _say(f"Dry run: {count} {noun} would run; nothing was changed")
        elif count:
            verb = "Ran" if direction == "up" else "Rolled back"
            _say(f"{verb} {count} {noun}; {len(result.ids)} recorded for {where}")
        return 0

    return trio.run(work)


def _migrate(args: argparse.Namespace) -> int:
    return _run_migrations(args, "up")


def _rollback(args: argparse.Namespace) -> int:
    return _run_migrations(args, "down")


def _status(args: argparse.Namespace) -> int:
    from polyn.migration import status_async

    config = _load_config(args)

    async def work() -> int:
        status = await status_async(config)
        _say(
            f"Migrations of {config.source_root} (bucket {config.migrations_bucket}, "
            f"folder {config.migrations_dir}):"
        )
        for migration_id, found in status.applied:
            _say(f"  applied  {found.file_name if found else migration_id + ' (no file)'}")
        for migration in status.pending:
            _say(f"  pending  {migration.file_name}")
        _say(f"{len(status.applied)} applied, {len(status.pending)} pending")
        return 0

    return trio.run(work)


def _gen_migration(args: argparse.Namespace) -> int:
    from polyn.migration import generate_migration

    # The consumer's durable name is the service's: that needs its domain and source_root.
    config = _load_config(args, service=args.consumer is not None)
    path = generate_migration(
        args.name,
        config.migrations_dir,
        stream=args.stream,
        subjects=args.subjects,
        consumer=args.consumer,
        source=args.source,
        config=config,
    )
    _say(f"Created {path}")
    return 0


# -- schemas ---------------------------------------------------------------------------------


def _schemas_init(args: argparse.Namespace) -> int:
    from polyn.schema_loader import init_schemas

    config = _load_config(args, service=False)
    path = init_schemas(args.dir or config.schemas_dir)
    _say(f"Created {path}")
    _say("Each file is the JSON Schema of one message's data, named <message name>.json.")
    _say(f"Next: polyn schemas load {args.dir or config.schemas_dir}")
    return 0


def _schemas_load(args: argparse.Namespace) -> int:
    from polyn.schema_loader import check_schemas, load_schemas, read_schemas

    config = _load_config(args, service=False)
    files = read_schemas(args.dir or config.schemas_dir)  # file errors before connecting

    async def work(transport: Transport) -> int:
        planned = await check_schemas(transport, files, bucket=config.schema_store, prune=True)
        prune = await _prune_choice(args, planned.by_status("removed"), transport, writing=True)
        report = await load_schemas(
            transport,
            files,
            bucket=config.schema_store,
            replicas=config.kv_replicas,
            prune=prune,
            allow_breaking=args.allow_breaking,
        )
        for line in report.lines():
            _say(line)
        await _say_readers(transport, report.by_status("removed"), "was read by")
        if report.breaking:
            _say(
                f"Wrote {len(report.breaking)} backwards-incompatible change(s) (--allow-breaking)"
            )
        _say(report.summary())
        return 0

    return _connected(config, work)


def _schemas_check(args: argparse.Namespace) -> int:
    from polyn.schema_loader import breaking_report, check_schemas, read_schemas

    config = _load_config(args, service=False)
    files = read_schemas(args.dir or config.schemas_dir)

    async def work(transport: Transport) -> int:
        planned = await check_schemas(transport, files, bucket=config.schema_store, prune=True)
        prune = await _prune_choice(args, planned.by_status("removed"), transport, writing=False)
        report = await check_schemas(transport, files, bucket=config.schema_store, prune=prune)
        for line in report.lines():
            _say(line)
        await _say_readers(transport, report.by_status("removed"), "is read by")
        _say(report.summary())
        status = 0
        if report.breaking:
            print(f"polyn: error: {breaking_report(report.breaking)}", file=sys.stderr)
            status = 1
        if args.codegen:
            found = await typed_cli.check_codegen(transport, config, files, args.codegen, _say)
            status = max(status, found)
        return status

    return _connected(config, work)


async def _prune_choice(
    args: argparse.Namespace, candidates: list[str], transport: Transport, *, writing: bool
) -> bool | set[str]:
    """Which of ``candidates`` (bucket keys not on disk) to delete, from the flags.

    ``--prune KEY ...`` names them; ``--prune-all`` takes them all, which a load confirms with
    ``--yes`` or on a terminal. A bare ``--prune`` asks key by key on a terminal and refuses
    elsewhere: other services may own those keys, and their consumers would then take their
    events for schemaless.
    """
    from polyn.errors import SchemaError
    from polyn.schema_loader import readers

    if args.prune is None and not args.prune_all:
        return False
    if args.prune:
        return set(args.prune)
    if not candidates:
        return False
    if not writing or (args.prune_all and getattr(args, "yes", False)):
        return set(candidates)
    who = await readers(transport, candidates)
    listed = "\n".join(f"  {key}{_read_by(who[key])}" for key in candidates)
    if not sys.stdin.isatty():
        how = (
            "pass --yes to confirm --prune-all"
            if args.prune_all
            else "name the keys to delete (--prune KEY ...) or pass --prune-all --yes"
        )
        raise SchemaError(
            f"{len(candidates)} key(s) of the schema bucket are not on disk, and other services "
            f"may own them:\n{listed}\nRefusing to delete them unasked: {how}. "
            "Nothing was written."
        )
    _say(f"These key(s) of the schema bucket are not on disk:\n{listed}")
    if args.prune_all:
        answer = await trio.to_thread.run_sync(input, f"Delete all {len(candidates)}? [y/N] ")
        return set(candidates) if answer.strip().lower() in ("y", "yes") else False
    chosen = set()
    for key in candidates:
        answer = await trio.to_thread.run_sync(input, f"Delete {key}? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            chosen.add(key)
    return chosen


def _read_by(consumers: list[str]) -> str:
    return f" (read by consumer {', '.join(consumers)})" if consumers else ""


async def _say_readers(transport: Transport, keys: list[str], verb: str) -> None:
    from polyn.schema_loader import readers

    for key, consumers in (await readers(transport, keys)).items():
        if consumers:
            _say(
                f"Warning: {key} {verb} consumer {', '.join(consumers)}; its events fail as "
                "having no schema until the schema is back"
            )


# -- server ----------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _server(args: argparse.Namespace) -> int:
    from polyn.errors import ServerError
    from polyn.server import NatsServer

    store = Path(args.store_dir)
    store.mkdir(parents=True, exist_ok=True)
    # Two nats-servers on one JetStream store corrupt it, and nats-server itself does not
    # refuse to share one: the store is locked for as long as this command runs.
    with _store_lock(store) as lock:
        if args.port and _port_in_use("127.0.0.1", args.port):
            raise ServerError(
                f"port {args.port} on 127.0.0.1 is in use (another nats-server, or another "
                "program, listens there): stop it, or pass --port N (0 picks a free port)"
            )
        # Ctrl-C and SIGTERM both stop it, even when started in the background with SIGINT
        # ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        server = NatsServer(port=args.port, store_dir=store)
        try:
            server.start()
        except ServerError as exc:
            server.close()
            # nats-server's own fatal line says why; its whole log tail is for debugging.
            logging.getLogger("polyn.server").debug("%s", exc)
            raise ServerError(f"nats-server could not start: {_fatal_line(str(exc))}") from None
        with contextlib.closing(server):
            lock.write(f"pid {os.getpid()}, {server.url}")
            _say(f"nats-server with JetStream at {server.url} (store {store}); Ctrl-C stops it")
            try:
                while server.running:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                _say("Stopping nats-server")
                return 0
            print(
                f"polyn: error: nats-server stopped by itself:\n{server.log_tail()}",
                file=sys.stderr,
            )
            return 1


class _StoreLock:
    """An exclusive lock on a store folder (``flock`` on a file in it), held by this process.

    The file also says who holds it (``pid N, nats://...``), for the refusal's message. The
    kernel releases the lock when the process ends, however it ends, so a crashed server never
    leaves the store locked.
    """

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle = handle

    def write(self, holder: str) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(holder)
        self._handle.flush()


@contextlib.contextmanager
def _store_lock(store: Path) -> Iterator[_StoreLock]:
    from polyn.errors import ServerError

    path = store / "polyn-server.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock, no refusal
            yield _StoreLock(path, handle)
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ServerError(
                f"the store {store} is in use by another polyn server ({holder}): use that "
                "server, stop it, or pass --store-dir for a store of its own"
            ) from None
        try:
            yield _StoreLock(path, handle)
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a bind as nats-server's would fails)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As nats-server (Go) binds: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _fatal_line(error: str) -> str:
    """nats-server's fatal line (``[FTL] ...``) from a start-up error's log tail, if any."""
    for line in reversed(error.splitlines()):
        if "[FTL]" in line:
            return line.split("[FTL]", 1)[1].strip()
    return error.splitlines()[0] if error else "no reason given"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
