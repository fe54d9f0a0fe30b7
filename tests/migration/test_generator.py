"""``generate_migration`` / ``polyn gen migration`` (conformance case 115, Python file names)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from polyn.errors import MigrationError
from polyn.migration import Migration, find_migrations, generate_migration


@pytest.mark.parametrize("name", ["my_migration", "MyMigration"])
def test_generated_file_is_timestamped_snake_case_with_an_empty_change(
    tmp_path: Path, name: str
) -> None:  # case 115
    path = generate_migration(name, tmp_path / "migrations")
    assert re.fullmatch(r"\d{14}_my_migration\.py", path.name)
    source = path.read_text()
    assert "from polyn.migration import Migration" in source
    assert "def change(m: Migration) -> None:" in source
    namespace: dict[str, object] = {}
    exec(compile(source, str(path), "exec"), namespace)
    recorder = Migration()
    namespace["change"](recorder)  # type: ignore[operator]
    assert recorder.commands == []


def test_a_second_migration_with_the_same_name_is_refused(tmp_path: Path) -> None:  # case 115
    generate_migration("my_migration", tmp_path)
    with pytest.raises(MigrationError, match="migration can't be created"):
        generate_migration("MyMigration", tmp_path)
    assert len(list(tmp_path.iterdir())) == 1


def test_timestamp_is_utc_and_unique_within_a_second(tmp_path: Path) -> None:
    moment = datetime.datetime(
        2024, 5, 1, 11, 30, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    first = generate_migration("create_orders", tmp_path, now=moment)
    second = generate_migration("create_invoices", tmp_path, now=moment)
    assert first.name == "20240501093000_create_orders.py"
    assert second.name == "20240501093001_create_invoices.py"
    assert [m.name for m in find_migrations(tmp_path)] == ["create_orders", "create_invoices"]


@pytest.mark.parametrize("name", ["", "  ", "9lives", "drop-table;"])
def test_unusable_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MigrationError):
        generate_migration(name, tmp_path)
