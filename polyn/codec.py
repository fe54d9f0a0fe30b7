"""Encode and decode Polyn events, validated exactly as the Elixir client validates them.

:func:`encode` turns an :class:`~polyn.Event` into the bytes to publish; :func:`decode` turns a
received body into an ``Event``. Both check, in this order (fact sheet §1.8 / §1.9):

1. (decode) the body is JSON, else "Polyn was unable to decode the following message: ...";
2. the whole event against the CloudEvent envelope schema (``cloud_event_schema.json``, shipped
   in this package; draft-07, formats as lenient as the Elixir client's);
3. the message name, ``type`` without this service's domain, follows the naming rule;
4. the schema snapshot has a schema for that name, else "Schema for <name> does not exist...";
5. ``data`` (only the payload) against that schema.

Any failure raises :class:`~polyn.ValidationError` whose first line is
``Polyn event <id> from <source> is not valid`` (``Polyn events need to follow the CloudEvent
spec`` when the JSON is not an object), then one line per problem,
``Property: `#/path` - <jsonschema's message>``, then ``Event data: <the event>``. Nothing is
published when :func:`encode` raises.

Schemas come in :class:`Schemas`, an immutable snapshot of the schema store: each schema is
compiled once, when the snapshot is made.

Hot path. Valid events never pay for error messages: each schema is compiled twice, into a fast
validator (jsonschema-rs) that only says yes or no, and into the detailed validator (jsonschema)
that runs only when the fast one says no, to produce the messages. They agree on every JSON
value: the fast one is given the same ``format`` checks (:mod:`polyn._json_formats`), and its
``pattern`` and ``multipleOf`` keywords are replaced by ones with jsonschema's semantics (Python
regular expressions, float division); schemas it could still judge differently
(``patternProperties``, drafts 2019-09 and 2020-12) are validated by jsonschema alone. Should the
fast validator ever say no where jsonschema finds nothing, jsonschema's verdict stands. JSON is
read and written with orjson.

Decisions:

- ``data`` must be JSON values: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
  ``float``, ``bool``, ``None``. Anything else (tuples, sets, datetimes, NaN and infinities, strings
  with lone surrogates, which UTF-8 cannot carry) is refused by :func:`encode` with a
  ``ValidationError`` naming where it is; integers of any size round-trip (orjson's 64-bit limit is
  worked around with the standard library).
- A missing schema is a ``ValidationError`` (as in Elixir; Ruby raises its SchemaError), worded
  with the protocol's "`schemas` codebase".
- :func:`decode` keeps what the sender sent (``type`` with its domain, ``source``, ``time``,
  ``polyndata``, ``specversion``); it drops extension attributes. A missing ``time`` becomes the
  receive time and a missing ``polyndata`` this client's, as Elixir does; a missing or null
  ``datacontenttype`` is ``application/json``, as the protocol says to assume.
- Payload schemas without ``$schema`` are draft-07. References must stay inside the schema
  (``#/definitions/...``): nothing is fetched over the network.

Example::

    schemas = Schemas.from_dict({"user.created.v1": {"type": "object"}})
    body = encode(Event.new(config, "user.created.v1", {"name": "Ada"}), schemas, config)
    event = decode(body, schemas, config)
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import jsonschema
import jsonschema_rs
import orjson
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator

from polyn._json_formats import FORMATS, always_valid
from polyn.errors import NamingError, SchemaError, SchemaNotFoundError, ValidationError
from polyn.event import Event, _now, _polyndata
from polyn.naming import trim_domain_prefix, validate_message_name

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from polyn.config import Config

__all__ = ["Schemas", "decode", "encode"]

# Error messages quote the event; a huge payload must not make a huge log line.
_MAX_SHOWN = 2000
_MAX_LINE = 1000


# -- compiling schemas ---------------------------------------------------------------------------

_FAST_DRAFTS: Mapping[type[Any], Any] = {
    Draft4Validator: jsonschema_rs.Draft4Validator,
    Draft6Validator: jsonschema_rs.Draft6Validator,
    Draft7Validator: jsonschema_rs.Draft7Validator,
}
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)


def _subschemas(schema: object) -> Iterator[dict[str, Any]]:
    """Every schema object in ``schema``, itself included (not the data in enum, const...)."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in _SUBSCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for child in children.values():
                yield from _subschemas(child)
    for key in _SUBSCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for child in children:
                yield from _subschemas(child)
    for key in _SUBSCHEMAS:
        yield from _subschemas(schema.get(key))
    items = schema.get("items")
    for child in items if isinstance(items, list) else [items]:
        yield from _subschemas(child)
    dependencies = schema.get("dependencies")
    if isinstance(dependencies, dict):
        for child in dependencies.values():
            yield from _subschemas(child)  # a list of names is no schema: skipped


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return checker


