"""What a service prints: start-up failures, its up and stopped lines, a second Ctrl-C (issue 20).

Each test runs a small service as a subprocess (``trio.run(app.main)``, as a user runs one) and
reads its stderr and exit status, which is what a user sees.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from core_support import Core

from polyn.errors import ValidationError
from polyn.publish import pub

SERVICE = """
import logging, os, sys, trio
import polyn

url, mode = sys.argv[1], sys.argv[2]

class Ready(polyn.Actor):
    async def init(self):
        print("ready", flush=True)

class Slow(polyn.Actor):
    shutdown = 120  # its graceful stop is given all the time its terminate takes

    async def terminate(self, reason):
        print("terminating", flush=True)
        await trio.sleep(60)

class Buggy(polyn.Actor):
    async def init(self):
        settings = {}
        settings["email"]

if mode == "configured":
    logging.basicConfig(level=logging.WARNING, format="mine: %(message)s")
children = [polyn.NatsConnection(), polyn.SchemaStore(schemas={})]
if mode.startswith("fresh:"):  # a server where `polyn schemas load` never ran
    children[1] = polyn.SchemaStore(mode.split(":", 1)[1])
if mode == "buggy":
    children.append(polyn.Supervisor([Buggy(name="mailer")], name="workers"))
if mode == "slow":
    children.append(Slow(name="slow"))
children.append(Ready())
config = polyn.Config(domain="com.example", source_root="svc", servers=[url])
trio.run(polyn.App(config, children).main)
print("returned", flush=True)
"""


def start(tmp_path: Path, url: str, mode: str, **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(SERVICE))
    environ = {k: v for k, v in os.environ.items() if k != "POLYN_LOG_LEVEL"}
    return subprocess.Popen(
        [sys.executable, str(script), url, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environ, "PYTHONUNBUFFERED": "1", **env},
    )


def run(tmp_path: Path, url: str, mode: str, **env: str) -> tuple[int, str]:
    process = start(tmp_path, url, mode, **env)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"nats://127.0.0.1:{port}"


def stop_with_sigint(process: subprocess.Popen[str]) -> tuple[str, str]:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_server_down_at_start_is_one_line_naming_the_actor_and_the_cause(
    tmp_path: Path,
) -> None:
    url = closed_port_url()
    code, err = run(tmp_path, url, "plain")
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1] == (
        "polyn.errors.ActorError: the app could not start: child 'nats' (NatsConnection): "
        f"could not connect to NATS at {url}: [Errno 111] Connect call failed "
        f"('127.0.0.1', {url.rsplit(':', 1)[1]})"
    ), err
    # Said once (the old output repeated it in three log lines and three tracebacks), with at
    # most one traceback and no private class name.
    assert err.count("could not connect") == 1, err
    assert err.count("Traceback") <= 1, err
    assert "The above exception" not in err
    assert "._" not in lines[-1].split(":")[0]
    assert "_StartError" not in err


def test_a_bug_in_an_init_shows_one_traceback_ending_at_the_bug(
    tmp_path: Path, nats_url: str
) -> None:
    code, err = run(tmp_path, nats_url, "buggy")
    assert code == 1
    assert err.count("Traceback") == 1, err
    assert 'settings["email"]' in err  # the user's own line, where the KeyError happened
    assert err.strip().splitlines()[-1] == (
        "polyn.errors.ActorError: the app could not start: child 'mailer' (Buggy) of "
        "supervisor 'workers': KeyError: 'email'"
    )
    assert "_StartError" not in err


def test_a_healthy_service_logs_one_line_when_up_and_one_when_stopped(
    tmp_path: Path, nats_url: str
) -> None:
    out, err = stop_with_sigint(start(tmp_path, nats_url, "plain"))
    assert out.strip() == "returned"
    up = [line for line in err.splitlines() if "the app is up" in line]
    assert len(up) == 1, err
    expected = " INFO polyn.app: the app is up: 3 children started (nats, POLYN_SCHEMAS, Ready)"
    assert expected in up[0]
    assert f"NATS at {nats_url}" in up[0]
    stopped = [line for line in err.splitlines() if "the app stopped" in line]
    assert len(stopped) == 1 and " INFO polyn.app: " in stopped[0], err
    assert "(SIGINT)" in stopped[0]
    assert err.splitlines()[-1] == stopped[0]


def test_polyn_log_level_sets_the_installed_handlers_level(tmp_path: Path, nats_url: str) -> None:
    process = start(tmp_path, nats_url, "plain", POLYN_LOG_LEVEL="warning")
    out, err = stop_with_sigint(process)
    assert process.returncode == 0
    assert out.strip() == "returned"
    assert err == ""


def test_a_wrong_polyn_log_level_is_refused_naming_the_variable(
    tmp_path: Path, nats_url: str
) -> None:
    code, err = run(tmp_path, nats_url, "plain", POLYN_LOG_LEVEL="loud")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "polyn.errors.ConfigError: POLYN_LOG_LEVEL must be one of debug, info, warning, error, "
        "critical, not 'loud'"
    )


def test_logging_the_program_configured_is_left_alone(tmp_path: Path, nats_url: str) -> None:
    # basicConfig at WARNING: the app adds no handler of its own, so its INFO lines stay out.
    out, err = stop_with_sigint(start(tmp_path, nats_url, "configured"))
    assert out.strip() == "returned"
    assert "the app is up" not in err
    assert err == ""


def test_a_second_sigint_during_the_graceful_stop_exits_at_once(
    tmp_path: Path, nats_url: str
) -> None:
    process = start(tmp_path, nats_url, "slow")
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGINT)
        # The graceful stop has reached the actor whose terminate takes a minute.
        assert process.stdout.readline().strip() == "terminating"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)  # a liveness bound: its terminate takes 60 s
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "returned" not in out
    assert "received SIGINT again: exiting at once" in err


def test_a_fresh_server_without_the_schema_bucket_names_polyn_schemas_load(
    tmp_path: Path, nats_url: str
) -> None:
    bucket = f"NEVER_LOADED_{os.getpid()}"
    code, err = run(tmp_path, nats_url, f"fresh:{bucket}")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"polyn.errors.ActorError: the app could not start: child {bucket!r} (SchemaStore): "
        "The Schema Store has not been setup on your NATS server. Make sure you use the Polyn "
        f"CLI to create it (bucket {bucket!r}): `polyn schemas load` creates it with the schemas "
        "folder's schemas"
    )


async def test_publishing_a_type_without_a_schema_names_polyn_schemas_load(core: Core) -> None:
    async with core.app().run() as running:
        with pytest.raises(ValidationError) as caught:
            await pub(running, "never.loaded.v1", {})
    lines = str(caught.value).splitlines()
    assert lines[1].startswith("Schema for never.loaded.v1 does not exist.")  # the protocol's
    assert lines[2] == (
        "`polyn schemas load` loads the schemas folder (its never.loaded.v1.json) into the store"
    )
