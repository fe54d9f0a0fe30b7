"""Real-world-shaped payload schemas of every draft Polyn validates, with example instances.

Used by the differential test (the fast validator's verdict equals the wording validator's) and
by the codec benchmark. ``LEGACY`` schemas carry no ``$schema`` and are valid in drafts 4, 6
and 7 (those marked ``6+`` use keywords draft 4 does not know, which it then ignores);
``MODERN`` schemas are written for 2019-09 or 2020-12 and come with hand-made instances, valid
and invalid, since hypothesis-jsonschema draws only for drafts 4 to 7.
"""

from __future__ import annotations

from typing import Any

DRAFT_URIS = {
    "draft-04": "http://json-schema.org/draft-04/schema#",
    "draft-06": "http://json-schema.org/draft-06/schema#",
    "draft-07": "http://json-schema.org/draft-07/schema#",
    "2019-09": "https://json-schema.org/draft/2019-09/schema",
    "2020-12": "https://json-schema.org/draft/2020-12/schema",
}

# (name, drafts, schema); RECURSIVE_EXAMPLES gives instances for the schemas that
# hypothesis-jsonschema cannot draw from (recursive references).
LEGACY: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    (
        "user",
        ("draft-04", "draft-06", "draft-07"),
        {
            "type": "object",
            "required": ["name", "email", "age", "tags", "active"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 40},
                "email": {"type": "string", "format": "email"},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "active": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
    ),
    (
        "order",
        ("draft-04", "draft-06", "draft-07"),
        {
            "definitions": {
                "money": {
                    "type": "object",
                    "required": ["amount", "currency"],
                    "properties": {
                        "amount": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                },
                "line": {
                    "type": "object",
                    "required": ["sku", "quantity", "price"],
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                        "quantity": {"type": "integer", "minimum": 1},
                        "price": {"$ref": "#/definitions/money"},
                    },
                },
            },
            "type": "object",
            "required": ["id", "lines", "total", "status"],
            "properties": {
                "id": {"type": "string"},
                "lines": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 5,
                    "items": {"$ref": "#/definitions/line"},
                },
                "total": {"$ref": "#/definitions/money"},
                "status": {"enum": ["placed", "paid", "shipped", "cancelled"]},
                "placed_at": {"type": "string", "format": "date-time"},
                "note": {"type": ["string", "null"], "maxLength": 20},
            },
        },
    ),
    (
        "payment",
        ("draft-04", "draft-06", "draft-07"),
        {
            "type": "object",
            "required": ["method"],
            "properties": {"method": {"type": "string"}},
            "oneOf": [
                {
                    "properties": {
                        "method": {"enum": ["card"]},
                        "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                    },
                    "required": ["last4"],
                },
                {
                    "properties": {
                        "method": {"enum": ["bank"]},
                        "iban": {"type": "string", "minLength": 15, "maxLength": 34},
                    },
                    "required": ["iban"],
                },
            ],
        },
    ),
    (
        "localized",
        ("draft-04", "draft-06", "draft-07"),
        {
            "type": "object",
            "properties": {
                "titles": {
                    "type": "object",
                    "patternProperties": {"^[a-z]{2}(-[A-Z]{2})?$": {"type": "string"}},
                    "additionalProperties": False,
                    "minProperties": 1,
                },
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "dependencies": {"counts": ["titles"], "titles": {"required": ["default"]}},
        },
    ),
    (
        "device",
        ("draft-04", "draft-06", "draft-07"),
        {
            "type": "object",
            "required": ["host"],
            "properties": {
                "host": {"type": "string", "format": "hostname"},
                "ipv4": {"type": "string", "format": "ipv4"},
                "ipv6": {"type": "string", "format": "ipv6"},
                "url": {"type": "string", "format": "uri"},
                "seen_on": {"type": "string", "format": "date"},
                "uptime": {"type": "number", "minimum": 0, "maximum": 1e9},
                "labels": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            },
        },
    ),
    (
        "shipment",
        ("draft-06", "draft-07"),
        {
            "type": "object",
            "required": ["kind", "parcels"],
            "properties": {
                "kind": {"const": "shipment"},
                "parcels": {
                    "type": "array",
                    "contains": {"type": "object", "required": ["tracking"]},
                    "items": {
                        "type": "object",
                        "properties": {
                            "tracking": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{9}[A-Z]{2}$"},
                            "weight": {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                },
                "meta": {"type": "object", "propertyNames": {"pattern": "^[a-z_]+$"}},
            },
        },
    ),
    (
        "discount",
        ("draft-07",),
        {
            "type": "object",
            "properties": {
                "type": {"enum": ["percent", "fixed"]},
                "value": {"type": "number"},
                "code": {"type": "string", "pattern": "^[A-Z0-9]{4,12}$"},
            },
            "required": ["type", "value"],
            "if": {"properties": {"type": {"const": "percent"}}},
            "then": {"properties": {"value": {"maximum": 100, "multipleOf": 0.5}}},
            "else": {"properties": {"value": {"minimum": 0}}},
        },
    ),
    (
        "tree",
        ("draft-04", "draft-06", "draft-07"),
        {
            "definitions": {
                "node": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                    },
                }
            },
            "$ref": "#/definitions/node",
        },
    ),
    (
        "gauge",
        ("draft-04",),
        {
            "type": "object",
            "properties": {
                "level": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                "count": {"type": "integer", "maximum": 10, "exclusiveMaximum": True},
            },
            "required": ["level"],
        },
    ),
    (
        "anything",
        ("draft-04", "draft-06", "draft-07"),
        {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}, {"type": "null"}]},
    ),
]

