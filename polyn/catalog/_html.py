"""Writing a catalogue to a folder: the HTML pages (Jinja2 templates), assets and AsyncAPI.

The folder gets ``index.html``, ``events/<message name>.html`` per event, ``asyncapi.json``
and ``assets/catalog.css`` / ``assets/catalog.js`` (a few lines of plain JavaScript for the
index's search and filters). Nothing is fetched at view time. Output is deterministic: the same
catalogue always writes the same bytes (no dates, sorted everywhere), so a generated catalogue
can be committed and diffed. Event pages of events no longer in the catalogue are removed.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from polyn import __version__
from polyn.catalog._asyncapi import asyncapi_document
from polyn.catalog._model import Catalog
from polyn.catalog._views import EventView, event_views, undeclared
from polyn.errors import PolynError

__all__ = ["require_jinja2", "write_catalog"]

_ASSETS = ("catalog.css", "catalog.js")


def require_jinja2() -> None:
    """Raise a :class:`~polyn.PolynError` naming the extra when Jinja2 is not installed."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise PolynError(
            "polyn catalog needs Jinja2, which is not installed: "
            "pip install 'polyn[catalog]' (or pip install jinja2)"
        ) from None


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _environment() -> Any:
    require_jinja2()
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("polyn.catalog", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson_pretty"] = _json
    return env


def _compare(view: EventView, by_name: dict[str, EventView]) -> dict[str, Any] | None:
    if view.previous is not None and view.verdict is not None:
        return {"old": by_name[view.previous], "new": view, "verdict": view.verdict}
    if len(view.versions) > 1:
        following = by_name[view.versions[view.versions.index(view.name) + 1]]
        assert following.verdict is not None
        return {"old": view, "new": following, "verdict": following.verdict}
    return None


def write_catalog(catalog: Catalog, directory: str | Path) -> list[Path]:
    """Write ``catalog``'s pages, assets and ``asyncapi.json`` into ``directory`` (created
    when missing); returns the files written, index first.

    Raises :class:`~polyn.PolynError` when Jinja2 is missing (``pip install 'polyn[catalog]'``).
    """
    env = _environment()
    out = Path(directory)
    events_dir = out / "events"
    assets_dir = out / "assets"
    events_dir.mkdir(parents=True, exist_ok=True)
    assets_dir.mkdir(parents=True, exist_ok=True)
    views = event_views(catalog)
    by_name = {view.name: view for view in views}
    common = {
        "catalog": catalog,
        "known": set(by_name),
        "polyn_version": __version__,
    }
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.write_bytes(text.encode("utf-8"))
        written.append(path)

    write(
        out / "index.html",
        env.get_template("index.html").render(
            **common,
            root="",
            events=views,
            domains=sorted({view.domain for view in views}),
            problems=undeclared(catalog),
        ),
    )
    template = env.get_template("event.html")
    for view in views:
        write(
            events_dir / f"{view.name}.html",
            template.render(**common, root="../", event=view, compare=_compare(view, by_name)),
        )
    write(out / "asyncapi.json", _json(asyncapi_document(catalog)) + "\n")
    templates = resources.files("polyn.catalog").joinpath("templates")
    for asset in _ASSETS:
        write(assets_dir / asset, templates.joinpath(asset).read_text("utf-8"))
    keep = {path.name for path in written if path.parent == events_dir}
    for stale in sorted(events_dir.glob("*.html")):
        if stale.name not in keep:
            stale.unlink()
    return written
