"""Compiling payload schemas: one fast yes/no validator for every draft, errors worded on demand.

:func:`compile_schema` checks a schema document once, when it is loaded, and returns a
:class:`CompiledSchema`. What it checks (each refusal is a :class:`Refused` with the reason):

- the document is JSON, an object or a boolean, nested less than 255 levels (jsonschema-rs's
  limit, which also bounds the wording validator's recursion);
- its ``$schema`` names a draft Polyn validates: 4, 6, 7, 2019-09 or 2020-12 (none means
  draft-07, as the Elixir client reads schemas); every subschema is of that same draft;
- every reference stays inside the document: ``$ref`` and ``$dynamicRef`` values start with
  ``#``, ``$recursiveRef`` is ``#``, and draft 3's ``extends`` is not used. Nothing is ever
  retrieved, neither while compiling nor while validating: both validators get a retriever that
  refuses, so a reference could not reach the network or a file even if one slipped through;
- every ``pattern`` and ``patternProperties`` key compiles in the linear-time engine
  (:mod:`polyn._regex`);
- jsonschema-rs compiles it: the meta-schema accepts it and every reference resolves.

Validation. :meth:`CompiledSchema.is_valid` is the verdict, from jsonschema-rs for every draft
(``patternProperties``, ``unevaluated*``, ``$defs``, ``$dynamicRef`` and formats included). Where
it could judge differently from the ``jsonschema`` package, it is adapted: ``format`` uses Polyn's
checks (:mod:`polyn._json_formats`), ``multipleOf`` jsonschema's float division, the content
keywords are annotations, and regular expressions run in one engine on both sides.
:meth:`CompiledSchema.error_lines` words the problems with jsonschema's messages
(:mod:`polyn._wording`), only after the verdict was no. A differential test
(``tests/test_codec_differential.py``) shows the two agree over a corpus of schemas of every
draft.

Memory. A compiled jsonschema-rs validator takes about 6 KB for a five-property schema, 60 MB for
10,000 schemas, most of which a service never validates against. So a :class:`CompiledSchema`
keeps the schema as compact JSON text; the fast validator is compiled at load (the check above)
and again, once, the first time the schema validates something, and kept from then on; the
wording validator is built the first time an instance fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import jsonschema
import jsonschema_rs
import orjson
from jsonschema import (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)

from polyn import _regex
from polyn._json_formats import FORMATS, always_valid
from polyn._wording import REGISTRY, wording_class

__all__ = [
    "DRAFTS",
    "CompiledSchema",
    "Refused",
    "compile_schema",
    "dumps_exact",
    "is_combined",
    "loads_exact",
    "not_json",
]

MAX_PROBLEMS = 50
"""Error reports list at most this many problems, then say how many more there are."""


class Refused(Exception):
    """A schema Polyn does not take; the message says why (the codec words the whole error)."""


# -- drafts --------------------------------------------------------------------------------------


@attrs.frozen
class Draft:
    """One JSON Schema draft: its name and its two validator classes."""

    name: str
    wording: type[Any]
    fast: type[jsonschema_rs.Validator]


DRAFT_4 = Draft("draft-04", wording_class(Draft4Validator), jsonschema_rs.Draft4Validator)
DRAFT_6 = Draft("draft-06", wording_class(Draft6Validator), jsonschema_rs.Draft6Validator)
DRAFT_7 = Draft("draft-07", wording_class(Draft7Validator), jsonschema_rs.Draft7Validator)
DRAFT_2019 = Draft(
    "2019-09", wording_class(Draft201909Validator), jsonschema_rs.Draft201909Validator
)
DRAFT_2020 = Draft(
    "2020-12", wording_class(Draft202012Validator), jsonschema_rs.Draft202012Validator
)
DRAFTS: Mapping[str, Draft] = {
    # Both libraries know these spellings, with or without the empty fragment.
    "http://json-schema.org/draft-04/schema": DRAFT_4,
    "http://json-schema.org/draft-06/schema": DRAFT_6,
    "http://json-schema.org/draft-07/schema": DRAFT_7,
    "https://json-schema.org/draft/2019-09/schema": DRAFT_2019,
    "https://json-schema.org/draft/2020-12/schema": DRAFT_2020,
}
_SUPPORTED = ", ".join(f"{uri}# ({draft.name})" for uri, draft in DRAFTS.items())


def _draft_of(declared: object) -> Draft:
    if not isinstance(declared, str):
        raise Refused(
            f"$schema {declared!r} is not a string naming a draft; use one of {_SUPPORTED}"
        )
    draft = DRAFTS.get(declared[:-1] if declared.endswith("#") else declared)
    if draft is None:
        raise Refused(
            f"$schema {declared!r} is not a draft Polyn validates (no meta-schema is ever "
            f"fetched); use one of {_SUPPORTED}, or leave $schema out for draft-07"
        )
    return draft


# -- JSON text -----------------------------------------------------------------------------------

# orjson reads integers beyond 64 bits as floats: text with a run of 19 digits is read by the
# standard library, which is exact. Digits become "0" and the rest " ", then a substring search:
# both in C, far faster than a regular expression.
DIGIT_MAP = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
NINETEEN_DIGITS = b"0" * 19
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads_exact(text: bytes) -> Any:
    """The JSON value of ``text``, integers of any size exact."""
    if NINETEEN_DIGITS in text.translate(DIGIT_MAP):
        return json.loads(text)
    return orjson.loads(text)


def dumps_exact(value: Any) -> bytes:
    """Compact JSON bytes of a JSON value, integers of any size exact.

    A copy of exactly its length: orjson's bytes keep the 4 KB buffer they were written in,
    which 10,000 stored schemas would turn into 40 MB.
    """
    try:
        return memoryview(orjson.dumps(value)).tobytes()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def not_json(value: Any) -> tuple[list[str | int], str] | None:
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
            problem = not_json(item)
            if problem is not None:
                problem[0].insert(0, key)
                return problem
        return None
    if kind is list:
        for index, item in enumerate(value):
            problem = not_json(item)
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
        return not_json(str(value))
    if isinstance(value, dict):
        return not_json(dict(value))
    if isinstance(value, list):
        return not_json(list(value))
    if isinstance(value, float):
        return not_json(float(value))
    if isinstance(value, int):
        return None
    return [], (
        f"{_inspect(value)} is a {kind.__name__}, not a JSON value (dict, list, str, int, "
        "float, bool or None); convert it before publishing"
    )


def _inspect(value: object, limit: int = 200) -> str:
    try:
        text = repr(value)
    except RecursionError:
        return "<nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


# -- walking a schema ----------------------------------------------------------------------------

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


def subschemas(schema: object) -> Iterator[dict[str, Any]]:
    """Every schema object in ``schema``, itself included (not the data in enum, const...)."""
    pending = [schema]
    while pending:
        part = pending.pop()
        if not isinstance(part, dict):
            continue
        yield part
        for key in _SUBSCHEMA_MAPS:
            children = part.get(key)
            if isinstance(children, dict):
                pending.extend(children.values())
        for key in _SUBSCHEMA_LISTS:
            children = part.get(key)
            if isinstance(children, list):
                pending.extend(children)
        for key in _SUBSCHEMAS:
            if key in part:
                pending.append(part[key])
        items = part.get("items")
        if isinstance(items, list):
            pending.extend(items)
        elif items is not None:
            pending.append(items)
        dependencies = part.get("dependencies")
        if isinstance(dependencies, dict):
            pending.extend(dependencies.values())  # a list of names is no schema: skipped


_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")


def _reference_problem(part: Mapping[str, Any]) -> str | None:
    for keyword in _REFERENCES:
        if keyword not in part:
            continue
        value = part[keyword]
        if not isinstance(value, str):
            return f"{keyword} {_inspect(value)} is not a string"
        if keyword == "$recursiveRef" and value != "#":
            return f'$recursiveRef {value!r} must be "#": Polyn fetches nothing'
        if not value.startswith("#"):
            return (
                f"{keyword} {value!r} does not resolve inside the schema; Polyn fetches nothing "
                "(no http://, file:// or relative references), so put the referenced schema "
                "under $defs (or definitions) and refer to it as #/$defs/..."
            )
    if "extends" in part:
        return "extends (draft 3) is not supported; use allOf with references inside the schema"
    return None


def is_combined(document: Any) -> bool:
    """Whether ``document`` is a whole-CloudEvent schema with the payload inside, as polyn-cli
    0.1 and 0.2 stored them (fact sheet §16 item 18), rather than a payload schema."""
    if not isinstance(document, dict):
        return False
    definitions = document.get("definitions")
    required = document.get("required")
    return (
        isinstance(definitions, dict)
        and "datadef" in definitions
        and isinstance(required, list)
        and "id" in required
    )


# -- the fast validator's adapters ---------------------------------------------------------------


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


_ADAPTERS: Mapping[str, type[Any]] = {
    "multipleOf": _MultipleOf,
    "contentEncoding": _Annotation,
    "contentMediaType": _Annotation,
}


def _refuse_retrieval(uri: str) -> Any:
    raise ValueError(f"Polyn retrieves nothing (asked for {uri!r})")


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return checker


FORMAT_CHECKER = _format_checker()


def _rs_reason(exc: BaseException) -> str:
    first = str(exc).split("\n", 1)[0].strip()
    if first == "Recursion limit reached":
        return "nests objects and arrays too deeply (more than jsonschema-rs's 255 levels)"
    if isinstance(getattr(exc, "kind", None), jsonschema_rs.ValidationErrorKind.Referencing):
        return f"a reference does not resolve inside the schema: {first}"
    path = getattr(exc, "instance_path", None)
    if path:
        return f"{first} (at {pointer(path)})"
    return first


def pointer(path: Any) -> str:
    """A JSON pointer fragment, ``#/a/0``, from path parts."""
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


