"""``polyn schemas load|check`` as a library: conformance cases 97-98 and the compatibility gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _support import Names

from polyn.errors import SchemaError
from polyn.nats import NatsTransport
from polyn.schema_loader import check_schemas, init_schemas, load_schemas, read_schemas

WIDGET = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def write(folder: Path, relative: str, document: Any) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    path.write_text(text, encoding="utf-8")
    return path


async def test_a_schema_is_stored_under_its_file_name_as_compact_json(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:  # case 97
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    write(tmp_path, "nested/deeper/app.gadgets.v1.json", {"type": "null"})
    bucket = names.bucket("schemas")
    report = await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert await transport.kv_entries(bucket) == {
        "app.widgets.v1": b'{"type":"object","properties":{"name":{"type":"string"}},'
        b'"required":["name"]}',
        "app.gadgets.v1": b'{"type":"null"}',
    }
    assert report.by_status("added") == ["app.gadgets.v1", "app.widgets.v1"]
    again = await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert again.by_status("unchanged") == ["app.gadgets.v1", "app.widgets.v1"]


def test_an_invalid_json_schema_is_refused(tmp_path: Path) -> None:  # case 98
    write(tmp_path, "app.widgets.v1.json", {"type": "not-a-valid-type"})
    with pytest.raises(SchemaError, match=r"Invalid JSON Schema document for event app\.widgets"):
        read_schemas(tmp_path)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "app.widgets.v1.json", "{not json")
    with pytest.raises(SchemaError, match=r"Invalid JSON Schema document for event app\.widgets"):
        read_schemas(tmp_path)


def test_a_file_name_that_is_not_a_message_name_is_refused(tmp_path: Path) -> None:  # case 98
    write(tmp_path, "app widgets v1.json", WIDGET)
    with pytest.raises(SchemaError, match="Message names must be lowercase, alphanumeric"):
        read_schemas(tmp_path)


def test_duplicate_names_across_folders_are_refused(tmp_path: Path) -> None:  # case 98
    write(tmp_path, "one/app.widgets.v1.json", WIDGET)
    write(tmp_path, "two/app.widgets.v1.json", WIDGET)
    with pytest.raises(SchemaError) as caught:
        read_schemas(tmp_path)
    message = str(caught.value)
    assert message.startswith(
        "There can only be one of each schema name. The following schemas were duplicated:"
    )
    assert str(tmp_path / "one" / "app.widgets.v1.json") in message
    assert str(tmp_path / "two" / "app.widgets.v1.json") in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "Bad_Name.json", WIDGET)
    write(tmp_path, "app.widgets.v1.json", {"type": 5})
    with pytest.raises(SchemaError) as caught:
        read_schemas(tmp_path)
    assert "'Bad_Name'" in str(caught.value) and "app.widgets.v1" in str(caught.value)


def test_other_files_are_ignored(tmp_path: Path) -> None:  # case 98
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    write(tmp_path, "foo.png", "not an image")
    write(tmp_path, "README.md", "# schemas")
    assert list(read_schemas(tmp_path)) == ["app.widgets.v1"]


async def test_keys_not_on_disk_are_kept_unless_pruned(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:  # case 98 (ADR 0010: kept by default)
    bucket = names.bucket("schemas")
    await transport.kv_create(bucket)
    await transport.kv_put(bucket, "other.service.v1", b'{"type":"string"}')
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    report = await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert report.by_status("kept") == ["other.service.v1"]
    assert "other.service.v1" in await transport.kv_entries(bucket)
    report = await load_schemas(transport, read_schemas(tmp_path), bucket=bucket, prune=True)
    assert report.by_status("removed") == ["other.service.v1"]
    assert list(await transport.kv_entries(bucket)) == ["app.widgets.v1"]


async def test_a_breaking_change_is_refused_and_nothing_is_written(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:
    bucket = names.bucket("schemas")
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    before = await transport.kv_entries(bucket)
    write(tmp_path, "app.widgets.v1.json", {"type": "object", "properties": {}})
    write(tmp_path, "app.gadgets.v1.json", {"type": "null"})
    with pytest.raises(SchemaError) as caught:
        await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert str(caught.value) == (
        "You have made a backwards-incompatible change on schema app.widgets.v1:\n"
        "  #/properties/name: property removed\n"
        "  #/properties/name: property is no longer required\n"
        "Publish it as a new version (app.widgets.v2) instead, or pass --allow-breaking once "
        "every producer and consumer of app.widgets.v1 is ready.\n"
        "Nothing was written."
    )
    assert await transport.kv_entries(bucket) == before
    report = await load_schemas(
        transport, read_schemas(tmp_path), bucket=bucket, allow_breaking=True
    )
    assert report.by_status("changed") == ["app.widgets.v1"]
    assert (await transport.kv_entries(bucket))["app.widgets.v1"] == (
        b'{"type":"object","properties":{}}'
    )


async def test_an_optional_property_is_a_compatible_change(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:
    bucket = names.bucket("schemas")
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    wider = {**WIDGET, "properties": {**WIDGET["properties"], "size": {"type": "integer"}}}
    write(tmp_path, "app.widgets.v1.json", wider)
    report = await load_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert report.by_status("changed") == ["app.widgets.v1"] and report.breaking == []


async def test_check_reports_without_writing_even_without_a_bucket(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:
    bucket = names.bucket("schemas")
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    report = await check_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert report.by_status("added") == ["app.widgets.v1"] and not report.written
    assert report.summary() == f"1 schemas checked against {bucket}: 1 added"
    assert await transport.stream_names(subject=f"$KV.{bucket}.>") == []


async def test_a_stored_combined_cloud_event_schema_is_compared_by_its_payload(
    transport: NatsTransport, names: Names, tmp_path: Path
) -> None:
    bucket = names.bucket("schemas")
    await transport.kv_create(bucket)
    combined = {"required": ["id", "source", "type"], "definitions": {"datadef": WIDGET}}
    await transport.kv_put(bucket, "app.widgets.v1", json.dumps(combined).encode())
    write(tmp_path, "app.widgets.v1.json", WIDGET)
    report = await check_schemas(transport, read_schemas(tmp_path), bucket=bucket)
    assert report.by_status("unchanged") == ["app.widgets.v1"]


def test_init_writes_an_example_that_loads(tmp_path: Path) -> None:
    path = init_schemas(tmp_path / "schemas")
    assert list(read_schemas(tmp_path / "schemas")) == ["user.created.v1"]
    with pytest.raises(SchemaError, match="is not empty"):
        init_schemas(tmp_path / "schemas")
    assert path.name == "user.created.v1.json"
