"""A sandboxed App: ``polyn.pub`` and a ``Subscriber`` run on the test's MockNats.

The App connects to the real server (its ``NatsConnection`` still starts), but every publish
and subscription goes through ``transport_for``, which the sandbox overrides: nothing reaches
the server, and the test reads what was published and dead-lettered from the sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from _support import Names
from attrs import evolve as attrs_evolve
from hypothesis import given, settings

from polyn.app import App
from polyn.codec import Schemas, encode
from polyn.config import Config
from polyn.consumers import Subscriber
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport, transport_for
from polyn.publish import pub
from polyn.schema_store import SchemaStore
from polyn.testing import Sandbox

SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}


class Greeter(Subscriber):
    def __init__(self, received: trio.MemorySendChannel[Event], **options: Any) -> None:
        super().__init__(**options)
        self.received = received

    async def handle_message(self, event: Event, msg: Message) -> None:
        await self.received.send(event)


def make_app(nats_server: str, names: Names, *children: Any) -> App:
    config = Config(domain="com.test", source_root="sandbox.tests", servers=[nats_server])
    schemas = {names.subject("user.created.v1"): SCHEMA}
    return App(config, [NatsConnection(), SchemaStore(schemas=schemas), *children])


async def test_pub_goes_to_the_sandbox_and_never_to_the_server(
    polyn_sandbox: Sandbox, nats_server: str, names: Names
) -> None:
    event_type = names.subject("user.created.v1")
    real = await NatsTransport.connect(nats_server)
    try:
        on_server = await real.subscribe(event_type)
        async with make_app(nats_server, names).run() as running:
            assert transport_for(running) is polyn_sandbox.transport
            await pub(running, event_type, {"name": "Ada"})
        (document,) = polyn_sandbox.published_json(event_type)
        assert document["type"] == f"com.test.{event_type}"
        assert document["data"] == {"name": "Ada"}
        (message,) = polyn_sandbox.published(event_type)
        assert message.headers["Nats-Msg-Id"] == document["id"]
        await real.flush()
        await trio.sleep(0.1)
        with pytest.raises(trio.WouldBlock):
            on_server.receive_nowait()
    finally:
        await real.close()


async def test_a_subscriber_handles_valid_events_and_dead_letters_invalid_ones(
    polyn_sandbox: Sandbox, nats_server: str, names: Names
) -> None:
    event_type = names.subject("user.created.v1")
    send, receive = trio.open_memory_channel[Event](10)
    greeter = Greeter(send, subject=event_type, name="greeter")
    async with make_app(nats_server, names, greeter).run() as running:
        await pub(running, event_type, {"name": "Ada"})
        await polyn_sandbox.transport.publish(event_type, b'{"not": "a cloud event"}')
        await pub(running, event_type, {"name": "Grace"})
        with trio.fail_after(5):
            first, second = await receive.receive(), await receive.receive()
    assert [first.data, second.data] == [{"name": "Ada"}, {"name": "Grace"}]
    (letter,) = polyn_sandbox.dead_letters(event_type)
    assert letter.subject == f"polyn.deadletter.{event_type}"
    assert letter.data == b'{"not": "a cloud event"}'
    assert letter.headers["Polyn-Consumer"] == "greeter"
    assert letter.headers["Polyn-Error-Type"].endswith("ValidationError")


async def test_pub_with_ack_is_stored_in_the_sandbox_stream(
    polyn_sandbox: Sandbox, nats_server: str, names: Names
) -> None:
    event_type = names.subject("user.created.v1")
    stream = names.stream()
    await polyn_sandbox.transport.create_stream({"name": stream, "subjects": [names.subject(">")]})
    async with make_app(nats_server, names).run() as running:
        ack = await pub(running, event_type, {"name": "Ada"}, ack=True)
    assert ack is not None and (ack.stream, ack.seq, ack.duplicate) == (stream, 1, False)
    assert (await polyn_sandbox.transport.stream_info(stream)).state["messages"] == 1
    real = await NatsTransport.connect(nats_server)
    try:
        assert (await real.stream_info(stream)).state["messages"] == 0
    finally:
        await real.close()


CONFIG = Config(domain="com.test", source_root="sandbox.tests")
PROPERTY_TYPE = "sandbox.property.v1"
PROPERTY_SCHEMAS = {PROPERTY_TYPE: SCHEMA}


def _bodies() -> Any:
    from hypothesis import strategies as st

    from polyn.testing.strategies import events, invalid_events

    valid = events(PROPERTY_TYPE, PROPERTY_SCHEMAS, config=CONFIG, encoded=True)
    invalid = invalid_events(PROPERTY_TYPE, PROPERTY_SCHEMAS, config=CONFIG)
    return st.lists(st.tuples(st.booleans(), valid, invalid), min_size=1, max_size=8)


@settings(max_examples=10, deadline=None)
@given(mix=_bodies())
async def test_every_valid_event_is_handled_once_and_every_invalid_one_dead_lettered(
    nats_server: str, mix: list[tuple[bool, bytes, bytes]]
) -> None:
    # A sandbox per example (Sandbox.start), not per test (the polyn_sandbox fixture).
    async with Sandbox.start(nats_server) as sandbox:
        await check_handled_and_dead_lettered(sandbox, nats_server, mix)


async def check_handled_and_dead_lettered(
    sandbox: Sandbox, nats_server: str, mix: list[tuple[bool, bytes, bytes]]
) -> None:
    bodies = [(ok, good if ok else bad) for ok, good, bad in mix]
    send, receive = trio.open_memory_channel[Event](100)
    config = attrs_evolve(CONFIG, servers=[nats_server])
    app = App(
        config,
        [
            NatsConnection(),
            SchemaStore(schemas=PROPERTY_SCHEMAS),
            Greeter(send, subject=PROPERTY_TYPE, name="property"),
        ],
    )
    # Handled in arrival order, so once the sentinel is handled, everything before it was.
    sentinel = Event.new(CONFIG, PROPERTY_TYPE, {"name": "sentinel"})
    handled: list[Event] = []
    async with app.run() as running:
        transport = transport_for(running)
        for _, body in bodies:
            await transport.publish(PROPERTY_TYPE, body)
        await transport.publish(
            PROPERTY_TYPE, encode(sentinel, Schemas.from_dict(PROPERTY_SCHEMAS), CONFIG)
        )
        with trio.fail_after(5):
            while not handled or handled[-1].id != sentinel.id:
                handled.append(await receive.receive())
    handled.pop()
    valid_ids = [json.loads(body)["id"] for ok, body in bodies if ok]
    assert sorted(e.id for e in handled) == sorted(valid_ids)
    letters = sandbox.dead_letters(PROPERTY_TYPE)
    assert [letter.data for letter in letters] == [body for ok, body in bodies if not ok]
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
