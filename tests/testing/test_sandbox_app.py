"""A sandboxed App: ``polyn.pub`` and a ``Subscriber`` run on the test's MockNats.

The App connects to the real server (its ``NatsConnection`` still starts), but every publish
and subscription goes through ``transport_for``, which the sandbox overrides: nothing reaches
the server, and the test reads what was published and dead-lettered from the sandbox.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _support import Names

from polyn.app import App
from polyn.config import Config
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport, transport_for
from polyn.publish import pub
from polyn.schema_store import SchemaStore
from polyn.testing import Sandbox

subscriber = pytest.importorskip("polyn.subscriber")

SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}


class Greeter(subscriber.Subscriber):  # type: ignore[misc,name-defined]
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
            assert transport_for(running) is polyn_sandbox.mock
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
        await polyn_sandbox.mock.publish(event_type, b'{"not": "a cloud event"}')
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
    await polyn_sandbox.mock.create_stream({"name": stream, "subjects": [names.subject(">")]})
    async with make_app(nats_server, names).run() as running:
        ack = await pub(running, event_type, {"name": "Ada"}, ack=True)
    assert ack is not None and (ack.stream, ack.seq, ack.duplicate) == (stream, 1, False)
    assert (await polyn_sandbox.mock.stream_info(stream)).state["messages"] == 1
    real = await NatsTransport.connect(nats_server)
    try:
        assert (await real.stream_info(stream)).state["messages"] == 0
    finally:
        await real.close()
