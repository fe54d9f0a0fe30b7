"""What only the mock shows (its record of publishes, its subscriptions), conformance cases
123-126, the parts of JetStream the behaviour suite does not reach, and routing checked against
the real server for generated subjects and patterns."""

from __future__ import annotations

import itertools
import json

import pytest
import trio
from _support import Names
from hypothesis import given, settings
from hypothesis import strategies as st

from polyn.errors import NamingError, NatsConnectionError, SandboxError, StreamError
from polyn.nats import (
    JetStreamAdmin,
    KeyValue,
    Messaging,
    NatsTransport,
    PayloadTooLargeError,
    Transport,
)
from polyn.testing import MockNats, SandboxTransport


async def test_a_publish_is_recorded_and_delivered() -> None:  # case 123
    mock = MockNats()
    sub = await mock.subscribe("foo")
    await mock.publish("foo", b"bar")
    (recorded,) = mock.messages
    assert (recorded.subject, recorded.data, recorded.headers, recorded.reply_to) == (
        "foo",
        b"bar",
        {},
        None,
    )
    assert (await sub.receive()).data == b"bar"


async def test_a_request_answered_by_a_subscriber() -> None:  # case 124
    mock = MockNats()
    sub = await mock.subscribe("ask")

    async def answer() -> None:
        msg = await sub.receive()
        assert msg.reply_to is not None
        await mock.publish(msg.reply_to, b"a response")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        assert (await mock.request("ask", b"?", timeout=1)).data == b"a response"


async def test_unsubscribing_removes_the_subscription() -> None:  # case 125
    mock = MockNats()
    sub = await mock.subscribe("foo.>", queue="q")
    assert mock.subscriptions == [("foo.>", "q")]
    await sub.aclose()
    assert mock.subscriptions == []


async def test_a_wildcard_subscription_receives_a_matching_subject() -> None:  # case 126
    mock = MockNats()
    sub = await mock.subscribe("foo.bar.*")
    await mock.publish("foo.bar.v1", b"x")
    assert (await sub.receive()).subject == "foo.bar.v1"


async def test_a_slow_subscriber_loses_the_excess_as_on_the_server() -> None:
    mock = MockNats()
    sub = await mock.subscribe("s", max_pending=2)
    for i in range(4):
        await mock.publish("s", str(i).encode())
    assert [(await sub.receive()).data for _ in range(2)] == [b"0", b"1"]
    with pytest.raises(trio.WouldBlock):
        sub.receive_nowait()


async def test_publishes_are_checked_like_the_real_transport() -> None:
    mock = MockNats()
    with pytest.raises(NamingError):
        await mock.publish("a..b", b"x")
    with pytest.raises(PayloadTooLargeError, match="max_payload"):
        await mock.publish("a.b", b"x" * (mock.max_payload + 1))


async def test_without_a_real_server_definitions_live_in_memory_and_kv_is_refused() -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "ORDERS", "subjects": ["orders.>"]})
    await mock.create_consumer("ORDERS", {"durable_name": "w", "ack_policy": "explicit"})
    await mock.js_publish("orders.placed", b"1")
    assert [m.data for m in await mock.fetch("ORDERS", "w", 5, no_wait=True)] == [b"1"]
    with pytest.raises(SandboxError, match="needs a real NATS server"):
        await mock.kv_get("SOME_BUCKET", "key")
    with pytest.raises(SandboxError, match="needs a real NATS server"):
        await mock.refresh()


async def test_a_core_request_on_a_stream_subject_is_answered_by_the_stream(
    names: Names, nats_url: str
) -> None:
    real = await NatsTransport.connect(nats_url)
    try:
        for transport in (real, SandboxTransport(real)):
            mocked = isinstance(transport, SandboxTransport)
            stream = names.stream() + ("_M" if mocked else "")
            subject = names.subject("req") + ("m" if mocked else "")
            await transport.create_stream({"name": stream, "subjects": [subject]})
            reply = await transport.request(subject, b"x", timeout=2)
            assert json.loads(reply.data) == {"stream": stream, "seq": 1}
    finally:
        await real.close()


async def test_workqueue_retention_removes_acked_messages() -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "JOBS", "subjects": ["jobs"], "retention": "workqueue"})
    await mock.create_consumer("JOBS", {"durable_name": "w", "ack_policy": "explicit"})
    await mock.js_publish("jobs", b"1")
    await mock.js_publish("jobs", b"2")
    first, _ = await mock.fetch("JOBS", "w", 2, no_wait=True)
    await first.ack()
    assert (await mock.stream_info("JOBS")).state["messages"] == 1


