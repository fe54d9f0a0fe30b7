"""One behaviour suite, run against the real transport and against MockNats (``transport``).

Every test asserts only what a user of either transport observes, so the mock must behave like
the server: routing, queue groups, request / reply, JetStream publish, pull fetch, ack, nak,
term, ``ack_wait`` redelivery, ``max_deliver``. Core deliveries are asynchronous on the real
transport, so receives wait (bounded) and "nothing more" is checked after a flush.
"""

from __future__ import annotations

import pytest
import trio
from _support import Names

from polyn.errors import (
    ConsumerError,
    HeaderError,
    NoRespondersError,
    PolynError,
    RequestTimeout,
    StreamError,
)
from polyn.nats import Message, Subscription, Transport


async def receive(sub: Subscription, count: int = 1, timeout: float = 3) -> list[Message]:
    got: list[Message] = []
    with trio.fail_after(timeout):
        while len(got) < count:
            got.append(await sub.receive())
    return got


async def assert_nothing_more(transport: Transport, *subs: Subscription) -> None:
    await transport.flush()
    await trio.sleep(0.05)
    for sub in subs:
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()


async def make_stream(transport: Transport, names: Names, **config: object) -> str:
    name = names.stream()
    await transport.create_stream({"name": name, "subjects": [names.subject(">")], **config})
    return name


async def make_consumer(transport: Transport, stream: str, **config: object) -> str:
    await transport.create_consumer(
        stream, {"durable_name": "worker", "ack_policy": "explicit", **config}
    )
    return "worker"


def bodies(messages: list[Message]) -> list[bytes]:
    return [m.data for m in messages]


def delivered(message: Message) -> int:
    assert message.metadata is not None
    return message.metadata.num_delivered


# -- core NATS ---------------------------------------------------------------------------------


async def test_subscribers_receive_by_nats_token_matching(
    transport: Transport, names: Names
) -> None:
    exact = await transport.subscribe(names.subject("orders.created"))
    one = await transport.subscribe(names.subject("orders.*"))
    many = await transport.subscribe(names.subject("orders.>"))
    for name in ("orders.created", "orders.eu.created", "orders"):
        await transport.publish(names.subject(name), name.encode())
    assert bodies(await receive(exact)) == [b"orders.created"]
    assert bodies(await receive(one)) == [b"orders.created"]
    assert bodies(await receive(many, 2)) == [b"orders.created", b"orders.eu.created"]
    await assert_nothing_more(transport, exact, one, many)


async def test_headers_and_reply_subject_are_delivered(transport: Transport, names: Names) -> None:
    sub = await transport.subscribe(names.subject("h"))
    await transport.publish(
        names.subject("h"), b"x", headers={"Nats-Msg-Id": "abc", "X-A": "1"}, reply_to="back.here"
    )
    (msg,) = await receive(sub)
    assert (msg.subject, msg.reply_to, msg.metadata) == (names.subject("h"), "back.here", None)
    assert msg.headers["Nats-Msg-Id"] == "abc" and msg.headers["X-A"] == "1"


# Header names and values that would end a ``Key: value`` line early (issue 21, finding 1).
BAD_HEADERS = {
    "value-crlf-injects-msg-id": {"X-A": "1\r\nNats-Msg-Id: injected"},
    "value-lf": {"X-A": "1\nX-B: 2"},
    "value-cr": {"X-A": "1\rX-B: 2"},
    "value-nul": {"X-A": "a\x00b"},
    "key-crlf": {"X-A\r\nNats-Msg-Id": "x"},
    "key-colon": {"Bad:Key": "x"},
    "key-space": {"Bad Key": "x"},
    "key-tab": {"Bad\tKey": "x"},
    "key-nul": {"Bad\x00Key": "x"},
    "key-empty": {"": "x"},
}


