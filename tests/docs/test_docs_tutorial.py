"""The tutorial (docs/tutorial/first-service.md), done as its reader does it.

In an empty folder, every file the tutorial shows (a fenced block with ``title="path"``) is
written as shown; then the tutorial's commands run in order, each checked to be on the page:
``polyn server`` (on a free port: ``NATS_URL`` points every later command at it),
``polyn schemas load``, ``polyn migrate`` (twice: the second does nothing), the service
``python -m billing.service`` in the background, ``python place_order.py``, whose order the
service must invoice and report, SIGINT to the service (a graceful stop, exit 0), and finally
the project's own ``pytest``: its sandbox tests and its Hypothesis property test must pass.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_support import DOCS, code_blocks

pytestmark = pytest.mark.docs

PAGE = DOCS / "tutorial" / "first-service.md"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A background command whose output lines are collected by a thread."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if text in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.popen.poll() is not None and self.lines.empty()):
                raise AssertionError(f"no line with {text!r}; output:\n" + "\n".join(self.seen))
            try:
                self.seen.append(self.lines.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                pass

    def interrupt(self, timeout: float = 60) -> int:
        self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty folder with every file the tutorial shows, written as shown."""
    folder = tmp_path / "billing-service"
    folder.mkdir()
    files = [block for block in code_blocks(PAGE) if block.title]
    assert len(files) >= 8
    for block in files:
        path = folder / block.title
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
    return folder


@pytest.fixture
def env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("POLYN_", "NATS_"))}
    environ["PATH"] = os.pathsep.join([str(BIN), environ.get("PATH", "")])
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def commands() -> str:
    return "\n".join(block.code for block in code_blocks(PAGE) if block.lang == "sh")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    assert " ".join(command) in commands(), f"{command} is not a command of the tutorial"
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_tutorial_from_an_empty_folder_to_a_tested_service(
    project: Path, env: dict[str, str], processes: list[Process]
) -> None:
    assert 'pip install "polyn[testing]"' in commands()
    assert "polyn server" in commands()
    port = free_port()
    server = Process([str(BIN / "polyn"), "server", "--port", str(port)], project, env)
    processes.append(server)
    url = f"nats://127.0.0.1:{port}"
    assert url in server.wait_for("nats-server with JetStream at")
    env["NATS_URL"] = url

    assert "2 added" in run(["polyn", "schemas", "load"], project, env)
    first = run(["polyn", "migrate"], project, env)
    assert "create_billing" in first
    again = run(["polyn", "migrate"], project, env)
    assert "create_billing" not in again  # recorded: nothing to run

    assert "python -m billing.service" in commands()
    service = Process([sys.executable, "-m", "billing.service"], project, env)
    processes.append(service)
    placed = run(["python", "place_order.py"], project, env)
    assert "stored in ORDERS as message 1" in placed
    service.wait_for("invoiced A-1")
    service.wait_for("reported A-1")
    assert service.interrupt() == 0, service.output()
    assert "Traceback" not in service.output()

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "pytest" in commands()
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "3 passed" in tests.stdout
    assert server.interrupt() == 0
