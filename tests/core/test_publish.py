"""pub / request / reply on a real server: the fact sheet's §13.5 cases, acks, many publishers."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest
import trio
from core_support import Core
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from polyn.actors import Actor
from polyn.app import App
from polyn.errors import HeaderError, NamingError, RequestTimeout, StreamError, ValidationError
from polyn.event import Event
from polyn.nats import Message, NatsConnection, Subscription
from polyn.publish import pub, reply, request
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer

UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


async def next_message(sub: Subscription, timeout: float = 5) -> Message:
    with trio.fail_after(timeout):
        return await sub.receive()


async def test_pub_sends_the_elixir_shaped_event_on_the_name_without_domain(core: Core) -> None:
    subject = core.type("pub.test.event.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        await pub(running, subject, "foo")  # §13.5 #71
        await pub(running, subject, "foo", source="orders")  # #72
        first, second = await next_message(sub), await next_message(sub)
    body = json.loads(first.data)
    assert first.subject == subject
    assert body["data"] == "foo"
    assert body["datacontenttype"] == "application/json"
    assert body["source"] == "com:test:user:backend"
    assert body["specversion"] == "1.0.1"
    assert body["type"] == f"com.test.{subject}"
    assert set(body) == {
        "id",
        "specversion",
        "type",
        "source",
        "time",
        "data",
        "datacontenttype",
        "dataschema",
        "polyndata",
    }
    assert body["polyndata"]["clientlang"] == "python"
    assert json.loads(second.data)["source"] == "com:test:user:backend:orders"
    await sub.aclose()


async def test_headers_carry_the_event_id_custom_headers_and_traceparent(
    core: Core, spans: InMemorySpanExporter
) -> None:
    subject = core.type("pub.test.event.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        await pub(running, subject, "foo", headers={"foo": "bar", "Nats-Msg-Id": "mine"})
        msg = await next_message(sub)
    body = json.loads(msg.data)
    assert msg.headers["Nats-Msg-Id"] == body["id"]  # §13.5 #73; always the event id (§16.30)
    assert msg.headers["foo"] == "bar"
    (span,) = [s for s in spans.get_finished_spans() if s.name == f"{subject} send"]
    context = span.get_span_context()
    assert span.kind is SpanKind.PRODUCER  # #76
    assert int(context.trace_flags) & 1  # sampled; newer SDKs also set W3C's "random" bit (0x02)
    assert msg.headers["traceparent"] == (  # #77, flags cut to the sampled bit (issue 19)
        f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    )
    assert dict(span.attributes or {}) == {
        "messaging.system": "NATS",
        "messaging.destination": subject,
        "messaging.protocol": "Polyn",
        "messaging.url": core.url,
        "messaging.message_id": body["id"],
        "messaging.message_payload_size_bytes": len(msg.data),
    }
    await sub.aclose()


async def test_reply_to_is_kept(core: Core) -> None:
    subject = core.type("pub.test.event.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        await pub(running, subject, "foo", reply_to="foo")  # #74
        assert (await next_message(sub)).reply_to == "foo"
    await sub.aclose()


async def test_invalid_data_raises_sends_nothing_and_marks_the_span(
    core: Core, spans: InMemorySpanExporter
) -> None:
    subject = core.type("pub.test.event.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        with pytest.raises(ValidationError, match=r"Property: `#` - 100 is not of type 'string'"):
            await pub(running, subject, 100)  # #75
        with pytest.raises(NamingError):
            await pub(running, "not a name", "foo")
        await pub(running, subject, "the valid one")
        msg = await next_message(sub)
    assert json.loads(msg.data)["data"] == "the valid one"  # the invalid one was never sent
    sends = [s for s in spans.get_finished_spans() if s.name == f"{subject} send"]
    failed = [s for s in sends if s.status.status_code.name == "ERROR"]
    assert len(sends) == 2 and len(failed) == 1, [(s.name, s.status, s.events) for s in sends]
    (exception,) = [e for e in failed[0].events if e.name == "exception"]
    attributes = exception.attributes or {}
    assert attributes["exception.type"].endswith("ValidationError")
    assert "is not of type 'string'" in str(attributes["exception.message"])
    await sub.aclose()


@attrs.frozen
class Person:
    name: str
    age: int


class PydanticLike:
    """Duck-types a pydantic v2 model: pub needs only ``model_dump(mode="json")``."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        assert mode == "json"
        return {"name": "Grace", "age": 85}