@pytest.mark.parametrize("headers", list(BAD_HEADERS.values()), ids=list(BAD_HEADERS))
async def test_a_header_that_would_break_the_wire_is_refused_before_anything_is_sent(
    transport: Transport, names: Names, headers: dict[str, str]
) -> None:
    stream = await make_stream(transport, names)
    sub = await transport.subscribe(names.subject(">"))
    subject = names.subject("h")
    calls = {
        "publish": lambda: transport.publish(subject, b"bad", headers=headers),
        "request": lambda: transport.request(subject, b"bad", headers=headers, timeout=1),
        "js_publish": lambda: transport.js_publish(subject, b"bad", headers=headers),
    }
    for name, call in calls.items():
        with pytest.raises(HeaderError) as refused:
            await call()
        assert isinstance(refused.value, PolynError), name
        assert isinstance(refused.value, ValueError), name
    await transport.js_publish(subject, b"after", headers={"Nats-Msg-Id": "after"})
    (msg,) = await receive(sub)
    assert msg.data == b"after"
    await assert_nothing_more(transport, sub)
    assert (await transport.stream_info(stream)).state["messages"] == 1


async def test_a_queue_group_shares_messages_and_others_get_them_all(
    transport: Transport, names: Names
) -> None:
    subject = names.subject("work")
    members = [await transport.subscribe(subject, queue="workers") for _ in range(2)]
    watcher = await transport.subscribe(subject)
    for i in range(40):
        await transport.publish(subject, str(i).encode())
    assert len(await receive(watcher, 40)) == 40
    await transport.flush()
    await trio.sleep(0.05)
    shares: list[list[bytes]] = []
    for member in members:
        share: list[bytes] = []
        while True:
            try:
                share.append(member.receive_nowait().data)
            except trio.WouldBlock:
                break
        shares.append(share)
    assert sorted(shares[0] + shares[1], key=int) == [str(i).encode() for i in range(40)]
    assert all(shares), "each member of the group gets some of the messages"


async def test_unsubscribed_subscription_receives_nothing(
    transport: Transport, names: Names
) -> None:
    sub = await transport.subscribe(names.subject("gone"))
    await sub.aclose()
    with pytest.raises(NoRespondersError):
        await transport.request(names.subject("gone"), b"?", timeout=1)
    with pytest.raises(trio.ClosedResourceError):
        sub.receive_nowait()


async def test_request_gets_the_first_reply(transport: Transport, names: Names) -> None:
    subject = names.subject("quote")
    sub = await transport.subscribe(subject)

    async def responder() -> None:
        msg = await sub.receive()
        assert msg.reply_to is not None
        await transport.publish(msg.reply_to, b"price:" + msg.data, headers={"R": "1"})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        reply = await transport.request(subject, b"42", headers={"Q": "1"}, timeout=3)
    assert reply.data == b"price:42"
    assert reply.headers["R"] == "1"


async def test_request_without_responders_fails_at_once(transport: Transport, names: Names) -> None:
    with trio.fail_after(1):
        with pytest.raises(NoRespondersError, match="no responders"):
            await transport.request(names.subject("nobody"), b"?", timeout=5)


async def test_request_nobody_answers_times_out(transport: Transport, names: Names) -> None:
    await transport.subscribe(names.subject("silent"))
    with pytest.raises(RequestTimeout, match="no reply to the request"):
        await transport.request(names.subject("silent"), b"?", timeout=0.2)


# -- JetStream ---------------------------------------------------------------------------------


