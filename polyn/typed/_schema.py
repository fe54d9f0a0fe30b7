"""What a generated class knows of its schema, and whether another revision still fits it.

A class written by ``polyn schemas codegen`` carries three class variables:

- ``__polyn_message__``: the message name it stands for (``"order.placed.v1"``);
- ``__polyn_schema_hash__``: :func:`schema_hash` of the schema it was generated from;
- ``__polyn_schema__``: that schema, as JSON text.

A schema revision with another hash makes the class **stale** (a warning: regenerate). Whether it
still **fits** is judged with the rules of ``polyn schemas check``
(:func:`polyn.schema_compat.breaking_changes`, the class's schema as the old one): a property
removed, a type changed, a property no longer required... make it incompatible, and a consumer
naks (never dead-letters) events of that revision. Adding an optional property is compatible:
the class ignores it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import attrs

from polyn.errors import IncompatibleSchemaError
from polyn.schema_compat import breaking_changes
from polyn.typed._convert import structure_hook, unstructure

T = TypeVar("T")

log = logging.getLogger("polyn.typed")

HASH_PREFIX = "sha256:"


def schema_hash(schema: Any) -> str:
    """The hash of a schema document: ``"sha256:<hex>"`` of its canonical JSON.

    Canonical: keys sorted, no spaces, UTF-8. Key order and whitespace of the file or the bucket
    entry do not change it; any change of a keyword or value does.

    Example::

        schema_hash({"type": "object"}) == schema_hash(json.loads('{ "type" : "object" }'))
    """
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return HASH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


class Generated(Protocol):
    """What mypy knows of a class written by ``polyn schemas codegen``: the message it stands
    for. ``pub(running, instance)``, ``request`` and ``reply`` accept instances of such classes
    without an event type, and mypy refuses ``pub(running, "order.placed.v1")`` without data.
    """

    __polyn_message__: ClassVar[str]


def _class_of(cls_or_obj: Any) -> type[Any]:
    return cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)


def message_name_of(cls: Any) -> str | None:
    """The message name a generated class (or an instance of one) stands for, else ``None``.

    What lets ``pub(running, OrderPlacedV1(...))`` work out the event type.

    Example::

        message_name_of(OrderPlacedV1)      # 'order.placed.v1'
        message_name_of(dict)               # None
    """
    name = getattr(_class_of(cls), "__polyn_message__", None)
    return name if isinstance(name, str) else None


def schema_hash_of(cls: Any) -> str | None:
    """The hash of the schema a generated class was generated from, else ``None``."""
    value = getattr(_class_of(cls), "__polyn_schema_hash__", None)
    return value if isinstance(value, str) else None


def schema_of(cls: Any) -> Any:
    """The schema a generated class was generated from (a fresh copy), else ``None``."""
    text = getattr(_class_of(cls), "__polyn_schema__", None)
    return json.loads(text) if isinstance(text, str) else None


def is_stale(cls: Any, schema: Any) -> bool:
    """Whether a generated class was generated from another revision than ``schema``.

    A stale class may still be compatible (:func:`compatibility`); stale alone is a warning.
    ``False`` for classes that were not generated (nothing to compare).
    """
    known = schema_hash_of(cls)
    return known is not None and known != schema_hash(schema)


@attrs.frozen
class Compatibility:
    """The judgement of a schema revision for a data class (see :func:`compatibility`).

    - ``judged``: the class carries its schema (it was generated), so a judgement was made;
    - ``stale``: the class was generated from another revision (regenerate it);
    - ``problems``: why the revision breaks the class, one ``<JSON pointer>: <what>`` line each
      (``polyn schemas check`` rules); empty when it fits.
    """

    data_type: type[Any]
    message: str | None
    judged: bool
    stale: bool
    problems: tuple[str, ...] = ()

    @property
    def compatible(self) -> bool:
        """No problems: events of this revision can become instances of the class."""
        return not self.problems

    def describe(self) -> str:
        """One paragraph for a log line or ``health()``."""
        name = self.data_type.__qualname__
        about = f"{name} ({self.message})" if self.message else name
        if not self.compatible:
            lines = "\n".join(f"  {problem}" for problem in self.problems)
            return (
                f"{about} cannot read events of the current schema revision:\n{lines}\n"
                "Regenerate it (polyn schemas codegen) and update the code that uses it; until "
                "then these events are naked, not dead-lettered."
            )
        if self.stale:
            return (
                f"{about} was generated from another, compatible revision of the schema; "
                "regenerate it with polyn schemas codegen"
            )
        return f"{about} matches the schema" if self.judged else f"{about} is not generated"


def compatibility(cls: type[Any], schema: Any) -> Compatibility:
    """Judge whether events valid under ``schema`` can become instances of ``cls``.

    For a generated class, the schema it was generated from is compared with ``schema`` by the
    ``polyn schemas check`` rules (:func:`polyn.schema_compat.breaking_changes`). A hand-written
    class carries no schema: it is not judged (``judged=False``, compatible).

    Example::

        verdict = compatibility(OrderPlacedV1, schemas.get("order.placed.v1"))
        if not verdict.compatible:
            await msg.nak(delay=30)
    """
    own = schema_of(cls)
    if own is None:
        return Compatibility(cls, message_name_of(cls), judged=False, stale=False)
    return Compatibility(
        cls,
        message_name_of(cls),
        judged=True,
        stale=is_stale(cls, schema),
        problems=tuple(breaking_changes(own, schema)),
    )


class _SchemaSource(Protocol):
    def get(self, name: str) -> Any: ...


class Decoder(Generic[T]):
    """Turns validated event data into instances of one data class; what a typed consumer holds.

    Made once per consumer (``Decoder(OrderPlacedV1)``); per message, :meth:`decode` judges the
    message's schema revision (once per schema snapshot and name, then cached) and builds the
    instance with cattrs. A stale class is logged once per revision as a warning; an
    incompatible revision raises :class:`IncompatibleSchemaError` for every message of it (and
    is logged once).

    ``schemas`` is the snapshot the message was validated with: a :class:`polyn.codec.Schemas`,
    or any mapping of message names to schema documents. Snapshots are immutable, so the cache
    is keyed by the snapshot's identity.

    Example::

        decoder = Decoder(OrderPlacedV1)                   # at start: TypeError if unusable
        event = codec.decode(msg.data, schemas, config)    # validated
        try:
            order = decoder.decode(event.data, name="order.placed.v1", schemas=schemas)
        except IncompatibleSchemaError as exc:
            await msg.nak(delay=30)                        # and report exc in health()
    """

    def __init__(self, data_type: type[T]) -> None:
        self.data_type = data_type
        self.message = message_name_of(data_type)
        self._hook: Callable[[Any, type[T]], T] = structure_hook(data_type)
        self._snapshot: object = None
        self._verdicts: dict[str, Compatibility] = {}
        self._reported: set[tuple[str, str]] = set()

    def compatibility(self, schemas: _SchemaSource, name: str) -> Compatibility:
        """The judgement of ``name``'s schema in ``schemas`` for this class (cached)."""
        if schemas is not self._snapshot:
            self._snapshot = schemas
            self._verdicts = {}
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = self._verdicts[name] = self._judge(schemas.get(name), name)
        return verdict

    def _judge(self, schema: Any, name: str) -> Compatibility:
        if schema_hash_of(self.data_type) is None:
            return Compatibility(self.data_type, self.message, judged=False, stale=False)
        problem = None
        if self.message != name:
            problem = f"#: {self.data_type.__qualname__} stands for {self.message}, not {name}"
        elif schema is None:
            problem = f"#: no schema for {name} in the schema store"
        if problem is None:
            verdict = compatibility(self.data_type, schema)
        else:
            verdict = Compatibility(
                self.data_type, self.message, judged=True, stale=False, problems=(problem,)
            )
        self._report(verdict, schema_hash(schema) if schema is not None else name)
        return verdict

    def _report(self, verdict: Compatibility, revision: str) -> None:
        key = (verdict.message or "", revision)
        if key in self._reported or (verdict.compatible and not verdict.stale):
            return
        self._reported.add(key)
        if verdict.compatible:
            log.warning("%s", verdict.describe())
        else:
            log.error("%s", verdict.describe())

    def decode(self, data: Any, *, name: str, schemas: _SchemaSource) -> T:
        """An instance of the data class from ``data``, validated under ``schemas[name]``.

        Raises :class:`IncompatibleSchemaError` when that revision breaks the class, or when the
        data does not fit a hand-written class.
        """
        verdict = self.compatibility(schemas, name)
        if not verdict.compatible:
            raise IncompatibleSchemaError(verdict.describe(), verdict)
        return self.structure(data, verdict)

    def structure(self, data: Any, verdict: Compatibility | None = None) -> T:
        """An instance of the data class from validated ``data``, without judging a schema."""
        try:
            return self._hook(data, self.data_type)
        except Exception as exc:
            raise IncompatibleSchemaError(
                f"Could not build {self.data_type.__qualname__} from the event data: "
                f"{type(exc).__name__}: {exc}",
                verdict,
            ) from exc


