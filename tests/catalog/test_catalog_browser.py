"""The example shop's catalogue in a real headless Chromium, served on loopback.

The catalogue is built from a nats-server prepared as the shop prepares one (schemas loaded,
migrations run) and the shop's App tree, written to a folder, and served by
:class:`polyn.catalog.CatalogServer` (what ``polyn catalog serve`` runs) — never opened as
``file://``. A screenshot of the index is written as a test artefact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import artifact_path, report_artifact
from catalog_support import SHOP_EVENTS

from polyn.catalog import Catalog, CatalogServer, write_catalog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(shop_catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the shop's catalogue, served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("catalog")
    write_catalog(shop_catalog, folder)
    with CatalogServer(folder) as server:
        yield server.url


def visible_events(page: Any) -> list[str]:
    rows = page.locator("tr.event:visible")
    return list(rows.evaluate_all("rows => rows.map(r => r.dataset.name)"))


def test_the_index_lists_the_four_events(browser_page: Any, site: str) -> None:
    page = browser_page
    page.goto(site)
    assert page.title() == "com.acme events"
    assert visible_events(page) == SHOP_EVENTS
    assert page.locator("#count").inner_text() == "4 of 4 events"
    links = page.locator("tr.event a").evaluate_all("links => links.map(a => a.href)")
    assert links == [f"{site}events/{name}.html" for name in SHOP_EVENTS]
    path = artifact_path("catalog-index.png")
    page.screenshot(path=str(path), full_page=True)
    report_artifact(path)
    assert path.stat().st_size > 10_000


def test_the_search_box_and_the_filters_narrow_the_list(browser_page: Any, site: str) -> None:
    page = browser_page
    page.goto(site)
    search = page.locator("#search")
    search.fill("payment")
    assert visible_events(page) == ["payment.captured.v1"]
    assert page.locator("#count").inner_text() == "1 of 4 events"
    search.fill("sku")  # a field of the payload
    assert visible_events(page) == ["order.placed.v1", "stock.reported.v1", "stock.requested.v1"]
    search.fill("ledger")  # an actor reading it
    assert visible_events(page) == ["payment.captured.v1"]
    search.fill("no such thing")
    assert visible_events(page) == []
    assert page.locator("#no-match").is_visible()
    search.fill("")
    page.select_option("#domain-filter", "stock")
    assert visible_events(page) == ["stock.reported.v1", "stock.requested.v1"]
    search.fill("reported")
    assert visible_events(page) == ["stock.reported.v1"]
    search.fill("")
    page.select_option("#domain-filter", "")
    page.select_option("#service-filter", "shop")
    assert visible_events(page) == SHOP_EVENTS


def test_an_event_page_shows_its_schema_consumers_and_streams(browser_page: Any, site: str) -> None:
    page = browser_page
    page.goto(site)
    page.click("text=order.placed.v1")
    page.wait_for_url(f"{site}events/order.placed.v1.html")
    assert page.locator("h1").inner_text() == "order.placed.v1"
    rows = page.locator("#payload table.schema tbody tr")
    fields = rows.evaluate_all("rows => rows.map(r => r.dataset.path)")
    assert fields == [
        "order_id",
        "customer",
        "items",
        "items[]",
        "items[].sku",
        "items[].quantity",
        "items[].price",
        "total",
    ]
    quantity = page.locator('#payload tr[data-path="items[].quantity"] td')
    assert quantity.all_inner_texts()[:3] == ["quantity", "integer", "required"]
    assert "≥ 1" in quantity.nth(4).inner_text()
    consumers = page.locator("#consumers table.consumers tbody tr td")
    assert consumers.all_inner_texts() == [
        "shop_order_placed_v1",
        "ORDERS",
        "order.placed.v1",
        "shop (Billing, pull consumer)",
    ]
    streams = page.locator("#streams table.streams tbody tr td")
    assert streams.all_inner_texts()[:2] == ["ORDERS", "order.>"]
    assert '"type": "com.acme.order.placed.v1"' in page.locator("#example pre").inner_text()
    # The core NATS subscriber of another event, and its way back to the index.
    page.goto(f"{site}events/payment.captured.v1.html")
    subscribers = page.locator("#consumers table.subscribers tbody tr td")
    assert subscribers.all_inner_texts()[:2] == ["shop", "Receipts"]
    page.click(".crumbs a")
    page.wait_for_url(f"{site}index.html")
    assert visible_events(page) == SHOP_EVENTS


def test_the_pages_fetch_nothing_from_the_network(browser_page: Any, site: str) -> None:
    requested: list[str] = []
    browser_page.on("request", lambda request: requested.append(request.url))
    browser_page.goto(site)
    browser_page.goto(f"{site}events/stock.requested.v1.html")
    assert requested and all(url.startswith(site) for url in requested), requested
