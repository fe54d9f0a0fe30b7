"""``generate_migration`` / ``polyn gen migration`` (conformance case 115, Python file names)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from polyn.config import Config
from polyn.errors import MigrationError
from polyn.migration import Migration, find_migrations, generate_migration
from polyn.naming import consumer_name


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


def test_stream_and_consumer_templates_record_what_polyn_consumers_look_up(
    tmp_path: Path,
) -> None:
    config = Config(domain="com.acme", source_root="orders.payments")
    path = generate_migration(
        "consume_orders",
        tmp_path,
        stream="ORDERS",
        subjects=["order.>"],
        consumer="com.acme.order.placed.v1",
        source="refunds",
        config=config,
    )
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    recorder = Migration()
    namespace["change"](recorder)  # type: ignore[operator]
    assert [(c.name, dict(c.options)) for c in recorder.commands] == [
        ("create_stream", {"name": "ORDERS", "subjects": ["order.>"]}),
        (
            "create_consumer",
            {
                "stream_name": "ORDERS",
                "durable_name": consumer_name("order.placed.v1", config, "refunds"),
                "filter_subject": "order.placed.v1",
                "ack_policy": "explicit",
                "ack_wait": 30,
            },
        ),
    ]
    assert recorder.commands[1].options["durable_name"] == "orders_payments_refunds_order_placed_v1"


def test_a_consumer_template_for_an_existing_stream_creates_only_the_consumer(
    tmp_path: Path,
) -> None:
    config = Config(domain="com.acme", source_root="shop")
    path = generate_migration(
        "ledger", tmp_path, stream="PAYMENTS", consumer="payment.captured.v1", config=config
    )
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    recorder = Migration()
    namespace["change"](recorder)  # type: ignore[operator]
    assert [c.describe() for c in recorder.commands] == [
        "create_consumer shop_payment_captured_v1 on stream PAYMENTS"
    ]