@functools.lru_cache(maxsize=256)
def _decoder(cls: Any) -> Decoder[Any]:
    return Decoder(cls)


def structure(cls: type[T], data: Any) -> T:
    """An instance of ``cls`` built from ``data`` (a JSON value already validated by the codec).

    ``cls`` is a generated class, an attrs class, a dataclass, a pydantic model, or any type
    cattrs can build (``list[OrderPlacedV1]``...). Nested classes, sequences (as tuples where the
    class says ``Sequence``), optional fields and ``json_key`` renames are handled by cattrs;
    scalars are not converted again (the codec validated them). Raises ``TypeError`` when
    ``cls`` cannot be built from JSON, :class:`IncompatibleSchemaError` when ``data`` does not fit.

    Example::

        order = structure(OrderPlacedV1, event.data)
        order.items[0].sku
    """
    decoder: Decoder[T] = _decoder(cast(Any, cls))
    return decoder.structure(data)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The default of :func:`event_type_and_data`'s ``data``: none was given."""


def event_type_and_data(event_type: Any, data: Any = MISSING) -> tuple[str, Any]:
    """What to publish for ``pub(conn, event_type, data)`` or ``pub(conn, instance)``.

    With a message name and ``data``: the name and ``unstructure(data)``. With an instance of a
    generated class alone: its message name and its JSON. Raises ``TypeError`` for an instance
    of a class that stands for no message (pass the event type), or for both an instance and
    ``data``.

    Example::

        event_type_and_data(OrderPlacedV1(...))            # ('order.placed.v1', {...})
        event_type_and_data("user.created.v1", {"a": 1})   # ('user.created.v1', {'a': 1})
    """
    if isinstance(event_type, str):
        return event_type, unstructure(None if data is MISSING else data)
    name = message_name_of(event_type)
    if name is None or isinstance(event_type, type):
        raise TypeError(
            f"Cannot tell the event type of {event_type!r}: only instances of classes written "
            "by `polyn schemas codegen` carry one; pass the event type, e.g. "
            'pub(conn, "user.created.v1", data)'
        )
    if data is not MISSING:
        raise TypeError(
            f"Pass either an instance ({type(event_type).__qualname__}) or an event type and "
            "its data, not both"
        )
    return name, unstructure(event_type)


def generated_classes(namespace: Mapping[str, Any] | Any) -> dict[str, type[Any]]:
    """The generated classes of a module (or a namespace dict), by message name.

    Example::

        from examples.shop import events
        generated_classes(events)["order.placed.v1"]     # OrderPlacedV1
    """
    items = namespace.items() if isinstance(namespace, Mapping) else vars(namespace).items()
    found = {}
    for _, value in sorted(items, key=lambda item: str(item[0])):
        if isinstance(value, type) and (name := message_name_of(value)) is not None:
            found[name] = value
    return found
