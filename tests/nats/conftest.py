from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyn.nats import NatsTransport


@pytest.fixture
async def transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    """A real transport connected to the session's nats-server, closed after the test."""
    transport = await NatsTransport.connect(nats_url)
    try:
        yield transport
    finally:
        await transport.close()
