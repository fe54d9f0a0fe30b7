"""The wording validator: jsonschema's error messages, with Polyn's semantics and time bounds.

The verdict on an event comes from the fast validator (jsonschema-rs, :mod:`polyn._validator`);
this one only words the errors, with the messages of the ``jsonschema`` package that Polyn's
error texts have always used. It is jsonschema's validator of the schema's draft with these
keywords replaced, so that it means what the fast one means and cannot run for long:

- ``pattern`` and ``patternProperties`` (and the property names ``additionalProperties`` and
  ``unevaluatedProperties`` leave to ``patternProperties``) match with :func:`polyn._regex.search`,
  the fast validator's linear-time engine, never Python's backtracking :mod:`re`;
- ``uniqueItems`` finds duplicates in linear time by hashing (jsonschema compares unsortable
  items pairwise: 6,000 objects took 27 s);
- references never retrieve anything: the registry refuses every retrieval (the loader refuses
  schemas whose references leave the document, so this is a second lock).

The keyword functions follow jsonschema's own (MIT licence) with those changes. The
evaluated-property search of ``unevaluatedProperties`` follows the 2020-12 text for both 2019-09
and 2020-12 (jsonschema's 2019-09 variant takes the keys of an ``additionalProperties`` schema
for property names).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
from jsonschema import ValidationError
from referencing.jsonschema import lookup_recursive_ref

from polyn import _regex

__all__ = ["REGISTRY", "wording_class"]


def _refuse(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]


def extras_msg(extras: Any) -> tuple[str, str]:
    """jsonschema's own wording of a list of extra items (``'a', 'b'`` and ``were``), kept here
    rather than imported from its private ``jsonschema._utils``."""
    extras = list(extras)
    verb = "was" if len(extras) == 1 else "were"
    return ", ".join(repr(extra) for extra in extras), verb
"""A registry that retrieves nothing: a reference outside the document fails instead."""


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _matches_a_pattern(patterns: Mapping[str, Any], name: str) -> bool:
    return any(_regex.search(pattern, name) for pattern in patterns)


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _regex.search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = {
        key
        for key in instance
        if key not in properties and not (patterns and _matches_a_pattern(patterns, key))
    }
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {listed}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


def _evaluated_keys(validator: Any, instance: Any, schema: Any) -> set[str]:
    """The properties of ``instance`` that ``schema`` evaluates (for unevaluatedProperties)."""
    if validator.is_type(schema, "boolean"):
        return set()
    keys: set[str] = set()

    def follow(resolved: Any) -> None:
        evolved = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
        keys.update(_evaluated_keys(evolved, instance, resolved.contents))

    if "$ref" in schema:
        follow(validator._resolver.lookup(schema["$ref"]))
    # Each draft knows only its own dynamic reference keyword.
    if "$dynamicRef" in schema and "$dynamicRef" in validator.VALIDATORS:
        follow(validator._resolver.lookup(schema["$dynamicRef"]))
    if "$recursiveRef" in schema and "$recursiveRef" in validator.VALIDATORS:
        follow(lookup_recursive_ref(validator._resolver))
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys.update(properties.keys() & instance.keys())
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is None:
            continue
        keys.update(
            key
            for key, value in instance.items()
            if next(validator.descend(value, subschema), None) is None
        )
    patterns = schema.get("patternProperties")
    if patterns:
        keys.update(key for key in instance if _matches_a_pattern(patterns, key))
    for name, subschema in schema.get("dependentSchemas", {}).items():
        if name in instance:
            keys.update(_evaluated_keys(validator, instance, subschema))
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if next(validator.descend(instance, subschema), None) is None:
                keys.update(_evaluated_keys(validator, instance, subschema))
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys.update(_evaluated_keys(validator, instance, schema["if"]))
            if "then" in schema:
                keys.update(_evaluated_keys(validator, instance, schema["then"]))
        elif "else" in schema:
            keys.update(_evaluated_keys(validator, instance, schema["else"]))
    return keys


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failed = [
        key
        for key in instance
        if key not in evaluated
        and next(validator.descend(instance[key], unevaluated, path=key, schema_path=key), None)
        is not None
    ]
    if not failed:
        return
    if unevaluated is False:
        error = "Unevaluated properties are not allowed (%s %s unexpected)"
        yield ValidationError(error % extras_msg(sorted(failed, key=str)))
    else:
        error = (
            "Unevaluated properties are not valid under the given schema "
            "(%s %s unevaluated and invalid)"
        )
        yield ValidationError(error % extras_msg(failed))


def _identity(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal exactly when jsonschema's ``equal`` is.

    Numbers compare by value (``1 == 1.0``) but never equal booleans; objects ignore key order;
    arrays keep it.
    """
    kind = type(value)
    if kind is bool:
        return ("bool", value)
    if kind is str:
        return ("str", value)
    if value is None:
        return ("null",)
    if isinstance(value, dict):
        return ("object", frozenset((key, _identity(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_identity(item) for item in value))
    if isinstance(value, bool):
        return ("bool", bool(value))
    if isinstance(value, str):
        return ("str", str(value))
    return ("number", value)


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        identity = _identity(item)
        if identity in seen:
            yield ValidationError(f"{_shown(instance)} has non-unique elements")
            return
        seen.add(identity)


def _shown(value: Any, limit: int = 200) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}


@functools.cache
def wording_class(base: type[Any]) -> type[Any]:
    """jsonschema's validator class ``base`` with Polyn's keywords (see the module doc)."""
    keywords: dict[str, Any] = dict(_KEYWORDS)
    if "unevaluatedProperties" in base.VALIDATORS:
        keywords["unevaluatedProperties"] = _unevaluated_properties
    extended: type[Any] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        base, validators=keywords
    )
    return extended
