"""PullConsumer on a real nats-server: order, acks as the server sees them, failures, start-up."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _support import Shared
from consumer_support import Setup, wait_until

from polyn.consumers import Ack, Nak, PullConsumer
from polyn.errors import ActorError, ConsumerError, StreamError
from polyn.event import Event
from polyn.nats import Message


class Recorder(PullConsumer):
    """Records every event it is given; answers with what ``decide`` says."""

    def __init__(self, seen: list[Any], decide: Any = None, **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen
        self.decide = decide or (lambda event, msg: Ack.ACK)

    async def handle_message(self, event: Event, msg: Message) -> Any:
        self.seen.append((event.data["n"], msg.metadata.num_delivered if msg.metadata else 0))
        result = self.decide(event, msg)
        if isinstance(result, BaseException):
            raise result
        return result


async def test_handles_events_one_at_a_time_in_stream_order_and_acks_them(setup: Setup) -> None:
    await setup.create()
    for n in range(25):
        await setup.publish(n)
    seen: list[Any] = Shared()
    async with setup.tree(Recorder(seen, type=setup.type, prefetch=7)):
        await wait_until(lambda: len(seen) == 25)
        for n in range(25, 30):  # and events published while it runs
            await setup.publish(n)
        await wait_until(lambda: len(seen) == 30)
        await setup.transport.flush()
        await wait_until_acked(setup)
    assert [n for n, _ in seen] == list(range(30))
    state = await setup.consumer_state()
    assert state["num_ack_pending"] == 0 and state["num_pending"] == 0


async def wait_until_acked(setup: Setup) -> None:
    with trio.fail_after(10):
        while (await setup.consumer_state())["num_ack_pending"]:  # noqa: ASYNC110 - the server's state
            await trio.sleep(0.05)


async def test_an_invalid_event_is_terminated_dead_lettered_and_the_next_one_handled(
    setup: Setup,
) -> None:
    """Conformance 84 and 90, with Polyn's difference: the consumer does not crash."""
    await setup.create()
    invalid = setup.invalid_body(1)
    await setup.publish_raw(invalid)
    await setup.publish_raw(b"definitely not json")
    good = await setup.publish(2)
    seen: list[Any] = Shared()
    async with trio.open_nursery() as nursery:
        await setup.watch_deadletters(nursery)
        async with setup.tree(Recorder(seen, type=setup.type)) as tree:
            await wait_until(lambda: seen == [(2, 1)] and len(setup.deadletters) == 2)
            await wait_until_acked(setup)
            # terminated, not naked: nothing comes back
            await trio.sleep(0.3)
            assert seen == [(2, 1)]
            assert tree.whereis("nats") is not None
        nursery.cancel_scope.cancel()
    state = await setup.consumer_state()
    assert state["num_redelivered"] == 0
    assert [m.data for m in setup.deadletters] == [invalid, b"definitely not json"]
    first = setup.deadletters[0]
    assert first.headers["Polyn-Error"].startswith("Polyn event ")
    assert first.headers["Polyn-Error-Type"] == "ValidationError"
    assert first.headers["Polyn-Original-Subject"] == setup.type
    assert first.headers["Polyn-Consumer"] == setup.consumer
    assert good.id not in {m.headers.get("Polyn-Original-Id") for m in setup.deadletters}


async def test_nak_redelivers_term_does_not_and_none_lets_the_handler_ack_later(
    setup: Setup,
) -> None:
    await setup.create()
    later: list[Message] = []

    def decide(event: Event, msg: Message) -> Any:
        n = event.data["n"]
        delivered = msg.metadata.num_delivered if msg.metadata else 0
        if n == 0:
            return Ack.NAK if delivered == 1 else Ack.ACK
        if n == 1:
            return Nak(delay=0.5) if delivered == 1 else Ack.ACK
        if n == 2:
            return Ack.TERM
        later.append(msg)
        return None

    for n in range(4):
        await setup.publish(n)
    seen: list[Any] = Shared()
    async with setup.tree(Recorder(seen, decide, type=setup.type)):
        await wait_until(lambda: (1, 2) in seen)
        with trio.fail_after(5):
            while True:
                state = await setup.consumer_state()
                if state["num_ack_pending"] == 1:  # only the one settled later remains
                    break
                await trio.sleep(0.05)
        await later[0].ack_sync()
        await wait_until_acked(setup)
        await trio.sleep(0.3)
    assert sorted(seen) == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (3, 1)]


async def test_a_delayed_nak_waits_before_redelivery(setup: Setup) -> None:
    await setup.create()
    times: dict[int, float] = {}

    def decide(event: Event, msg: Message) -> Any:
        delivered = msg.metadata.num_delivered if msg.metadata else 0
        times[delivered] = trio.current_time()
        return Nak(delay=0.6) if delivered == 1 else Ack.ACK

    await setup.publish(0)
    seen: list[Any] = Shared()
    async with setup.tree(Recorder(seen, decide, type=setup.type)):
        await wait_until(lambda: 2 in times)
    assert times[2] - times[1] >= 0.55


