"""The documented command, as a new user runs it: ``python -m examples.shop`` from the root.

One end-to-end run as a subprocess, with ``NATS_URL`` unset so the example starts its own
embedded nats-server, as on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_runs_end_to_end_and_exits_0_with_its_summary() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "started nats-server at nats://127.0.0.1:" in out
    assert "4 schemas loaded into POLYN_SCHEMAS: 4 added" in out
    assert "migrations 2 run" in out
    for line in [
        "  in         12 messages on order.placed.v1: 9 orders, 3 invalid",
        "  Billing    PullConsumer  8 orders charged, A-1005 declined 2 times",
        "  Inventory  Responder     12 stock requests answered",
        "  Receipts   Subscriber    8 receipts mailed",
        "  dead       4 dead letters",
        "  streams    messages stored: ORDERS 12, PAYMENTS 8, DEADLETTERS 4",
    ]:
        assert line + "\n" in out, line
    assert "  Ledger     Pipeline      8 payments booked in " in out
    assert "(temporary) receive  [CONSUMER]" in out  # the trace tree of the request / reply
    assert out.rstrip().endswith(
        "  stopped    every actor finished\n"
        "done: every order handled, every invalid message dead-lettered"
    )
    assert took < 30
