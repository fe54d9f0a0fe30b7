"""JetStream through the real transport: streams, consumers, publish with ack, pull and acks."""

from __future__ import annotations

import pytest
import trio
from _support import Names

from polyn.errors import ConsumerError, StreamError
from polyn.nats import Message, NatsTransport


async def make_stream(transport: NatsTransport, names: Names, **config: object) -> str:
    name = names.stream()
    await transport.create_stream({"name": name, "subjects": [names.subject(">")], **config})
    return name


async def make_consumer(
    transport: NatsTransport, stream: str, name: str = "worker", **config: object
) -> str:
    await transport.create_consumer(
        stream, {"durable_name": name, "ack_policy": "explicit", **config}
    )
    return name


async def test_stream_lifecycle_create_info_update_names_delete(
    transport: NatsTransport, names: Names
) -> None:
    stream = names.stream()
    info = await transport.create_stream(
        {"name": stream, "subjects": [names.subject("a.>")], "max_age": 3600.5}
    )
    assert info.name == stream
    assert info.subjects == [names.subject("a.>")]
    assert info.config["max_age"] == 3600.5  # seconds in, seconds out
    assert await transport.stream_names(names.subject("a.b")) == [stream]
    assert await transport.stream_names(names.subject("zzz")) == []
    assert stream in await transport.stream_names()
    config = dict((await transport.stream_info(stream)).config)
    config["description"] = "updated"
    updated = await transport.update_stream(config)
    assert updated.config["description"] == "updated"
    await transport.delete_stream(stream)
    with pytest.raises(StreamError, match="not found") as info_error:
        await transport.stream_info(stream)
    assert info_error.value.err_code == 10059


async def test_bad_stream_config_is_a_stream_error_with_the_servers_reason(
    transport: NatsTransport, names: Names
) -> None:
    with pytest.raises(StreamError, match="creating stream"):
        await transport.create_stream({"name": names.stream(), "subjects": ["a b"]})
    with pytest.raises(StreamError, match="needs a 'name'"):
        await transport.create_stream({"subjects": ["x"]})


async def test_consumer_lifecycle(transport: NatsTransport, names: Names) -> None:
    stream = await make_stream(transport, names)
    info = await transport.create_consumer(
        stream, {"durable_name": "c1", "ack_policy": "explicit", "ack_wait": 1.5, "max_deliver": 4}
    )
    assert (info.stream, info.name) == (stream, "c1")
    assert info.config["ack_wait"] == 1.5
    assert (await transport.consumer_info(stream, "c1")).config["max_deliver"] == 4
    await transport.delete_consumer(stream, "c1")
    with pytest.raises(ConsumerError, match="not found"):
        await transport.consumer_info(stream, "c1")


