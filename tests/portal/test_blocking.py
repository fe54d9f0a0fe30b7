"""``with polyn.Portal(app) as portal``: blocking calls from synchronous code and threads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import trio
from _support import Names
from opentelemetry import trace
from portal_support import (
    ServerWatch,
    connections,
    eventually,
    make_app,
    new_threads,
)

import polyn
from polyn.server import NatsServer


class Quotes(polyn.Responder):
    def __init__(self, subject: str, answer: str, **options: Any) -> None:
        super().__init__(subject=subject, **options)
        self.answer = answer

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, Any]:
        return self.answer, {"price": len(event.data["sku"])}


def test_pub_from_many_threads_reaches_the_server(
    server: NatsServer, watch: ServerWatch, names: Names
) -> None:
    subject = names.subject("user.created.v1")
    stream = names.stream()
    watch.add_stream(stream, [names.subject("*.*.v1")])
    core = watch.subscribe(subject)
    with polyn.Portal(make_app(server.url, names.token)) as portal:

        def publish(n: int) -> int:
            portal.pub(subject, {"name": f"core {n}"})
            ack = portal.pub(subject, {"name": f"stored {n}"}, ack=True)
            assert ack is not None and ack.stream == stream
            return ack.seq

        with ThreadPoolExecutor(8) as pool:
            seqs = list(pool.map(publish, range(200)))
        eventually(lambda: len(core) == 400)

    assert len(set(seqs)) == 200  # every JetStream publish acknowledged with its own sequence
    stored = watch.stream_events(stream)
    assert sorted(e["data"]["name"] for e in stored if e["data"]["name"].startswith("stored")) == (
        sorted(f"stored {n}" for n in range(200))
    )
    assert {e["type"] for e in watch.events(subject)} == {f"com.test.{subject}"}
    assert sorted(e["data"]["name"] for e in watch.events(subject)) == sorted(
        [f"core {n}" for n in range(200)] + [f"stored {n}" for n in range(200)]
    )
    watch.delete_stream(stream)


def test_request_reply_and_stores(server: NatsServer, watch: ServerWatch, names: Names) -> None:
    asked, given = names.subject("quote.requested.v1"), names.subject("quote.given.v1")
    bucket = names.bucket("settings")
    inbox = names.subject("inbox")
    replies = watch.subscribe(inbox)
    app = make_app(
        server.url, names.token, Quotes(asked, given), polyn.JSONStore(bucket, create=True)
    )
    with polyn.Portal(app) as portal:
        answer = portal.request(asked, {"sku": "ABCD"}, timeout=2)
        assert isinstance(answer, polyn.Event)
        assert (answer.type, answer.data) == (f"com.test.{given}", {"price": 4})

        portal.reply(inbox, given, {"price": 7})
        eventually(lambda: len(replies) == 1)

        settings = portal.store(bucket)
        assert settings.put("banner", {"text": "hi"}) == 1
        assert settings.get("banner") == {"text": "hi"}
        assert settings.contents() == {"banner": {"text": "hi"}}
        assert watch.kv_get(bucket, "banner") == {"text": "hi"}  # written through to NATS
        settings.delete("banner")
        assert settings.get("banner") is None
        assert portal.health() is True
    (reply,) = watch.events(inbox)
    assert (reply["type"], reply["data"]) == (f"com.test.{given}", {"price": 7})
    watch.delete_bucket(bucket)


def test_errors_are_polyn_errors_in_the_calling_thread(server: NatsServer, names: Names) -> None:
    subject = names.subject("user.created.v1")
    with polyn.Portal(make_app(server.url, names.token)) as portal:

        def attempts() -> list[BaseException]:
            errors: list[BaseException] = []
            for call in (
                lambda: portal.pub(subject, {"name": ""}),  # breaks the schema
                lambda: portal.pub("no.such.schema.v1", {}),
                lambda: portal.pub(subject, {"name": "Ada"}, ack=True),  # no stream
                lambda: portal.request(names.subject("quote.requested.v1"), {"sku": "A"}),
                lambda: portal.reply("", subject, {"name": "Ada"}),
                lambda: portal.store("NO_SUCH_STORE").get("key"),
            ):
                try:
                    call()
                except BaseException as exc:
                    errors.append(exc)
            return errors

        with ThreadPoolExecutor(1) as pool:
            errors = pool.submit(attempts).result()

    invalid, unknown, no_stream, nobody, no_reply_to, no_store = errors
    assert isinstance(invalid, polyn.ValidationError)
    assert "should be non-empty" in str(invalid)
    assert isinstance(unknown, polyn.SchemaNotFoundError)
    assert isinstance(no_stream, polyn.StreamError)
    assert isinstance(nobody, polyn.RequestTimeout) and isinstance(nobody, TimeoutError)
    assert isinstance(no_reply_to, ValueError)
    assert isinstance(no_store, polyn.ActorError)


def test_start_and_stop_leave_no_thread_and_no_connection(server: NatsServer, names: Names) -> None:
    before_threads = set(threading.enumerate())
    eventually(lambda: connections(server) == 0)  # earlier tests' connections are gone
    portal = polyn.Portal(make_app(server.url, names.token))
    assert portal.health() is False  # not started: False, never an error
    with pytest.raises(polyn.PolynError, match="not started"):
        portal.pub(names.subject("user.created.v1"), {"name": "Ada"})

    with portal:
        assert connections(server) == 1
        assert any(t.name.startswith("polyn-portal") for t in new_threads(before_threads))
        assert portal.health() is True

    assert new_threads(before_threads) == []
    eventually(lambda: connections(server) == 0)
    assert portal.health() is False
    with pytest.raises(polyn.PolynError, match="stopped"):
        portal.pub(names.subject("user.created.v1"), {"name": "Ada"})
    with pytest.raises(polyn.PolynError, match="starts once"):
        portal.start()
    portal.stop()  # a second stop is a no-op


def test_a_failed_start_raises_its_error_and_leaves_no_thread(
    server: NatsServer, names: Names
) -> None:
    before_threads = set(threading.enumerate())
    app = make_app(server.url, names.token, polyn.JSONStore(names.bucket("missing")))
    with pytest.raises(polyn.ActorError, match="failed to start child 'MISSING_"):
        polyn.Portal(app).start()
    assert new_threads(before_threads) == []


class Fragile(polyn.Actor):
    async def handle_cast(self, request: Any) -> None:
        raise RuntimeError("boom")


def test_an_app_that_fails_by_itself_fails_the_calls_and_stop_raises(
    server: NatsServer, names: Names
) -> None:
    before_threads = set(threading.enumerate())
    app = make_app(server.url, names.token, Fragile(name="fragile"), max_restarts=0)
    portal = polyn.Portal(app).start()

    async def crash(running: polyn.Running) -> None:
        await running.ref("fragile").cast("crash")

    def refused() -> bool:
        try:
            portal.pub(names.subject("user.created.v1"), {"name": "Ada"})
        except polyn.PolynError as exc:  # while the tree stops: "actor 'nats' is not running"
            return "the portal is stopped" in str(exc)
        return False

    portal.call(crash)
    eventually(refused)  # once the tree has stopped, so has the portal
    assert portal.health() is False
    with pytest.raises(polyn.ActorError, match="maximum restart intensity"):
        portal.stop()
    assert new_threads(before_threads) == []


def test_stopping_fails_the_calls_still_waiting(server: NatsServer, names: Names) -> None:
    portal = polyn.Portal(make_app(server.url, names.token)).start()
    started = threading.Event()

    async def forever(running: polyn.Running) -> None:
        started.set()
        await trio.sleep_forever()

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(portal.call, forever)
        started.wait(5)
        portal.stop()
        with pytest.raises(polyn.PolynError, match="stopped before this call finished"):
            waiting.result(timeout=5)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_an_interrupted_blocking_call_is_cancelled_in_trio(
    server: NatsServer, names: Names
) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def forever(running: polyn.Running) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    def interrupt() -> None:
        started.wait(5)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()
    # Python's own Ctrl-C handler, whatever an earlier test's event loop left installed (an
    # asyncio runner's handler cancels its main task instead of raising).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with polyn.Portal(make_app(server.url, names.token)) as portal:
            threading.Thread(target=interrupt).start()
            with pytest.raises(KeyboardInterrupt):
                portal.call(forever)  # Ctrl-C while it waits
            assert cancelled.wait(5)
            eventually(lambda: portal.calls_in_flight == 0)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_blocking_call_from_the_portal_thread_is_refused(
    server: NatsServer, names: Names
) -> None:
    subject = names.subject("user.created.v1")
    with polyn.Portal(make_app(server.url, names.token)) as portal:

        async def deadlock(running: polyn.Running) -> None:
            portal.pub(subject, {"name": "Ada"})  # would wait for its own thread

        with pytest.raises(polyn.PolynError, match="own trio thread"):
            portal.call(deadlock)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_portal_used_after_fork_fails_with_a_clear_error(
    server: NatsServer, names: Names
) -> None:
    subject = names.subject("user.created.v1")
    with polyn.Portal(make_app(server.url, names.token)) as portal:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the portal's thread and connection stayed in the parent
            try:
                outcomes = []
                for call in (
                    lambda: portal.pub(subject, {"name": "Ada"}),
                    portal.health,
                    portal.stop,  # a no-op in the child: nothing of it runs here
                ):
                    try:
                        outcomes.append(f"returned {call()}")
                    except polyn.PolynError as exc:
                        outcomes.append(f"{type(exc).__name__}: {exc}")
                os.write(write, "\n".join(outcomes).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        assert portal.pub(subject, {"name": "Ada"}) is None  # the parent's portal still works
    pub, health, stop = report.split("\n")
    assert pub.startswith(f"PolynError: this portal was started in process {os.getpid()} ")
    assert f"and cannot be used in process {pid}, a child created by fork()" in pub
    assert "post_fork" in pub
    assert health == pub
    assert stop == "returned None"


def test_calls_from_many_threads_cross_into_trio_together(server: NatsServer, names: Names) -> None:
    """Calls made while trio is busy wait for it together and cross in one wake-up."""
    subject = names.subject("user.created.v1")
    held, release = threading.Event(), threading.Event()

    async def hold(running: polyn.Running) -> None:
        held.set()
        release.wait(10)  # blocks the trio thread on purpose, as a long handler step would

    with polyn.Portal(make_app(server.url, names.token)) as portal:
        gate = portal._gate
        assert gate is not None
        with ThreadPoolExecutor(9) as pool:
            holding = pool.submit(portal.call, hold)
            assert held.wait(5)
            wakeups = gate.wakeups
            published = [
                pool.submit(portal.pub, subject, {"name": f"thread {n}"}) for n in range(8)
            ]
            eventually(lambda: portal.calls_in_flight == 9)  # the 8 queued, and hold
            release.set()
            holding.result(timeout=5)
            assert [f.result(timeout=5) for f in published] == [None] * 8
        assert gate.wakeups == wakeups + 1


def test_the_callers_span_is_the_parent_of_the_calls_spans(
    server: NatsServer, names: Names, spans: Any
) -> None:
    """Tracing on: the spans of a call, made in trio, are children of the caller's span."""
    subject = names.subject("user.created.v1")
    asked, given = names.subject("quote.requested.v1"), names.subject("quote.given.v1")
    tracer = trace.get_tracer("an http framework")
    with polyn.Portal(make_app(server.url, names.token, Quotes(asked, given))) as portal:
        with tracer.start_as_current_span("POST /orders") as request:
            portal.pub(subject, {"name": "Ada"})  # inline in trio
            portal.request(asked, {"sku": "A"})  # in a task of its own in trio
        portal.pub(subject, {"name": "no parent"})
    finished = spans.get_finished_spans()
    parent = request.get_span_context().span_id
    pubs = [s for s in finished if s.name == f"{subject} send"]
    (ask,) = [s for s in finished if s.name == f"{asked} send"]
    assert [None if s.parent is None else s.parent.span_id for s in pubs] == [parent, None]
    assert ask.parent is not None and ask.parent.span_id == parent


