"""Every Python example the docs mark runnable is run, against a real nats-server.

**The marker.** An HTML comment on the line just above a fenced Python block (invisible on the
site and on GitHub):

- ``<!-- runnable -->``: the block is a complete program; it must exit 0 within
  ``SCRIPT_TIMEOUT`` seconds.
- ``<!-- runnable: service -->``: the block runs a service (``trio.run(app.main)``) until it is
  stopped. Once the service has connected to the server (a client appears in the server's
  ``/connz``), it gets SIGINT and must exit 0 within ``SERVICE_TIMEOUT`` seconds. ``App.main``
  stops only after every child has started, so exit 0 proves the tree started and stopped
  gracefully; a start that failed exits 1.

Each block runs as ``python example.py`` in a process of its own, in a copy of
``examples_project/`` (``[tool.polyn]`` with ``domain = "com.acme"``, ``source_root =
"orders.payments"``, permissive schemas for the examples' event types, and a migration creating
``ORDERS``, ``PAYMENTS``, ``DEADLETTERS`` and their durable consumers), with ``NATS_URL`` set to
this module's nats-server, on which those schemas are loaded and that migration run with the
``polyn`` command. The module has its own server (not the session's) because those stream names
are common ones other tests use too. Examples therefore build their config with
``polyn.Config.load(...)``, which reads ``NATS_URL``.

**Blocks that are not run.** Code in other languages (``sh``, ``console``, ``toml``, ``json``,
``elixir``, ``ruby``, ``text`` ...) is never run. A Python block without the marker must be
listed in ``NOT_RUN`` below, by page and the start of its first line, with the reason: a
fragment of a larger program (names defined elsewhere, top-level ``await``), a file of the
tutorial's project (run by ``test_docs_tutorial.py``), code for another framework (FastStream,
Django, gunicorn, Celery), or a cluster / TLS set-up. A new unmarked block fails
``test_every_python_block_is_run_or_listed`` until it is marked or listed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_support import ROOT, Block, code_blocks, docs_pages

from polyn.server import NatsServer

pytestmark = pytest.mark.docs

PROJECT = Path(__file__).parent / "examples_project"
SCRIPT_TIMEOUT = 120
SERVICE_TIMEOUT = 60
PYTHON = ("python", "py", "python3")

FRAGMENT = "a fragment: uses names defined elsewhere on the page or top-level await"
TUTORIAL = "a file of the tutorial's project: run by test_docs_tutorial.py"
GENERATED = "needs the classes `polyn schemas codegen` generates (app.events)"
FRAMEWORK = "code for another framework or host (FastAPI app, Django, gunicorn, Celery, FastStream)"
CLUSTER = "a cluster or TLS set-up"
TEST = "a test module of the user's project (pytest fixtures)"

# (page relative to docs/, start of the block's first line): why it is not run
NOT_RUN: dict[tuple[str, str], str] = {
    ("explanation/actors.md", "TRANSPORT: Final"): FRAGMENT,
    ("explanation/transport.md", "import polyn"): FRAGMENT,
    ("guide/consumers.md", "from app.events import"): GENERATED,
    ("guide/consumers.md", "class ReceiptMailer(polyn.PullConsumer):"): FRAGMENT,
    ("guide/consumers.md", "class Ledger(polyn.Pipeline):"): FRAGMENT,
    ("guide/migrations-and-schemas.md", "from polyn.migration import ConsumerConfig"): FRAGMENT,
    ("guide/migrations-and-schemas.md", "from polyn.migration import Migrator"): FRAGMENT,
    ("guide/migrations-and-schemas.md", "result = await"): FRAGMENT,
    ("guide/publishing.md", "quote, msg = await"): FRAGMENT,
    ("guide/stores.md", "app = polyn.App("): FRAGMENT,
    ("guide/testing.md", "import polyn"): TEST,
    ("guide/testing.md", "# migrations/"): TEST,
    ("guide/testing.md", "import os"): TEST,
    ("guide/testing.md", "import trio"): TEST,
    ("guide/testing.md", "@pytest.mark.polyn_allow_handler_errors"): TEST,
    ("guide/typed-events.md", "import polyn"): GENERATED,
    ("guide/typed-events.md", "class Billing(polyn.PullConsumer[OrderPlacedV1]):"): GENERATED,
    ("guide/typed-events.md", "await polyn.pub(running, OrderPlacedV1("): GENERATED,
    ("guide/typed-events.md", "# app/events.py"): GENERATED,
    ("guide/typed-events.md", "from polyn import typed"): GENERATED,
    ("howto/asyncio-and-sync.md", "import contextlib"): FRAMEWORK,
    ("howto/asyncio-and-sync.md", "from concurrent.futures import"): FRAGMENT,
    ("howto/asyncio-and-sync.md", "# myshop/polyn_portal.py"): FRAMEWORK,
    ("howto/asyncio-and-sync.md", "# gunicorn.conf.py"): FRAMEWORK,
    ("howto/asyncio-and-sync.md", "# Celery with the prefork pool"): FRAMEWORK,
    ("howto/asyncio-and-sync.md", "class StockDesk(polyn.Responder):"): FRAGMENT,
    ("howto/asyncio-and-sync.md", "from fastapi.testclient import"): FRAMEWORK,
    ("howto/asyncio-and-sync.md", "import pytest"): TEST,
    ("howto/catalog.md", "class Billing(polyn.PullConsumer):"): FRAGMENT,
    ("howto/catalog.md", "import polyn.catalog"): FRAGMENT,
    ("howto/clusters-and-security.md", "# migrations/"): CLUSTER,
    ("howto/from-elixir-or-ruby.md", "# migrations/"): "a migration file: run by `polyn migrate`",
    ("howto/from-faststream.md", "from faststream import"): FRAMEWORK,
    ("howto/clusters-and-security.md", "from polyn.server import NatsCluster"): CLUSTER,
}


def python_blocks() -> list[Block]:
    return [b for page in docs_pages() for b in code_blocks(page) if b.lang in PYTHON]


def runnable_blocks() -> list[Block]:
    return [b for b in python_blocks() if b.marker is not None]


def page_name(block: Block) -> str:
    return block.page.relative_to(ROOT / "docs").as_posix()


def listed_reason(block: Block) -> str | None:
    first = block.code.lstrip().splitlines()[0] if block.code.strip() else ""
    for (page, start), reason in NOT_RUN.items():
        if page == page_name(block) and first.startswith(start):
            return reason
    return None


def test_every_python_block_is_run_or_listed() -> None:
    unlisted = [
        b.where
        for b in python_blocks()
        if b.marker is None and b.title is None and listed_reason(b) is None
    ]
    assert unlisted == [], (
        f"mark these <!-- runnable --> or list them in NOT_RUN with the reason: {unlisted}"
    )
    tutorial = [b for b in python_blocks() if b.title is not None]
    assert all(page_name(b) == "tutorial/first-service.md" for b in tutorial), TUTORIAL


def test_markers_are_known_and_runnable_blocks_are_many() -> None:
    blocks = runnable_blocks()
    assert {b.marker for b in blocks} <= {"runnable", "runnable: service"}
    assert len(blocks) >= 6


@pytest.fixture(scope="module")
def docs_server() -> Iterator[NatsServer]:
    """A nats-server with the examples' schemas loaded and their migration run."""
    with NatsServer(monitoring=True) as server:
        env = {**os.environ, "NATS_URL": server.url}
        env = {k: v for k, v in env.items() if not k.startswith("POLYN_")}
        polyn = str(Path(sys.executable).parent / "polyn")
        for command in (["schemas", "load"], ["migrate"]):
            done = subprocess.run(
                [polyn, *command],
                cwd=PROJECT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        yield server


def connections(server: NatsServer) -> int:
    assert server.monitor_url is not None
    with urllib.request.urlopen(f"{server.monitor_url}/connz", timeout=5) as response:
        return int(json.load(response)["num_connections"])


def prepare(block: Block, tmp_path: Path, server: NatsServer) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "project"
    shutil.copytree(PROJECT, folder)
    (folder / "example.py").write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYN_", "NATS_"))}
    env["NATS_URL"] = server.url
    env["HEALTH_PORT"] = "0"  # docs/howto/production.md: any free port
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return folder, env


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: b.where)
def test_runnable_example(block: Block, tmp_path: Path, docs_server: NatsServer) -> None:
    folder, env = prepare(block, tmp_path, docs_server)
    command = [sys.executable, "example.py"]
    if block.marker == "runnable":
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT
        )
        assert done.returncode == 0, f"{block.where}:\n{done.stdout}\n{done.stderr}"
        return
    before = connections(docs_server)
    log = folder / "output.txt"  # a file, not a pipe: a chatty service never blocks on it
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + SERVICE_TIMEOUT
        while connections(docs_server) <= before:
            ended = process.poll() is not None
            assert not ended, f"{block.where} ended before it connected:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{block.where} never connected"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=SERVICE_TIMEOUT)
        output = log.read_text(encoding="utf-8")
        assert process.returncode == 0, f"{block.where}:\n{output}"
        assert "Traceback" not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
