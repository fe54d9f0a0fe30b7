"""Fixtures of the migration tests: a transport, a config with buckets of the test's own, and a
helper writing migration files into a temporary folder."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from _support import Names

from polyn.config import Config
from polyn.nats import NatsTransport


@pytest.fixture
async def transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    transport = await NatsTransport.connect(nats_url)
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    return folder


@pytest.fixture
def config(nats_url: str, names: Names, migrations_dir: Path) -> Config:
    return Config(
        domain="com.test",
        source_root="user.backend",
        servers=[nats_url],
        migrations_bucket=names.bucket("migrations"),
        schema_store=names.bucket("schemas"),
        migrations_dir=migrations_dir,
    )


@pytest.fixture
def write_migration(migrations_dir: Path) -> Callable[[str, str], Path]:
    """``write_migration("1234_create_stream.py", source)`` writes a migration file."""

    def write(file_name: str, source: str) -> Path:
        path = migrations_dir / file_name
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    return write