_FORMAT_CHECKER = _format_checker()


class _Pattern:
    """jsonschema's ``pattern`` (Python's ``re.search``) for jsonschema-rs, whose regexes differ."""

    def __init__(self, parent: object, value: str, path: object) -> None:
        self._regex = re.compile(value)

    def validate(self, instance: object) -> None:
        if isinstance(instance, str) and self._regex.search(instance) is None:
            raise ValueError("does not match")


class _MultipleOf:
    """jsonschema's ``multipleOf`` (float division) for jsonschema-rs, which is exact."""

    def __init__(self, parent: object, value: object, path: object) -> None:
        self._validator = Draft7Validator({"multipleOf": value})

    def validate(self, instance: object) -> None:
        if not self._validator.is_valid(instance):
            raise ValueError("not a multiple")


class _Annotation:
    """A keyword that jsonschema treats as an annotation in these drafts (content*)."""

    def __init__(self, parent: object, value: object, path: object) -> None:
        pass

    def validate(self, instance: object) -> None:
        pass


_FAST_KEYWORDS = {
    "pattern": _Pattern,
    "multipleOf": _MultipleOf,
    "contentEncoding": _Annotation,
    "contentMediaType": _Annotation,
}


@attrs.frozen
class _Compiled:
    """One schema, compiled once: ``is_valid`` is the hot path, ``errors`` the detailed one."""

    document: Any
    detailed: Validator
    is_valid: Callable[[Any], bool]

    def error_lines(self, instance: Any) -> list[str]:
        """jsonschema's messages for ``instance``; empty when jsonschema finds it valid."""
        return [
            _line(f"Property: `{_pointer(error.absolute_path)}` - {error.message}")
            for error in self.detailed.iter_errors(instance)
        ]


def _compile(name: str, document: Any) -> _Compiled:
    def refuse(reason: str) -> SchemaError:
        return SchemaError(
            f"Schemas must be valid JSONSchema documents, got {_inspect(document)} "
            f"(schema {name!r}: {reason})"
        )

    if not isinstance(document, dict | bool):
        raise refuse("a schema is a JSON object or a boolean")
    try:
        detailed_cls = jsonschema.validators.validator_for(document, default=Draft7Validator)
        detailed_cls.check_schema(document)  # type: ignore[arg-type]  # booleans too
    except jsonschema.SchemaError as exc:
        raise refuse(exc.message) from None
    parts = list(_subschemas(document))
    for part in parts:
        ref = part.get("$ref")
        if isinstance(ref, str) and not _local_ref_resolves(document, ref):
            raise refuse(
                f"$ref {ref!r} does not resolve inside the schema; Polyn fetches nothing, so "
                "inline the referenced schema under definitions and refer to #/definitions/..."
            )
    detailed = detailed_cls(document, format_checker=_FORMAT_CHECKER)
    fast_cls = _FAST_DRAFTS.get(detailed_cls)
    if fast_cls is None or any("patternProperties" in part for part in parts):
        return _Compiled(document, detailed, detailed.is_valid)
    used_formats = {part["format"] for part in parts if isinstance(part.get("format"), str)}
    try:
        fast = fast_cls(
            document,
            # Every format the schema uses gets our check (or none), never the library's own.
            formats={name: FORMATS.get(name, always_valid) for name in used_formats},
            validate_formats=True,
            keywords=_FAST_KEYWORDS,
        )
    except Exception:
        # jsonschema accepted it; a schema the fast library cannot take is validated slowly.
        return _Compiled(document, detailed, detailed.is_valid)
    return _Compiled(document, detailed, fast.is_valid)


def _local_ref_resolves(document: Any, ref: str) -> bool:
    if ref in ("", "#"):
        return True
    if not ref.startswith("#"):
        return False
    if not ref.startswith("#/"):
        return True  # a plain-name fragment ("#item"), resolved by both validators
    node = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def _load_envelope() -> _Compiled:
    text = resources.files("polyn").joinpath("cloud_event_schema.json").read_text("utf-8")
    return _compile("CloudEvent", json.loads(text))


_ENVELOPE = _load_envelope()


