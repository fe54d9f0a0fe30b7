"""The documented commands of the portal's examples, run for real as a user runs them.

Each example runs as a subprocess (``python -m examples...``) against the module's nats-server
(``NATS_URL``), serving on a free loopback port; the test drives it over HTTP with httpx and
checks the events where they arrived, on the server, then stops it as a process manager does
(SIGTERM) and checks it stopped cleanly and closed its connections.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from portal_support import ServerWatch, connections, eventually

from examples.fastapi_app.service import prepare
from polyn.server import NatsServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a few seconds each: a web server process per test


class Example:
    """A running example process: its URL and everything it printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"{pattern!r} not printed within {timeout} s:\n{self.text}"
                ) from None
            if not line:
                raise AssertionError(f"exited before printing {pattern!r}:\n{self.text}")
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    @property
    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def stop(self) -> int:
        """SIGTERM, as a process manager stops a server; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        return code


@contextlib.contextmanager
def example(module: str, url: str, *args: str) -> Iterator[Example]:
    env = {**os.environ, "NATS_URL": url, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Example(process)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def shop(server: NatsServer) -> NatsServer:
    prepare(server.url)  # the shop's schemas and streams, as a deployment has them
    return server


ORDER = {
    "order_id": "W-1",
    "customer": "ada",
    "items": [{"sku": "mug", "quantity": 2, "price": 8.0}],
}


def drive_the_web_front(url: str, watch: ServerWatch) -> None:
    """What both web examples must do, checked on the server."""
    payments = watch.subscribe("payment.captured.v1")
    before = watch.stream_count("ORDERS")
    with httpx.Client(base_url=url, timeout=10) as client:
        placed = [client.post("/orders", json={**ORDER, "order_id": f"W-{n}"}) for n in range(3)]
        assert [p.status_code for p in placed] == [201] * 3, [p.text for p in placed]
        assert [p.json()["stream"] for p in placed] == ["ORDERS"] * 3
        seqs = [p.json()["seq"] for p in placed]
        assert seqs == list(range(before + 1, before + 4))

        payment = {"order_id": "W-0", "customer": "ada", "amount": 16, "currency": "EUR"}
        paid = client.post("/payments", json=payment)
        assert paid.status_code == 202, paid.text
        refused = client.post("/payments", json={**payment, "currency": "eur"})
        assert refused.status_code == 422
        assert "does not match" in refused.json()["detail"]

        stock = client.get("/stock/kettle", params={"quantity": 3})
        assert stock.json() == {"sku": "kettle", "available": 40, "reserved": True}
        again = client.get("/stock/kettle", params={"quantity": 3})
        assert again.json() == {"sku": "kettle", "available": 37, "reserved": True}

        assert client.put("/settings/banner", json={"text": "hi"}).status_code == 200
        assert client.get("/settings/banner").json() == {"key": "banner", "value": {"text": "hi"}}
        assert client.get("/health").json() == {"healthy": True}

    stored = watch.stream_events("ORDERS")[before:]
    assert [e["data"]["order_id"] for e in stored] == ["W-0", "W-1", "W-2"]
    assert {e["source"] for e in stored} == {"com:acme:shop:web"}
    assert all(e["data"]["total"] == 16.0 for e in stored)
    eventually(lambda: len(payments) == 1)
    (payment,) = watch.events("payment.captured.v1")
    assert payment["data"]["currency"] == "EUR"


@pytest.mark.parametrize(
    ("module", "where"),
    [
        ("examples.fastapi_app", "on its own thread"),
        ("examples.hypercorn_trio", "in the host's trio loop"),
    ],
)
def test_the_web_examples_serve_and_stop_cleanly(
    module: str, where: str, shop: NatsServer, watch: ServerWatch
) -> None:
    eventually(lambda: connections(shop) == 1)  # the watch's own
    with example(module, shop.url, "--port", "0") as served:
        url = served.wait_for(r"serving    (http://127\.0\.0\.1:\d+)").group(1)
        served.wait_for(rf"polyn: <Portal running {where} domain='com.acme'>")
        assert connections(shop) == 2  # the web front's App: one connection
        drive_the_web_front(url, watch)
        assert served.stop() == 0, served.text
    assert served.text.rstrip().endswith("stopped"), served.text
    assert "Traceback" not in served.text, served.text
    eventually(lambda: connections(shop) == 1)


def test_the_wsgi_example_serves_and_stops_cleanly(shop: NatsServer, watch: ServerWatch) -> None:
    before = watch.stream_count("ORDERS")
    with example("examples.sync.wsgi", shop.url, "--port", "0") as served:
        url = served.wait_for(r"serving    (http://127\.0\.0\.1:\d+)").group(1)
        with httpx.Client(base_url=url, timeout=10) as client:
            placed = client.post("/orders", json=ORDER)
            assert placed.status_code == 201, placed.text
            assert placed.json() == {"stream": "ORDERS", "seq": before + 1}
            invalid = client.post("/orders", json={**ORDER, "customer": ""})
            assert invalid.status_code == 422
            assert client.get("/stock/teapot").json() == {
                "sku": "teapot",
                "available": 25,
                "reserved": True,
            }
            assert client.get("/health").json() == {"healthy": True}
        assert served.stop() == 0, served.text
    assert "Traceback" not in served.text, served.text
    assert served.text.rstrip().endswith("stopped"), served.text
    assert watch.stream_events("ORDERS")[before:][0]["data"]["order_id"] == "W-1"
    eventually(lambda: connections(shop) == 1)


def test_the_sync_script_publishes_from_worker_threads(
    shop: NatsServer, watch: ServerWatch
) -> None:
    before = watch.stream_count("ORDERS")
    done = subprocess.run(
        [sys.executable, "-m", "examples.sync", "--orders", "40", "--threads", "8"],
        cwd=ROOT,
        env={**os.environ, "NATS_URL": shop.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(
        rf"published  40 orders from 8 threads in [\d.]+ s, stored as ORDERS {before + 1}\.\."
        rf"{before + 40}\n",
        out,
    ), out
    assert "  stock      {'sku': 'teapot', 'available': 25, 'reserved': True}\n" in out
    assert "  health     True\n" in out
    assert out.endswith("  stopped\n")
    stored = watch.stream_events("ORDERS")[before:]
    assert sorted(e["data"]["order_id"] for e in stored) == [f"S-{n:05d}" for n in range(40)]