def test_events_prepared_in_the_callers_thread_are_what_pub_sends(
    server: NatsServer, watch: ServerWatch, names: Names, spans: Any
) -> None:
    """Once an event of a kind went through pub in trio, portal.pub validates and encodes the
    next ones in the caller's thread and the trio thread only sends them: same envelope, a
    Nats-Msg-Id equal to the event id, the send span a child of the caller's span, and an
    invalid event still raises pub's worded error; a type given with the domain goes to the
    subject of its message name, as pub's."""
    from polyn.publish import prepare_pub

    subject = names.subject("user.created.v1")
    core = watch.subscribe(subject)
    tracer = trace.get_tracer("an http framework")
    with polyn.Portal(make_app(server.url, names.token)) as portal:
        portal.pub(subject, {"name": "first"})  # through pub in trio: verifies the template
        assert portal._running is not None
        tree = portal._running.tree
        assert prepare_pub(tree, subject, {"name": "Ada"}, None, None) is not None
        assert prepare_pub(tree, subject, {"name": ""}, None, None) is None  # invalid
        assert prepare_pub(tree, subject, {"name": "Ada"}, "elsewhere", None) is None
        with tracer.start_as_current_span("POST /users") as request:
            portal.pub(subject, {"name": "second", "age": 3})
            with pytest.raises(polyn.ValidationError, match="should be non-empty"):
                portal.pub(subject, {"name": ""})
        for n in range(2):  # the first through pub in trio, the second prepared: one subject
            portal.pub(f"com.test.{subject}", {"name": f"with the domain {n}"})
        eventually(lambda: len(core) == 4)
    first, second = (json.loads(msg.data) for msg in core[:2])
    assert [json.loads(msg.data)["data"]["name"] for msg in core[2:]] == [
        "with the domain 0",
        "with the domain 1",
    ]
    assert list(second) == list(first)  # the codec's attribute order
    assert {k: v for k, v in second.items() if k not in ("id", "time", "data")} == {
        k: v for k, v in first.items() if k not in ("id", "time", "data")
    }
    assert second["data"] == {"name": "second", "age": 3}
    assert second["id"] != first["id"]
    assert [msg.headers["Nats-Msg-Id"] for msg in core[:2]] == [first["id"], second["id"]]
    (send,) = [s for s in spans.get_finished_spans() if s.name == f"{subject} send"][1:2]
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id


SCRIPT = """
import sys
import polyn

class Goodbye(polyn.Actor):
    async def terminate(self, reason):
        print("terminated", flush=True)

url, subject = sys.argv[1], sys.argv[2]
config = polyn.Config(domain="com.test", source_root="portal.test", servers=[url])
schemas = {subject: {"type": "object"}}
app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas), Goodbye()])
portal = polyn.Portal(app).start()  # as a post-fork hook would, with no stop() anywhere
for n in range(200):
    portal.pub(subject, {"n": n})
print("exiting", flush=True)
"""


def test_a_portal_nobody_stopped_is_stopped_gracefully_at_exit(
    server: NatsServer, watch: ServerWatch, names: Names
) -> None:
    subject = names.subject("user.created.v1")
    received = watch.subscribe(subject)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.url, subject],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exiting\nterminated\n"  # the tree stopped: terminate ran
    eventually(lambda: len(received) == 200)
    assert [e["data"]["n"] for e in watch.events(subject)] == list(range(200))
