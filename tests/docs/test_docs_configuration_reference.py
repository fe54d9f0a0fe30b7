"""docs/reference/configuration.md lists every field of ``polyn.Config`` and its variable.

Each field of the attrs class must appear in backquotes, with the ``POLYN_<FIELD>`` variable
``Config.load`` reads for it; and that variable must really set the field (so the page cannot
name a variable the code ignores). Fast, in the default run.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from docs_support import DOCS

import polyn

PAGE = DOCS / "reference" / "configuration.md"
# a value Config.load takes for each field from its variable
SAMPLES = {
    "servers": "nats://10.0.0.1:4222",
    "max_replicas": "3",
    "kv_replicas": "2",
}


def test_every_config_field_and_its_variable_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    missing = []
    for field in attrs.fields(polyn.Config):
        variable = f"POLYN_{field.name.upper()}"
        if f"`{field.name}`" not in page:
            missing.append(field.name)
        if f"`{variable}`" not in page:
            missing.append(variable)
    assert missing == [], f"not in docs/reference/configuration.md: {missing}"


def test_each_documented_variable_sets_its_field(tmp_path: Path) -> None:
    base = {"POLYN_DOMAIN": "com.acme", "POLYN_SOURCE_ROOT": "orders"}
    for field in attrs.fields(polyn.Config):
        variable = f"POLYN_{field.name.upper()}"
        value = SAMPLES.get(field.name, "x.y" if field.name in ("domain", "source_root") else "V1")
        if field.name in ("schema_store", "migrations_bucket"):
            value = "SOME_BUCKET"
        config = polyn.Config.load(environ={**base, variable: value}, cwd=tmp_path)
        got = getattr(config, field.name)
        assert got is not None and got != field.default, (variable, got)
