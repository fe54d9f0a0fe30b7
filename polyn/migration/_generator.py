"""``polyn gen migration NAME``: write a new migration file.

As Elixir's ``mix polyn.gen.migration``: the name is snake_cased (``CreateOrders`` and
``create_orders`` both give ``<timestamp>_create_orders.py``), the timestamp is UTC
``YYYYMMDDHHMMSS``, the folder is created when missing, and a second migration with the same
name is refused. Two migrations generated within one second get consecutive ids.

Python additions: ``--stream S --subjects ...`` writes a ``create_stream``, and ``--consumer
TYPE`` a ``create_consumer`` that Polyn's consumers accept as it is: the durable name a
PullConsumer / Pipeline of that type computes (:func:`polyn.naming.consumer_name`), its subject
as filter, ``ack_policy="explicit"``. Generated files pass ``ruff`` and ``mypy --strict``.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from pathlib import Path

from polyn import naming
from polyn.config import Config
from polyn.errors import MigrationError
from polyn.migration._checks import subject_within
from polyn.migration._config import is_valid_name, is_valid_subject
from polyn.migration._files import find_migrations

__all__ = ["generate_migration"]

_TEMPLATE = '''"""Migration {name}: JetStream streams and consumers this service owns.

Record commands on ``m``: ``polyn migrate`` runs them (``--dry-run`` checks
them against the server first), ``polyn rollback`` reverses ``create_stream``
and ``create_consumer``. For anything else, write ``up(m)`` and ``down(m)``
instead of ``change(m)``. Options use JetStream's names; durations are in
seconds. Example::

    m.create_stream(StreamConfig(name="ORDERS", subjects=["order.>"]))
    m.create_consumer(
        ConsumerConfig(
            stream_name="ORDERS",
            durable_name="<source_root>_order_placed_v1",
            filter_subject="order.placed.v1",
        )
    )

``polyn gen migration NAME --stream ORDERS --subjects "order.>"
--consumer order.placed.v1`` writes these, with the durable name that a
PullConsumer or Pipeline of that type looks up.
"""

{imports}


def change(m: Migration) -> None:
{body}
'''

_STREAM = """\
    m.create_stream(
        StreamConfig(
            name={name},
            subjects={subjects},
            # max_age=7 * 24 * 3600,  # seconds to keep events (default: forever)
            # num_replicas=3,  # capped by the config's max_replicas
        )
    )
"""

_CONSUMER = """\
    # The durable consumer a polyn.PullConsumer or polyn.Pipeline reads
    # in service {source_root} for type = {event_type}{source_text}:
    # polyn.naming.consumer_name(type, config{source_arg}).
    m.create_consumer(
        ConsumerConfig(
            stream_name={stream},
            durable_name={durable},
            filter_subject={subject},
            ack_policy="explicit",  # Polyn settles each message by itself
            ack_wait=30,  # seconds until an unsettled message comes again
            # max_deliver=10,  # deliveries before the server gives up
        )
    )
