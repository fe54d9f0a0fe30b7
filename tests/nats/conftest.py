from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyn.nats import NatsTransport


@pytest.fixture(params=[True, False], ids=["fast", "public-api"])
async def transport(nats_url: str, request: pytest.FixtureRequest) -> AsyncIterator[NatsTransport]:
    """A real transport connected to the session's nats-server, closed after the test.

    Every test runs twice: with the direct wire paths (``fast=True``, the default) and with
    nats-py's public API only, the fallback used when nats-py's internals change.
    """
    transport = await NatsTransport.connect(nats_url, fast=request.param)
    try:
        yield transport
    finally:
        await transport.close()
