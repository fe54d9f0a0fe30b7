"""Migration files: finding them, ordering them, and reading their commands.

A migration is a Python file ``<id>_<name>.py`` in the migrations folder, where ``<id>`` is a
UTC timestamp ``YYYYMMDDHHMMSS`` (``polyn gen migration`` writes one). The id is the text
before the first ``_``, a **string**, as in Elixir. Files are ordered by id as strings, which is
numeric order for ids of equal length (the protocol requires equal-length timestamps). Other
files (``__init__.py``, ``README.md``, ``helpers.py``) are ignored.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs

from polyn.errors import MigrationError
from polyn.migration._dsl import Command, Migration

__all__ = ["MigrationFile", "find_migrations"]

Direction = Literal["up", "down"]

_FILE_NAME = re.compile(r"(?P<id>[0-9]+)_(?P<name>[A-Za-z0-9_]+)\.py")


@attrs.frozen
class MigrationFile:
    """One migration file: ``id`` (``"20240501093000"``), ``name`` and ``path``."""

    id: str
    name: str
    path: Path

    @property
    def file_name(self) -> str:
        return self.path.name

    def commands(self, direction: Direction) -> list[Command]:
        """Import the file and record the commands it runs in ``direction``.

        ``up`` runs ``up(m)`` if defined, else ``change(m)``. ``down`` runs ``down(m)`` if
        defined, else reverses ``change(m)``: its ``create_stream`` / ``create_consumer``
        commands become deletes, in reverse order; any other command cannot be reversed.
        Raises :class:`~polyn.MigrationError` naming the file.
        """
        module = self._load()
        explicit = getattr(module, direction, None)
        change = getattr(module, "change", None)
        function = explicit if callable(explicit) else change
        if not callable(function):
            raise MigrationError(
                f"Migration file {self.file_name} does not define a {direction}(m) or "
                "change(m) function"
            )
        recorder = Migration()
        self._call(function, recorder)
        if direction == "down" and function is change:
            return [command.reversed(self.file_name) for command in reversed(recorder.commands)]
        return list(recorder.commands)

    def _load(self) -> Any:
        # A name of our own, never inserted in sys.modules for good: two projects' migrations
        # with the same file name cannot collide, and re-running reads the file afresh.
        module_name = f"polyn_migrations._{self.id}_{self.name}"
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None or spec.loader is None:
            raise MigrationError(f"Could not read migration file {self.path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and friends look themselves up here
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise MigrationError(
                f"Error running migration file {self.file_name} - {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            sys.modules.pop(module_name, None)
        return module

    def _call(self, function: Callable[[Migration], object], recorder: Migration) -> None:
        try:
            function(recorder)
        except MigrationError as exc:
            raise MigrationError(f"Error running migration file {self.file_name} - {exc}") from exc
        except Exception as exc:
            raise MigrationError(
                f"Error running migration file {self.file_name} - {type(exc).__name__}: {exc}"
            ) from exc


def find_migrations(directory: str | Path) -> list[MigrationFile]:
    """The migration files of ``directory``, sorted by id (empty when it does not exist).

    Two files with the same id are refused: their order would be undefined.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found: dict[str, MigrationFile] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        migration = MigrationFile(match["id"], match["name"], path)
        if migration.id in found:
            raise MigrationError(
                f"Two migration files have the id {migration.id}: "
                f"{found[migration.id].file_name} and {migration.file_name}; rename one"
            )
        found[migration.id] = migration
    return [found[key] for key in sorted(found)]