async def test_a_failing_handler_is_retried_then_terminated_at_max_failures(
    setup: Setup,
) -> None:
    await setup.create()
    await setup.publish(0)
    await setup.publish(1)
    seen: list[Any] = Shared()

    def decide(event: Event, msg: Message) -> Any:
        if event.data["n"] == 0:
            return RuntimeError("the database is down")
        return Ack.ACK

    async with trio.open_nursery() as nursery:
        await setup.watch_deadletters(nursery)
        async with setup.tree(Recorder(seen, decide, type=setup.type, max_failures=2)):
            # delivery 1 fails -> nak with 1 s backoff; delivery 2 fails -> term + dead letter
            await wait_until(lambda: len(setup.deadletters) == 1)
            await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert [s for s in seen if s[0] == 0] == [(0, 1), (0, 2)]
    assert (1, 1) in seen  # the consumer never stopped
    letter = setup.deadletters[0]
    assert letter.headers["Polyn-Error"] == "the database is down"
    assert letter.headers["Polyn-Error-Type"] == "RuntimeError"


async def test_a_missing_stream_fails_the_start_with_the_protocol_text(setup: Setup) -> None:
    """Conformance 83."""
    with pytest.raises(ActorError) as failed:
        async with setup.tree(Recorder([], type=setup.type)):
            pass
    cause = failed.value.__cause__
    assert isinstance(cause, StreamError)
    assert str(cause) == f"Could not find any streams for type {setup.type}"


async def test_a_missing_consumer_fails_the_start_with_the_protocol_text(setup: Setup) -> None:
    await setup.transport.create_stream({"name": setup.stream, "subjects": [setup.type]})
    with pytest.raises(ActorError) as failed:
        async with setup.tree(Recorder([], type=setup.type)):
            pass
    cause = failed.value.__cause__
    assert isinstance(cause, ConsumerError)
    assert str(cause).startswith(
        f"Consumer {setup.consumer} does not exist. Use polyn-cli to create it before "
        "attempting to subscribe"
    )


async def test_a_custom_stream_name_skips_the_lookup(setup: Setup) -> None:
    """Conformance 85: the stream captures other subjects too, so a lookup would still work,
    but with stream_name given the consumer must not depend on it."""
    await setup.create()
    await setup.publish(7)
    seen: list[Any] = Shared()
    async with setup.tree(Recorder(seen, type=setup.type, stream_name=setup.stream)):
        await wait_until(lambda: seen == [(7, 1)])
    with pytest.raises(ActorError):
        async with setup.tree(Recorder(seen, type=setup.type, stream_name="NO_SUCH_STREAM")):
            pass


async def test_stopping_naks_the_prefetched_events_and_loses_none(setup: Setup) -> None:
    await setup.create()
    for n in range(20):
        await setup.publish(n)
    seen: list[Any] = Shared()

    class Slow(Recorder):
        async def handle_message(self, event: Event, msg: Message) -> Any:
            await trio.sleep(0.05)
            return await super().handle_message(event, msg)

    async with setup.tree(Slow(seen, type=setup.type, prefetch=10)):
        await wait_until(lambda: len(seen) >= 3)
    handled = {n for n, _ in seen}
    state = await setup.consumer_state()
    # what was handled is acked; the rest (prefetched and naked, or never fetched) remains
    assert state["num_ack_pending"] + state["num_pending"] == 20 - len(handled)
    seen_again: list[Any] = Shared()
    async with setup.tree(Recorder(seen_again, type=setup.type)):
        # well within the consumer's 30 s ack_wait: the prefetched events were given back
        await wait_until(lambda: len(handled | {n for n, _ in seen_again}) == 20, timeout=10)
    assert handled.isdisjoint({n for n, _ in seen_again})


async def test_a_consumer_without_explicit_acks_is_refused_at_start(setup: Setup) -> None:
    """The server's default ack_policy is "none": naks and redelivery would silently do
    nothing, so the consumer refuses to start and says how to fix the migration."""
    await setup.transport.create_stream({"name": setup.stream, "subjects": [setup.type]})
    await setup.transport.create_consumer(setup.stream, {"durable_name": setup.consumer})
    with pytest.raises(ActorError) as failed:
        async with setup.tree(Recorder([], type=setup.type)):
            pass
    cause = failed.value.__cause__
    assert isinstance(cause, ConsumerError)
    assert "ack_policy 'none'" in str(cause) and "ack_policy='explicit'" in str(cause)


async def test_a_type_given_with_the_domain_is_stripped_of_it(setup: Setup) -> None:
    """Issue 20 (8): `com.test.order...v1` reads the subject events of that type go to."""
    await setup.create()
    await setup.publish(1)
    seen: list[Any] = Shared()
    async with setup.tree(Recorder(seen, type=f"{setup.domain}.{setup.type}")):
        await wait_until(lambda: seen == [(1, 1)])
        await wait_until_acked(setup)
