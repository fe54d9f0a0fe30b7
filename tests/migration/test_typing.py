"""What the type checker and the linter see in migrations: typed configurations catch a
misspelled or mistyped option before anything runs, and the files ``polyn gen migration``
writes are clean as generated (a user's CI runs ``ruff`` and ``mypy --strict`` over them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polyn.config import Config
from polyn.migration import generate_migration

pytestmark = pytest.mark.slow


def run_tool(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_mypy_catches_a_misspelled_or_mistyped_option_and_passes_generated_files(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "migrations"
    config = Config(domain="com.acme", source_root="orders.payments")
    generated = [
        generate_migration("empty", folder),
        generate_migration("orders_stream", folder, stream="ORDERS", subjects=["order.>"]),
        generate_migration(
            "billing",
            folder,
            stream="ORDERS",
            consumer="order.placed.v1",
            source="billing",
            config=config,
        ),
    ]
    (folder / "29990101000000_typos.py").write_text(
        "from polyn.migration import ConsumerConfig, Migration, StreamConfig\n\n\n"
        "def change(m: Migration) -> None:\n"
        '    m.create_stream(StreamConfig(name="S", subjects=["a"], max_agee=60))\n'
        '    m.create_consumer(ConsumerConfig(stream_name="S", durable_name="c",\n'
        '                                     ack_policy="yes"))\n'
    )
    checked = run_tool(
        "mypy",
        "--strict",
        "--no-error-summary",
        "--cache-dir",
        str(tmp_path / "cache"),
        ".",
        cwd=folder,
    )
    lines = checked.stdout.splitlines()
    assert all(line.startswith("29990101000000_typos.py:") for line in lines), checked.stdout
    assert any('Unexpected keyword argument "max_agee"' in line for line in lines), lines
    assert any('"ack_policy"' in line and "Literal" in line for line in lines), lines

    (folder / "29990101000000_typos.py").unlink()
    linted = run_tool("ruff", "check", "--isolated", "--select", "E,F,W,I,UP,B", ".", cwd=folder)
    assert linted.returncode == 0, linted.stdout
    assert len(generated) == 3
