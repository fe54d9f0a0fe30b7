"""Typed events: frozen classes generated from the schemas, and the runtime that fills them.

``polyn schemas codegen`` (:mod:`polyn.typed.codegen`, the ``codegen`` extra) writes one frozen
dataclass per message schema. This package is the runtime side, which needs only cattrs:

- :func:`structure` builds an instance from event data the codec has validated;
  :func:`unstructure` turns an instance (generated, attrs, dataclass, pydantic) back into JSON;
- :func:`message_name_of` tells which message a generated class stands for, so
  ``pub(running, OrderPlacedV1(...))`` needs no event type (:func:`event_type_and_data` is what
  ``pub`` does with its arguments);
- :func:`schema_hash_of`, :func:`is_stale` and :func:`compatibility` compare the schema a class
  was generated from with the revision in the schema store: a different hash is only a warning,
  a breaking change (``polyn schemas check`` rules) makes the class unable to read the revision;
- :class:`Decoder` is what a typed consumer holds: it judges each schema revision once and
  raises :class:`IncompatibleSchemaError` (nak, do not dead-letter) for a revision that breaks
  the class (the error lives in :mod:`polyn.errors`, exported as ``polyn.IncompatibleSchemaError``);
- :class:`Generated` is the protocol of generated classes (what ``pub(running, instance)``
  accepts for mypy).

The consumers and ``pub`` / ``request`` / ``reply`` use this runtime: a consumer with
``data_type = OrderPlacedV1`` (or ``PullConsumer[OrderPlacedV1]``) hands its handler an
``Event[OrderPlacedV1]``, and ``pub(running, OrderPlacedV1(...))`` publishes an instance
(see docs/guide/typed-events.md).

Example::

    from examples.shop.events import OrderPlacedV1
    from polyn import typed

    order = typed.structure(OrderPlacedV1, event.data)
    typed.message_name_of(order)               # 'order.placed.v1'
    typed.unstructure(order) == event.data     # True for data the schema accepts
"""

from __future__ import annotations

from polyn.errors import IncompatibleSchemaError
from polyn.typed._convert import JSON_KEY, unstructure
from polyn.typed._schema import (
    MISSING,
    Compatibility,
    Decoder,
    Generated,
    compatibility,
    event_type_and_data,
    generated_classes,
    is_stale,
    message_name_of,
    schema_hash,
    schema_hash_of,
    schema_of,
    structure,
)

__all__ = [
    "JSON_KEY",
    "MISSING",
    "Compatibility",
    "Decoder",
    "Generated",
    "IncompatibleSchemaError",
    "compatibility",
    "event_type_and_data",
    "generated_classes",
    "is_stale",
    "message_name_of",
    "schema_hash",
    "schema_hash_of",
    "schema_of",
    "structure",
    "unstructure",
]
