"""Subscriber, Responder and dead letters on a real server; traces across two apps."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
import trio
from core_support import Core
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from polyn.consumers import Responder, Subscriber, dead_letter
from polyn.errors import RequestTimeout, ResponderError
from polyn.event import Event
from polyn.nats import Message, Subscription
from polyn.publish import pub, request

TRACEPARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


async def next_message(sub: Subscription, timeout: float = 5) -> Message:
    with trio.fail_after(timeout):
        return await sub.receive()


def elixir_body(core: Core, name: str, data: Any, event_id: str) -> bytes:
    """An event as the Elixir client 0.6.5 serializes it (Jason, compact, all nine keys)."""
    return json.dumps(
        {
            "id": event_id,
            "specversion": "1.0.1",
            "type": f"com.test.{name}",
            "source": "com:test:user:backend:orders",
            "time": "2023-07-06T16:20:24.123456Z",
            "data": data,
            "datacontenttype": "application/json",
            "dataschema": None,
            "polyndata": {
                "clientlang": "elixir",
                "clientlangversion": "1.14.3",
                "clientversion": "0.6.5",
            },
        },
        separators=(",", ":"),
    ).encode()


def publish_with_plain_nats_py(url: str, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """Publish as another (non-Polyn) client would: plain nats-py on its own asyncio loop."""

    async def main() -> None:
        nc = await nats.connect(url)
        for subject, body, headers in messages:
            await nc.publish(subject, body, headers=headers)
        await nc.flush()
        await nc.close()

    asyncio.run(main())


class Recorder(Subscriber):
    """Keeps what it handled; fails on events whose name is "fail"."""

    handled: list[Event]

    async def init(self) -> None:
        self.handled = []
        await super().init()

    async def handle_message(self, event: Event, msg: Message) -> None:
        if isinstance(event.data, dict) and event.data.get("name") == "fail":
            raise RuntimeError("the handler failed\nwith a second line")
        self.handled.append(event)


async def wait_for(predicate: Any, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls another actor's state
            await trio.sleep(0.01)


async def test_subscriber_receives_an_elixir_event_sent_by_plain_nats_py(core: Core) -> None:
    subject = core.type("user.created.v1")
    async with core.app(Recorder(subject=subject, name="recorder")).run() as running:
        recorder = running.ref("recorder").running_actor()
        assert isinstance(recorder, Recorder)
        event_id = str(uuid.uuid4())
        body = elixir_body(core, subject, {"name": "Ada", "age": 36}, event_id)
        # Gnat sends the header names as given; the Elixir client gives "Nats-Msg-Id".
        await trio.to_thread.run_sync(
            publish_with_plain_nats_py, core.url, [(subject, body, {"Nats-Msg-Id": event_id})]
        )
        await wait_for(lambda: len(recorder.handled) == 1)
    (event,) = recorder.handled
    assert event.id == event_id
    assert event.type == f"com.test.{subject}"
    assert event.source == "com:test:user:backend:orders"
    assert event.data == {"name": "Ada", "age": 36}
    assert event.polyndata["clientlang"] == "elixir"


async def test_a_subject_given_with_the_domain_is_stripped_of_it(core: Core) -> None:
    """Issue 20 (8): consumers strip the config's domain from a type, as naming does."""
    subject = core.type("user.created.v1")
    recorder = Recorder(subject=f"com.test.{subject}", name="recorder")
    async with core.app(recorder).run() as running:
        running_recorder = running.ref("recorder").running_actor()
        assert isinstance(running_recorder, Recorder)
        await pub(running, subject, {"name": "Ada"})
        await wait_for(lambda: len(running_recorder.handled) == 1)