# -- compiled schemas ----------------------------------------------------------------------------


class CompiledSchema:
    """A checked schema: :meth:`is_valid` says yes or no, :meth:`error_lines` words a no.

    ``whole_event``: a combined (old-CLI) schema, which validates the whole event; for those,
    :meth:`is_valid_data` validates a payload alone against the schema inside.
    """

    __slots__ = (
        "_data_fast",
        "_fast",
        "_wording",
        "draft",
        "formats",
        "keywords",
        "text",
        "whole_event",
    )

    def __init__(
        self,
        text: bytes,
        draft: Draft,
        formats: frozenset[str],
        keywords: frozenset[str],
        whole_event: bool,
    ) -> None:
        self.text = text
        self.draft = draft
        self.formats = formats
        self.keywords = keywords
        self.whole_event = whole_event
        self._fast: Callable[[Any], bool] | None = None
        self._data_fast: Callable[[Any], bool] | None = None
        self._wording: Any = None

    def document(self) -> Any:
        """A fresh copy of the schema document."""
        return loads_exact(self.text)

    def _options(self) -> dict[str, Any]:
        # Every format the schema uses gets Polyn's check (or none), never the library's own.
        return {
            "formats": {name: FORMATS.get(name, always_valid) for name in self.formats},
            "validate_formats": True,
            "retriever": _refuse_retrieval,
            "pattern_options": _regex.OPTIONS,
            "keywords": {name: _ADAPTERS[name] for name in self.keywords} or None,
        }

    def fast_validator(self, document: Any = None) -> jsonschema_rs.Validator:
        return self.draft.fast(self.document() if document is None else document, **self._options())

    def is_valid(self, instance: Any) -> bool:
        """The verdict: whether ``instance`` is valid (the whole event, for a combined schema)."""
        fast = self._fast
        if fast is None:
            fast = self._fast = self.fast_validator().is_valid
        return fast(instance)

    def is_valid_data(self, data: Any) -> bool:
        """Whether a payload is valid: for a combined schema, against the payload schema inside
        it (``#/definitions/datadef``, its references resolved in the whole document)."""
        if not self.whole_event:
            return self.is_valid(data)
        fast = self._data_fast
        if fast is None:
            validators = jsonschema_rs.validator_map_for(self.document(), **self._options())
            fast = self._data_fast = validators["#/definitions/datadef"].is_valid
        return fast(data)

    def error_lines(self, instance: Any) -> list[str]:
        """One ``Property: `#/path` - <message>`` line per problem of ``instance``.

        jsonschema's messages (:mod:`polyn._wording`); should it find nothing or fail, the fast
        validator's own messages. Never empty for an instance :meth:`is_valid` refuses.
        """
        lines: list[str] = []
        extra = 0
        try:
            wording = self._wording
            if wording is None:
                wording = self._wording = self.draft.wording(
                    self.document(), registry=REGISTRY, format_checker=FORMAT_CHECKER
                )
            for error in wording.iter_errors(instance):
                if len(lines) < MAX_PROBLEMS:
                    lines.append(f"Property: `{pointer(error.absolute_path)}` - {error.message}")
                else:
                    extra += 1
        except Exception:
            lines, extra = [], 0
        if not lines:
            try:
                for rs_error in self.fast_validator().iter_errors(instance):
                    if len(lines) < MAX_PROBLEMS:
                        lines.append(
                            f"Property: `{pointer(rs_error.instance_path)}` - {rs_error.message}"
                        )
                    else:
                        extra += 1
            except Exception as exc:
                lines = [f"Property: `#` - could not be validated: {type(exc).__name__}: {exc}"]
        if not lines:
            lines = ["Property: `#` - is not valid under its schema"]
        if extra:
            lines.append(f"... and {extra} more problems")
        return lines