@attrs.frozen(eq=False)
class Schemas:
    """An immutable snapshot of payload schemas, by message name, each compiled once.

    ``Schemas()`` is the empty snapshot. Build one from documents (dicts, or JSON text as the
    schema store's key-value bucket holds it) with :meth:`from_dict`; derive new snapshots with
    :meth:`with_schema` and :meth:`without`, which recompile only what changed.

    Example::

        schemas = Schemas.from_dict({"user.created.v1": {"type": "object"}})
        schemas.names()                    # ('user.created.v1',)
        schemas.get("user.created.v1")     # {'type': 'object'}
        "order.placed.v1" in schemas       # False
    """

    _compiled: Mapping[str, _Compiled] = attrs.field(
        factory=lambda: MappingProxyType({}), alias="_compiled"
    )

    @classmethod
    def from_dict(cls, schemas: Mapping[str, Any]) -> Schemas:
        """A snapshot of ``{message name: JSON Schema}``.

        A schema may be a dict or boolean, or its JSON text. The documents are copied, so
        changing the mapping afterwards does not change the snapshot. Raises
        :class:`~polyn.SchemaError` ("Schemas must be valid JSONSchema documents, got ...") for a
        document that is not a JSON Schema.

        Example::

            Schemas.from_dict({"foo.created.v1": {"type": "null"},
                               "user.xml.v1": '{"type": "string"}'})
        """
        return cls._of(
            {name: _compile(name, _document(name, raw)) for name, raw in schemas.items()}
        )

    @classmethod
    def _of(cls, compiled: Mapping[str, _Compiled]) -> Schemas:
        return cls(_compiled=MappingProxyType(dict(compiled)))

    def get(self, name: str) -> Any:
        """The schema document for ``name`` (a copy), or ``None`` when there is none.

        Example::

            schemas.get("user.created.v1")     # {'type': 'object'}
        """
        compiled = self._compiled.get(name)
        return None if compiled is None else copy.deepcopy(compiled.document)

    def names(self) -> tuple[str, ...]:
        """The message names that have a schema, sorted.

        Example::

            Schemas.from_dict({"b.v1": True, "a.v1": True}).names()   # ('a.v1', 'b.v1')
        """
        return tuple(sorted(self._compiled))

    def with_schema(self, name: str, schema: Any) -> Schemas:
        """A new snapshot with ``name``'s schema added or replaced; this one is unchanged.

        Example::

            schemas = Schemas().with_schema("user.created.v1", {"type": "object"})
        """
        return self._of({**self._compiled, name: _compile(name, _document(name, schema))})

    def without(self, name: str) -> Schemas:
        """A new snapshot without ``name``'s schema (unchanged when it has none).

        Example::

            schemas.without("user.created.v1").names()
        """
        return self._of({key: value for key, value in self._compiled.items() if key != name})

    def is_valid(self, name: str, data: Any, *, event: Mapping[str, Any] | None = None) -> bool:
        """Whether ``data`` is valid under message ``name``'s schema: the plain yes or no.

        The fast entry point for a publisher that builds the envelope itself: no error text is
        made; ``False`` also when there is no schema for ``name``. ``data`` must be a JSON value
        (this does not check that). ``event`` is the envelope ``data`` travels in (unused here).

        Example::

            schemas.is_valid("user.created.v1", {"name": "Ada"})
        """
        compiled = self._compiled.get(name)
        return compiled is not None and bool(compiled.is_valid(data))

    def __contains__(self, name: object) -> bool:
        return name in self._compiled

    def __len__(self) -> int:
        return len(self._compiled)

    def __repr__(self) -> str:
        return f"Schemas({list(self.names())!r})"

    def _lookup(self, name: str) -> _Compiled | None:
        return self._compiled.get(name)


def _document(name: str, raw: Any) -> Any:
    if isinstance(raw, str | bytes | bytearray):
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SchemaError(
                f"Schemas must be valid JSONSchema documents, got {_inspect(raw)} "
                f"(schema {name!r} is not JSON: {exc})"
            ) from None
    return copy.deepcopy(raw)


# -- encode and decode ---------------------------------------------------------------------------


