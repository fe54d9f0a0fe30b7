"""The documentation site builds cleanly, documents every public name, and fetches nothing.

``mkdocs build --strict`` fails on a broken link, a missing page, a bad anchor or an unknown
``:::`` reference. Every name in ``polyn.__all__`` and in the documented subpackages'
``__all__`` must have an entry in the API reference: the built site's ``objects.inv``
(mkdocstrings' inventory, one entry per rendered object, by its import path) must hold it.
A page must not load scripts, stylesheets or fonts from another host: the site is read offline
(``theme.font: false``; Material's own assets are in the site).
"""

from __future__ import annotations

import importlib
import re
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
from docs_support import BuiltSite

pytestmark = pytest.mark.docs

# The modules whose public names the API reference must list (docs/reference/api/).
DOCUMENTED_MODULES = (
    "polyn",
    "polyn.actors",
    "polyn.nats",
    "polyn.testing",
    "polyn.migration",
    "polyn.portal",
    "polyn.typed",
    "polyn.errors",
    "polyn.server",
    "polyn.codec",
    "polyn.naming",
)


def test_the_site_builds_strictly_without_warnings(built_site: BuiltSite) -> None:
    assert "WARNING" not in built_site.output, built_site.output
    assert (built_site.folder / "index.html").is_file()
    assert (built_site.folder / "tutorial" / "first-service" / "index.html").is_file()


def inventory(site: BuiltSite) -> set[str]:
    from mkdocstrings import Inventory

    with open(site.folder / "objects.inv", "rb") as file:
        return set(Inventory.parse_sphinx(file))


@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_every_public_name_has_a_reference_entry(built_site: BuiltSite, module: str) -> None:
    entries = inventory(built_site)
    public = importlib.import_module(module).__all__
    missing = [name for name in public if f"{module}.{name}" not in entries]
    assert missing == [], f"{module}: no reference entry for {missing} (docs/reference/api/)"


def test_a_reference_entry_links_to_its_rendered_signature(built_site: BuiltSite) -> None:
    html = built_site.page("reference/api/polyn")
    assert 'id="polyn.App"' in html
    assert 'id="polyn.pub"' in html
    # the rendered signature of pub, with its keyword-only parameters
    text = re.sub(r"<[^>]+>", "", html)
    assert re.search(r"pub\(\s*conn", text), "pub's signature is not rendered"
    # Sphinx roles in docstrings are shown as code, without the role (docs/_hooks.py)
    assert not re.search(r":(class|func|meth|attr):<code>", html)


class _Assets(HTMLParser):
    """Collects the URLs a page loads by itself: scripts, stylesheets, icons, fonts, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and values.get("src"):
            self.urls.append((tag, values["src"] or ""))
        if tag == "link" and values.get("href"):
            rel = values.get("rel") or ""
            if any(
                r in rel for r in ("stylesheet", "icon", "preload", "preconnect", "modulepreload")
            ):
                self.urls.append((tag, values["href"] or ""))


def test_no_page_loads_anything_from_another_host(built_site: BuiltSite) -> None:
    pages = sorted(built_site.folder.rglob("*.html"))
    assert len(pages) > 20
    outside = []
    for page in pages:
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, url in parser.urls:
            parsed = urlparse(url)
            if parsed.scheme in ("http", "https") or url.startswith("//"):
                outside.append(f"{page.relative_to(built_site.folder)}: <{tag}> {url}")
    assert outside == []
    # and the stylesheets ask for no web font (theme.font: false)
    css = "".join(p.read_text(encoding="utf-8") for p in built_site.folder.rglob("*.css"))
    assert "fonts.googleapis" not in css and "fonts.gstatic" not in css