async def test_js_publish_acks_with_sequence_and_deduplicates_by_msg_id(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    first = await transport.js_publish(names.subject("x"), b"1", headers={"Nats-Msg-Id": "id-1"})
    again = await transport.js_publish(names.subject("x"), b"1", headers={"Nats-Msg-Id": "id-1"})
    other = await transport.js_publish(names.subject("x"), b"2", headers={"Nats-Msg-Id": "id-2"})
    assert (first.stream, first.seq, first.duplicate) == (stream, 1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert (other.seq, other.duplicate) == (2, False)
    info = await transport.stream_info(stream)
    assert (info.state["messages"], info.state["last_seq"]) == (2, 2)


async def test_js_publish_without_a_capturing_stream_is_a_stream_error(
    transport: Transport, names: Names
) -> None:
    await make_stream(transport, names)
    with pytest.raises(StreamError, match="no JetStream stream captures"):
        await transport.js_publish("elsewhere." + names.token, b"x")


async def test_streams_are_found_by_subject(transport: Transport, names: Names) -> None:
    stream = names.stream()
    await transport.create_stream({"name": stream, "subjects": [names.subject("orders.>")]})
    assert await transport.stream_names(names.subject("orders.created")) == [stream]
    assert await transport.stream_names(names.subject("payments.created")) == []
    with pytest.raises(StreamError, match="not found"):
        await transport.stream_info(stream + "_NOPE")


async def test_core_publish_to_a_stream_subject_is_stored_and_js_publish_reaches_subscribers(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    sub = await transport.subscribe(names.subject("both"))
    await transport.publish(names.subject("both"), b"core")
    await transport.js_publish(names.subject("both"), b"js")
    assert bodies(await receive(sub, 2)) == [b"core", b"js"]
    got = await transport.fetch(stream, consumer, 10, expires=0.5)
    assert bodies(got) == [b"core", b"js"]


async def test_fetch_delivers_in_order_with_metadata_including_earlier_messages(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    for i in range(5):  # published before the consumer exists
        await transport.js_publish(names.subject("m"), str(i).encode(), headers={"N": str(i)})
    consumer = await make_consumer(transport, stream)
    first = await transport.fetch(stream, consumer, 2, no_wait=True)
    assert bodies(first) == [b"0", b"1"]
    meta = first[0].metadata
    assert meta is not None
    assert (meta.stream, meta.consumer, meta.num_delivered) == (stream, consumer, 1)
    assert (meta.stream_sequence, meta.consumer_sequence, meta.num_pending) == (1, 1, 4)
    assert first[1].metadata is not None and first[1].metadata.num_pending == 3
    assert (first[0].subject, first[0].headers["N"]) == (names.subject("m"), "0")
    rest = await transport.fetch(stream, consumer, 100, expires=0.3)
    assert bodies(rest) == [b"2", b"3", b"4"]
    info = await transport.consumer_info(stream, consumer)
    assert (info.num_pending, info.num_ack_pending) == (0, 5)
    for msg in first + rest:
        await msg.ack_sync()
    assert (await transport.consumer_info(stream, consumer)).num_ack_pending == 0


async def test_mock_pull_subscription_case(transport: Transport, names: Names) -> None:
    """Conformance case 127: fetch sees what was published, then later publishes."""
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    subject = names.subject("mock_psub.foo")
    # A real server's consumer learns of a stored message a moment after the publish's ack, so
    # a no_wait pull sent at once may find nothing: the fetches that expect messages wait (and
    # return as soon as the batch fills); the ones that expect none use no_wait.
    await transport.js_publish(subject, b"bar")
    got = await transport.fetch(stream, consumer, 1, expires=2)
    assert bodies(got) == [b"bar"]
    await got[0].ack()
    assert await transport.fetch(stream, consumer, 1, no_wait=True) == []
    await transport.js_publish(subject, b"bar")
    await transport.js_publish(subject, b"baz")
    two = await transport.fetch(stream, consumer, 2, expires=2)
    assert bodies(two) == [b"bar", b"baz"]
    await transport.js_publish(subject, b"one")
    assert bodies(await transport.fetch(stream, consumer, 1, expires=2)) == [b"one"]
    assert await transport.fetch(stream, consumer, 10, no_wait=True) == []
    await transport.js_publish(subject, b"later")
    assert bodies(await transport.fetch(stream, consumer, 1, expires=2)) == [b"later"]


async def test_fetch_no_wait_on_nothing_returns_at_once_and_a_waiting_fetch_gets_new_messages(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    with trio.fail_after(1):
        assert await transport.fetch(stream, consumer, 10, no_wait=True) == []

    async def later() -> None:
        await trio.sleep(0.1)
        await transport.js_publish(names.subject("late"), b"late")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        with trio.fail_after(3):
            got = await transport.fetch(stream, consumer, 1, expires=2)
    assert bodies(got) == [b"late"]


async def test_fetch_waits_for_expires_when_the_batch_does_not_fill(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    await transport.js_publish(names.subject("one"), b"1")
    start = trio.current_time()
    got = await transport.fetch(stream, consumer, 5, expires=0.3)
    assert bodies(got) == [b"1"]
    assert trio.current_time() - start >= 0.25


async def test_consumer_filter_subject_selects_messages(transport: Transport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, filter_subject=names.subject("a.*"))
    for name in ("a.1", "b.1", "a.2"):
        await transport.js_publish(names.subject(name), name.encode())
    got = await transport.fetch(stream, consumer, 10, no_wait=True)
    assert bodies(got) == [b"a.1", b"a.2"]
    assert got[1].metadata is not None and got[1].metadata.stream_sequence == 3


async def test_deliver_policy_new_skips_earlier_messages(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    await transport.js_publish(names.subject("old"), b"old")
    consumer = await make_consumer(transport, stream, deliver_policy="new")
    await transport.js_publish(names.subject("new"), b"new")
    # Waiting for one (a no_wait pull may reach a real server's consumer before the message):
    # "old" would come first if the policy had not skipped it.
    assert bodies(await transport.fetch(stream, consumer, 1, expires=2)) == [b"new"]
    assert await transport.fetch(stream, consumer, 10, no_wait=True) == []


async def test_fetch_from_a_missing_consumer_is_a_consumer_error(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    with pytest.raises(ConsumerError, match="does not exist"):
        await transport.fetch(stream, "missing", 1, no_wait=True)
    with pytest.raises(ConsumerError, match="not found"):
        await transport.consumer_info(stream, "missing")


async def test_nak_redelivers_at_once_term_and_ack_never(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    for body in (b"nak-me", b"term-me", b"ack-me"):
        await transport.js_publish(names.subject("t"), body)
    nak, term, ack = await transport.fetch(stream, consumer, 3, expires=1)
    await nak.nak()
    await term.term()
    await ack.ack()
    again = await transport.fetch(stream, consumer, 10, expires=0.5)
    assert bodies(again) == [b"nak-me"]
    assert delivered(again[0]) == 2
    await again[0].ack_sync()
    assert await transport.fetch(stream, consumer, 10, expires=0.3) == []
    assert (await transport.consumer_info(stream, consumer)).num_ack_pending == 0


async def test_delayed_nak_redelivers_after_the_delay(transport: Transport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    await transport.js_publish(names.subject("d"), b"later")
    (msg,) = await transport.fetch(stream, consumer, 1, expires=1)
    await msg.nak(delay=0.6)
    assert await transport.fetch(stream, consumer, 1, expires=0.3) == []
    again = await transport.fetch(stream, consumer, 1, expires=2)
    assert bodies(again) == [b"later"] and delivered(again[0]) == 2


async def test_unacked_message_is_redelivered_after_ack_wait_unless_in_progress(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=0.6)
    await transport.js_publish(names.subject("w"), b"slow")
    (msg,) = await transport.fetch(stream, consumer, 1, expires=1)
    for _ in range(3):  # 0.9 s in all, past ack_wait, kept alive by in_progress
        await trio.sleep(0.3)
        await msg.in_progress()
    await transport.flush()
    assert await transport.fetch(stream, consumer, 1, no_wait=True) == []
    again = await transport.fetch(stream, consumer, 1, expires=2)  # abandoned: redelivered
    assert bodies(again) == [b"slow"] and delivered(again[0]) == 2
    await again[0].ack()


async def test_max_deliver_stops_redelivery(transport: Transport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=0.3, max_deliver=2)
    await transport.js_publish(names.subject("poison"), b"poison")
    first = await transport.fetch(stream, consumer, 1, expires=1)
    await first[0].nak()
    second = await transport.fetch(stream, consumer, 1, expires=1)
    assert [delivered(m) for m in first + second] == [1, 2]
    await second[0].nak()
    assert await transport.fetch(stream, consumer, 1, expires=0.6) == []


async def test_acknowledging_twice_is_an_error(transport: Transport, names: Names) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream)
    await transport.js_publish(names.subject("twice"), b"x")
    (msg,) = await transport.fetch(stream, consumer, 1, expires=1)
    await msg.ack()
    with pytest.raises(ConsumerError, match="already acknowledged with \\+ACK"):
        await msg.term()


async def test_cancelled_fetch_gives_its_messages_back_at_once(
    transport: Transport, names: Names
) -> None:
    stream = await make_stream(transport, names)
    consumer = await make_consumer(transport, stream, ack_wait=30)
    await transport.js_publish(names.subject("c"), b"one")
    with trio.move_on_after(0.3):  # the batch of 10 never fills
        await transport.fetch(stream, consumer, 10, expires=5)
    with trio.fail_after(3):
        again: list[Message] = []
        while not again:
            again = await transport.fetch(stream, consumer, 1, expires=1)
    assert bodies(again) == [b"one"]
