"""``polyn schemas check --codegen`` and ``codegen --from-bucket`` against a real nats-server (a
schema bucket per test), in a project folder of the test's own.

The command runs in a worker thread (its own ``trio.run``, as ``polyn`` runs it) rather than a
subprocess, which would spend seconds importing per call (tests/cli runs the real subprocess).
Paths are given in full, so nothing depends on the working directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from _support import Names
from typed_support import SCHEMAS_DIR

from polyn import cli

PYPROJECT = """\
[tool.polyn]
domain = "com.test"
source_root = "typed.tests"
"""


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


@attrs.frozen
class Project:
    root: Path
    url: str
    bucket: str

    async def polyn(self, *args: str) -> Result:
        argv = [*args, "--server", self.url, "--schema-bucket", self.bucket]
        argv += ["--pyproject", str(self.root / "pyproject.toml")]

        def run() -> Result:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = cli.main(argv)
            return Result(status, out.getvalue(), err.getvalue())

        return await trio.to_thread.run_sync(run)

    def path(self, name: str) -> str:
        return str(self.root / name)

    async def load(self, *flags: str) -> Result:
        return await self.polyn("schemas", "load", self.path("schemas"), *flags)

    async def check(self, *flags: str) -> Result:
        return await self.polyn("schemas", "check", self.path("schemas"), *flags)

    async def codegen(self, *flags: str) -> Result:
        return await self.polyn("schemas", "codegen", *flags)

    def schema(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.root / "schemas" / f"{name}.json").read_text())
        return document

    def write_schema(self, name: str, document: dict[str, Any]) -> None:
        (self.root / "schemas" / f"{name}.json").write_text(json.dumps(document, indent=2))

    def remove_field(self, name: str, field: str) -> None:
        document = self.schema(name)
        del document["properties"][field]
        document["required"].remove(field)
        self.write_schema(name, document)


@pytest.fixture
async def project(tmp_path: Path, nats_url: str, names: Names) -> Project:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "schemas").mkdir()
    for name in ("order.placed.v1", "stock.requested.v1"):
        shutil.copy(SCHEMAS_DIR / f"{name}.json", tmp_path / "schemas")
    project = Project(tmp_path, nats_url, names.bucket("schemas"))
    loaded = await project.load()
    assert loaded.returncode == 0, loaded.stderr
    written = await project.codegen(project.path("schemas"), "--out", project.path("events.py"))
    assert written.returncode == 0, written.stderr
    return project


async def test_a_module_generated_from_the_loaded_schemas_is_up_to_date(project: Project) -> None:
    checked = await project.check("--codegen", project.path("events.py"))

    assert checked.returncode == 0, checked.stderr
    assert "  up to date    OrderPlacedV1 (order.placed.v1)" in checked.stdout
    assert "  up to date    StockRequestedV1 (stock.requested.v1)" in checked.stdout


async def test_a_compatible_change_makes_the_module_stale_only(project: Project) -> None:
    order = project.schema("order.placed.v1")
    order["properties"]["coupon"] = {"type": "string"}
    project.write_schema("order.placed.v1", order)
    assert (await project.load()).returncode == 0

    checked = await project.check("--codegen", project.path("events.py"))

    assert checked.returncode == 0, checked.stderr
    assert "  stale         OrderPlacedV1 (order.placed.v1): generated from another" in (
        checked.stdout
    )
    assert f"Regenerate it: polyn schemas codegen --out {project.path('events.py')}" in (
        checked.stdout
    )


async def test_a_removed_field_makes_the_stale_module_fail_the_check(project: Project) -> None:
    project.remove_field("order.placed.v1", "customer")
    loaded = await project.load("--allow-breaking")
    assert loaded.returncode == 0, loaded.stderr

    plain = await project.check()
    checked = await project.check("--codegen", project.path("events.py"))

    assert plain.returncode == 0, plain.stderr  # the folder and the bucket agree...
    assert checked.returncode == 1  # ...but the generated module cannot read them
    assert "  incompatible  OrderPlacedV1 (order.placed.v1) with the schemas folder:" in (
        checked.stdout
    )
    assert "#/properties/customer: property removed" in checked.stdout
    assert "events.py cannot read the current schema of OrderPlacedV1" in checked.stderr
    assert "  up to date    StockRequestedV1 (stock.requested.v1)" in checked.stdout


async def test_a_message_only_in_the_bucket_is_judged_against_the_bucket(
    project: Project,
) -> None:
    (project.root / "schemas" / "stock.requested.v1.json").unlink()

    checked = await project.check("--codegen", project.path("events.py"))

    assert checked.returncode == 0, checked.stderr
    assert "kept stock.requested.v1" in checked.stdout
    assert "  up to date    StockRequestedV1 (stock.requested.v1)" in checked.stdout


async def test_codegen_from_the_bucket_writes_the_bucket_schemas(project: Project) -> None:
    project.remove_field("order.placed.v1", "customer")
    assert (await project.load("--allow-breaking")).returncode == 0

    written = await project.codegen("--from-bucket", "--out", project.path("bucket.py"))
    checked = await project.check("--codegen", project.path("bucket.py"))

    assert written.returncode == 0, written.stderr
    assert f"from the schema bucket {project.bucket}" in written.stdout
    text = (project.root / "bucket.py").read_text()
    assert "class OrderPlacedV1:" in text and "customer" not in text
    assert checked.returncode == 0, checked.stderr


async def test_check_codegen_refuses_a_module_that_is_not_generated(project: Project) -> None:
    (project.root / "plain.py").write_text("class Nothing:\n    pass\n")

    checked = await project.check("--codegen", project.path("plain.py"))
    missing = await project.check("--codegen", "no.such.module")

    assert checked.returncode == 1
    assert "plain.py has no class written by `polyn schemas codegen`" in checked.stderr
    assert missing.returncode == 1
    assert "There is no Python module 'no.such.module'" in missing.stderr
