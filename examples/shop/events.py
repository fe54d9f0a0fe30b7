"""Typed events: one frozen class per message schema, generated from the schemas folder schemas.

Written by ``polyn schemas codegen`` (datamodel-code-generator): do not edit; regenerate
after a schema changes. ``polyn schemas check --codegen`` tells whether this module is
stale against the schemas, and whether it can still read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "OrderPlacedV1",
    "OrderPlacedV1Item",
    "PaymentCapturedV1",
    "StockReportedV1",
    "StockRequestedV1",
]

__polyn_generated__ = True


@dataclass(frozen=True, kw_only=True)
class OrderPlacedV1Item:
    sku: str
    quantity: int
    price: float


@dataclass(frozen=True, kw_only=True)
class OrderPlacedV1:
    """The data of order.placed.v1: An order was placed."""

    __polyn_message__: ClassVar[str] = "order.placed.v1"
    __polyn_schema_hash__: ClassVar[str] = (
        "sha256:6cd5881ba121977d3cd3cf3fba82dfb6ef31dad3244b3faa81c0f696a909b5b1"
    )
    __polyn_schema__: ClassVar[str] = (
        '{"$schema":"http://json-schema.org/draft-07/schema#","additionalProperties":false,'
        '"properties":{"customer":{"minLength":1,"type":"string"},'
        '"items":{"items":{"additionalProperties":false,"properties":{"price":{"minimum":0,'
        '"type":"number"},"quantity":{"minimum":1,"type":"integer"},"sku":{"minLength":1,'
        '"type":"string"}},"required":["sku","quantity","price"],"type":"object"},'
        '"minItems":1,"type":"array"},"order_id":{"minLength":1,"type":"string"},'
        '"total":{"minimum":0,"type":"number"}},"required":["order_id","customer","items",'
        '"total"],"title":"An order was placed","type":"object"}'
    )

    order_id: str
    customer: str
    items: Sequence[OrderPlacedV1Item]
    total: float


@dataclass(frozen=True, kw_only=True)
class PaymentCapturedV1:
    """The data of payment.captured.v1: The payment of an order was captured."""

    __polyn_message__: ClassVar[str] = "payment.captured.v1"
    __polyn_schema_hash__: ClassVar[str] = (
        "sha256:ca857a69695d80da5b59517c511a68e643853198887722231d9740374cb10918"
    )
    __polyn_schema__: ClassVar[str] = (
        '{"$schema":"http://json-schema.org/draft-07/schema#","additionalProperties":false,'
        '"properties":{"amount":{"minimum":0,"type":"number"},'
        '"currency":{"pattern":"^[A-Z]{3}$","type":"string"},"customer":{"minLength":1,'
        '"type":"string"},"order_id":{"minLength":1,"type":"string"}},"required":["order_id",'
        '"customer","amount","currency"],"title":"The payment of an order was captured",'
        '"type":"object"}'
    )

    order_id: str
    customer: str
    amount: float
    currency: str


@dataclass(frozen=True, kw_only=True)
class StockReportedV1:
    """The data of stock.reported.v1: The stock of a product (the reply to stock.requested.v1)."""

    __polyn_message__: ClassVar[str] = "stock.reported.v1"
    __polyn_schema_hash__: ClassVar[str] = (
        "sha256:2adf78da2bb1300c65a0311da2e466d58011e41486d259245a6450a1edcf40ed"
    )
    __polyn_schema__: ClassVar[str] = (
        '{"$schema":"http://json-schema.org/draft-07/schema#","additionalProperties":false,'
        '"properties":{"available":{"minimum":0,"type":"integer"},'
        '"reserved":{"type":"boolean"},"sku":{"minLength":1,"type":"string"}},'
        '"required":["sku","available","reserved"],"title":"The stock of a product (the reply'
        ' to stock.requested.v1)","type":"object"}'
    )

    sku: str
    available: int
    reserved: bool


@dataclass(frozen=True, kw_only=True)
class StockRequestedV1:
    """The data of stock.requested.v1: How many of a product are in stock? (a request)."""

    __polyn_message__: ClassVar[str] = "stock.requested.v1"
    __polyn_schema_hash__: ClassVar[str] = (
        "sha256:78c783093d4c4b1c1603e6538087b6c24515331502068bbc0fe991eb933b6a66"
    )
    __polyn_schema__: ClassVar[str] = (
        '{"$schema":"http://json-schema.org/draft-07/schema#","additionalProperties":false,'
        '"properties":{"quantity":{"minimum":1,"type":"integer"},"sku":{"minLength":1,'
        '"type":"string"}},"required":["sku","quantity"],'
        '"title":"How many of a product are in stock? (a request)","type":"object"}'
    )

    sku: str
    quantity: int
