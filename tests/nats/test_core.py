"""Core NATS through the real transport: publish, subscribe, request, flush, errors."""

from __future__ import annotations

import pytest
import trio
from _support import Names

from polyn.errors import (
    HeaderError,
    NamingError,
    NatsConnectionError,
    NoRespondersError,
    RequestTimeout,
)
from polyn.nats import Message, NatsTransport, PayloadTooLargeError


async def test_published_message_reaches_a_subscriber_with_headers(
    transport: NatsTransport, names: Names
) -> None:
    subject = names.subject("greet")
    sub = await transport.subscribe(subject)
    await transport.publish(subject, b"hello", headers={"X-Trace": "abc"})
    with trio.fail_after(5):
        msg = await sub.receive()
    assert (msg.subject, msg.data, msg.headers) == (subject, b"hello", {"X-Trace": "abc"})
    assert msg.reply_to is None
    assert msg.metadata is None
    await sub.aclose()


async def test_wildcard_subscription_receives_matching_subjects_only(
    transport: NatsTransport, names: Names
) -> None:
    sub = await transport.subscribe(names.subject("orders.*"))
    for name in ("orders.created", "orders.created.v1", "payments.created", "orders.paid"):
        await transport.publish(names.subject(name), name.encode())
    await transport.flush()
    received = []
    with trio.move_on_after(0.5):
        async for msg in sub:
            received.append(msg.data)
    assert received == [b"orders.created", b"orders.paid"]
    await sub.aclose()


async def test_messages_arrive_in_publish_order(transport: NatsTransport, names: Names) -> None:
    subject = names.subject("ordered")
    sub = await transport.subscribe(subject)
    for i in range(2000):
        await transport.publish(subject, str(i).encode())
    got: list[int] = []
    with trio.fail_after(10):
        while len(got) < 2000:
            batch = await sub.receive_batch(500)
            got.extend(int(m.data) for m in batch)
    assert got == list(range(2000))
    await sub.aclose()


async def test_many_tasks_publishing_at_once_lose_nothing(
    transport: NatsTransport, names: Names
) -> None:
    subject = names.subject("many")
    sub = await transport.subscribe(subject, max_pending=100_000)

    async def publisher(k: int) -> None:
        for i in range(500):
            await transport.publish(subject, f"{k}:{i}".encode())

    async with trio.open_nursery() as nursery:
        for k in range(20):
            nursery.start_soon(publisher, k)
    seen: set[bytes] = set()
    with trio.fail_after(10):
        while len(seen) < 10_000:
            seen.update(m.data for m in await sub.receive_batch(1000))
    assert len(seen) == 10_000
    await sub.aclose()


async def test_unsubscribed_channel_stops_receiving(transport: NatsTransport, names: Names) -> None:
    subject = names.subject("unsub")
    sub = await transport.subscribe(subject)
    other = await transport.subscribe(subject)
    await sub.aclose()
    await transport.publish(subject, b"after")
    with trio.fail_after(5):
        assert (await other.receive()).data == b"after"
    with pytest.raises(trio.ClosedResourceError):
        await sub.receive()
    await other.aclose()


async def test_queue_group_delivers_each_message_to_one_member(
    transport: NatsTransport, names: Names
) -> None:
    subject = names.subject("work")
    members = [await transport.subscribe(subject, queue="workers") for _ in range(3)]
    for i in range(300):
        await transport.publish(subject, str(i).encode())
    await transport.flush()
    await trio.sleep(0.2)
    counts = []
    everything: list[bytes] = []
    for member in members:
        got = []
        while True:
            try:
                got.append(member.receive_nowait().data)
            except trio.WouldBlock:
                break
        counts.append(len(got))
        everything.extend(got)
        await member.aclose()
    assert sorted(everything, key=int) == [str(i).encode() for i in range(300)]
    assert sum(1 for c in counts if c > 0) >= 2  # load is spread over the group


async def test_request_returns_the_reply(transport: NatsTransport, names: Names) -> None:
    subject = names.subject("echo")
    sub = await transport.subscribe(subject)

    async def responder() -> None:
        async for msg in sub:
            assert msg.reply_to is not None
            await transport.publish(msg.reply_to, b"re:" + msg.data, headers=msg.headers)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        reply = await transport.request(subject, b"ping", headers={"H": "1"}, timeout=5)
        assert (reply.data, reply.headers) == (b"re:ping", {"H": "1"})
        replies = []

        async def ask(i: int) -> None:
            replies.append((await transport.request(subject, str(i).encode())).data)

        async with trio.open_nursery() as inner:
            for i in range(50):
                inner.start_soon(ask, i)
        assert sorted(replies) == sorted(f"re:{i}".encode() for i in range(50))
        nursery.cancel_scope.cancel()
    await sub.aclose()