async def test_attrs_and_pydantic_payloads_become_dicts(core: Core) -> None:
    subject = core.type("user.created.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        await pub(running, subject, Person("Ada", 36))
        await pub(running, subject, PydanticLike())
        first, second = await next_message(sub), await next_message(sub)
    assert json.loads(first.data)["data"] == {"name": "Ada", "age": 36}
    assert json.loads(second.data)["data"] == {"name": "Grace", "age": 85}
    await sub.aclose()


async def test_a_schema_put_while_running_is_used_by_the_next_publish(core: Core) -> None:
    subject = core.type("brand.new.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:
        with pytest.raises(ValidationError, match="does not exist"):
            await pub(running, subject, {"n": 1})
        await core.transport.kv_put(core.bucket, subject, b'{"type": "object"}')
        with trio.fail_after(5):
            while True:
                try:
                    await pub(running, subject, {"n": 1})
                    break
                except ValidationError:
                    await trio.sleep(0.01)
        assert json.loads((await next_message(sub)).data)["data"] == {"n": 1}
    await sub.aclose()


async def test_reply_publishes_to_the_inbox_with_a_temporary_span(
    core: Core, spans: InMemorySpanExporter
) -> None:
    sub = await core.transport.subscribe(core.names.subject("INBOX.me"))
    async with core.app().run() as running:
        await reply(
            running, core.names.subject("INBOX.me"), core.type("reply.test.event.v1"), "foo"
        )
        msg = await next_message(sub)  # §13.5 #78
    assert json.loads(msg.data)["data"] == "foo"
    (span,) = [s for s in spans.get_finished_spans() if s.name == "(temporary) send"]
    assert (span.attributes or {})["messaging.destination"] == "(temporary)"
    assert "traceparent" in msg.headers
    await sub.aclose()


class Replier(Actor):
    """Answers requests on ``subject`` with ``answer`` from inside the tree, by name."""

    def __init__(self, subject: str, answer_type: str, raw: bytes | None = None) -> None:
        super().__init__()
        self.subject, self.answer_type, self.raw = subject, answer_type, raw

    async def init(self) -> None:
        from polyn.nats import transport_for

        self.sub = await transport_for("nats").subscribe(self.subject)
        self.nursery.start_soon(self.loop)

    async def loop(self) -> None:
        async for msg in self.sub:
            assert msg.reply_to is not None
            if self.raw is not None:
                from polyn.nats import transport_for

                await transport_for("nats").publish(msg.reply_to, self.raw)
            else:
                await reply("nats", msg.reply_to, self.answer_type, "bar")


async def test_request_returns_the_validated_reply_with_linked_spans(
    core: Core, spans: InMemorySpanExporter
) -> None:
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    async with core.app(Replier(asked, answer)).run() as running:
        event = await request(running, asked, "foo", timeout=5)  # §13.5 #79
    assert isinstance(event, Event)
    assert event.data == "bar" and event.type == f"com.test.{answer}"
    finished = {s.name: s for s in spans.get_finished_spans()}
    send, temp_send, temp_receive = (
        finished[f"{asked} send"],
        finished["(temporary) send"],
        finished["(temporary) receive"],
    )
    assert temp_receive.kind is SpanKind.CONSUMER
    assert temp_receive.parent is not None
    assert temp_receive.parent.span_id == temp_send.context.span_id
    assert send.kind is SpanKind.PRODUCER  # the full chain through a Responder: test_consumers


async def test_request_timeout_raises_and_is_recorded_on_the_send_span(
    core: Core, spans: InMemorySpanExporter
) -> None:
    asked = core.type("request.test.request.v1")
    sub = await core.transport.subscribe(asked)  # listens but never answers
    async with core.app().run() as running:
        with pytest.raises(RequestTimeout, match=f"request for {asked}"):
            await request(running, asked, "foo", timeout=0.2)  # §13.5 #80
    (send,) = [s for s in spans.get_finished_spans() if s.name == f"{asked} send"]
    messages = [str((e.attributes or {}).get("exception.message")) for e in send.events]
    assert any(f"request for {asked} timeout. payload: \n" in m for m in messages)
    await sub.aclose()


async def test_invalid_request_and_invalid_reply_raise(core: Core) -> None:
    asked = core.type("request.test.request.v1")
    async with core.app(Replier(asked, "", raw=b"100")).run() as running:
        with pytest.raises(ValidationError):
            await request(running, asked, 100)  # §13.5 #81: invalid request, nothing sent
        with pytest.raises(ValidationError, match="Polyn events need to follow the CloudEvent"):
            await request(running, asked, "foo", timeout=5)  # the reply is raw "100"


async def test_many_tasks_publishing_all_arrive(core: Core) -> None:
    subject = core.type("user.created.v1")
    sub = await core.transport.subscribe(subject)
    async with core.app().run() as running:

        async def publisher(n: int) -> None:
            for i in range(50):
                await pub(running, subject, {"name": f"{n}-{i}"})

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(publisher, n)
        seen = set()
        with trio.fail_after(10):
            while len(seen) < 1000:
                seen.add(json.loads((await sub.receive()).data)["data"]["name"])
    assert len(seen) == 1000
    await sub.aclose()


async def test_ack_true_returns_the_pub_ack_and_no_stream_is_a_stream_error(core: Core) -> None:
    subject = core.type("user.created.v1")
    stream = core.names.stream()
    async with core.app().run() as running:
        with pytest.raises(StreamError, match="no JetStream stream captures"):
            await pub(running, subject, {"name": "Ada"}, ack=True)
        await core.transport.create_stream(
            {"name": stream, "subjects": [subject], "storage": "memory"}
        )
        try:
            ack = await pub(running, subject, {"name": "Ada"}, ack=True)
            assert ack is not None and ack.stream == stream and ack.seq == 1
            assert not ack.duplicate
        finally:
            await core.transport.delete_stream(stream)


async def test_ack_true_across_a_server_restart_stores_each_event_once(core: Core) -> None:
    subject = core.type("user.created.v1")
    with NatsServer() as server:
        config = attrs.evolve(core.config, servers=(server.url,))
        schemas = {subject: {"type": "object"}}
        app = App(config, [NatsConnection(), SchemaStore(schemas=schemas)])
        async with app.run() as running:
            from polyn.resolve import resolve

            transport = resolve(running).transport
            await transport.create_stream(
                {"name": "ONCE", "subjects": [subject], "storage": "file"}
            )
            acked: list[int] = []

            async def publisher(n: int) -> None:
                for i in range(10):
                    ack = await pub(running, subject, {"n": n, "i": i}, ack=True)
                    assert ack is not None
                    acked.append(ack.seq)

            async with trio.open_nursery() as nursery:
                for n in range(5):
                    nursery.start_soon(publisher, n)
                await trio.sleep(0.05)
                server.restart()
            info = await transport.stream_info("ONCE")
        assert len(acked) == 50
        assert info.state["messages"] == 50  # each event stored once, none lost


async def test_pub_by_connection_name_inside_the_tree(core: Core) -> None:
    subject = core.type("pub.test.event.v1")
    sub = await core.transport.subscribe(subject)

    class Greeter(Actor):
        async def init(self) -> None:
            await pub("nats", subject, "from inside")

    async with core.app(Greeter()).run():
        assert json.loads((await next_message(sub)).data)["data"] == "from inside"
    await sub.aclose()


async def test_a_user_header_cannot_shadow_the_event_id_or_the_trace_context(core: Core) -> None:
    """Issue 21, finding 1: a user's ``nats-msg-id`` (any case) or ``traceparent`` header is
    dropped, so two events are never taken for duplicates of each other."""
    subject = core.type("user.created.v1")
    stream = core.names.stream()
    await core.transport.create_stream({"name": stream, "subjects": [subject], "storage": "memory"})
    sub = await core.transport.subscribe(subject)
    user = {"nats-msg-id": "same", "NATS-MSG-ID": "same", "TraceParent": "00-x-y-01", "X": "1"}
    try:
        async with core.app().run() as running:
            acks = [await pub(running, subject, {"name": n}, headers=user, ack=True) for n in "ab"]
            assert [(a is not None and a.duplicate) for a in acks] == [False, False]
            for _ in "ab":
                msg = await next_message(sub)
                names = [key.lower() for key in msg.headers]
                assert names.count("nats-msg-id") == 1
                assert msg.headers["Nats-Msg-Id"] == json.loads(msg.data)["id"]
                assert "TraceParent" not in msg.headers and msg.headers["X"] == "1"
    finally:
        await sub.aclose()
        await core.transport.delete_stream(stream)


async def test_an_event_id_with_a_line_break_cannot_inject_a_header(core: Core) -> None:
    from polyn.publish import publish_event
    from polyn.resolve import resolve

    subject = core.type("user.created.v1")
    stream = core.names.stream()
    await core.transport.create_stream({"name": stream, "subjects": [subject], "storage": "memory"})
    try:
        async with core.app().run() as running:
            resolved = resolve(running)
            for ack in (False, True):
                event = Event.new(
                    core.config, subject, {"name": "Ada"}, id="x\r\nNats-Msg-Id: injected"
                )
                with pytest.raises(HeaderError):
                    await publish_event(resolved, event, ack=ack, subject=subject)
            await resolved.transport.flush()
        assert (await core.transport.stream_info(stream)).state["messages"] == 0
    finally:
        await core.transport.delete_stream(stream)


async def test_traceparent_on_the_wire_has_only_the_sampled_flag(
    core: Core, spans: InMemorySpanExporter
) -> None:
    """Issue 19: the SDK sets W3C level 2's random-trace-id bit (flags ``03``); Elixir's
    propagator accepts only ``00`` / ``01``. Read off a raw NATS protocol connection, so what
    is checked is the bytes the server delivers, not a client's parsing of them."""
    subject = core.type("pub.test.event.v1")
    host, port = core.url.removeprefix("nats://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    buffer = b""

    async def read_until(marker: bytes) -> bytes:
        nonlocal buffer
        with trio.fail_after(5):
            while marker not in buffer:
                chunk = await stream.receive_some(65536)
                assert chunk, "the server closed the connection"
                buffer += chunk
        head, _, buffer = buffer.partition(marker)
        return head + marker

    await read_until(b"\r\n")  # INFO
    await stream.send_all(
        b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n'
        + f"SUB {subject} 1\r\nPING\r\n".encode()
    )
    await read_until(b"PONG\r\n")
    async with core.app().run() as running:
        for _ in range(20):
            await pub(running, subject, "foo")
    frames = b""
    while frames.count(b"HMSG ") < 20:
        frames += await read_until(b"\r\n\r\n")
    await stream.aclose()
    parents = re.findall(rb"\r\ntraceparent: ([^\r]*)\r\n", frames)
    assert len(parents) == 20
    for value in parents:
        assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", value), value
    assert {value[-2:] for value in parents} == {b"01"}  # the test SDK samples while testing


def test_a_received_traceparent_with_other_flags_is_still_accepted(
    spans: InMemorySpanExporter,
) -> None:
    from opentelemetry import trace

    from polyn import tracing

    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    for flags in ("03", "ff", "02"):
        context = tracing.extract({"traceparent": f"00-{trace_id}-{span_id}-{flags}"})
        assert context is not None
        parent = trace.get_current_span(context).get_span_context()
        assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (trace_id, span_id)
        assert parent.is_remote


async def test_pub_with_an_id_deduplicates_a_retry_and_its_error_carries_the_id(
    core: Core,
) -> None:
    """Issue 21, finding 14: a ``pub(ack=True)`` that raised could not be retried safely."""
    subject = core.type("user.created.v1")
    stream = core.names.stream()
    async with core.app().run() as running:
        with pytest.raises(StreamError) as failed:
            await pub(running, subject, {"name": "Ada"}, ack=True)
        assert failed.value.event_id is not None
        with pytest.raises(StreamError) as again:
            await pub(running, subject, {"name": "Ada"}, ack=True, id=failed.value.event_id)
        assert again.value.event_id == failed.value.event_id
        await core.transport.create_stream(
            {"name": stream, "subjects": [subject], "storage": "memory"}
        )
        try:
            first = await pub(running, subject, {"name": "Ada"}, ack=True, id="order-1")
            retry = await pub(running, subject, {"name": "Ada"}, ack=True, id="order-1")
            assert first is not None and retry is not None
            assert (first.duplicate, retry.duplicate, retry.seq) == (False, True, first.seq)
            assert (await core.transport.stream_info(stream)).state["messages"] == 1
        finally:
            await core.transport.delete_stream(stream)


async def test_request_with_message_returns_the_replys_headers_and_subject(core: Core) -> None:
    """Issue 19: the reply's headers and subject were unreachable."""
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")

    class HeaderReplier(Replier):
        async def loop(self) -> None:
            async for msg in self.sub:
                assert msg.reply_to is not None
                await reply("nats", msg.reply_to, answer, "bar", headers={"X-Region": "eu"})

    async with core.app(HeaderReplier(asked, answer)).run() as running:
        event, message = await request(running, asked, "foo", timeout=5, with_message=True)
        plain = await request(running, asked, "foo", timeout=5)
    assert event.data == "bar" and plain.data == "bar"
    assert message.headers["X-Region"] == "eu"
    assert message.headers["Nats-Msg-Id"] == event.id
    assert message.subject.startswith("_INBOX.")
    assert json.loads(message.data)["id"] == event.id


# -- the hot path's envelope template ---------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=_JSON, source=st.sampled_from([None, "signup", "a.b"]), event_id=st.text(min_size=1))
def test_the_template_writes_the_bytes_codec_encode_writes(
    data: Any, source: str | None, event_id: str
) -> None:
    """The hot path's envelope (issue 17) is byte for byte what ``codec.encode`` writes, or
    it steps aside (``_plain_json`` false, or orjson refuses) and the codec decides."""
    from polyn import codec
    from polyn.config import Config
    from polyn.publish import _plain_json, _template

    config = Config(domain="com.test", source_root="user.backend")
    template = _template(config, "user.created.v1", source)
    event = Event.new(config, "user.created.v1", data, source=source, id=event_id)
    assert event.time is not None
    try:
        expected = codec.encode(event, codec.Schemas.from_dict({"user.created.v1": True}), config)
    except ValidationError:
        expected = None
    if not _plain_json(data):
        return
    try:
        rendered = template.render(event_id, event.time, data)
    except Exception:
        return  # orjson refused (a lone surrogate): pub then goes through the codec
    assert expected is not None, "the template accepted what the codec refuses"
    assert rendered == expected
