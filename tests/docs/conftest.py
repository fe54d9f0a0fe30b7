"""Fixtures of the documentation's tests: the site built once per session.

``built_site`` runs ``mkdocs build --strict`` (what CI and the README's ``mkdocs serve`` use) into
a temporary folder and yields it with the build's output; a build that fails or warns fails every
test that needs the site. The build needs the ``docs`` extra (``pip install -e ".[docs]"``):
without it the tests are skipped with that remedy, or fail under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator

import pytest
from browser_support import skip_or_fail
from docs_support import BuiltSite, build_site


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltSite]:
    missing = [
        m
        for m in ("mkdocs", "material", "mkdocstrings_handlers.python")
        if importlib.util.find_spec(m.split(".")[0]) is None
    ]
    if missing:
        skip_or_fail(
            f"the docs extra is not installed ({', '.join(missing)}): pip install -e '.[dev,docs]'"
        )
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    result = build_site(out)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    print(f"\nmkdocs build --strict: {seconds:.1f} s", file=sys.stderr)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{output}", pytrace=False)
    yield BuiltSite(out, output, seconds)
