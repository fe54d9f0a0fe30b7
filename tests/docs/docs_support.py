"""What the documentation's tests share: the repository's folders and the built site."""

from __future__ import annotations

import os
import re
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


@attrs.frozen
class Block:
    """A fenced code block of a docs page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    title: str | None  # ``title="..."`` in the fence's attributes
    marker: str | None  # the ``<!-- runnable ... -->`` comment just above the fence, if any
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>.*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]*)"')
_MARKER = re.compile(r"^\s*<!--\s*(?P<marker>runnable\b[^>]*?)\s*-->\s*$")


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with its language, title and runnable marker."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"]
        lang = info.split()[0] if info.split() else ""
        title = _TITLE.search(info)
        previous = lines[i - 1] if i > 0 else ""
        marker = _MARKER.match(previous)
        body = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                lang=lang,
                title=title["title"] if title else None,
                marker=marker["marker"] if marker else None,
                code="\n".join(body) + ("\n" if body else ""),
            )
        )
        i = j + 1
    return blocks


def docs_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))