async def test_js_publish_is_acknowledged_and_deduplicated_by_msg_id(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    first = await transport.js_publish(names.subject("x"), b"1", headers={"Nats-Msg-Id": "id-1"})
    again = await transport.js_publish(names.subject("x"), b"1", headers={"Nats-Msg-Id": "id-1"})
    other = await transport.js_publish(names.subject("x"), b"2", headers={"Nats-Msg-Id": "id-2"})
    assert (first.stream, first.seq, first.duplicate) == (stream, 1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert other.seq == 2
    assert (await transport.stream_info(stream)).state["messages"] == 2


async def test_js_publish_without_a_capturing_stream_is_a_stream_error(
    transport: NatsTransport, names: Names
) -> None:
    with pytest.raises(StreamError, match="no JetStream stream captures"):
        await transport.js_publish(names.subject("uncaptured"), b"x")


async def test_many_js_publishes_in_flight_are_all_stored(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    acks = []

    async def publish(i: int) -> None:
        acks.append(await transport.js_publish(names.subject("many"), str(i).encode()))

    async with trio.open_nursery() as nursery:
        for i in range(500):
            nursery.start_soon(publish, i)
    assert sorted(a.seq for a in acks) == list(range(1, 501))
    assert (await transport.stream_info(stream)).state["messages"] == 500


async def test_fetch_returns_messages_in_order_with_metadata(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    for i in range(10):
        await transport.js_publish(names.subject("m"), str(i).encode(), headers={"N": str(i)})
    first = await transport.fetch(stream, consumer, 4, no_wait=True)
    assert [m.data for m in first] == [b"0", b"1", b"2", b"3"]
    meta = first[0].metadata
    assert meta is not None
    assert (meta.stream, meta.consumer, meta.num_delivered) == (stream, consumer, 1)
    assert (meta.stream_sequence, meta.num_pending) == (1, 9)
    assert first[0].subject == names.subject("m")
    assert first[0].headers["N"] == "0"
    rest = await transport.fetch(stream, consumer, 100, expires=0.3)
    assert [m.data for m in rest] == [str(i).encode() for i in range(4, 10)]
    for msg in first + rest:
        await msg.ack()


async def test_fetch_no_wait_on_an_empty_consumer_returns_nothing_at_once(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    with trio.fail_after(1):
        assert await transport.fetch(stream, consumer, 10, no_wait=True) == []


async def test_lingering_fetch_returns_a_message_published_while_waiting(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.sleep(0.2)
            await transport.js_publish(names.subject("late"), b"late")

        nursery.start_soon(later)
        with trio.fail_after(3):
            got = await transport.fetch(stream, consumer, 1, expires=2)
    assert [m.data for m in got] == [b"late"]


async def test_fetch_from_a_missing_consumer_is_a_consumer_error(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    with pytest.raises(ConsumerError, match="does not exist"):
        await transport.fetch(stream, "missing", 1, no_wait=True)


async def fetch_all(
    transport: NatsTransport, stream: str, consumer: str, expires: float = 0.5
) -> list[Message]:
    return await transport.fetch(stream, consumer, 100, expires=expires)


async def test_nak_redelivers_and_term_does_not(transport: NatsTransport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    for body in (b"nak-me", b"term-me", b"ack-me"):
        await transport.js_publish(names.subject("t"), body)
    nak, term, ack = await fetch_all(transport, stream, consumer)
    await nak.nak()
    await term.term()
    await ack.ack()
    again = await fetch_all(transport, stream, consumer)
    assert [m.data for m in again] == [b"nak-me"]
    assert again[0].metadata is not None and again[0].metadata.num_delivered == 2
    await again[0].ack_sync()
    assert await fetch_all(transport, stream, consumer, expires=0.3) == []
    info = await transport.consumer_info(stream, consumer)
    assert info.num_ack_pending == 0


async def test_delayed_nak_redelivers_after_the_delay(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    await transport.js_publish(names.subject("d"), b"later")
    (msg,) = await fetch_all(transport, stream, consumer)
    await msg.nak(delay=0.8)
    assert await transport.fetch(stream, consumer, 1, expires=0.4) == []
    again = await transport.fetch(stream, consumer, 1, expires=2)
    assert [m.data for m in again] == [b"later"]
    await again[0].ack()


async def test_unacked_message_is_redelivered_after_ack_wait_and_in_progress_delays_it(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=1.0)
    await transport.js_publish(names.subject("w"), b"slow")
    (msg,) = await fetch_all(transport, stream, consumer)
    for _ in range(3):  # keep it alive past ack_wait
        await trio.sleep(0.4)
        await msg.in_progress()
    await transport.flush()
    # 1.2 s after delivery, past ack_wait: not redelivered, thanks to in_progress
    assert await transport.fetch(stream, consumer, 1, no_wait=True) == []
    again = await transport.fetch(stream, consumer, 1, expires=3)  # abandoned: redelivered
    assert again[0].metadata is not None and again[0].metadata.num_delivered == 2
    await again[0].ack()


async def test_acknowledging_twice_is_an_error(transport: NatsTransport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    await transport.js_publish(names.subject("twice"), b"x")
    (msg,) = await fetch_all(transport, stream, consumer)
    await msg.ack()
    assert msg.acked == "+ACK"
    with pytest.raises(ConsumerError, match="already acknowledged with \\+ACK"):
        await msg.term()


async def test_core_message_cannot_be_acknowledged() -> None:
    with pytest.raises(ConsumerError, match="not a JetStream message"):
        await Message("a.b", b"x", reply_to="_INBOX.x").ack()


@pytest.mark.parametrize(
    "reply_to", ["_INBOX.x", "$JS.ACK.s.c.1.2.3", "$JS.ACK.s.c.1.2.3.4.5.6", "$JS.API.x.y"]
)
async def test_a_message_whose_reply_is_no_ack_subject_cannot_be_acknowledged(
    transport: NatsTransport, reply_to: str
) -> None:
    """Settling checks the reply subject's shape (without parsing its metadata): a reply that
    is not a $JS.ACK subject of 9 or at least 11 tokens is refused, even with a transport."""
    msg = Message("a.b", b"x", reply_to=reply_to, acker=transport)
    assert msg.metadata is None
    with pytest.raises(ConsumerError, match="not a JetStream message"):
        await Message("a.b", b"x", reply_to=reply_to, acker=transport).ack()
    with pytest.raises(ConsumerError, match="not a JetStream message"):
        await msg.nak()


async def test_cancelled_fetch_naks_what_it_received_and_leaves_nothing_pending(
    transport: NatsTransport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    await transport.js_publish(names.subject("c"), b"one")
    with trio.move_on_after(0.3):  # batch of 10 never fills: the fetch is still waiting
        await transport.fetch(stream, consumer, 10, expires=5)
    puller = transport._pullers[(stream, consumer)]
    assert puller.current is None
    # naked, so it comes back at once rather than after ack_wait (30 s)
    with trio.fail_after(3):
        again = []
        while not again:
            again = await transport.fetch(stream, consumer, 1, expires=1)
    assert again[0].data == b"one"
    await again[0].ack()
