"""``polyn gen migration NAME``: write a new, empty migration file.

As Elixir's ``mix polyn.gen.migration``: the name is snake_cased (``CreateOrders`` and
``create_orders`` both give ``<timestamp>_create_orders.py``), the timestamp is UTC
``YYYYMMDDHHMMSS``, the folder is created when missing, and a second migration with the same
name is refused. Two migrations generated within one second get consecutive ids.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from polyn.errors import MigrationError
from polyn.migration._files import find_migrations

__all__ = ["generate_migration"]

_TEMPLATE = '''"""Migration {name}: JetStream streams and consumers owned by this service.

Record commands on ``m``; ``polyn migrate`` runs them, ``polyn rollback`` reverses
``create_stream`` / ``create_consumer``. For anything else, write ``up(m)`` and ``down(m)``
instead of ``change(m)``. Options use JetStream's names; durations are in seconds. Example::

    m.create_stream(name="ORDERS", subjects=["order.>"])
    m.create_consumer(stream_name="ORDERS", durable_name="orders_billing",
                      filter_subject="order.placed.v1")
"""

from polyn.migration import Migration


def change(m: Migration) -> None:
    pass
'''


def _underscore(name: str) -> str:
    # Macro.underscore: "MyMigration" -> "my_migration", "HTTPCheck" -> "http_check".
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name.strip())
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return re.sub(r"[\s\-]+", "_", text).lower()


def generate_migration(
    name: str, migrations_dir: str | Path, *, now: datetime.datetime | None = None
) -> Path:
    """Write ``<migrations_dir>/<YYYYMMDDHHMMSS>_<snake_name>.py`` with an empty ``change``.

    Raises :class:`~polyn.MigrationError` for a missing or unusable name and when a migration
    with that name exists already.

    Example::

        generate_migration("CreateOrders", "migrations")
        # PosixPath('migrations/20240501093000_create_orders.py')
    """
    if not name or not name.strip():
        raise MigrationError("you must supply the snake_cased name of the migration")
    snake = _underscore(name)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", snake):
        raise MigrationError(
            f"migration names are letters, digits and underscores, starting with a letter; "
            f"got {name!r}"
        )
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
    path.write_text(_TEMPLATE.format(name=snake), encoding="utf-8")
    return path
