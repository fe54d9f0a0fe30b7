"""The gate around nats-py's internals (``polyn.nats._wire``): a tested version range and an
environment variable, each falling back to nats-py's public API, which then carries everything."""

from __future__ import annotations

import pytest
import trio
from _support import Names

from polyn.nats import NatsTransport, _wire


def test_the_installed_nats_py_is_in_the_tested_range_unless_forced_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_wire.PUBLIC_API_ENV, raising=False)
    low, high = _wire.TESTED
    assert low <= _wire.nats_py_version()[:2] < high, "update _wire.TESTED after testing"
    assert _wire.internals_allowed()
    monkeypatch.setenv(_wire.PUBLIC_API_ENV, "1")
    assert not _wire.internals_allowed()
    monkeypatch.setenv(_wire.PUBLIC_API_ENV, "0")
    assert _wire.internals_allowed()


def test_a_nats_py_outside_the_tested_range_gets_the_public_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_wire.PUBLIC_API_ENV, raising=False)
    current = _wire.nats_py_version()[:2]
    monkeypatch.setattr(_wire, "TESTED", ((current[0], current[1] + 1), (current[0] + 1, 0)))
    assert not _wire.internals_allowed()


@pytest.mark.parametrize("forced", [False, True], ids=["internals", "public-api"])
async def test_each_path_carries_publishes_subscriptions_and_requests(
    nats_url: str, names: Names, monkeypatch: pytest.MonkeyPatch, forced: bool
) -> None:
    if forced:
        monkeypatch.setenv(_wire.PUBLIC_API_ENV, "1")
    else:
        monkeypatch.delenv(_wire.PUBLIC_API_ENV, raising=False)
    transport = await NatsTransport.connect(nats_url)
    try:
        assert transport._fast is (not forced)
        subject = names.subject("wire")
        sub = await transport.subscribe(subject)
        for i in range(500):
            await transport.publish(subject, str(i).encode(), headers={"N": str(i)})
        got: list[int] = []
        with trio.fail_after(10):
            while len(got) < 500:
                got.extend(int(m.headers["N"]) for m in await sub.receive_batch(100))
        assert got == list(range(500))
        await sub.aclose()
    finally:
        await transport.close()
