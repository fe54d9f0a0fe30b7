"""What the documentation's tests share: the repository's folders and the built site."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@attrs.frozen
class BuiltSite:
    folder: Path
    output: str
    seconds: float

    def page(self, path: str) -> str:
        """The HTML of a page, by its URL path (``reference/api/polyn/``)."""
        return (self.folder / path / "index.html").read_text(encoding="utf-8")


def build_site(out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
