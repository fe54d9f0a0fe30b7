"""Encode and decode Polyn events, validated exactly as the Elixir client validates them.

:func:`encode` turns an :class:`~polyn.Event` into the bytes to publish; :func:`decode` turns a
received body into an ``Event``. Both check, in this order (fact sheet §1.8 / §1.9):

1. (decode) the body is JSON, else "Polyn was unable to decode the following message: ...";
2. the whole event against the CloudEvent envelope schema (``cloud_event_schema.json``, shipped
   in this package; draft-07, formats as lenient as the Elixir client's);
3. the message name, ``type`` without this service's domain, follows the naming rule;
4. the schema snapshot has a schema for that name, else "Schema for <name> does not exist..."
   (:class:`~polyn.errors.SchemaNotFoundError`, a ``ValidationError``);
5. ``data`` (only the payload) against that schema.

Any failure raises :class:`~polyn.ValidationError` whose first line is
``Polyn event <id> from <source> is not valid`` (``Polyn events need to follow the CloudEvent
spec`` when the JSON is not an object), then one line per problem,
``Property: `#/path` - <jsonschema's message>``, then ``Event data: <the event>``. Nothing is
published when :func:`encode` raises. Whatever goes wrong while decoding or validating an event
(a library's own exception included) is that event's ``ValidationError``, never another
exception type: a consumer dead-letters it instead of crashing on it forever.

Schemas come in :class:`Schemas`, an immutable snapshot of the schema store: each schema is
checked once, when the snapshot is made (:mod:`polyn._validator` says what is refused: remote
or file references of any kind, drafts other than 4, 6, 7, 2019-09 and 2020-12, patterns the
linear-time regular-expression engine cannot compile, documents nested too deeply).

Hot path. Every draft is validated by jsonschema-rs, which only says yes or no; error messages
are worded by jsonschema only when the answer is no. ``pattern`` means the same on both paths
(the Rust regex crate, linear time), and so do formats (:mod:`polyn._json_formats`). JSON is read
and written with orjson.

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
  (``#/definitions/...``, ``#/$defs/...``, anchors): nothing is fetched, ever.
- A stored combined schema (a whole-CloudEvent schema with the payload under
  ``definitions.datadef``, as polyn-cli 0.1 and 0.2 stored them) is applied to the whole event,
  as the clients of that time did.
- An error report lists at most 50 problems, then how many more there are.

Example::

    schemas = Schemas.from_dict({"user.created.v1": {"type": "object"}})
    body = encode(Event.new(config, "user.created.v1", {"name": "Ada"}), schemas, config)
    event = decode(body, schemas, config)

Publishing without an ``Event`` object (the envelope built from a template) validates the
payload with :meth:`Schemas.check_data` (or asks :meth:`Schemas.is_valid` for a plain verdict).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from polyn._json_formats import FORMATS
from polyn._validator import (
    DIGIT_MAP,
    NINETEEN_DIGITS,
    CompiledSchema,
    Refused,
    compile_schema,
    is_combined,
    not_json,
    pointer,
)
from polyn.errors import NamingError, SchemaError, SchemaNotFoundError, ValidationError
from polyn.event import _WIRE_ORDER, Event, _now, _polyndata, _trusted
from polyn.naming import trim_domain_prefix, validate_message_name

if TYPE_CHECKING:
    from polyn.config import Config

__all__ = ["FORMATS", "Schemas", "decode", "encode", "is_combined"]

# Error messages quote the event; a huge payload must not make a huge log line.
_MAX_SHOWN = 2000
_MAX_LINE = 1000


def _compile(name: str, raw: Any) -> CompiledSchema:
    """``raw`` (a JSON value or its text) checked and compiled; :class:`SchemaError` if refused."""
    try:
        return compile_schema(raw)
    except Refused as exc:
        shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        raise SchemaError(
            f"Schemas must be valid JSONSchema documents, got {_inspect(shown)} "
            f"(schema {name!r}: {exc})"
        ) from None


def _load_envelope() -> CompiledSchema:
    text = resources.files("polyn").joinpath("cloud_event_schema.json").read_bytes()
    return _compile("CloudEvent", text)


_ENVELOPE = _load_envelope()


@attrs.frozen(eq=False)
class Schemas:
    """An immutable snapshot of payload schemas, by message name, each checked once.

    ``Schemas()`` is the empty snapshot. Build one from documents (dicts, or JSON text as the
    schema store's key-value bucket holds it) with :meth:`from_dict`; derive new snapshots with
    :meth:`with_schema` and :meth:`without`, which check only what changed.

    Example::

        schemas = Schemas.from_dict({"user.created.v1": {"type": "object"}})
        schemas.names()                    # ('user.created.v1',)
        schemas.get("user.created.v1")     # {'type': 'object'}
        "order.placed.v1" in schemas       # False
        schemas.is_valid("user.created.v1", {"name": "Ada"})   # True
    """

    _compiled: Mapping[str, CompiledSchema] = attrs.field(
        factory=lambda: MappingProxyType({}), alias="_compiled"
    )

    @classmethod
    def from_dict(cls, schemas: Mapping[str, Any]) -> Schemas:
        """A snapshot of ``{message name: JSON Schema}``.

        A schema may be a dict or boolean, or its JSON text. The documents are copied, so
        changing the mapping afterwards does not change the snapshot. Raises
        :class:`~polyn.SchemaError` ("Schemas must be valid JSONSchema documents, got ...") for a
        document that is not a JSON Schema Polyn validates.

        Example::

            Schemas.from_dict({"foo.created.v1": {"type": "null"},
                               "user.xml.v1": '{"type": "string"}'})
        """
        return cls._of({name: _compile(name, raw) for name, raw in schemas.items()})

    @classmethod
    def _of(cls, compiled: Mapping[str, CompiledSchema]) -> Schemas:
        return cls(_compiled=MappingProxyType(dict(compiled)))

    def _updated(self, changes: Mapping[str, Any]) -> tuple[Schemas, dict[str, SchemaError]]:
        """A snapshot with each name of ``changes`` set to its document (``None`` removes it),
        and the refusals by name (a refused name is left out). For the schema store: one copy of
        the mapping for any number of changes."""
        compiled = dict(self._compiled)
        refused: dict[str, SchemaError] = {}
        for name, raw in changes.items():
            compiled.pop(name, None)
            if raw is None:
                continue
            try:
                compiled[name] = _compile(name, raw)
            except SchemaError as exc:
                refused[name] = exc
        return type(self)(_compiled=MappingProxyType(compiled)), refused

    def get(self, name: str) -> Any:
        """The schema document for ``name`` (a copy), or ``None`` when there is none.

        Example::

            schemas.get("user.created.v1")     # {'type': 'object'}
        """
        compiled = self._compiled.get(name)
        return None if compiled is None else compiled.document()

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
        return self._of({**self._compiled, name: _compile(name, schema)})

    def without(self, name: str) -> Schemas:
        """A new snapshot without ``name``'s schema (unchanged when it has none).

        Example::

            schemas.without("user.created.v1").names()
        """
        return self._of({key: value for key, value in self._compiled.items() if key != name})

    def is_valid(self, name: str, data: Any, *, event: Mapping[str, Any] | None = None) -> bool:
        """Whether ``data`` is valid under message ``name``'s schema: the plain yes or no.

        The fast entry point for a publisher that builds the envelope itself: no error text is
        made. ``False`` also when there is no schema for ``name`` (:meth:`check_data` says which).
        ``data`` must be a JSON value (this does not check that; :meth:`check_data` does).
        ``event`` is the whole envelope ``data`` travels in; only a combined (old-CLI) schema
        reads it, which validates the whole event (without it, the payload schema inside).

        Example::

            if not schemas.is_valid("user.created.v1", data):
                schemas.check_data("user.created.v1", data, event=envelope)   # raises
        """
        compiled = self._compiled.get(name)
        if compiled is None:
            return False
        if compiled.whole_event:
            if event is None:
                return compiled.is_valid_data(data)
            return compiled.is_valid({**event, "data": data})
        return compiled.is_valid(data)

    def check_data(self, name: str, data: Any, *, event: Mapping[str, Any] | None = None) -> None:
        """Raise unless ``data`` may be published as message ``name``'s payload.

        Checks what :func:`encode` checks of a payload: ``data`` is a JSON value, a schema for
        ``name`` exists (else :class:`~polyn.errors.SchemaNotFoundError`), and ``data`` is valid
        under it (else :class:`~polyn.ValidationError` with one ``Property: ...`` line per
        problem). ``event`` is the envelope ``data`` travels in (a mapping with ``id`` and
        ``source``): the error quotes it as :func:`encode` does; without it the report quotes
        ``{"data": data}``. Raises nothing else, whatever ``data`` is.

        Example::

            schemas.check_data("user.created.v1", {"name": "Ada"}, event=envelope)
        """
        # The common case, checked before any copying: plain JSON, valid under its schema.
        compiled = self._compiled.get(name)
        try:
            if compiled is not None and not compiled.whole_event and _flat_json(data):
                if compiled.is_valid(data):
                    return
        except Exception:
            pass  # worded below
        document: dict[str, Any] = {**event, "data": data} if event is not None else {"data": data}
        try:
            if not _flat_json(data):
                problem = not_json(data)
                if problem is not None:
                    path, reason = problem
                    line = f"Property: `{_pointer(['data', *path])}` - {reason}"
                    raise ValidationError(_report(document, [_line(line)]))
            if compiled is None:
                raise SchemaNotFoundError(_report(document, [_missing(name)]))
            if compiled.whole_event and event is not None:
                _check(compiled, document, None, whole=True)
            else:
                _check(compiled, document, data, whole=False)
        except ValidationError:
            raise
        except RecursionError:
            raise ValidationError(
                _report(document, ["Property: `#/data` - is nested too deeply to validate"])
            ) from None
        except Exception as exc:
            raise ValidationError(_report(document, [_failure(exc)])) from None

    def __contains__(self, name: object) -> bool:
        return name in self._compiled

    def __len__(self) -> int:
        return len(self._compiled)

    def __repr__(self) -> str:
        return f"Schemas({list(self.names())!r})"

    def _lookup(self, name: str) -> CompiledSchema | None:
        return self._compiled.get(name)


def _check(compiled: CompiledSchema, document: dict[str, Any], data: Any, *, whole: bool) -> None:
    if whole:
        if not compiled.is_valid(document):
            raise ValidationError(_report(document, _lines(compiled.error_lines(document))))
    elif compiled.whole_event:
        if not compiled.is_valid_data(data):
            raise ValidationError(
                _report(document, ["Property: `#/data` - is not valid under its schema"])
            )
    elif not compiled.is_valid(data):
        raise ValidationError(_report(document, _lines(compiled.error_lines(data))))


# -- encode and decode ---------------------------------------------------------------------------


class _NotAnEvent(ValidationError, TypeError):
    """:func:`encode` was given something other than an Event: a validation error, as the
    Ruby client raises, and a ``TypeError``, as Python code expects."""


def encode(event: Event, schemas: Schemas, config: Config) -> bytes:
    """The compact JSON bytes of ``event``, after validating it (see the module doc).

    Raises :class:`~polyn.ValidationError` when the event is not a valid CloudEvent, its type is
    not a valid message name, no schema exists for it, or its ``data`` breaks the schema or is
    not JSON. When ``event`` is not an :class:`~polyn.Event`, the error is both a
    ``ValidationError`` (the fact sheet's "Can only serialize ..." text, §13 case 66) and a
    ``TypeError``.

    Example::

        body = encode(Event.new(config, "user.created.v1", {"name": "Ada"}), schemas, config)
    """
    if not isinstance(event, Event):
        raise _NotAnEvent(f"Can only serialize `polyn.Event` instances. got {_inspect(event)}")
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
    _validate(document, schemas, config)
    try:
        return orjson.dumps(document)
    except TypeError:
        # Integers beyond 64 bits: the standard library writes them exactly.
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


# orjson reads integers beyond 64 bits as floats: a body with such a digit run is read again by
# the standard library, which is exact. (Any 19-digit run, in a string too: rare, and harmless.)
# Digits become "0" and everything else " ", then a substring search: both run in C, far faster
# than a regular expression.


def _may_hold_big_integers(body: bytes | bytearray | memoryview | str) -> bool:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    return NINETEEN_DIGITS in raw.translate(DIGIT_MAP)


def decode(body: bytes | bytearray | memoryview | str, schemas: Schemas, config: Config) -> Event:
    """The :class:`~polyn.Event` in a received message body, after validating it.

    Raises :class:`~polyn.ValidationError` when the body is not JSON, not a valid CloudEvent,
    its type is not a valid message name, no schema exists for it, or its ``data`` breaks the
    schema. The event keeps what its sender sent (see the module doc). Raises nothing else,
    whatever the body holds.

    Example::

        event = decode(msg.data, schemas, config)
        event.data["name"]
    """
    try:
        document = orjson.loads(body)
        if type(document) is dict and (
            NINETEEN_DIGITS in body.translate(DIGIT_MAP)
            if type(body) is bytes
            else _may_hold_big_integers(body)
        ):
            document = json.loads(bytes(body) if not isinstance(body, str) else body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(_undecodable(body, exc.pos)) from None
    except RecursionError:
        raise ValidationError(_undecodable(body, None)) from None
    except Exception:
        raise ValidationError(_undecodable(body, None)) from None
    if type(document) is dict:
        try:
            event = _decoded_quickly(document, schemas, config.domain)
        except Exception:
            event = None  # the long way words what went wrong
        if event is not None:
            return event
    _validate(document, schemas, config)
    try:
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
    except Exception as exc:
        raise ValidationError(_report(document, [_failure(exc)])) from None


def _decoded_quickly(document: dict[str, Any], schemas: Schemas, domain: str) -> Event | None:
    """The event of a valid ``document`` in the usual shape, checked with everything read once;
    ``None`` for anything else, which :func:`decode` then validates the long way (the verdict
    is the same: this is :func:`_plain_envelope`, the naming rule and the payload's validator,
    fused; the long way words the errors).

    What repeats from event to event is checked once and remembered: the combination of
    ``specversion``, ``type``, ``source`` and ``datacontenttype`` (with the message name it
    gives, :data:`_KNOWN`), the second of ``time`` and the last ``polyndata``. An envelope in the
    order Polyn writes it is read in one step. The checks have proven every field, so the event
    is built without ``Event.__init__`` (:func:`polyn.event._trusted`)."""
    if tuple(document) == _WIRE_ORDER:
        (
            event_id,
            specversion,
            event_type,
            source,
            time,
            data,
            content_type,
            dataschema,
            polyndata,
        ) = document.values()
    elif _ENVELOPE_KEYS.issuperset(document):
        get = document.get
        event_id = get("id")
        specversion = get("specversion")
        event_type = get("type")
        source = get("source")
        time = get("time", _ABSENT)
        data = get("data")
        content_type = get("datacontenttype")
        dataschema = get("dataschema")
        polyndata = get("polyndata", _ABSENT)
    else:
        return None
    if type(event_id) is not str or not event_id or dataschema is not None:
        return None
    key = (specversion, event_type, source, content_type, domain)
    # A hit proves every part: only checked strings (and None) are remembered, and no other
    # JSON value equals a string.
    name = _KNOWN.get(key) or _learned(key)
    if name is None:
        return None
    if time is _ABSENT:
        time = _now()
    elif time is not None:
        if type(time) is not str:
            return None
        # The usual shape, "2026-11-26T23:45:48.123456Z", in the last second seen valid.
        if _IN_LAST_SECOND[0](time) is None and not _time_ok(time):
            return None
    if polyndata is _ABSENT:
        polyndata = _polyndata()
    elif polyndata != _LAST_POLYNDATA[0]:
        if type(polyndata) is not dict:
            return None
        pget = polyndata.get
        if (
            type(pget("clientlang")) is not str
            or type(pget("clientlangversion")) is not str
            or type(pget("clientversion")) is not str
        ):
            return None
        # A copy: the event's own dict is the receiver's to change.
        _LAST_POLYNDATA[0] = dict(polyndata)
    compiled = schemas._compiled.get(name)
    if compiled is None or compiled.whole_event:
        return None
    if not compiled.is_valid(data):
        return None
    return _trusted(
        event_id,
        specversion,
        event_type,
        source,
        time,
        data,
        content_type or "application/json",
        polyndata,
    )


def _learned(key: tuple[Any, Any, Any, Any, str]) -> str | None:
    """The message name of a valid (specversion, type, source, datacontenttype, domain), now
    remembered in :data:`_KNOWN`; ``None`` when one of them is not valid, or the name was not
    checked yet (the long way checks it, and remembers it in :data:`_NAMES`)."""
    specversion, event_type, source, content_type, domain = key
    if (
        type(specversion) is not str
        or not specversion
        or type(event_type) is not str
        or type(source) is not str
        or not source
        or (content_type is not None and (type(content_type) is not str or not content_type))
    ):
        return None
    name = _NAMES.get((event_type, domain))
    if name is None or not _source_ok(source):
        return None
    if len(_KNOWN) >= 1024:
        _KNOWN.clear()
    _KNOWN[key] = name
    return name


_KNOWN: dict[tuple[Any, Any, Any, Any, str], str] = {}
_ABSENT: Any = object()
_LAST_POLYNDATA: list[Any] = [_ABSENT]  # the last valid polyndata (a copy)
_SECONDS_OK: dict[str, bool] = {}  # "YYYY-MM-DDTHH:MM:SS" prefixes known to be valid
# [a match of the last of them followed by "." six digits "Z" (valid too), that second]
_IN_LAST_SECOND: list[Any] = [re.compile("(?!)").fullmatch, ""]


@functools.lru_cache(maxsize=1024)
def _source_ok(source: str) -> bool:
    return bool(FORMATS["uri-reference"](source))


_DATE_TIME_OK = FORMATS["date-time"]
_POLYNDATA_KEYS = ("clientlang", "clientlangversion", "clientversion")
_ENVELOPE_KEYS = frozenset(_WIRE_ORDER)


def _plain_envelope(document: Any) -> bool:
    """True only when the envelope schema certainly accepts ``document``.

    It checks the schema's constraints in plain Python, with the source's format check cached
    (sources repeat) and the time's by its second, so that most events skip the envelope
    validator. Anything unusual (another attribute, a ``dataschema``, a wrong type) returns
    False and goes through the validator, which also words the errors. ``data`` may be any JSON
    value.
    """
    if type(document) is not dict or not _ENVELOPE_KEYS.issuperset(document):
        return False
    get = document.get
    source: Any = get("source")
    for value in (get("id"), source, get("specversion"), get("type")):
        if type(value) is not str or not value:
            return False
    content_type = get("datacontenttype")
    if content_type is not None and (type(content_type) is not str or not content_type):
        return False
    if get("dataschema") is not None:
        return False
    time = get("time")
    if time is not None and (type(time) is not str or not _time_ok(time)):
        return False
    if "polyndata" in document:
        polyndata = document["polyndata"]
        if type(polyndata) is not dict:
            return False
        for key in _POLYNDATA_KEYS:
            if type(polyndata.get(key)) is not str:
                return False
    return _source_ok(source)


def _time_ok(time: str) -> bool:
    # The usual shape, "2026-11-26T23:45:48.123456Z": its first 19 characters are checked once
    # per second (then remembered in _SECONDS_OK); a valid prefix with ".<digits>Z" appended is
    # valid too.
    if len(time) == 27 and time[19] == "." and time[26] == "Z":
        fraction = time[20:26]
        if fraction.isascii() and fraction.isdigit():
            second = time[:19]
            if second not in _SECONDS_OK:
                if not _DATE_TIME_OK(second):
                    return False
                if len(_SECONDS_OK) >= 64:
                    _SECONDS_OK.clear()
                _SECONDS_OK[second] = True
            if _IN_LAST_SECOND[1] != second:
                usual = re.compile(re.escape(second) + r"\.[0-9]{6}Z").fullmatch
                _IN_LAST_SECOND[:] = [usual, second]
            return True
    return bool(_DATE_TIME_OK(time))


_NAMES: dict[tuple[str, str], str] = {}


def _message_name(event_type: str, domain: str) -> str:
    """``type`` without the domain, checked (cached: types repeat); raises NamingError."""
    key = (event_type, domain)
    name = _NAMES.get(key)
    if name is None:
        name = validate_message_name(trim_domain_prefix(event_type, domain))
        if len(_NAMES) >= 4096:
            _NAMES.clear()
        _NAMES[key] = name
    return name


def _missing(name: str) -> str:
    # The protocol's line, then the command that does it (the Elixir text names no command).
    return (
        f"Schema for {name} does not exist. Make sure it's been added to your `schemas` "
        "codebase and has been loaded into the schema store on your NATS server\n"
        f"`polyn schemas load` loads the schemas folder (its {name}.json) into the store"
    )


def _validate(document: Any, schemas: Schemas, config: Config) -> None:
    """§1.8 steps 1-6; raises ``ValidationError`` with every problem of the first failing step,
    and only ``ValidationError``, whatever goes wrong."""
    try:
        if not _plain_envelope(document) and not _ENVELOPE.is_valid(document):
            raise ValidationError(_report(document, _lines(_ENVELOPE.error_lines(document))))
        try:
            name = _message_name(document["type"], config.domain)
        except NamingError as exc:
            raise ValidationError(_report(document, [str(exc)])) from None
        compiled = schemas._lookup(name)
        if compiled is None:
            raise SchemaNotFoundError(_report(document, [_missing(name)]))
        if compiled.whole_event:
            _check(compiled, document, None, whole=True)
        else:
            _check(compiled, document, document.get("data"), whole=False)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(
            _report(document, ["Property: `#` - is nested too deeply to validate"])
        ) from None
    except Exception as exc:
        raise ValidationError(_report(document, [_failure(exc)])) from None


def _failure(exc: BaseException) -> str:
    return _line(f"Property: `#` - could not be validated: {type(exc).__name__}: {exc}")


# -- JSON values ---------------------------------------------------------------------------------

_SCALARS = frozenset({int, bool, type(None)})


def _flat_json(value: Any) -> bool:
    """True when ``value`` is certainly JSON without the recursive walk: a scalar, or a dict or
    list of ASCII-keyed plain scalars and lists of plain scalars (the common payload and
    ``polyndata``). False means "walk it"."""
    kind = type(value)
    if kind is dict:
        items: Any = value.items()
    elif kind is list:
        items = enumerate(value)
    else:
        return _plain_scalar(value)
    for key, item in items:
        if type(key) is str:
            if not key.isascii():
                return False
        elif kind is dict:
            return False
        if type(item) is list:
            for element in item:
                if not _plain_scalar(element):
                    return False
        elif not _plain_scalar(item):
            return False
    return True


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return bool(value.isascii())
    if kind is float:
        return bool(value - value == 0)
    return kind in _SCALARS


def _envelope_not_json(document: dict[str, Any]) -> tuple[list[str | int], str] | None:
    # Envelope attributes are nearly always ASCII strings and flat dicts; only the rest needs
    # the full walk.
    for key, value in document.items():
        if value is None or (type(value) is str and value.isascii()) or _flat_json(value):
            continue
        problem = not_json(value)
        if problem is not None:
            problem[0].insert(0, key)
            return problem
    return None


# -- error texts ---------------------------------------------------------------------------------


def _lines(lines: list[str]) -> list[str]:
    return [_line(line) for line in lines]


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
    return pointer(path)


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
