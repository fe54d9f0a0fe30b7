"""Reconnection, cancellation and shutdown of the real transport."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio
from _support import Names

from polyn.errors import NatsConnectionError
from polyn.nats import NatsTransport, PubAck
from polyn.server import NatsServer


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - polls foreign state
            await trio.sleep(0.05)


async def js_publish_retrying(transport: NatsTransport, subject: str, body: bytes) -> None:
    """Publish with an ack, retrying with the same Nats-Msg-Id while the server is away."""
    with trio.fail_after(30):
        while True:
            try:
                await transport.js_publish(
                    subject, body, headers={"Nats-Msg-Id": body.decode()}, timeout=1
                )
                return
            except Exception:
                await trio.sleep(0.1)


async def test_reconnects_after_a_server_kill_and_loses_no_jetstream_message(
    fresh_server: NatsServer, names: Names
) -> None:
    transport = await NatsTransport.connect(fresh_server.url, reconnect_time_wait=0.1)
    try:
        stream = names.stream()
        await transport.create_stream(
            {"name": stream, "subjects": [names.subject(">")], "storage": "file"}
        )
        await transport.create_consumer(stream, {"durable_name": "c", "ack_policy": "explicit"})
        sub = await transport.subscribe(names.subject("core"))
        for i in range(50):
            await js_publish_retrying(transport, names.subject("e"), f"before-{i}".encode())

        await trio.to_thread.run_sync(fresh_server.kill)
        await wait_until(lambda: not transport.state.connected)
        assert transport.connected_url is None
        await trio.to_thread.run_sync(fresh_server.restart)
        await wait_until(lambda: transport.state.connected)
        assert transport.state.disconnects == 1
        assert transport.state.reconnects == 1

        for i in range(50):
            await js_publish_retrying(transport, names.subject("e"), f"after-{i}".encode())
        got: list[bytes] = []
        with trio.fail_after(20):
            while len(got) < 100:
                batch = await transport.fetch(stream, "c", 100, expires=1)
                for msg in batch:
                    await msg.ack()
                got.extend(m.data for m in batch)
        assert sorted(got) == sorted(
            [f"before-{i}".encode() for i in range(50)] + [f"after-{i}".encode() for i in range(50)]
        )
        # the core subscription was renewed by the reconnect
        await transport.publish(names.subject("core"), b"still here")
        with trio.fail_after(5):
            assert (await sub.receive()).data == b"still here"
    finally:
        await transport.close()


async def test_publishes_queued_during_an_outage_are_sent_after_reconnect(
    fresh_server: NatsServer, names: Names
) -> None:
    # One connection both listens and sends: it renews its subscription on reconnect before it
    # sends what was queued, so the test does not race two independent reconnects.
    transport = await NatsTransport.connect(fresh_server.url, reconnect_time_wait=0.1)
    try:
        sub = await transport.subscribe(names.subject("q"))
        await trio.to_thread.run_sync(fresh_server.kill)
        await wait_until(lambda: not transport.state.connected)
        for i in range(10):
            await transport.publish(names.subject("q"), str(i).encode())
        await trio.to_thread.run_sync(fresh_server.restart)
        await wait_until(lambda: transport.state.connected)
        got = []
        with trio.fail_after(10):
            while len(got) < 10:
                got.append((await sub.receive()).data)
        assert got == [str(i).encode() for i in range(10)]
    finally:
        await transport.close()


async def test_cancelled_loop_operation_returns_promptly_and_leaves_no_task(
    transport: NatsTransport,
) -> None:
    loop = transport._bridge.loop

    async def count_tasks() -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return await transport._bridge.run(count)

    before = await count_tasks()
    with trio.move_on_after(0.1) as scope:
        await transport._bridge.run(lambda: asyncio.sleep(30))
    assert scope.cancelled_caught
    assert await count_tasks() == before
    assert loop.is_running()


async def test_stopping_the_transport_ends_its_thread_and_leaves_no_other(nats_url: str) -> None:
    before = set(threading.enumerate())
    transport = await NatsTransport.connect(nats_url)
    await transport.subscribe("lifecycle.sub")
    await transport.kv_create("LIFECYCLE_BUCKET")
    await transport.close()
    leftover = {t for t in threading.enumerate() if t not in before and t.is_alive()}
    # trio's worker-thread cache may keep idle workers; no other thread may remain
    assert {t.name for t in leftover if not t.name.startswith("Trio thread")} == set()
    assert not transport.loop_thread.is_alive()


async def test_connection_closed_for_good_is_reported(fresh_server: NatsServer) -> None:
    transport = await NatsTransport.connect(
        fresh_server.url, max_reconnect_attempts=1, reconnect_time_wait=0.05
    )
    try:
        await trio.to_thread.run_sync(fresh_server.kill)
        with trio.fail_after(15):
            reason = await transport.wait_closed()
        assert "closed for good" in reason
        with pytest.raises(NatsConnectionError, match="closed for good"):
            await transport.publish("x", b"y")
    finally:
        await transport.close()


async def _ack_lost_in_a_crash(
    server: NatsServer, names: Names, headers: dict[str, str] | None
) -> tuple[object, float]:
    """Publish with an ack while the server is frozen (the PUB reaches the socket, no ack can
    come), then kill the server and start it again half a second later. Returns what the
    publish returned or raised, and how long after the restart it took."""
    import os
    import signal

    transport = await NatsTransport.connect(server.url, reconnect_time_wait=0.1)
    subject = names.subject("inflight")
    try:
        await transport.create_stream(
            {"name": names.stream(), "subjects": [subject], "storage": "file"}
        )
        result: list[object] = []

        async def publish() -> None:
            try:
                ack = await transport.js_publish(subject, b"x", headers=headers, timeout=30)
                result.append(ack)
            except Exception as exc:
                result.append(exc)

        nc = transport._nc  # nats-py's client: its counters say when the PUB left
        assert nc is not None
        sent_before = nc.stats["out_msgs"]
        async with trio.open_nursery() as nursery:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            nursery.start_soon(publish)
            # Wait until the PUB is written to the socket (the frozen server cannot answer):
            # counted as sent, nothing left in nats-py's pending buffer. Under load, a fixed
            # sleep let the kill come first, and the PUB then went to the restarted server.
            def written() -> bool:
                return nc.stats["out_msgs"] > sent_before and not nc.pending_data_size

            with trio.fail_after(5):
                while True:  # seen twice, 50 ms apart: counted, then flushed
                    if written():
                        await trio.sleep(0.05)
                        if written():
                            break
                    await trio.sleep(0.01)
            await trio.to_thread.run_sync(server.kill)
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(server.restart)
            restarted = trio.current_time()
        return result[0], trio.current_time() - restarted
    finally:
        await transport.close()


async def test_an_ack_lost_with_the_connection_is_retried_on_reconnect_not_waited_for(
    fresh_server: NatsServer, names: Names
) -> None:
    """Issue 21, finding 14: an in-flight ``js_publish`` used to wait out its whole timeout
    (here 30 s) for an ack that the dropped connection had lost."""
    with trio.fail_after(20):  # a liveness bound: the ack's own timeout is 30 s
        result, _ = await _ack_lost_in_a_crash(fresh_server, names, {"Nats-Msg-Id": "m-1"})
    assert isinstance(result, PubAck), result
    assert (result.seq, result.duplicate) == (1, False)


async def test_an_ack_lost_without_a_msg_id_fails_at_once_as_a_connection_error(
    fresh_server: NatsServer, names: Names
) -> None:
    with trio.fail_after(20):
        result, _ = await _ack_lost_in_a_crash(fresh_server, names, None)
    assert isinstance(result, NatsConnectionError), result
    assert "may or may not be stored" in str(result)
