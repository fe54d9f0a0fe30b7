"""The ``polyn`` console script, run as a user runs it."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def run_polyn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polyn.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_installed_package_version() -> None:
    result = run_polyn("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"polyn {version('polyn')}"


def test_help_describes_the_command() -> None:
    result = run_polyn("--help")
    assert result.returncode == 0
    assert "usage: polyn" in result.stdout


def test_no_arguments_prints_help_and_succeeds() -> None:
    result = run_polyn()
    assert result.returncode == 0
    assert "usage: polyn" in result.stdout


def test_main_in_process_leaves_the_callers_logging_as_it_was(tmp_path: Path) -> None:
    # A program (or a test) calling main() keeps its own logging: the command's set-up (quiet
    # polyn.nats and polyn.actors, a stderr handler) lasts only while the command runs.
    from polyn.cli import main

    names = ("", "asyncio", "polyn.nats", "polyn.actors")
    before = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    assert main(["catalog", "--offline", "--domain", "com.acme", "--out", str(tmp_path)]) == 0
    assert {name: logging.getLogger(name).level for name in names} == before
    assert logging.getLogger().handlers == handlers
