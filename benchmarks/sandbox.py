"""Sandbox benchmark: one service's test suite, sandboxed vs against the real server.

Run by hand (not part of the tests)::

    python benchmarks/sandbox.py             # starts its own nats-server, 3 runs per variant
    python benchmarks/sandbox.py --runs 5

It runs ``tests/testing/test_sandbox_service.py`` (a Subscriber, a PullConsumer with a nak
delay and an ``ack_wait`` redelivery, a Pipeline with a batch timeout, a Responder answering
``polyn.request``) with pytest in a fresh process per run, three ways:

- **sandbox**: the ``[sandbox]`` variants: MockNats on virtual time, with the service's own
  timings (30 s nak delay, 30 s ``ack_wait``, 5 s batch timeout);
- **real, service timings**: the ``[real]`` variants against the nats-server with those same
  timings (``POLYN_SERVICE_WAITS=service``): what the same tests cost without the sandbox;
- **real, CI timings**: the ``[real]`` variants with the timings scaled down to fractions of a
  second, as CI runs them: the best a real-server suite can do by bending the service's
  settings for its tests.

Reported per way: the median wall time of the pytest process (start-up and collection
included) and the median of the tests' own time (setup + call + teardown, from pytest's JUnit
XML). The nats-server is started once, outside the timings (``NATS_URL``). Ratios are real /
sandbox, same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from polyn.server import NatsServer

ROOT = Path(__file__).resolve().parent.parent
MODULE = "tests/testing/test_sandbox_service.py"


def run_pytest(selection: str, env: dict[str, str]) -> tuple[float, float, int]:
    """One pytest process over the module's ``selection`` variants: (wall s, tests s, count)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
            f"--junitxml={report}",
            MODULE,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"pytest failed for {selection}:\n{done.stdout}\n{done.stderr}")
        cases = ET.parse(report).getroot().iter("testcase")
        times = [float(case.get("time", 0)) for case in cases]
    return wall, sum(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="pytest runs per way (median)")
    args = parser.parse_args()

    ways = [
        # -k matches the module's name too, which holds "sandbox": select by the other id
        ("sandbox (virtual time, service timings)", "not real", {}),
        ("real server, service timings", "real", {"POLYN_SERVICE_WAITS": "service"}),
        ("real server, CI timings", "real", {"POLYN_SERVICE_WAITS": "small"}),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"{MODULE}, median of {args.runs} pytest runs per way\n")
    results: dict[str, tuple[float, float, int]] = {}
    with NatsServer() as server:
        base = {**os.environ, "NATS_URL": server.url}
        base.pop("POLYN_SERVICE_WAITS", None)
        for label, selection, extra in ways:
            runs = [run_pytest(selection, {**base, **extra}) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            tests = statistics.median(r[1] for r in runs)
            results[label] = (wall, tests, runs[0][2])
            if runs[0][2] != 4:
                sys.exit(f"{label}: expected the module's 4 tests, pytest ran {runs[0][2]}")

    sandbox_wall, sandbox_tests, _ = results[ways[0][0]]
    print("| way | tests | pytest wall | tests' own time | real / sandbox (wall, tests) |")
    print("|---|---|---|---|---|")
    for label, (wall, tests, count) in results.items():
        ratio = f"{wall / sandbox_wall:.1f}x, {tests / sandbox_tests:.1f}x"
        if label == ways[0][0]:
            ratio = "1x"
        print(f"| {label} | {count} | {wall:.2f} s | {tests:.2f} s | {ratio} |")


if __name__ == "__main__":
    main()
