"""The documentation site as a reader sees it, in headless Chromium.

The site built by ``mkdocs build --strict`` (the ``built_site`` fixture) is served on 127.0.0.1
by the standard library's HTTP server in a thread, never opened as ``file://``, and three pages
are loaded in the session's browser (``browser_page``, ``tests/browser_support.py``): the home
page (the navigation's four parts, a working search box), the tutorial, and the ``polyn`` API
reference (a rendered signature). Every request the pages make must stay on loopback.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from browser_support import artifact_path, report_artifact
from docs_support import BuiltSite

pytestmark = [pytest.mark.docs, pytest.mark.browser]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(built_site: BuiltSite) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(built_site.folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def watch_requests(page: Any) -> list[str]:
    """Every URL the page requests from now on."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    return requested


def off_loopback(urls: list[str]) -> list[str]:
    return [u for u in urls if urlparse(u).hostname not in ("127.0.0.1", None)]


def test_the_home_page_has_the_navigation_and_a_search_that_finds(
    browser_page: Any, site_url: str
) -> None:
    page = browser_page
    requested = watch_requests(page)
    page.goto(site_url)
    assert page.title().startswith("Polyn for Python")
    nav = page.locator("nav.md-nav--primary").first
    labels = nav.inner_text()
    for part in ("Tutorial", "How-to guides", "Reference", "Explanation"):
        assert part in labels, labels
    # the search box: open it, type, and the local index answers
    page.locator("label.md-search__icon, .md-search__input").first.click()
    search = page.locator("input.md-search__input")
    search.fill("PullConsumer")
    results = page.locator(".md-search-result__item")
    results.first.wait_for(timeout=15_000)
    assert results.count() > 0
    path = artifact_path("docs-home.png")
    page.screenshot(path=str(path))
    report_artifact(path)
    assert off_loopback(requested) == []


def test_the_tutorial_page_renders_its_steps_and_files(browser_page: Any, site_url: str) -> None:
    page = browser_page
    requested = watch_requests(page)
    page.goto(f"{site_url}tutorial/first-service/")
    assert page.locator("h1").first.inner_text().startswith("Your first service, tested")
    headings = page.locator("article h2").all_inner_texts()
    assert any("Tests on the sandbox" in h for h in headings), headings
    titles = page.locator(".md-typeset .filename").all_inner_texts()
    assert "billing/service.py" in titles, titles
    assert off_loopback(requested) == []


def test_a_reference_page_shows_a_rendered_signature(browser_page: Any, site_url: str) -> None:
    page = browser_page
    requested = watch_requests(page)
    page.goto(f"{site_url}reference/api/polyn/#polyn.pub")
    heading = page.locator('[id="polyn.pub"]')
    assert heading.is_visible()
    signature = page.locator('div.doc-function:has(> [id="polyn.pub"]) .doc-signature').first
    assert signature.is_visible()
    text = signature.inner_text()
    assert "pub(" in text and "conn" in text and "ack" in text, text
    path = artifact_path("docs-reference.png")
    page.screenshot(path=str(path))
    report_artifact(path)
    assert off_loopback(requested) == []