async def test_backoff_sets_the_redelivery_delays(autojump_clock: trio.testing.MockClock) -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "B", "subjects": ["b"]})
    await mock.create_consumer(
        "B", {"durable_name": "w", "ack_policy": "explicit", "backoff": [1, 10]}
    )
    await mock.js_publish("b", b"x")
    times = []
    for _ in range(3):
        await mock.fetch("B", "w", 1, expires=60)
        times.append(trio.current_time())
    assert [round(b - a) for a, b in itertools.pairwise(times)] == [1, 10]


async def test_max_ack_pending_holds_back_new_messages() -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "P", "subjects": ["p"]})
    await mock.create_consumer(
        "P", {"durable_name": "w", "ack_policy": "explicit", "max_ack_pending": 2}
    )
    for i in range(3):
        await mock.js_publish("p", str(i).encode())
    first = await mock.fetch("P", "w", 10, no_wait=True)
    assert len(first) == 2
    await first[0].ack()
    assert [m.data for m in await mock.fetch("P", "w", 10, no_wait=True)] == [b"2"]


async def test_ack_policy_none_never_redelivers(autojump_clock: trio.testing.MockClock) -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "N", "subjects": ["n"]})
    await mock.create_consumer("N", {"durable_name": "w", "ack_policy": "none", "ack_wait": 1})
    await mock.js_publish("n", b"x")
    assert len(await mock.fetch("N", "w", 1, no_wait=True)) == 1
    assert await mock.fetch("N", "w", 1, expires=30) == []


async def test_js_publish_to_an_uncaptured_subject_and_closed_mock() -> None:
    mock = MockNats()
    with pytest.raises(StreamError, match="no JetStream stream captures"):
        await mock.js_publish("nowhere", b"x")
    await mock.aclose()
    with pytest.raises(NatsConnectionError, match="closed"):
        await mock.subscribe("a")


TOKENS = st.sampled_from(["a", "b", "*"])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(TOKENS, min_size=1, max_size=3))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


SUBJECTS = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=4).map(".".join)


@settings(max_examples=25, deadline=None)
@given(
    pattern_list=st.lists(patterns(), min_size=1, max_size=3, unique=True),
    subjects=st.lists(SUBJECTS, min_size=1, max_size=4, unique=True),
)
async def test_routing_matches_the_real_server(
    nats_url: str, pattern_list: list[str], subjects: list[str]
) -> None:
    prefix = Names().token
    delivered: dict[str, set[tuple[str, str]]] = {}
    real = await NatsTransport.connect(nats_url)
    try:
        for transport in (real, MockNats()):
            subs = [(p, await transport.subscribe(f"{prefix}.{p}")) for p in pattern_list]
            for subject in subjects:
                await transport.publish(f"{prefix}.{subject}", b"")
            await transport.flush()
            await trio.sleep(0.02)
            got: set[tuple[str, str]] = set()
            for pattern, sub in subs:
                while True:
                    try:
                        got.add((pattern, sub.receive_nowait().subject))
                    except trio.WouldBlock:
                        break
            delivered[type(transport).__name__] = got
    finally:
        await real.close()
    assert delivered["MockNats"] == delivered["NatsTransport"]


async def test_msg_id_deduplication_lasts_for_the_duplicate_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mock = SandboxTransport()
    await mock.create_stream({"name": "D", "subjects": ["d"], "duplicate_window": 60})
    id_1 = {"Nats-Msg-Id": "1"}
    assert (await mock.js_publish("d", b"x", headers=id_1)).seq == 1
    await trio.sleep(30)
    await mock.js_publish("d", b"y", headers={"Nats-Msg-Id": "2"})
    assert (await mock.js_publish("d", b"x", headers=id_1)).duplicate
    await trio.sleep(31)  # id 1 is 61 s old, id 2 31 s
    assert (await mock.js_publish("d", b"x", headers=id_1)).seq == 3
    assert (await mock.js_publish("d", b"y", headers={"Nats-Msg-Id": "2"})).duplicate


def test_the_mock_is_messaging_only_and_the_sandbox_transport_is_all_three() -> None:
    # Issue 18: MockNats fakes messaging; administration is the snapshot view, key-value the
    # real server's, put together by the sandbox's transport.
    mock = MockNats()
    assert isinstance(mock, Messaging)
    assert not isinstance(mock, JetStreamAdmin)
    assert not isinstance(mock, KeyValue)
    transport = SandboxTransport(mock=mock)
    assert isinstance(transport, Transport)
    assert transport.messaging is mock and transport.mock is mock
