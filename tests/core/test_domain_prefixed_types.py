"""A type given with the config's domain is stripped of it everywhere (issue 20, point 8).

``pub(running, "com.test.user.created.v1", ...)`` used to publish to the subject
``com.test.user.created.v1``, which no consumer of ``user.created.v1`` reads: the event was
lost without a word. Consumers already strip the domain; pub, request, reply and the portal do
it the same way (:func:`polyn.naming.trim_domain_prefix`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import trio
from core_support import Core

from polyn.consumers import Ack, PullConsumer, Responder
from polyn.event import Event
from polyn.nats import Message
from polyn.portal import Portal
from polyn.publish import pub, reply, request


class Collector(PullConsumer):
    received: ClassVar[list[Event]] = []
    both: ClassVar[trio.Event] = trio.Event()

    async def handle_message(self, event: Event, msg: Message) -> Ack:
        type(self).received.append(event)
        if len(type(self).received) == 2:
            type(self).both.set()
        return Ack.ACK


async def test_a_domain_prefixed_type_reaches_the_consumer_of_its_message_name(
    core: Core,
) -> None:
    await core.load_schemas()
    created = core.type("user.created.v1")
    stream = core.names.stream("users")
    await core.transport.create_stream({"name": stream, "subjects": [created], "storage": "memory"})
    durable = "user_backend_" + created.replace(".", "_")
    await core.transport.create_consumer(
        stream, {"durable_name": durable, "ack_policy": "explicit"}
    )
    Collector.received, Collector.both = [], trio.Event()
    try:
        async with core.app(Collector(type=created, stream_name=stream)).run() as running:
            ack = await pub(running, f"com.test.{created}", {"name": "Ada"}, ack=True)
            assert ack is not None and ack.stream == stream
            await pub(running, f"com.test.{created}", {"name": "Bob"})  # the core publish too
            with trio.fail_after(10):
                await Collector.both.wait()
    finally:
        await core.transport.delete_stream(stream)
    assert [e.data["name"] for e in Collector.received] == ["Ada", "Bob"]
    assert {e.type for e in Collector.received} == {f"com.test.{created}"}


class Echo(Responder):
    answer_type = ""

    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        # The reply's type with the domain too: reply strips it the same way.
        await reply(self.connection, msg.reply_to or "", f"com.test.{self.answer_type}", "ok")
        return None


async def test_request_and_reply_strip_the_domain_as_pub_does(core: Core) -> None:
    await core.load_schemas()
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    Echo.answer_type = answer
    async with core.app(Echo(subject=asked)).run() as running:
        answered = await request(running, f"com.test.{asked}", "A1", timeout=5)
    assert answered.data == "ok"
    assert answered.type == f"com.test.{answer}"


async def test_the_portals_pub_strips_the_domain_too(core: Core) -> None:
    await core.load_schemas()
    created = core.type("user.created.v1")
    sub = await core.transport.subscribe(created)
    try:
        async with Portal(core.app()) as portal:  # in a trio run: the same run, no thread
            await portal.pub(f"com.test.{created}", {"name": "Ada"})
            with trio.fail_after(10):
                delivered = await sub.receive()
    finally:
        await sub.aclose()
    assert delivered.subject == created
