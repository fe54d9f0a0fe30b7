"""``polyn server`` refuses a store or a port in use at once, in one line (issue 20, point 7);
every command takes ``--log-level`` after its name."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyn.cli import build_parser

SERVER = [sys.executable, "-m", "polyn.cli", "server"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("POLYN_", "NATS_"))}


@pytest.fixture
def first_server(tmp_path: Path) -> Iterator[str]:
    """A ``polyn server`` running in ``tmp_path`` on a free port; its URL."""
    process = subprocess.Popen(
        [*SERVER, "--port", "0"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("nats-server with JetStream at "), process.stderr
        yield line.split()[4]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def run_server(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A liveness bound: it must answer at once, not wait for anything.
    return subprocess.run(
        [*SERVER, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=30
    )


def test_a_second_server_in_the_same_folder_says_the_store_is_in_use(
    tmp_path: Path, first_server: str
) -> None:
    result = run_server(tmp_path, "--port", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    pid_and_url = r"\(pid \d+, " + first_server.replace(".", r"\.") + r"\)"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"polyn: error: the store {Path('.polyn') / 'jetstream'} is in use by another polyn server"
    )
    assert re.search(pid_and_url, lines[0]), lines[0]
    assert "--store-dir" in lines[0]


def test_a_server_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"polyn: error: port {port} on 127.0.0.1 is in use (another nats-server, or another "
        "program, listens there): stop it, or pass --port N (0 picks a free port)"
    ]


def test_the_store_is_free_again_once_the_first_server_stopped(tmp_path: Path) -> None:
    first = subprocess.Popen(
        [*SERVER, "--port", "0"], cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    assert first.stdout is not None
    first.stdout.readline()
    first.kill()  # as a crash would: the kernel drops the lock with the process
    first.wait()
    second = subprocess.Popen(
        [*SERVER, "--port", "0"], cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert second.stdout is not None
        assert second.stdout.readline().startswith("nats-server with JetStream at ")
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=20)


@pytest.mark.parametrize(
    "command",
    [
        ["server"],
        ["migrate"],
        ["rollback"],
        ["migrations", "status"],
        ["gen", "migration", "x"],
        ["schemas", "init"],
        ["schemas", "load"],
        ["schemas", "check"],
        ["schemas", "codegen"],
        ["deadletters", "list"],
        ["catalog"],
    ],
)
def test_every_command_takes_log_level_after_its_name(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--log-level", "debug"])
    assert args.log_level == "debug"
