"""The ``polyn`` console script, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


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
