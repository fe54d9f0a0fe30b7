"""Tracing of JetStream consumers (conformance 87): process spans per fetched batch, receive
spans per message with the sender's span as parent and a link to their batch's process span."""

from __future__ import annotations

from typing import Any

from consumer_support import Setup, wait_until
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from polyn import codec, tracing
from polyn.consumers import Ack, Pipeline, PipelineMessage, PullConsumer
from polyn.event import Event
from polyn.nats import Message


async def publish_traced(setup: Setup, n: int) -> Any:
    """Publish event ``n`` inside a send span, as polyn.pub does; return that span."""
    headers: dict[str, str] = {}
    with tracing.send_span(setup.type, headers) as span:
        event = setup.event(n)
        body = codec.encode(event, setup.schemas, setup.config)
        headers["Nats-Msg-Id"] = event.id
        await setup.transport.js_publish(setup.type, body, headers=headers)
    return span


async def test_pipeline_receive_spans_have_the_sender_as_parent_and_link_the_process_span(
    setup: Setup, spans: InMemorySpanExporter
) -> None:
    await setup.create()
    sent = [await publish_traced(setup, n) for n in range(3)]
    handled: list[int] = []

    class Traced(Pipeline):
        async def handle_message(self, processor: str, message: PipelineMessage) -> Any:
            handled.append(message.event.data["n"])
            return message

    async with setup.tree(Traced(type=setup.type)):
        await wait_until(lambda: len(handled) == 3)
    finished = spans.get_finished_spans()
    process = [s for s in finished if s.name == f"{setup.type} process"]
    receive = [s for s in finished if s.name == f"{setup.type} receive"]
    assert process and all(s.kind is SpanKind.CONSUMER for s in process)
    assert len(receive) == 3 and all(s.kind is SpanKind.CONSUMER for s in receive)
    senders = {s.get_span_context().span_id for s in sent}
    process_ids = {s.context.span_id for s in process}
    for span in receive:
        assert span.parent is not None and span.parent.span_id in senders
        assert len(span.links) == 1 and span.links[0].context.span_id in process_ids
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "NATS"
        assert span.attributes["messaging.destination"] == setup.type
        assert span.attributes["messaging.url"].startswith("nats://")


async def test_pull_consumer_receive_span_records_an_invalid_event(
    setup: Setup, spans: InMemorySpanExporter
) -> None:
    await setup.create()
    await setup.publish_raw(setup.invalid_body(1))
    await publish_traced(setup, 2)
    seen: list[int] = []

    class Consumer(PullConsumer):
        async def handle_message(self, event: Event, msg: Message) -> Any:
            seen.append(event.data["n"])
            return Ack.ACK

    async with setup.tree(Consumer(type=setup.type)):
        await wait_until(lambda: seen == [2])
    receive = [s for s in spans.get_finished_spans() if s.name == f"{setup.type} receive"]
    assert len(receive) == 2
    failed = [s for s in receive if s.events and s.events[0].name == "exception"]
    assert len(failed) == 1
    assert failed[0].events[0].attributes is not None
    assert failed[0].events[0].attributes["exception.type"].endswith("ValidationError")
