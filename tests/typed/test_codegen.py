"""``polyn schemas codegen``: the module it writes, and the example's module kept in step."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from typed_support import EXAMPLE_MODULE, RICH_SCHEMAS, ROOT, example_schemas

from polyn import cli, typed
from polyn.errors import SchemaError
from polyn.typed.codegen import MissingExtraError, class_name_for, generate_module


def test_the_examples_module_is_what_codegen_writes_for_schemas(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # examples/shop/events.py is regenerated with exactly this command; a schema change that is
    # not followed by a regeneration fails here.
    monkeypatch.chdir(ROOT)
    written = generate_module(example_schemas(), source="the schemas folder schemas").text

    out = "examples/shop/events.py"
    status = cli.main(["schemas", "codegen", "schemas", "--out", out, "--check"])

    assert written == EXAMPLE_MODULE.read_text("utf-8")
    assert status == 0, capsys.readouterr().err


def test_check_fails_when_the_module_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.py"
    out.write_text(EXAMPLE_MODULE.read_text("utf-8").replace("total: float", "total: int"))
    monkeypatch.chdir(ROOT)

    status = cli.main(["schemas", "codegen", "schemas", "--out", str(out), "--check"])

    assert status == 1
    assert "is not what `polyn schemas codegen` writes" in capsys.readouterr().err


def test_codegen_writes_a_file_a_package_or_a_dotted_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    schemas = str(ROOT / "schemas")
    (tmp_path / "pkg").mkdir()

    for out in ("one.py", "pkg/", "app.typed_events"):
        assert cli.main(["schemas", "codegen", schemas, "--out", out]) == 0
    assert cli.main(["schemas", "codegen", schemas]) == 0

    printed = capsys.readouterr().out
    expected = EXAMPLE_MODULE.read_text("utf-8").replace(
        "the schemas folder schemas", f"the schemas folder {Path(schemas).as_posix()}"
    )
    assert (tmp_path / "one.py").read_text() == expected
    assert (tmp_path / "pkg" / "__init__.py").read_text() == expected
    assert (tmp_path / "app" / "typed_events.py").read_text() == expected
    assert expected in printed
    assert "Wrote one.py: 4 classes from the schemas folder" in printed


def test_one_frozen_keyword_only_class_per_object_schema(rich: types.ModuleType) -> None:
    assert typed.generated_classes(rich) == {
        "folder.created.v2": rich.FolderCreatedV2,
        "shipment.sent.v1": rich.ShipmentSentV1,
    }
    for cls in (rich.FolderCreatedV2, rich.ShipmentSentV1, rich.ShipmentSentV1Address):
        assert cls.__dataclass_params__.frozen
        assert all(f.kw_only for f in dataclasses.fields(cls))
    assert sorted(rich.__all__) == rich.__all__
    assert set(rich.__all__) == {
        "FolderCreatedV2",
        "FolderCreatedV2Owner",
        "ShipmentSentV1",
        "ShipmentSentV1Address",
        "ShipmentSentV1Line",
    }


def test_field_types_follow_the_schema(rich: types.ModuleType) -> None:
    hints = typing.get_type_hints(rich.ShipmentSentV1)
    fields = {f.name: f for f in dataclasses.fields(rich.ShipmentSentV1)}

    assert hints["id"] is str
    assert hints["status"] == Literal["new", "sent", "lost"]  # enum
    assert hints["kind"] == Literal["parcel"]  # const
    assert hints["address"] is rich.ShipmentSentV1Address  # definitions, prefixed
    assert hints["lines"] == Sequence[rich.ShipmentSentV1Line]  # nested object, own class
    assert hints["note"] == str | None  # nullable and required: no default
    assert fields["note"].default is dataclasses.MISSING
    assert hints["billing"] == rich.ShipmentSentV1Address | None  # optional
    assert fields["billing"].default is None
    assert (hints["priority"], fields["priority"].default) == (int, 3)  # the schema's default
    assert hints["weight"] == float | None
    assert hints["tags"] == Mapping[str, str] | None
    assert hints["sent_at"] == str | None  # a format stays the string the wire carries
    assert {f.name: f.metadata.get("json_key") for f in fields.values() if f.metadata} == {
        "tracking_code": "tracking-code",
        "class_": "class",
        "field_internal": "_internal",
    }
    folder = typing.get_type_hints(rich.FolderCreatedV2)
    assert folder["owner"] == rich.FolderCreatedV2Owner | None  # 2020-12 $defs
    assert folder["visibility"] == Literal["public", "private"] | None  # nullable enum
    assert folder["children"] == Sequence[rich.FolderCreatedV2] | None  # "$ref": "#"


def test_each_class_carries_its_message_and_schema(rich: types.ModuleType) -> None:
    for message, cls in typed.generated_classes(rich).items():
        assert typed.schema_of(cls) == RICH_SCHEMAS[message]
        assert typed.schema_hash_of(cls) == typed.schema_hash(RICH_SCHEMAS[message])


def test_schemas_without_an_object_root_get_no_class(rich_text: str) -> None:
    module = generate_module(RICH_SCHEMAS, source="x")

    assert module.skipped == {
        "anything.v1": "the schema's root is not an object, so there is no class",
        "note.text.v1": "the schema's root is not an object, so there is no class",
    }
    assert "# No class for note.text.v1: the schema's root is not an object" in rich_text


def test_a_schema_whose_class_cattrs_cannot_build_is_skipped_with_the_reason() -> None:
    # Two variants of a oneOf that no required property tells apart.
    ambiguous = {
        "type": "object",
        "required": ["v"],
        "properties": {
            "v": {
                "oneOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                    {"type": "object", "properties": {"a": {"type": "integer"}}},
                ]
            }
        },
    }

    module = generate_module(
        {"value.set.v1": ambiguous, "stock.requested.v1": example_schemas()["stock.requested.v1"]},
        source="x",
    )

    assert module.classes == {"stock.requested.v1": "StockRequestedV1"}
    assert module.skipped["value.set.v1"].startswith(
        "cattrs cannot build ValueSetV1: Could not disambiguate between <class 'ValueSetV11'>"
    )
    assert "class ValueSetV1" not in module.text


def test_output_is_deterministic(rich_text: str) -> None:
    reordered = dict(reversed(list(RICH_SCHEMAS.items())))
    shuffled = {
        name: dict(reversed(list(schema.items()))) if isinstance(schema, dict) else schema
        for name, schema in reordered.items()
    }

    assert generate_module(shuffled, source="the test's schemas").text == rich_text


def test_class_names_come_from_message_names() -> None:
    assert class_name_for("order.placed.v1") == "OrderPlacedV1"
    assert class_name_for("user.created.v12") == "UserCreatedV12"
    assert class_name_for("2fa.enabled.v1") == "Event2faEnabledV1"


def test_two_schemas_defining_one_class_name_are_refused() -> None:
    schemas: dict[str, Any] = {
        "order.placed.v1": {"type": "object", "properties": {"item": {"type": "object"}}},
        "order.placed.v1.item": {"type": "object", "properties": {"a": {"type": "string"}}},
    }
    schemas["order.placed.v1"]["properties"]["item"]["properties"] = {"b": {"type": "string"}}

    with pytest.raises(SchemaError, match="would define the class OrderPlacedV1Item"):
        generate_module(schemas, source="x")


def test_codegen_without_the_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "datamodel_code_generator", None)  # import fails

    with pytest.raises(MissingExtraError, match=r"pip install 'polyn\[codegen\]'") as raised:
        generate_module(example_schemas(), source="x")
    status = cli.main(["schemas", "codegen", str(ROOT / "schemas")])

    assert isinstance(raised.value, ImportError)
    assert status == 1
    assert "pip install 'polyn[codegen]'" in capsys.readouterr().err


def test_the_runtime_works_without_the_generator() -> None:
    program = (
        "import sys\n"
        "sys.modules['datamodel_code_generator'] = None\n"
        "from polyn import typed\n"
        "from examples.shop.events import StockRequestedV1\n"
        "stock = typed.structure(StockRequestedV1, {'sku': 'mug', 'quantity': 2})\n"
        "assert typed.unstructure(stock) == {'sku': 'mug', 'quantity': 2}\n"
        "assert typed.Decoder(StockRequestedV1).message == 'stock.requested.v1'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.slow
def test_generated_modules_pass_mypy_strict_and_ruff(rich_text: str, tmp_path: Path) -> None:
    rich = tmp_path / "rich_events.py"
    rich.write_text(rich_text)
    usage = tmp_path / "usage.py"
    usage.write_text(
        "from examples.shop.events import OrderPlacedV1, OrderPlacedV1Item\n"
        "order = OrderPlacedV1(order_id='o', customer='c', total=1.0,\n"
        "                      items=[OrderPlacedV1Item(sku='s', quantity=1, price=2.0)])\n"
        "name: str = order.customer\n"
    )
    typo = tmp_path / "typo.py"
    typo.write_text(
        "from examples.shop.events import StockRequestedV1\n"
        "def quantity(stock: StockRequestedV1) -> int:\n"
        "    return stock.quantiy\n"
    )

    def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(c) for c in command], cwd=ROOT, capture_output=True, text=True, check=False
        )

    checked = run(sys.executable, "-m", "mypy", "--strict", EXAMPLE_MODULE, rich, usage)
    caught = run(sys.executable, "-m", "mypy", "--strict", typo)
    linted = run(sys.executable, "-m", "ruff", "check", "--no-cache", EXAMPLE_MODULE, rich)

    assert checked.returncode == 0, checked.stdout
    assert caught.returncode == 1 and '"StockRequestedV1" has no attribute "quantiy"' in (
        caught.stdout
    )
    assert linted.returncode == 0, linted.stdout