def compile_schema(raw: Any) -> CompiledSchema:
    """Check a schema (a JSON value, or its JSON text) and compile it (see the module doc).

    Raises :class:`Refused` with the reason. Never raises anything else.
    """
    try:
        return _compile(raw)
    except Refused:
        raise
    except RecursionError:
        raise Refused("is nested too deeply") from None
    except Exception as exc:  # whatever a broken document makes a library raise
        raise Refused(f"could not be compiled: {type(exc).__name__}: {exc}") from None


def _compile(raw: Any) -> CompiledSchema:
    if isinstance(raw, str | bytes | bytearray | memoryview):
        text = raw.encode() if isinstance(raw, str) else bytes(raw)
        try:
            document = loads_exact(text)
        except (ValueError, RecursionError) as exc:
            raise Refused(f"is not JSON: {exc}") from None
    else:
        problem = not_json(raw)
        if problem is not None:
            where, reason = problem
            raise Refused(f"is not JSON: {pointer(where)} {reason}")
        text = dumps_exact(raw)
        document = loads_exact(text)
    text = dumps_exact(document)
    if not isinstance(document, dict | bool):
        raise Refused("a schema is a JSON object or a boolean")
    draft = DRAFT_7
    if isinstance(document, dict) and "$schema" in document:
        draft = _draft_of(document["$schema"])
    formats: set[str] = set()
    keywords: set[str] = set()
    # Most schemas use none of the keywords the walk looks at: the compact text says so at C
    # speed (orjson writes every key without escapes), and the walk is skipped.
    walk = text.count(b'"$schema"') > 1 or any(token in text for token in _WALKED)
    for part in subschemas(document) if walk else ():
        problem_text = _reference_problem(part)
        if problem_text is None and part is not document and "$schema" in part:
            if _draft_of(part["$schema"]) is not draft:
                problem_text = f"a subschema declares $schema {part['$schema']!r}, another draft"
        if problem_text is None and "pattern" in part:
            problem_text = _regex.problem(part["pattern"])
        patterns = part.get("patternProperties")
        if problem_text is None and isinstance(patterns, dict):
            problem_text = next(filter(None, map(_regex.problem, patterns)), None)
        if problem_text is not None:
            raise Refused(problem_text)
        if isinstance(part.get("format"), str):
            formats.add(part["format"])
        keywords.update(name for name in _ADAPTERS if name in part)
    compiled = CompiledSchema(
        text,
        draft,
        frozenset(formats) if formats else _NONE,
        frozenset(keywords) if keywords else _NONE,
        is_combined(document),
    )
    try:
        compiled.fast_validator(document)
    except Exception as exc:
        raise Refused(_rs_reason(exc)) from None
    return compiled


_NONE: frozenset[str] = frozenset()
_WALKED = (
    b'"$ref"',
    b'"$dynamicRef"',
    b'"$recursiveRef"',
    b'"extends"',
    b'"pattern',  # pattern and patternProperties
    b'"format"',
    b'"multipleOf"',
    b'"contentEncoding"',
    b'"contentMediaType"',
)
