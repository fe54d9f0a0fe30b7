"""The ``setup`` fixture of the consumer tests: see ``consumer_support.Setup``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _support import Names
from consumer_support import Setup

from polyn.nats import NatsTransport


@pytest.fixture
async def setup(nats_url: str, names: Names) -> AsyncIterator[Setup]:
    transport = await NatsTransport.connect(nats_url)
    setup = Setup(transport, names, nats_url)
    try:
        yield setup
    finally:
        try:
            await transport.delete_stream(setup.stream)
        except Exception:  # the test may have deleted it
            pass
        await transport.close()
