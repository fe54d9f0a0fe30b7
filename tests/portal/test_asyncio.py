"""``async with polyn.Portal(app) as portal`` on asyncio: coroutines, crossings, cancellation.

These tests run on asyncio through anyio's pytest plugin (``@pytest.mark.anyio``), next to
pytest-trio's ``trio_mode`` (see ``conftest.py``); the last test of the module runs on trio, so
the module itself shows the two plugins working side by side.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sniffio
import trio
from _support import Names, SharedDict
from portal_support import ServerWatch, connections, eventually, make_app, new_threads

import polyn
from polyn.server import NatsServer

anyio = pytest.mark.anyio


class Quotes(polyn.Responder):
    def __init__(self, subject: str, answer: str, **options: Any) -> None:
        super().__init__(subject=subject, **options)
        self.answer = answer

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, Any]:
        return self.answer, {"price": len(event.data["sku"])}


class Silent(polyn.Responder):
    """Takes requests and never answers: a request to it waits until it is cancelled."""

    def __init__(self, subject: str, taken: threading.Event, **options: Any) -> None:
        super().__init__(subject=subject, **options)
        self.taken = taken

    async def handle_request(self, event: polyn.Event, msg: Any) -> None:
        self.taken.set()
        await trio.sleep(3600)


async def until(event: threading.Event) -> None:
    """Wait for a thread's event without blocking the loop (nor starting a thread)."""
    for _ in range(500):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not set within 5 s")


@anyio
async def test_asyncio_tests_run_on_asyncio_next_to_pytest_trio() -> None:
    assert sniffio.current_async_library() == "asyncio"
    asyncio.get_running_loop()


@anyio
async def test_calls_from_asyncio(server: NatsServer, watch: ServerWatch, names: Names) -> None:
    subject = names.subject("user.created.v1")
    asked, given = names.subject("quote.requested.v1"), names.subject("quote.given.v1")
    stream, bucket = names.stream(), names.bucket("settings")
    watch.add_stream(stream, [subject])
    core = watch.subscribe(subject)
    app = make_app(
        server.url, names.token, Quotes(asked, given), polyn.JSONStore(bucket, create=True)
    )
    async with polyn.Portal(app) as portal:
        assert isinstance(portal, polyn.AsyncPortal)
        assert await portal.pub(subject, {"name": "core"}) is None
        ack = await portal.pub(subject, {"name": "stored"}, ack=True)
        assert ack is not None and (ack.stream, ack.seq) == (stream, 2)
        answer = await portal.request(asked, {"sku": "ABC"})
        assert (answer.type, answer.data) == (f"com.test.{given}", {"price": 3})
        store = portal.store(bucket)
        assert await store.put("k", [1, 2]) == 1
        assert await store.get("k") == [1, 2]
        assert await store.contents() == {"k": [1, 2]}
        await store.delete("k")
        assert await store.get("k") is None
        assert await portal.health() is True
        assert portal.blocking.health() is True  # the same portal, blocking (in a thread)
        eventually(lambda: len(core) == 2)
    assert [e["data"]["name"] for e in watch.stream_events(stream)] == ["core", "stored"]
    watch.delete_stream(stream)
    watch.delete_bucket(bucket)


@anyio
async def test_errors_are_raised_in_the_calling_task(server: NatsServer, names: Names) -> None:
    subject = names.subject("user.created.v1")
    async with polyn.Portal(make_app(server.url, names.token)) as portal:
        with pytest.raises(polyn.ValidationError, match="should be non-empty"):
            await portal.pub(subject, {"name": ""})
        with pytest.raises(polyn.StreamError):
            await portal.pub(subject, {"name": "Ada"}, ack=True)
        with pytest.raises(polyn.RequestTimeout):
            await portal.request(names.subject("quote.requested.v1"), {"sku": "A"})
        with pytest.raises(TimeoutError):  # RequestTimeout is a TimeoutError
            await portal.request(names.subject("quote.requested.v1"), {"sku": "A"})
        await portal.pub(subject, {"name": "still fine"})


@anyio
async def test_tasks_validate_and_encode_their_own_events(
    server: NatsServer, watch: ServerWatch, names: Names
) -> None:
    """After the first event of a kind, tasks validate and encode their events on their own
    loop (the crossing carries bytes): what arrives is the same, each with its own id."""
    subject = names.subject("user.created.v1")
    core = watch.subscribe(subject)
    async with polyn.Portal(make_app(server.url, names.token)) as portal:
        await portal.pub(subject, {"name": "first"})
        await asyncio.gather(*(portal.pub(subject, {"name": f"task {n}"}) for n in range(20)))
        with pytest.raises(polyn.ValidationError, match="should be non-empty"):
            await portal.pub(subject, {"name": ""})
        eventually(lambda: len(core) == 21)
    events = watch.events(subject)
    assert sorted(e["data"]["name"] for e in events[1:]) == sorted(f"task {n}" for n in range(20))
    assert len({e["id"] for e in events}) == 21
    assert [m.headers["Nats-Msg-Id"] for m in core] == [e["id"] for e in events]
    assert {e["type"] for e in events} == {f"com.test.{subject}"}


