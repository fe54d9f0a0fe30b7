"""Shared by the typed-events tests (``typed_support``: a name no other test folder uses, so it
imports the same wherever pytest starts): schemas that exercise what codegen must handle, the
example's schemas, and a loader for generated modules."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyn.config import Config

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = ROOT / "schemas"
EXAMPLE_MODULE = ROOT / "examples" / "shop" / "events.py"
CONFIG = Config(domain="com.test", source_root="typed.tests")

# Draft-07 with definitions, nested inline objects, enums, const, nullable and optional fields,
# property names that are not Python names, a schema default and a map.
SHIPMENT = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "A shipment was sent",
    "description": 'Sent by the "warehouse".\n\nOne event per parcel.',
    "type": "object",
    "required": ["id", "address", "status", "lines", "note", "kind"],
    "additionalProperties": False,
    "definitions": {
        "address": {
            "type": "object",
            "required": ["street"],
            "additionalProperties": False,
            "properties": {
                "street": {"type": "string"},
                "zip": {"type": ["string", "null"]},
            },
        },
    },
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "address": {"$ref": "#/definitions/address"},
        "billing": {"$ref": "#/definitions/address"},
        "status": {"enum": ["new", "sent", "lost"]},
        "kind": {"const": "parcel"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "additionalProperties": False,
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1},
                },
            },
        },
        "note": {"type": ["string", "null"]},
        "priority": {"type": "integer", "default": 3},
        "labels": {"type": "array", "items": {"type": "string"}, "default": []},
        "weight": {"type": "number"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "tracking-code": {"type": "string"},
        "class": {"type": "integer"},
        "_internal": {"type": "boolean"},
        "sent_at": {"type": "string", "format": "date-time"},
    },
}

# Draft 2020-12 with $defs, a recursive reference and a nullable enum.
FOLDER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name"],
    "$defs": {
        "owner": {
            "type": "object",
            "required": ["login"],
            "properties": {"login": {"type": "string"}},
        },
    },
    "properties": {
        "name": {"type": "string"},
        "owner": {"$ref": "#/$defs/owner"},
        "visibility": {"enum": ["public", "private", None]},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
}

RICH_SCHEMAS: Mapping[str, Any] = {
    "shipment.sent.v1": SHIPMENT,
    "folder.created.v2": FOLDER,
    "note.text.v1": {"type": "string"},
    "anything.v1": True,
}


def example_schemas() -> dict[str, Any]:
    """The example service's schemas (``schemas/``), by message name."""
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in SCHEMAS_DIR.glob("*.json")}


def load_module(text: str, folder: Path) -> types.ModuleType:
    """Write ``text`` as a module in ``folder`` and import it under a unique name."""
    name = f"generated_{uuid.uuid4().hex[:12]}"
    path = folder / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def token_module(token: str, folder: Path) -> types.ModuleType:
    """The example's schemas generated under message names of one test's own
    (``<token>.order.placed.v1``: ``T…OrderPlacedV1``), imported; so typed consumers of
    parallel tests on one server never share a subject."""
    from polyn.typed.codegen import generate_module

    schemas = {f"{token}.{name}": schema for name, schema in example_schemas().items()}
    return load_module(generate_module(schemas, source="a test").text, folder)