"""


def _underscore(name: str) -> str:
    # Macro.underscore: "MyMigration" -> "my_migration", "HTTPCheck" -> "http_check".
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name.strip())
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return re.sub(r"[\s\-]+", "_", text).lower()


def generate_migration(
    name: str,
    migrations_dir: str | Path,
    *,
    now: datetime.datetime | None = None,
    stream: str | None = None,
    subjects: Sequence[str] | None = None,
    consumer: str | None = None,
    source: str | None = None,
    config: Config | None = None,
) -> Path:
    """Write ``<migrations_dir>/<YYYYMMDDHHMMSS>_<snake_name>.py``.

    With no other argument its ``change`` is empty. With ``stream`` and ``subjects`` it creates
    that stream. With ``stream`` and ``consumer`` (an event type) it creates the durable
    consumer a :class:`~polyn.PullConsumer` or :class:`~polyn.Pipeline` of that type (and
    ``source``) reads in the service ``config`` names: ``naming.consumer_name(consumer, config,
    source)``, filtered on the type without the domain, ``ack_policy="explicit"``; the stream
    is created in the same migration when ``subjects`` are given, else it must exist by then.

    Raises :class:`~polyn.MigrationError` for a missing or unusable name, a migration with that
    name that exists already, or arguments that do not fit together, and
    :class:`~polyn.NamingError` for an invalid event type or source.

    Example::

        generate_migration("CreateOrders", "migrations")
        # PosixPath('migrations/20240501093000_create_orders.py')
        generate_migration("ConsumeOrders", "migrations", stream="ORDERS",
                           subjects=["order.>"], consumer="order.placed.v1", config=config)
    """
    if not name or not name.strip():
        raise MigrationError("you must supply the snake_cased name of the migration")
    snake = _underscore(name)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", snake):
        raise MigrationError(
            f"migration names are letters, digits and underscores, starting with a letter; "
            f"got {name}"
        )
    body, imports = _body(stream, subjects, consumer, source, config)
    folder = Path(migrations_dir)
    folder.mkdir(parents=True, exist_ok=True)
    existing = find_migrations(folder)
    if any(migration.name == snake for migration in existing):
        raise MigrationError(
            f"migration can't be created, there is already a migration file with name {snake}."
        )
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    taken = {migration.id for migration in existing}
    while (stamp := moment.strftime("%Y%m%d%H%M%S")) in taken:
        moment += datetime.timedelta(seconds=1)
    path = folder / f"{stamp}_{snake}.py"
    text = _TEMPLATE.format(name=snake, imports=imports, body=body)
    path.write_text(text, encoding="utf-8")
    return path


def _q(value: object) -> str:
    """A Python literal of a string or list of strings, in double quotes as ruff formats it."""
    return json.dumps(value, ensure_ascii=False)


def _body(
    stream: str | None,
    subjects: Sequence[str] | None,
    consumer: str | None,
    source: str | None,
    config: Config | None,
) -> tuple[str, str]:
    """The body of ``change`` and the import line it needs."""
    if stream is None:
        if subjects or consumer or source:
            raise MigrationError(
                "name the stream (--stream): the one to create with --subjects, or the one "
                "that holds the --consumer's events"
            )
        return "    pass", "from polyn.migration import Migration"
    if not is_valid_name(stream):
        raise MigrationError(
            f"{stream} cannot name a stream: no spaces, '.', '*', '>', '/' or '\\'"
        )
    if not subjects and consumer is None:
        raise MigrationError(
            f"give the subjects of stream {stream} (--subjects), or a --consumer to add to it"
        )
    if source is not None and consumer is None:
        raise MigrationError("--source names the source of a --consumer; give the consumer too")
    parts: list[str] = []
    names = ["Migration"]
    if subjects:
        for subject in subjects:
            if not is_valid_subject(subject):
                raise MigrationError(f"{subject} is not a valid subject for stream {stream}")
        parts.append(_STREAM.format(name=_q(stream), subjects=_q(list(subjects))))
        names.append("StreamConfig")
    if consumer is not None:
        if config is None:
            raise MigrationError(
                "a consumer's durable name needs the service's domain and source_root"
            )
        durable = naming.consumer_name(consumer, config, source)
        subject = naming.trim_domain_prefix(consumer, config.domain)
        if subjects and not any(subject_within(subject, mine) for mine in subjects):
            raise MigrationError(
                f"the subjects of stream {stream} ({', '.join(subjects)}) do not capture "
                f"{subject}, the subject of the consumer's events"
            )
        parts.append(
            _CONSUMER.format(
                event_type=_q(consumer),
                source_text=f"\n    # and source = {_q(source)}" if source else "",
                source_root=_q(config.source_root),
                source_arg=", source" if source else "",
                stream=_q(stream),
                durable=_q(durable),
                subject=_q(subject),
            )
        )
        names.append("ConsumerConfig")
    return "".join(parts).rstrip("\n"), f"from polyn.migration import {', '.join(sorted(names))}"