@anyio
async def test_many_tasks_share_one_crossing_each_way(server: NatsServer, names: Names) -> None:
    subject = names.subject("user.created.v1")
    async with polyn.Portal(make_app(server.url, names.token)) as portal:
        gate = portal.blocking._gate
        assert gate is not None
        await portal.pub(subject, {"name": "warm up"})
        wakeups, handbacks = gate.wakeups, gate.handbacks
        results = await asyncio.gather(
            *(portal.pub(subject, {"name": f"task {n}"}) for n in range(50))
        )
        assert results == [None] * 50
        # 50 tasks asked in one loop iteration: one wake-up of trio, one batch of results back.
        assert (gate.wakeups - wakeups, gate.handbacks - handbacks) == (1, 1)


@anyio
async def test_cancelling_a_task_cancels_its_call_in_trio(server: NatsServer, names: Names) -> None:
    asked = names.subject("quote.requested.v1")
    taken = threading.Event()
    started, cancelled = threading.Event(), threading.Event()

    async def forever(running: polyn.Running) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    app = make_app(server.url, names.token, Silent(asked, taken, shutdown=0.2))
    async with polyn.Portal(app) as portal:
        call = asyncio.create_task(portal.call(forever))
        await until(started)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(cancelled)  # the trio side was cancelled too

        ask = asyncio.create_task(portal.request(asked, {"sku": "A"}, timeout=3600))
        await until(taken)
        assert portal.blocking.calls_in_flight == 1
        ask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ask
        for _ in range(500):  # the request's task in trio ends
            if portal.blocking.calls_in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert portal.blocking.calls_in_flight == 0


@anyio
async def test_async_with_leaves_no_thread_and_no_connection(
    server: NatsServer, names: Names
) -> None:
    before_threads = set(threading.enumerate())
    eventually(lambda: connections(server) == 0)
    async with polyn.Portal(make_app(server.url, names.token)) as portal:
        assert connections(server) == 1
        assert await portal.health()
    assert new_threads(before_threads) == []
    eventually(lambda: connections(server) == 0)
    with pytest.raises(polyn.PolynError, match="stopped"):
        await portal.pub(names.subject("user.created.v1"), {"name": "Ada"})


@anyio
async def test_a_cancelled_start_stops_the_portal_again(server: NatsServer, names: Names) -> None:
    before_threads = set(threading.enumerate())

    async def start() -> None:
        async with polyn.Portal(make_app(server.url, names.token)):
            raise AssertionError("the start should have been cancelled")  # pragma: no cover

    task = asyncio.create_task(start())
    await asyncio.sleep(0)  # the portal's thread is starting the App
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert new_threads(before_threads) == []


class Reserve(polyn.Responder):
    """Answers from the host: ``to_host`` with a coroutine function (the host's loop) or a
    plain function (a worker thread), recording where it ran."""

    def __init__(self, subject: str, answer: str, seen: SharedDict, **options: Any) -> None:
        super().__init__(subject=subject, **options)
        self.answer = answer
        self.seen = seen

    async def handle_request(self, event: polyn.Event, msg: Any) -> tuple[str, Any]:
        seen = self.seen

        async def on_host_loop(sku: str) -> int:
            seen["loop"] = asyncio.get_running_loop()
            seen["loop thread"] = threading.get_ident()
            return len(sku)

        def in_a_thread(sku: str) -> int:
            seen["thread"] = threading.get_ident()
            return len(sku) * 10

        seen["handler thread"] = threading.get_ident()
        price = await polyn.portal.to_host(on_host_loop, event.data["sku"])
        price += await polyn.portal.to_host(in_a_thread, event.data["sku"])
        return self.answer, {"price": price}


@anyio
async def test_a_handler_hands_work_to_the_host_loop_and_threads(
    server: NatsServer, names: Names
) -> None:
    asked, given = names.subject("quote.requested.v1"), names.subject("quote.given.v1")
    seen = SharedDict()  # an actor's start copies a plain dict
    async with polyn.Portal(make_app(server.url, names.token, Reserve(asked, given, seen))) as p:
        answer = await p.request(asked, {"sku": "ABCD"})
    assert answer.data == {"price": 44}
    assert seen["loop"] is asyncio.get_running_loop()  # this test's loop
    assert seen["loop thread"] == threading.get_ident()
    assert seen["handler thread"] != threading.get_ident()  # handlers run on the portal's thread
    assert seen["thread"] not in (threading.get_ident(), seen["handler thread"])


@anyio
async def test_a_cancelled_handler_cancels_its_coroutine_on_the_host_loop(
    server: NatsServer, names: Names
) -> None:
    started = threading.Event()
    outcome: list[str] = []

    async def on_host() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            outcome.append("cancelled on the host loop")
            raise

    async def hand_over(running: polyn.Running) -> None:
        await polyn.portal.to_host(on_host)

    async with polyn.Portal(make_app(server.url, names.token)) as portal:
        call = asyncio.create_task(portal.call(hand_over))
        await until(started)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(500):
            if outcome and portal.blocking.calls_in_flight == 0:
                break
            await asyncio.sleep(0.01)
    assert outcome == ["cancelled on the host loop"]


async def test_trio_tests_still_run_on_trio() -> None:
    assert sniffio.current_async_library() == "trio"
    await trio.lowlevel.checkpoint()
