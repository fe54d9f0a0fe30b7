"""Issue 20 (3, 4): in the sandbox a handler's exception fails the test at once, with its own
traceback, and a message left unsettled is reported when the test ends; both can be opted out.

Each case is a small user project run by pytest in a process of its own (a test that must fail
cannot be asserted from inside), against the session's nats-server, with its stream and durable
consumer created here first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from _support import Names

from polyn import naming
from polyn.config import Config
from polyn.nats import NatsTransport

CONFTEST = """
import os
import pytest
import polyn

@pytest.fixture(scope="session")
def polyn_config(nats_server):
    return polyn.Config(domain="com.acme", source_root=os.environ["SVC"], servers=[nats_server])

@pytest.fixture(scope="session")
def polyn_schemas():
    return {os.environ["TYPE"]: {"type": "object"}}
"""

TESTS = """
import os
import pytest
import trio
import polyn

TYPE = os.environ["TYPE"]
CALLS = []


class Picky(polyn.PullConsumer):
    type = TYPE

    async def handle_message(self, event, msg):
        CALLS.append(msg.metadata.num_delivered)
        if event.data["fail"] == "key":
            return {}["sku"]                      # the handler's bug
        if event.data["fail"] == "declined":
            raise PermissionError("card declined")
        if event.data["fail"] == "later":
            return None                           # "I will ack it later" ... and never does
        return polyn.Ack.ACK


async def run(sandbox, config, schemas, fail, wait=120):
    app = polyn.App(config, [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas), Picky()])
    async with sandbox.run(app) as running:
        await polyn.pub(running, TYPE, {"fail": fail}, ack=True)
        with trio.move_on_after(wait):  # virtual seconds: retries at 1 s, 2 s, 4 s ...
            while True:
                await trio.sleep(1)


async def test_key_error(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    await run(polyn_sandbox, polyn_config, polyn_schemas, "key")
    raise AssertionError("not reached: the handler's KeyError fails the test")


@pytest.mark.polyn_allow_handler_errors(types=PermissionError)
async def test_declined_allowed_by_marker(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    await run(polyn_sandbox, polyn_config, polyn_schemas, "declined", wait=60)
    assert CALLS == [1, 2, 3, 4, 5]               # handled as in production: retried, given up


async def test_allowed_in_the_body_for_one_type_only(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    polyn_sandbox.allow_handler_errors(PermissionError)
    await run(polyn_sandbox, polyn_config, polyn_schemas, "declined", wait=60)
    await run(polyn_sandbox, polyn_config, polyn_schemas, "key")


async def test_unsettled(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    await run(polyn_sandbox, polyn_config, polyn_schemas, "later", wait=5)


@pytest.mark.polyn_allow_unsettled
async def test_unsettled_allowed(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    await run(polyn_sandbox, polyn_config, polyn_schemas, "later", wait=5)
"""


@pytest.fixture
def project(tmp_path: Path, nats_url: str) -> tuple[Path, dict[str, str]]:
    names = Names()
    source_root = f"svc.{names.token}"
    event_type = names.subject("order.paid.v1")
    config = Config(domain="com.acme", source_root=source_root, servers=[nats_url])

    async def create() -> None:
        transport = await NatsTransport.connect(nats_url)
        try:
            stream = names.stream()
            await transport.create_stream(
                {"name": stream, "subjects": [event_type], "storage": "memory"}
            )
            await transport.create_consumer(
                stream,
                {
                    "durable_name": naming.consumer_name(event_type, config),
                    "ack_policy": "explicit",
                    "ack_wait": 30,
                },
            )
        finally:
            await transport.close()

    trio.run(create)
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_user.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYN_")}
    env.update(NATS_URL=nats_url, SVC=source_root, TYPE=event_type)
    return tmp_path, env


def run_user_test(
    project: tuple[Path, dict[str, str]], name: str
) -> subprocess.CompletedProcess[str]:
    folder, env = project
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_user.py::{name}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_handler_exception_fails_the_test_at_once_with_its_own_traceback(
    project: tuple[Path, dict[str, str]],
) -> None:
    done = run_user_test(project, "test_key_error")
    assert done.returncode == 1, done.stdout
    out = done.stdout
    assert "KeyError: 'sku'" in out
    assert 'return {}["sku"]' in out  # the handler's own line in the traceback
    assert "not reached" not in out and "TooSlowError" not in out


def test_handler_errors_can_be_allowed_per_test_and_per_type(
    project: tuple[Path, dict[str, str]],
) -> None:
    allowed = run_user_test(project, "test_declined_allowed_by_marker")
    assert allowed.returncode == 0, allowed.stdout
    one_type = run_user_test(project, "test_allowed_in_the_body_for_one_type_only")
    assert one_type.returncode == 1
    assert "KeyError: 'sku'" in one_type.stdout


def test_a_message_left_unsettled_is_reported_when_the_test_ends(
    project: tuple[Path, dict[str, str]],
) -> None:
    done = run_user_test(project, "test_unsettled")
    assert done.returncode == 1
    assert "1 message left unsettled" in done.stdout
    allowed = run_user_test(project, "test_unsettled_allowed")
    assert allowed.returncode == 0, allowed.stdout