async def test_a_subscriber_logs_and_drops_an_event_without_schema_and_reports_it(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21 (2): a missing schema is a configuration fault: logged loudly as one, the event
    dropped (with a dead letter: core NATS keeps nothing to retry), health() false until the
    schema is back; the subscriber goes on."""
    subject = core.type("user.created.v1")
    orphan = core.type("user.removed.v1")  # no schema in the bucket
    letters = await core.transport.subscribe("polyn.deadletter." + orphan)
    app = core.app(
        Recorder(subject=subject, name="recorder"), Recorder(subject=orphan, name="orphans")
    )
    async with app.run() as running:
        body = elixir_body(core, orphan, {"name": "Ada"}, str(uuid.uuid4()))
        await core.transport.publish(orphan, body)
        letter = await next_message(letters)
        assert letter.headers["Polyn-Error-Type"] == "SchemaNotFoundError"
        assert not running.health()
        await pub(running, subject, {"name": "Grace"})  # the others go on
        recorder = running.ref("recorder").running_actor()
        assert isinstance(recorder, Recorder)
        await wait_for(lambda: len(recorder.handled) == 1)
        await core.transport.kv_put(core.bucket, orphan, json.dumps({"type": "object"}).encode())
        await wait_for(running.health)
    assert any(
        r.levelname == "ERROR" and "configuration fault" in r.getMessage() for r in caplog.records
    )
    await letters.aclose()


async def test_invalid_messages_and_handler_errors_are_dead_lettered_and_it_goes_on(
    core: Core,
) -> None:
    subject = core.type("user.created.v1")
    letters = await core.transport.subscribe("polyn.deadletter." + subject)
    async with core.app(Recorder(subject=subject, name="recorder")).run() as running:
        recorder = running.ref("recorder").running_actor()
        assert isinstance(recorder, Recorder)
        bad_id = str(uuid.uuid4())
        invalid = elixir_body(core, subject, {"name": 123}, bad_id)
        await trio.to_thread.run_sync(
            publish_with_plain_nats_py,
            core.url,
            [
                (
                    subject,
                    invalid,
                    {
                        "Nats-Msg-Id": bad_id,
                        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                    },
                ),
                (subject, b"not json at all", {}),
            ],
        )
        await pub(running, subject, {"name": "fail"})
        await pub(running, subject, {"name": "Grace"})
        first = await next_message(letters)
        second = await next_message(letters)
        third = await next_message(letters)
        await wait_for(lambda: [e.data["name"] for e in recorder.handled] == ["Grace"])
        assert running.health()

    assert first.subject == "polyn.deadletter." + subject
    assert first.data == invalid  # the body unchanged
    headers = first.headers
    assert (
        headers["Polyn-Error"]
        == f"Polyn event {bad_id} from com:test:user:backend:orders is not valid"
    )
    assert headers["Polyn-Error-Type"] == "ValidationError"
    assert headers["Polyn-Consumer"] == "recorder"
    assert headers["Polyn-Original-Subject"] == subject
    assert headers["Polyn-Original-Id"] == bad_id
    assert headers["Nats-Msg-Id"] == f"{bad_id}:recorder"
    assert headers["traceparent"] == TRACEPARENT

    assert second.data == b"not json at all"
    assert second.headers["Polyn-Error"].startswith("Polyn was unable to decode")
    assert "\n" not in second.headers["Polyn-Error"]
    assert "Nats-Msg-Id" not in second.headers  # the original had none

    assert third.headers["Polyn-Error"] == "the handler failed"
    assert third.headers["Polyn-Error-Type"] == "RuntimeError"
    assert json.loads(third.data)["data"] == {"name": "fail"}
    await letters.aclose()


async def test_queue_group_members_share_the_messages(core: Core) -> None:
    subject = core.type("user.created.v1")
    first = Recorder(subject=subject, queue_group="q", name="one")
    second = Recorder(subject=subject, queue_group="q", name="two")
    async with core.app(first, second).run() as running:
        one, two = running.ref("one").running_actor(), running.ref("two").running_actor()
        assert isinstance(one, Recorder) and isinstance(two, Recorder)
        for i in range(40):
            await pub(running, subject, {"name": str(i)})
        await wait_for(lambda: len(one.handled) + len(two.handled) == 40)
        await trio.sleep(0.1)
        names = sorted(e.data["name"] for e in one.handled + two.handled)
    assert names == sorted(str(i) for i in range(40))  # each exactly once


async def test_dead_letters_go_through_jetstream_when_a_stream_captures_them(
    core: Core,
) -> None:
    subject = core.type("user.created.v1")
    stream = core.names.stream("deadletters")
    await core.transport.create_stream(
        {
            "name": stream,
            "subjects": ["polyn.deadletter." + core.names.subject(">")],
            "storage": "memory",
        }
    )
    try:
        original = Message(subject, b"{}", headers={"Nats-Msg-Id": "abc"})
        error = ValueError("bad")
        await dead_letter(core.transport, original, error, "billing", jetstream=True)
        await dead_letter(core.transport, original, error, "mailer", jetstream=True)
        await dead_letter(core.transport, original, error, "billing", jetstream=True)  # dup
        info = await core.transport.stream_info(stream)
        assert info.state["messages"] == 2  # one per consumer, the repeat deduplicated
    finally:
        await core.transport.delete_stream(stream)


async def test_a_dead_letter_too_large_is_truncated(core: Core) -> None:
    subject = core.type("big.v1")
    letters = await core.transport.subscribe("polyn.deadletter." + subject)
    body = b"x" * (core.transport.max_payload - 50)
    await dead_letter(
        core.transport, Message(subject, body), ValueError("no"), "c", jetstream=False
    )
    letter = await next_message(letters)
    assert letter.headers["Polyn-Truncated"] == "true"
    assert 0 < len(letter.data) < len(body) and body.startswith(letter.data)
    await letters.aclose()


class Quotes(Responder):
    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        if event.data == "fail":
            raise RuntimeError("cannot quote")
        if event.data == "bad reply":
            return self.answer_type, 42  # the reply schema wants a string
        return self.answer_type, f"quote for {event.data}"

    answer_type = ""


async def test_responder_answers_and_reports_what_it_cannot_answer(core: Core) -> None:
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    Quotes.answer_type = answer
    letters = await core.transport.subscribe("polyn.deadletter." + asked)
    async with core.app(Quotes(subject=asked, name="quotes")).run() as running:
        reply_event = await request(running, asked, "A1", timeout=5)
        assert reply_event.data == "quote for A1"
        assert reply_event.type == f"com.test.{answer}"
        # issue 21 (14): a failure reaches the requester as an error, at once, not a timeout
        with trio.fail_after(5):
            with pytest.raises(ResponderError) as failed:
                await request(running, asked, "fail", timeout=30)
        assert failed.value.error_type == "RuntimeError"
        assert failed.value.reason == "cannot quote"
        assert str(failed.value) == f"the responder on {asked} failed: RuntimeError: cannot quote"
        with trio.fail_after(5), pytest.raises(ResponderError) as failed:
            await request(running, asked, "bad reply", timeout=30)
        assert failed.value.error_type == "ValidationError"
        assert "\n" not in failed.value.reason and failed.value.reason.startswith("Polyn event")
        inbox = core.names.subject("inbox")
        replies = await core.transport.subscribe(inbox)
        await core.transport.publish(asked, b"123", reply_to=inbox)
        invalid = await next_message(replies)
        assert invalid.data == b"" and invalid.headers["Polyn-Error-Type"] == "ValidationError"
        await replies.aclose()
        errors = [(await next_message(letters)).headers["Polyn-Error-Type"] for _ in range(3)]
        assert (await request(running, asked, "B2", timeout=5)).data == "quote for B2"
    assert errors == ["RuntimeError", "ValidationError", "ValidationError"]
    await letters.aclose()


@pytest.mark.parametrize(
    ("error_replies", "expected"),
    [("type", ("RuntimeError", "")), ("off", None)],
)
async def test_responder_error_replies_are_configurable(
    core: Core, error_replies: str, expected: tuple[str, str] | None
) -> None:
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    Quotes.answer_type = answer
    app = core.app(Quotes(subject=asked, error_replies=error_replies))
    async with app.run() as running:
        if expected is None:  # no answer at all: the requester times out, as before
            with pytest.raises(RequestTimeout):
                await request(running, asked, "fail", timeout=0.5)
            return
        with pytest.raises(ResponderError) as failed:
            await request(running, asked, "fail", timeout=5)
        assert (failed.value.error_type, failed.value.reason) == expected
        assert "cannot quote" not in str(failed.value)


LEAKY_URL = "nats://alice:pw@Odd/Canary#7?x@db.internal:4222"


class Leaky(Responder):
    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        raise ConnectionError(f"cannot reach {LEAKY_URL} (retrying)")


async def test_error_replies_and_dead_letters_show_no_password_of_a_url_in_the_error(
    core: Core,
) -> None:
    """Issue 21 (5): the one-line reason of an error reply and of a dead letter goes through the
    same URL redaction as everything else: a password with ``@``, ``/``, ``#``, ``?`` is hidden
    whole, the user and host kept."""
    asked = core.type("request.test.request.v1")
    letters = await core.transport.subscribe("polyn.deadletter." + asked)
    try:
        async with core.app(Leaky(subject=asked)).run() as running:
            with trio.fail_after(5), pytest.raises(ResponderError) as failed:
                await request(running, asked, "x", timeout=30)
            letter = await next_message(letters)
    finally:
        await letters.aclose()
    shown = "cannot reach nats://alice:***@db.internal:4222 (retrying)"
    assert failed.value.reason == shown
    assert letter.headers["Polyn-Error"] == shown
    for text in (str(failed.value), letter.headers["Polyn-Error"]):
        assert "Odd" not in text and "Canary" not in text


class Hanging(Responder):
    async def handle_request(self, event: Event, msg: Message) -> tuple[str, Any] | None:
        if event.data == "hang":
            await trio.sleep_forever()
        return Quotes.answer_type, f"quote for {event.data}"


async def test_a_hung_responder_answers_with_an_error_reply_at_its_handler_timeout(
    core: Core,
) -> None:
    """Issue 21, finding 14: a Responder that hangs reached the requester only as a
    ``RequestTimeout`` (after the requester's own timeout); with ``handler_timeout`` the
    requester gets a ``ResponderError`` naming the timeout, and the Responder goes on."""
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    Quotes.answer_type = answer
    async with core.app(Hanging(subject=asked, handler_timeout=0.5)).run() as running:
        with trio.fail_after(10), pytest.raises(ResponderError) as failed:
            await request(running, asked, "hang", timeout=30)
        assert failed.value.error_type == "HandlerTimeout"
        assert "handler_timeout" in failed.value.reason
        assert (await request(running, asked, "A1", timeout=5)).data == "quote for A1"


async def test_spans_join_across_two_apps(core: Core, spans: InMemorySpanExporter) -> None:
    asked, answer = core.type("request.test.request.v1"), core.type("request.test.response.v1")
    created = core.type("user.created.v1")
    Quotes.answer_type = answer
    front = core.app()
    back = core.app(Quotes(subject=asked), Recorder(subject=created, name="recorder"))
    async with back.run() as backend, front.run() as frontend:
        recorder = backend.ref("recorder").running_actor()
        assert isinstance(recorder, Recorder)
        await pub(frontend, created, {"name": "Ada"})
        await wait_for(lambda: len(recorder.handled) == 1)
        await request(frontend, asked, "A1")
    finished = {(s.name, s.kind): s for s in spans.get_finished_spans()}
    send = finished[(f"{created} send", SpanKind.PRODUCER)]
    receive = finished[(f"{created} receive", SpanKind.CONSUMER)]
    assert receive.parent is not None and receive.parent.span_id == send.context.span_id
    assert receive.context.trace_id == send.context.trace_id
    assert dict(receive.attributes or {})["messaging.message_id"] == recorder.handled[0].id

    # request / reply: send -> receive -> (temporary) send -> (temporary) receive
    chain = [
        finished[(f"{asked} send", SpanKind.PRODUCER)],
        finished[(f"{asked} receive", SpanKind.CONSUMER)],
        finished[("(temporary) send", SpanKind.PRODUCER)],
        finished[("(temporary) receive", SpanKind.CONSUMER)],
    ]
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert len({span.context.trace_id for span in chain}) == 1


@pytest.mark.parametrize("flags", ["03", "01", "00"])
async def test_an_event_with_any_traceparent_flags_joins_its_trace_and_a_dead_letter_sends_00_or_01(
    core: Core, spans: InMemorySpanExporter, flags: str
) -> None:
    """Issue 19: a producer on a newer SDK sends flags ``03`` (W3C level 2's random bit): the
    receive span still joins its trace; what Polyn sends on (here a dead letter, forwarding the
    received context) carries the sampled bit only, as Elixir's propagator needs."""
    subject = core.type("user.created.v1")
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    parent = f"00-{trace_id}-{span_id}-{flags}"
    letters = await core.transport.subscribe("polyn.deadletter." + subject)
    try:
        async with core.app(Recorder(subject=subject, name="recorder")).run() as running:
            recorder = running.ref("recorder").running_actor()
            assert isinstance(recorder, Recorder)
            for name in ("Ada", "fail"):
                body = elixir_body(core, subject, {"name": name}, str(uuid.uuid4()))
                await core.transport.publish(subject, body, headers={"traceparent": parent})
            await wait_for(lambda: len(recorder.handled) == 1)
            letter = await next_message(letters)
    finally:
        await letters.aclose()
    receives = [s for s in spans.get_finished_spans() if s.name == f"{subject} receive"]
    assert receives
    for span in receives:
        assert span.parent is not None and span.parent.is_remote
        assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (
            trace_id,
            span_id,
        )
    sampled = int(flags, 16) & 1
    assert letter.headers["traceparent"] == f"00-{trace_id}-{span_id}-0{sampled}"


APP_SCRIPT = """
import sys, trio
import polyn.actors, polyn.app, polyn.config, polyn.consumers, polyn.nats, polyn.schema_store

marker = sys.argv[2]

class Stopper(polyn.consumers.Subscriber):
    subject = "sigterm.test.v1"

    async def handle_message(self, event, msg):
        pass

    async def terminate(self, reason):
        await super().terminate(reason)
        with open(marker, "w") as f:
            f.write(str(reason))

class Ready(polyn.actors.Actor):
    async def init(self):
        print("ready", flush=True)

config = polyn.config.Config(domain="com.test", source_root="svc", servers=[sys.argv[1]])
app = polyn.app.App(config, [
    polyn.nats.NatsConnection(),
    polyn.schema_store.SchemaStore(schemas={"sigterm.test.v1": True}),
    Stopper(),
    Ready(),
])
trio.run(app.main)
print("stopped", flush=True)
"""


def test_sigterm_stops_an_app_subprocess_cleanly(nats_url: str, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP_SCRIPT))
    marker = tmp_path / "terminated"
    process = subprocess.Popen(
        [sys.executable, str(script), nats_url, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert marker.read_text() == "shutdown"


BUSY_SCRIPT = """
import sys, trio
import polyn.actors, polyn.app, polyn.config, polyn.consumers, polyn.nats, polyn.schema_store

class Busy(polyn.consumers.Subscriber):
    subject = "ctrlc.test.v1"

    async def handle_message(self, event, msg):
        print("handling", flush=True)
        await trio.sleep(3600)

class Ready(polyn.actors.Actor):
    async def init(self):
        print("ready", flush=True)

config = polyn.config.Config(domain="com.test", source_root="svc", servers=[sys.argv[1]])
app = polyn.app.App(config, [
    polyn.nats.NatsConnection(),
    polyn.schema_store.SchemaStore(schemas={"ctrlc.test.v1": True}),
    Busy(),
    Ready(),
])
trio.run(app.main)
print("stopped", flush=True)
"""


@pytest.mark.slow  # the handler's own shutdown time (5 s) runs out before it is cancelled
def test_ctrl_c_stops_an_app_whose_handler_is_busy(nats_url: str, tmp_path: Path) -> None:
    """Issue 21 (8): what a handler raises is a failure of its message, but a real signal is
    not: Ctrl-C (SIGINT) during a handler stops the App."""
    script = tmp_path / "busy.py"
    script.write_text(textwrap.dedent(BUSY_SCRIPT))
    process = subprocess.Popen(
        [sys.executable, str(script), nats_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        body = json.dumps(
            {"id": "1", "specversion": "1.0.1", "type": "com.test.ctrlc.test.v1", "source": "x"}
        ).encode()
        publish_with_plain_nats_py(nats_url, [("ctrlc.test.v1", body, {})])
        assert process.stdout.readline().strip() == "handling"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"

