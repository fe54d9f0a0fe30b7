"""A real headless browser for the tests that must look at pages (``@pytest.mark.browser``).

Debian's ``chromium`` (``/usr/bin/chromium``, or ``POLYN_CHROMIUM``) driven by Playwright for
Python through ``executable_path``: no browser is downloaded. One browser per test session
(``browser_context``, in ``tests/conftest.py``), a fresh page per test (``browser_page``), a
fresh user-data-dir, and the flags that keep it from reaching the network by itself. Pages
are served on loopback by an HTTP server thread, never opened as ``file://``, so they load as
users see them.

Tests marked ``browser`` run after all the others (``tests/conftest.py`` orders them): while
Playwright's sync API keeps the browser open, the main thread looks as if an asyncio loop were
running in it, and a test that runs an asyncio loop of its own could not start one.

Outside CI a test that needs the browser is skipped when Chromium or Playwright is missing, with
the remedy in the reason; with ``CI=true`` it fails instead, so CI cannot pass by skipping.

Artefacts (screenshots) go to ``tmp/artifacts/`` at the repository root, or to
``POLYN_TEST_ARTIFACTS`` when set (:func:`artifact_path`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("POLYN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = (
    "install Debian's Chromium (apt-get install -y chromium) and Playwright "
    "(pip install -e '.[dev]')"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing_browser() -> str | None:
    """Why no browser can run here, or None."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"headless Chromium is not installed at {CHROMIUM}: {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright for Python is not installed: {INSTALL_HINT}"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail with it under ``CI=true`` (CI must not skip)."""
    if in_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_args() -> list[str]:
    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    return args


def artifact_path(name: str) -> Path:
    """Where a test artefact called ``name`` goes (its folder is created)."""
    folder = Path(os.environ.get("POLYN_TEST_ARTIFACTS") or ROOT / "tmp" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def report_artifact(path: Path) -> None:
    """Say where an artefact was written (shown with ``-s``, and in CI's log)."""
    print(f"\ntest artefact: {path}", file=sys.stderr, flush=True)


def fresh_profile(tmp_root: Path) -> Path:
    profile = tmp_root / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    return profile