async def test_request_without_responders_fails_at_once(
    transport: NatsTransport, names: Names
) -> None:
    with trio.fail_after(2), pytest.raises(NoRespondersError, match="no responders"):
        await transport.request(names.subject("nobody"), b"x", timeout=30)


async def test_request_without_reply_times_out(transport: NatsTransport, names: Names) -> None:
    subject = names.subject("silent")
    sub = await transport.subscribe(subject)  # a listener that never answers
    with pytest.raises(RequestTimeout, match=r"within 0\.2 s") as info:
        await transport.request(subject, b"x", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert transport._replies == {}
    await sub.aclose()


async def test_cancelled_request_leaves_nothing_pending(
    transport: NatsTransport, names: Names
) -> None:
    subject = names.subject("slow")
    sub = await transport.subscribe(subject)
    with trio.move_on_after(0.1) as scope:
        await transport.request(subject, b"x", timeout=30)
    assert scope.cancelled_caught
    assert transport._replies == {}
    await sub.aclose()


async def test_invalid_subjects_are_refused_before_sending(transport: NatsTransport) -> None:
    for subject in ("", "has space", "a..b", ".lead", "trail."):
        with pytest.raises(NamingError):
            await transport.publish(subject, b"x")


async def test_oversized_payload_is_refused_with_the_limit(transport: NatsTransport) -> None:
    with pytest.raises(PayloadTooLargeError, match=str(transport.max_payload)):
        await transport.publish("too.big", b"x" * (transport.max_payload + 1))


async def test_message_json_helper_decodes_the_body() -> None:
    assert Message("s", b'{"a": [1, 2]}').json() == {"a": [1, 2]}


async def test_closed_transport_refuses_calls_and_its_thread_ends(nats_url: str) -> None:
    transport = await NatsTransport.connect(nats_url)
    thread = transport.loop_thread
    assert thread.is_alive()
    await transport.close()
    assert not thread.is_alive()
    with pytest.raises(NatsConnectionError, match="closed"):
        await transport.publish("after.close", b"x")
    await transport.close()  # closing twice is harmless


async def test_queued_publishes_are_flushed_before_close(nats_url: str, names: Names) -> None:
    subject = names.subject("flushed")
    reader = await NatsTransport.connect(nats_url)
    sub = await reader.subscribe(subject, max_pending=50_000)
    writer = await NatsTransport.connect(nats_url)
    for i in range(5000):
        await writer.publish(subject, str(i).encode())
    await writer.close()
    got = 0
    with trio.fail_after(10):
        while got < 5000:
            got += len(await sub.receive_batch(5000))
    await reader.close()


async def test_unreachable_server_fails_the_connect_clearly() -> None:
    with trio.fail_after(20), pytest.raises(NatsConnectionError, match="could not connect"):
        await NatsTransport.connect("nats://127.0.0.1:1", connect_timeout=1)


async def test_credentials_in_the_url_never_appear_in_errors() -> None:
    with pytest.raises(NatsConnectionError) as info:
        await NatsTransport.connect("nats://alice:s3cret@127.0.0.1:1", connect_timeout=1)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "1\r\nNats-Msg-Id: dup"}, {"Nats-Msg-Id\r\nX": "dup"}, {"X:Y": "1"}, {"X": "\x00"}],
    ids=["value-crlf", "key-crlf", "key-colon", "value-nul"],
)
async def test_a_header_injection_is_refused_on_both_write_paths(
    transport: NatsTransport, names: Names, headers: dict[str, str]
) -> None:
    """An injected ``Nats-Msg-Id`` used to make JetStream store the first event and answer the
    second ``duplicate=True``: stored once, no error (issue 21, finding 1)."""
    stream = names.stream()
    subject = names.subject("inject")
    await transport.create_stream({"name": stream, "subjects": [subject]})
    try:
        for body in (b"first", b"second"):
            with pytest.raises(HeaderError):
                await transport.js_publish(subject, body, headers=headers)
            with pytest.raises(HeaderError):
                await transport.publish(subject, body, headers=headers)
        await transport.flush()
        assert (await transport.stream_info(stream)).state["messages"] == 0
        for body in (b"first", b"second"):
            ack = await transport.js_publish(subject, body, headers={"X-A": "fine"})
            assert not ack.duplicate
    finally:
        await transport.delete_stream(stream)
