"""The migration DSL: the ``m`` a migration's ``change(m)`` / ``up(m)`` / ``down(m)`` receives.

Calling ``m.create_stream(...)`` only *records* a command, as Elixir's ``Polyn.Migration`` does;
the runner executes the recorded commands afterwards, in the order they were written. So a
migration file can be read, and every command checked (``polyn migrate --dry-run``), without
touching the server. A command's options are checked as it is recorded (see
:mod:`polyn.migration._config`), and stored as the dict JetStream receives (seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import attrs

from polyn.errors import MigrationError
from polyn.migration._config import (
    ConsumerConfig,
    StreamConfig,
    check_update_options,
    is_valid_name,
)

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

    Streams and consumers are given as typed configurations (:class:`StreamConfig`,
    :class:`ConsumerConfig`) or as keyword arguments with the same names (JetStream's own, as
    nats-py spells them); durations are in **seconds**. Either way every option is checked when
    the command is recorded: an unknown name or a wrong value fails the migration before
    anything reaches the server, naming the option.

    Example (``migrations/20240501093000_create_orders.py``)::

        def change(m):
            m.create_stream(StreamConfig(name="ORDERS", subjects=["order.>"],
                                         max_age=7 * 24 * 3600))
            m.create_consumer(stream_name="ORDERS",
                              durable_name="orders_payments_order_placed_v1",
                              filter_subject="order.placed.v1")   # ack_policy "explicit"
    """

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def create_stream(self, config: StreamConfig | None = None, /, **options: Any) -> None:
        """Create a stream: a :class:`StreamConfig`, or its options as keyword arguments
        (``name`` and ``subjects``, a list of strings, are required)."""
        typed = _typed(StreamConfig, "create_stream", config, options)
        self._record("create_stream", typed.to_options())

    def update_stream(self, **options: Any) -> None:
        """Change a stream: ``name`` plus the options to change, merged over its current config.

        Setting an option to ``None`` removes it (the server's default applies), so
        ``m.update_stream(name="ORDERS", description=None)`` clears the description. Option
        names and values are checked as :class:`StreamConfig` checks them.
        """
        if "name" not in options:
            raise MigrationError("update_stream: name must be a stream name, got None")
        self._record("update_stream", check_update_options(options))

    def delete_stream(self, name: str) -> None:
        """Delete the stream ``name`` and every message and consumer in it."""
        _require_name("delete_stream", "name", name)
        self._record("delete_stream", {"name": name})

    def create_consumer(self, config: ConsumerConfig | None = None, /, **options: Any) -> None:
        """Create a durable consumer: a :class:`ConsumerConfig`, or its options as keyword
        arguments (``stream_name`` and ``durable_name`` are required).

        JetStream consumers cannot be changed in place: delete and create again.
        """
        typed = _typed(ConsumerConfig, "create_consumer", config, options)
        self._record("create_consumer", typed.to_options())

    def delete_consumer(self, *, durable_name: str, stream_name: str) -> None:
        """Delete the durable consumer ``durable_name`` of ``stream_name``."""
        _require_name("delete_consumer", "durable_name", durable_name)
        _require_name("delete_consumer", "stream_name", stream_name)
        self._record("delete_consumer", {"durable_name": durable_name, "stream_name": stream_name})

    def _record(self, name: CommandName, options: Mapping[str, Any]) -> None:
        self.commands.append(Command(name, dict(options)))


C = TypeVar("C", StreamConfig, ConsumerConfig)


def _typed(cls: type[C], command: str, config: object, options: Mapping[str, Any]) -> C:
    if config is None:
        return cls.from_options(options)
    if not isinstance(config, cls):
        raise MigrationError(
            f"{command} takes a {cls.__name__} or keyword arguments, not {config!r}"
        )
    if options:
        raise MigrationError(
            f"{command}: give a {cls.__name__} or keyword arguments, not both "
            f"(got {', '.join(sorted(options))} too); use attrs.evolve(config, ...) to change one"
        )
    return config


def _require_name(command: str, field: str, value: object) -> None:
    if not is_valid_name(value):
        raise MigrationError(
            f"{command}: {field} must be a name without spaces, '.', '*', '>', '/' or '\\', "
            f"got {value!r}"
        )