def encode(event: Event, schemas: Schemas, config: Config) -> bytes:
    """The compact JSON bytes of ``event``, after validating it (see the module doc).

    Raises :class:`~polyn.ValidationError` when the event is not a valid CloudEvent, its type is
    not a valid message name, no schema exists for it, or its ``data`` breaks the schema or is
    not JSON. ``TypeError`` when ``event`` is not an :class:`~polyn.Event`.

    Example::

        body = encode(Event.new(config, "user.created.v1", {"name": "Ada"}), schemas, config)
    """
    if not isinstance(event, Event):
        raise TypeError(f"encode() takes a polyn.Event, got {_inspect(event)}")
    document = {
        "id": event.id,
        "specversion": event.specversion,
        "type": event.type,
        "source": event.source,
        "time": event.time,
        "data": event.data,
        # As the Elixir serializer does: a missing content type means JSON.
        "datacontenttype": "application/json"
        if event.datacontenttype is None
        else event.datacontenttype,
        "dataschema": event.dataschema,
        "polyndata": event.polyndata,
    }
    try:
        problem = _envelope_not_json(document)
    except RecursionError:
        problem = ([], "is nested too deeply to encode")
    if problem is not None:
        path, reason = problem
        raise ValidationError(
            _report(document, [_line(f"Property: `{_pointer(path)}` - {reason}")])
        )
    _validate(document, schemas, config, plain=_plain_envelope(document))
    try:
        return orjson.dumps(document)
    except TypeError:
        # Integers beyond 64 bits: the standard library writes them exactly.
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def decode(body: bytes | bytearray | memoryview | str, schemas: Schemas, config: Config) -> Event:
    """The :class:`~polyn.Event` in a received message body, after validating it.

    Raises :class:`~polyn.ValidationError` when the body is not JSON, not a valid CloudEvent,
    its type is not a valid message name, no schema exists for it, or its ``data`` breaks the
    schema. The event keeps what its sender sent (see the module doc).

    Example::

        event = decode(msg.data, schemas, config)
        event.data["name"]
    """
    try:
        document = orjson.loads(body)
        if isinstance(document, dict) and _has_inexact_number(document.get("data")):
            # orjson reads integers beyond 64 bits as floats; the standard library is exact.
            document = json.loads(bytes(body) if not isinstance(body, str) else body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(_undecodable(body, exc.pos)) from None
    except RecursionError:
        raise ValidationError(_undecodable(body, None)) from None
    _validate(document, schemas, config)
    return Event(
        id=document["id"],
        specversion=document["specversion"],
        type=document["type"],
        source=document["source"],
        time=document["time"] if "time" in document else _now(),
        data=document.get("data"),
        datacontenttype=document.get("datacontenttype") or "application/json",
        dataschema=document.get("dataschema"),
        polyndata=document["polyndata"] if "polyndata" in document else _polyndata(),
    )


@functools.lru_cache(maxsize=1024)
def _source_ok(source: str) -> bool:
    return FORMATS["uri-reference"](source)


_DATE_TIME_OK = FORMATS["date-time"]
_POLYNDATA_KEYS = ("clientlang", "clientlangversion", "clientversion")


def _plain_envelope(document: dict[str, Any]) -> bool:
    """True only when the envelope schema certainly accepts ``document`` (built by
    :func:`encode`: the nine attributes, ``data`` already checked to be JSON).

    It checks the same constraints in plain Python, with the source's format check cached
    (sources repeat), so that publishing skips the schema validator. Anything unusual returns
    False and goes through the validator, which also words the errors.
    """
    for key in ("id", "source", "specversion", "type"):
        value = document[key]
        if type(value) is not str or not value:
            return False
    for key in ("datacontenttype", "time"):
        value = document[key]
        if value is not None and (type(value) is not str or not value):
            return False
    if document["dataschema"] is not None:
        return False
    time = document["time"]
    if time is not None and not _DATE_TIME_OK(time):
        return False
    polyndata = document["polyndata"]
    if type(polyndata) is not dict:
        return False
    for key in _POLYNDATA_KEYS:
        if type(polyndata.get(key)) is not str:
            return False
    return _source_ok(document["source"])


def _validate(document: Any, schemas: Schemas, config: Config, *, plain: bool = False) -> None:
    """§1.8 steps 1-6; raises ``ValidationError`` with every problem of the first failing step.

    ``plain``: the caller checked the envelope with :func:`_plain_envelope`.
    """
    try:
        if not plain and not _ENVELOPE.is_valid(document):
            lines = _ENVELOPE.error_lines(document)
            if lines:
                raise ValidationError(_report(document, lines))
        name = trim_domain_prefix(document["type"], config.domain)
        try:
            validate_message_name(name)
        except NamingError as exc:
            raise ValidationError(_report(document, [str(exc)])) from None
        schema = schemas._lookup(name)
        if schema is None:
            raise SchemaNotFoundError(
                _report(
                    document,
                    [
                        f"Schema for {name} does not exist. Make sure it's been added to your "
                        "`schemas` codebase and has been loaded into the schema store on your "
                        "NATS server"
                    ],
                )
            )
        data = document.get("data")
        if not schema.is_valid(data):
            lines = schema.error_lines(data)
            if lines:
                raise ValidationError(_report(document, lines))
    except RecursionError:
        raise ValidationError(
            _report(document, ["Property: `#` - is nested too deeply to validate"])
        ) from None


# -- JSON values ---------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
# orjson reads integers outside [-2**63, 2**64) as floats; any float that large may be one.
_INEXACT = 2.0**63


def _not_json(value: Any) -> tuple[list[str | int], str] | None:
    """Where and why ``value`` is not a JSON value UTF-8 can carry, or ``None`` when it is."""
    kind = type(value)
    if kind is str:
        if not value.isascii() and _SURROGATE.search(value):
            return [], f"{value!r} holds a lone surrogate, which UTF-8 JSON cannot carry"
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                return [], f"has the key {key!r}; JSON object keys are strings"
            if not key.isascii() and _SURROGATE.search(key):
                return [], f"has the key {key!r} with a lone surrogate"
            problem = _not_json(item)
            if problem is not None:
                problem[0].insert(0, key)
                return problem
        return None
    if kind is list:
        for index, item in enumerate(value):
            problem = _not_json(item)
            if problem is not None:
                problem[0].insert(0, index)
                return problem
        return None
    if kind is float:
        if value - value != 0:  # NaN and the infinities
            return [], f"{value!r} is not a JSON number"
        return None
    if kind is int or kind is bool or value is None:
        return None
    # Subclasses (str and int enums, OrderedDict...) are what they extend.
    if isinstance(value, str):
        return _not_json(str(value))
    if isinstance(value, dict):
        return _not_json(dict(value))
    if isinstance(value, list):
        return _not_json(list(value))
    if isinstance(value, float):
        return _not_json(float(value))
    if isinstance(value, int):
        return None
    return [], (
        f"{_inspect(value)} is a {kind.__name__}, not a JSON value (dict, list, str, int, "
        "float, bool or None); convert it before publishing"
    )


_SCALARS = frozenset({int, bool, type(None)})


def _flat_json(value: Any) -> bool:
    """True when ``value`` is a dict of ASCII keys to plain scalars (the common payload and
    ``polyndata``): certainly JSON, without the recursive walk. False means "walk it"."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is float:
            if item - item != 0:
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _envelope_not_json(document: dict[str, Any]) -> tuple[list[str | int], str] | None:
    # Envelope attributes are nearly always ASCII strings and flat dicts; only the rest needs
    # the full walk.
    for key, value in document.items():
        if value is None or (type(value) is str and value.isascii()) or _flat_json(value):
            continue
        problem = _not_json(value)
        if problem is not None:
            problem[0].insert(0, key)
            return problem
    return None


def _has_inexact_number(value: Any) -> bool:
    # A loop, not recursion: orjson reads nesting far deeper than Python's recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is float and abs(item) >= _INEXACT:
            return True
    return False


# -- error texts ---------------------------------------------------------------------------------


def _report(document: Any, lines: list[str]) -> str:
    if isinstance(document, dict):
        header = (
            f"Polyn event {_text(document.get('id'))} from {_text(document.get('source'))} "
            "is not valid"
        )
        return "\n".join([header, *lines, f"Event data: {_inspect(document)}"])
    return "\n".join(
        [
            "Polyn events need to follow the CloudEvent spec",
            *lines,
            f"Message received: {_inspect(document)}",
        ]
    )


def _undecodable(body: bytes | bytearray | memoryview | str, position: int | None) -> str:
    text = body if isinstance(body, str) else bytes(body).decode("utf-8", errors="replace")
    where = "" if position is None else f"There were errors at position {position}. \n "
    return (
        "Polyn was unable to decode the following message: \n"
        f"{_shorten(text)} \n {where}Please ensure your message structure conforms to the "
        "CloudEvent schema and that your message data follows a JSON Schema registered using "
        "Polyn CLI."
    )


def _pointer(path: Iterator[str | int] | Any) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _text(value: object) -> str:
    # Elixir interpolates a missing value as nothing.
    return "" if value is None else str(value)


def _inspect(value: object) -> str:
    try:
        return _shorten(repr(value))
    except RecursionError:
        return "<nested too deeply to show>"


def _shorten(text: str, limit: int = _MAX_SHOWN) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _line(text: str) -> str:
    return _shorten(text, _MAX_LINE)
