"""The migration DSL: the ``m`` a migration's ``change(m)`` / ``up(m)`` / ``down(m)`` receives.

Calling ``m.create_stream(...)`` only *records* a command, as Elixir's ``Polyn.Migration`` does;
the runner executes the recorded commands afterwards, in the order they were written. So a
migration file can be read (``polyn migrate --dry-run``) without touching the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from polyn.errors import MigrationError

__all__ = ["Command", "Migration"]

CommandName = Literal[
    "create_stream", "update_stream", "delete_stream", "create_consumer", "delete_consumer"
]


@attrs.frozen
class Command:
    """One recorded JetStream command: its name and its options (JetStream's own spelling)."""

    name: CommandName
    options: Mapping[str, Any]

    def describe(self) -> str:
        """A one-line description, for ``--dry-run`` and progress output."""
        if self.name in ("create_stream", "update_stream", "delete_stream"):
            return f"{self.name} {self.options.get('name')}"
        stream = self.options.get("stream_name")
        return f"{self.name} {self.options.get('durable_name')} on stream {stream}"

    def reversed(self, file: str) -> Command:
        """The command that undoes this one, for rolling back a ``change`` migration.

        Only ``create_stream`` and ``create_consumer`` can be reversed; anything else needs an
        explicit ``up`` / ``down`` pair (the text is Elixir's, with Python's function names).
        """
        if self.name == "create_stream":
            return Command("delete_stream", {"name": self.options["name"]})
        if self.name == "create_consumer":
            return Command(
                "delete_consumer",
                {
                    "durable_name": self.options["durable_name"],
                    "stream_name": self.options["stream_name"],
                },
            )
        raise MigrationError(
            f"Migration command :{self.name} in file {file} can't be reversed. Please implement "
            "the `up(m)` and `down(m)` functions explicitly in your migration module."
        )


class Migration:
    """Records the JetStream commands of one migration; what ``change(m)`` receives as ``m``.

    Options are JetStream's own names, as nats-py's ``StreamConfig`` and ``ConsumerConfig``
    spell them (``subjects``, ``max_age``, ``num_replicas``, ``durable_name``, ``ack_policy``,
    ...); durations are in **seconds**. Unknown options are refused by the server when the
    migration runs.

    Example (``migrations/20240501093000_create_orders.py``)::

        def change(m):
            m.create_stream(name="ORDERS", subjects=["order.>"], max_age=7 * 24 * 3600)
            m.create_consumer(stream_name="ORDERS", durable_name="orders_billing",
                              filter_subject="order.placed.v1", ack_policy="explicit")
    """

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def create_stream(self, **options: Any) -> None:
        """Create a stream: ``name`` and ``subjects`` (a list of strings) are required."""
        _require(options, "create_stream", "name")
        subjects = options.get("subjects")
        if not isinstance(subjects, list | tuple) or not all(isinstance(s, str) for s in subjects):
            raise _Invalid(f"create_stream: subjects must be a list of strings, got {subjects!r}")
        self._record("create_stream", {**options, "subjects": list(subjects)})

    def update_stream(self, **options: Any) -> None:
        """Change a stream: ``name`` plus the options to change, merged over its current config.

        Setting an option to ``None`` removes it (the server's default applies), so
        ``m.update_stream(name="ORDERS", description=None)`` clears the description.
        """
        _require(options, "update_stream", "name")
        self._record("update_stream", options)

    def delete_stream(self, name: str) -> None:
        """Delete the stream ``name`` and every message and consumer in it."""
        _require({"name": name}, "delete_stream", "name")
        self._record("delete_stream", {"name": name})

    def create_consumer(self, **options: Any) -> None:
        """Create a durable consumer: ``stream_name`` and ``durable_name`` are required.

        JetStream consumers cannot be changed in place: delete and create again.
        """
        _require(options, "create_consumer", "stream_name")
        _require(options, "create_consumer", "durable_name")
        self._record("create_consumer", options)

    def delete_consumer(self, *, durable_name: str, stream_name: str) -> None:
        """Delete the durable consumer ``durable_name`` of ``stream_name``."""
        options = {"durable_name": durable_name, "stream_name": stream_name}
        _require(options, "delete_consumer", "durable_name")
        _require(options, "delete_consumer", "stream_name")
        self._record("delete_consumer", options)

    def _record(self, name: CommandName, options: Mapping[str, Any]) -> None:
        self.commands.append(Command(name, dict(options)))


class _Invalid(MigrationError):
    """A command's options are wrong before anything reaches the server."""


def _require(options: Mapping[str, Any], command: str, field: str) -> None:
    value = options.get(field)
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{command}: {field} must be a non-empty string, got {value!r}")