RECURSIVE_EXAMPLES: dict[str, list[Any]] = {
    "tree": [
        {"name": "root", "children": [{"name": "a", "children": [{"name": "b"}]}, {"name": "c"}]},
        {"name": "root", "children": [{"children": []}]},
        {"name": 1},
    ]
}

# (name, drafts, schema, valid instances, invalid instances)
MODERN: list[tuple[str, tuple[str, ...], dict[str, Any], list[Any], list[Any]]] = [
    (
        "user",
        ("2019-09", "2020-12"),
        {
            "type": "object",
            "required": ["name", "email", "age", "tags", "active"],
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "active": {"type": "boolean"},
            },
        },
        [
            {
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "age": 36,
                "tags": ["math", "engines"],
                "active": True,
            }
        ],
        [{"name": "Ada", "email": "ada", "age": -1, "tags": [1], "active": "yes"}],
    ),
    (
        "address-unevaluated",
        ("2019-09", "2020-12"),
        {
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                        "postcode": {"type": "string", "pattern": "^[0-9]{5}$"},
                    },
                    "required": ["street", "city"],
                }
            },
            "allOf": [{"$ref": "#/$defs/address"}],
            "properties": {"kind": {"enum": ["home", "work"]}},
            "unevaluatedProperties": False,
        },
        [
            {"street": "1 Main St", "city": "Springfield"},
            {"street": "2 Side St", "city": "Shelbyville", "postcode": "12345", "kind": "work"},
        ],
        [
            {"street": "1 Main St", "city": "Springfield", "floor": 3},
            {"street": "1 Main St", "postcode": "1234"},
        ],
    ),
    (
        "conditional-unevaluated",
        ("2019-09", "2020-12"),
        {
            "type": "object",
            "properties": {"country": {"type": "string"}},
            "if": {"properties": {"country": {"const": "US"}}, "required": ["country"]},
            "then": {"properties": {"state": {"type": "string", "minLength": 2, "maxLength": 2}}},
            "else": {"properties": {"region": {"type": "string"}}},
            "patternProperties": {"^x-": {"type": "string"}},
            "unevaluatedProperties": False,
        },
        [
            {"country": "US", "state": "CA"},
            {"country": "FR", "region": "Bretagne", "x-note": "hi"},
        ],
        [{"country": "US", "region": "West"}, {"country": "FR", "state": "CA"}, {"x-n": 1}],
    ),
    (
        "dependent",
        ("2019-09", "2020-12"),
        {
            "type": "object",
            "properties": {
                "card": {"type": "string", "pattern": "^[0-9]{12,19}$"},
                "billing": {"type": "string"},
                "cvc": {"type": "string"},
            },
            "dependentRequired": {"card": ["billing"]},
            "dependentSchemas": {"cvc": {"required": ["card"]}},
            "minProperties": 1,
        },
        [{"card": "4111111111111111", "billing": "1 Main St"}, {"billing": "x"}],
        [{"card": "4111111111111111"}, {"cvc": "123"}, {}],
    ),
    (
        "contains-limits",
        ("2019-09", "2020-12"),
        {
            "type": "array",
            "contains": {
                "type": "object",
                "properties": {"primary": {"const": True}},
                "required": ["primary"],
            },
            "minContains": 1,
            "maxContains": 1,
            "maxItems": 4,
            "uniqueItems": True,
        },
        [[{"primary": True}], [{"primary": True}, {"primary": False}]],
        [[], [{"primary": True}, {"primary": True}], [{"primary": False}]],
    ),
    (
        "anchors",
        ("2019-09", "2020-12"),
        {
            "$defs": {
                "id": {"$anchor": "identifier", "type": "string", "pattern": "^[a-z]+-[0-9]+$"},
                "ids": {"type": "array", "items": {"$ref": "#identifier"}},
            },
            "type": "object",
            "properties": {"id": {"$ref": "#identifier"}, "related": {"$ref": "#/$defs/ids"}},
            "required": ["id"],
        },
        [{"id": "order-1"}, {"id": "order-2", "related": ["item-3", "item-4"]}],
        [{"id": "Order-1"}, {"id": "order-1", "related": ["x"]}, {"related": []}],
    ),
    (
        "tuple",
        ("2020-12",),
        {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
            "items": False,
            "minItems": 2,
        },
        [["a", 1], ["a", 1.5, True]],
        [["a"], [1, "a"], ["a", 1, True, None]],
    ),
    (
        "tuple-unevaluated",
        ("2020-12",),
        {
            "type": "array",
            "prefixItems": [{"const": "header"}],
            "contains": {"type": "integer"},
            "unevaluatedItems": {"type": "string"},
        },
        [["header", 1, "x"], ["header", 2, 3]],
        [["header", "x"], ["header", 1, None], ["nope", 1]],
    ),
    (
        "tuple-2019",
        ("2019-09",),
        {
            "type": "array",
            "items": [{"type": "string"}, {"type": "integer"}],
            "additionalItems": False,
        },
        [["a", 1], ["a"], []],
        [["a", 1, 2], [1, "a"]],
    ),
    (
        "tuple-unevaluated-2019",
        ("2019-09",),
        {
            "type": "array",
            "items": [{"type": "string"}],
            "unevaluatedItems": {"type": "integer"},
        },
        [["a", 1, 2], ["a"]],
        [["a", "b"], [1]],
    ),
    (
        "dynamic-tree",
        ("2020-12",),
        {
            "$id": "urn:polyn:test:tree",
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$dynamicRef": "#node"}},
            },
            "required": ["label"],
        },
        [{"label": "root", "children": [{"label": "a", "children": []}, {"label": "b"}]}],
        [{"label": "root", "children": [{"children": []}]}, {"label": 1}],
    ),
    (
        "dynamic-extended",
        ("2020-12",),
        {
            "$id": "urn:polyn:test:strict-tree",
            "$dynamicAnchor": "node",
            "$ref": "#/$defs/base",
            "unevaluatedProperties": False,
            "$defs": {
                "base": {
                    "$id": "urn:polyn:test:base-tree",
                    "$dynamicAnchor": "node",
                    "type": "object",
                    "properties": {
                        "data": True,
                        "children": {"type": "array", "items": {"$dynamicRef": "#node"}},
                    },
                }
            },
        },
        [{"data": 1, "children": [{"data": 2}]}],
        [{"data": 1, "children": [{"data": 2, "extra": 3}]}, {"other": 1}],
    ),
    (
        "recursive-tree",
        ("2019-09",),
        {
            "$recursiveAnchor": True,
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$recursiveRef": "#"}},
            },
            "required": ["name"],
        },
        [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}],
        [{"name": "a", "children": [{"children": []}]}],
    ),
    (
        "formats-and-numbers",
        ("2019-09", "2020-12"),
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "time"},
                "site": {"type": "string", "format": "uri"},
                "ref": {"type": "string", "format": "uri-reference"},
                "ptr": {"type": "string", "format": "json-pointer"},
                "id": {"type": "string", "format": "uuid"},
                "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.25},
                "count": {"type": "integer", "maximum": 10},
            },
        },
        [
            {
                "when": "2022-10-20T16:59:58Z",
                "day": "2022-10-20",
                "at": "16:59:58",
                "site": "https://example.com/a",
                "ref": "a/b#c",
                "ptr": "/a/b",
                "id": "not-a-uuid-but-unchecked",
                "price": 1.5,
                "count": 10,
            }
        ],
        [{"when": "yesterday"}, {"price": 0}, {"price": 1.3}, {"count": 10.5}, {"ptr": "a"}],
    ),
    (
        "content-and-names",
        ("2019-09", "2020-12"),
        {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z][a-zA-Z0-9]*$", "maxLength": 12},
            "properties": {
                "blob": {
                    "type": "string",
                    "contentEncoding": "base64",
                    "contentMediaType": "application/json",
                    "contentSchema": {"type": "object"},
                },
                "kind": {"const": {"a": [1, 2.0]}},
            },
            "not": {"required": ["forbidden"]},
        },
        [{"blob": "not base64 at all", "kind": {"a": [1.0, 2]}}, {}],
        [{"Bad": 1}, {"forbidden": 1}, {"kind": {"a": [2, 1]}}],
    ),
]
