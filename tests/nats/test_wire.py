"""The gate around nats-py's internals (``polyn.nats._wire``): a tested version range and an
environment variable, each falling back to nats-py's public API, which then carries everything."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
import trio.lowlevel
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


async def test_frames_are_built_in_the_trio_thread_and_an_idle_socket_is_written_from_it(
    nats_url: str, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17: the PUB frame is assembled on the trio side; with the socket idle the trio
    # thread writes it itself and the loop thread is not involved at all.
    monkeypatch.delenv(_wire.PUBLIC_API_ENV, raising=False)
    encoded_in: set[str] = set()
    sent_from: list[str] = []
    encode, try_send = _wire.encode_publish, _wire.DirectWriter.try_send

    def spy_encode(*args: Any) -> bytes:
        encoded_in.add(threading.current_thread().name)
        return encode(*args)

    def spy_send(self: _wire.DirectWriter, *args: Any) -> bool:
        sent_from.append(threading.current_thread().name)
        return try_send(self, *args)

    monkeypatch.setattr(_wire, "encode_publish", spy_encode)
    monkeypatch.setattr(_wire.DirectWriter, "try_send", spy_send)
    transport = await NatsTransport.connect(nats_url)
    try:
        subject = names.subject("direct")
        sub = await transport.subscribe(subject)
        await transport.publish(subject, b"one", headers={"K": "v"})
        with trio.fail_after(5):
            msg = await sub.receive()
        assert (msg.data, msg.headers["K"]) == (b"one", "v")
        assert encoded_in == {threading.current_thread().name}
        assert sent_from and set(sent_from) == {threading.current_thread().name}
    finally:
        await transport.close()


async def test_big_bursts_mixed_with_loop_side_writes_arrive_whole_and_in_order(
    nats_url: str, names: Names
) -> None:
    # Bursts bigger than the socket takes at once: the trio thread's partial sends leave bytes
    # for the loop, which also writes its own commands (subscriptions, flush PINGs) meanwhile.
    # One interleaving out of order would corrupt the stream and the server would drop us.
    sender = await NatsTransport.connect(nats_url)
    receiver = await NatsTransport.connect(nats_url)
    try:
        subject = names.subject("burst")
        sub = await receiver.subscribe(subject, max_pending=1_000_000)
        await receiver.flush()
        body = bytes(range(256)) * 256  # 64 KiB
        count = 400

        async def loop_side_writes() -> None:
            for i in range(20):
                extra = await sender.subscribe(names.subject(f"extra.{i}"))
                await sender.flush()
                await extra.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop_side_writes)
            for i in range(count):
                await sender.publish(subject, body, headers={"N": str(i)})
                if i % 8 == 7:
                    await trio.lowlevel.checkpoint()  # a pass: the trio side writes
        await sender.flush()
        got: list[int] = []
        with trio.fail_after(30):
            while len(got) < count:
                for msg in await sub.receive_batch(100):
                    assert msg.data == body
                    got.append(int(msg.headers["N"]))
        assert got == list(range(count))
        assert sender.state.disconnects == 0 and sender.state.connected
    finally:
        await sender.close()
        await receiver.close()
