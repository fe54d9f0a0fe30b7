"""The ``core`` fixture: see ``core_support.Core``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _support import Names
from core_support import Core

from polyn.nats import NatsTransport


@pytest.fixture
async def core(nats_url: str, names: Names) -> AsyncIterator[Core]:
    transport = await NatsTransport.connect(nats_url)
    try:
        setup = Core(transport, nats_url, names)
        await setup.load_schemas()
        yield setup
        try:
            await transport.kv_delete_bucket(setup.bucket)
        except Exception:
            pass
    finally:
        await transport.close()
