"""Instances from validated JSON and JSON from instances, with cattrs.

Two converters, built once per process (they hold no state but cattrs' cache of the functions it
makes per class):

- ``_STRUCTURE`` builds instances. Data reaching it has been validated by the codec against the
  message's schema, so it does not re-check what the schema already checked
  (``detailed_validation=False``). ``float`` fields keep JSON integers as they are (``int`` is a
  ``float`` to a type checker, and ``float(2**60 + 1)`` would change the number); unions of JSON
  scalars pass through; ``Sequence`` / ``Mapping`` (how generated classes declare arrays and
  maps) become lists and dicts, as in the JSON. Generated classes get Polyn's own function
  (:func:`_fast_record`), others cattrs' generated one.
- ``_UNSTRUCTURE`` writes JSON values. Classes of a generated module (marked
  ``__polyn_generated__`` at module level) leave out an optional field whose value is ``None``
  and whose default is ``None``: the schema does not require it and may not allow ``null``.
  Other attrs classes and dataclasses keep every field, as ``attrs.asdict`` did before.

A field whose JSON key is not a Python name (``odd-name``, ``class``, ``_id``) carries its key in
its metadata, ``{"json_key": "odd-name"}``; both converters honour it, for generated and
hand-written classes alike.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_union_passthrough

T = TypeVar("T")

JSON_KEY = "json_key"
"""The field metadata key naming a field's JSON key, when it differs from the field's name."""

_JSON_SCALARS = str | int | float | bool | None
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})


def is_record(cl: Any) -> bool:
    """Whether ``cl`` is an attrs class or a dataclass (cattrs builds those field by field)."""
    return isinstance(cl, type) and (attrs.has(cl) or dataclasses.is_dataclass(cl))


def is_pydantic(cl: Any) -> bool:
    """Whether ``cl`` looks like a pydantic v2 model (without importing pydantic)."""
    return (
        isinstance(cl, type)
        and callable(getattr(cl, "model_validate", None))
        and callable(getattr(cl, "model_dump", None))
    )


def dumps_itself(cl: Any) -> bool:
    """Whether instances of ``cl`` have pydantic v2's ``model_dump`` (all unstructuring needs:
    a duck-typed model will do, as ``pub`` always accepted)."""
    return isinstance(cl, type) and callable(getattr(cl, "model_dump", None))


def is_generated(cl: type[Any]) -> bool:
    """Whether ``cl`` comes from a module written by ``polyn schemas codegen``."""
    module = sys.modules.get(cl.__module__)
    return getattr(module, "__polyn_generated__", False) is True


def _fields(cl: type[Any]) -> list[tuple[str, Mapping[Any, Any], Any]]:
    """(name, metadata, default) of each field; the default is ``None`` only when it is None."""
    if attrs.has(cl):
        return [(a.name, a.metadata, a.default) for a in attrs.fields(cl)]
    return [(f.name, f.metadata, f.default) for f in dataclasses.fields(cl)]


def _renamed(cl: type[Any]) -> dict[str, str]:
    return {
        name: metadata[JSON_KEY]
        for name, metadata, _ in _fields(cl)
        if isinstance(metadata.get(JSON_KEY), str)
    }


def _keep(value: Any, _: Any) -> Any:
    return value


# -- the fast path for generated classes ------------------------------------------------------

_NONE = type(None)
_COPIED = frozenset({str, int, float, bool, _NONE})


def _members(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if isinstance(tp, types.UnionType) or (
        typing.get_origin(tp) is typing.Union
    ) else (tp,)


def _copied(tp: Any) -> bool:
    """Values of this type are kept as the codec decoded them: JSON scalars, ``Any``."""
    return all(member in _COPIED or member is Any for member in _members(tp))


def _literal_values(tp: Any) -> frozenset[Any] | None:
    """The values a ``Literal[...]`` (``| None``) allows, or None when ``tp`` is not one."""
    values: set[Any] = set()
    for member in _members(tp):
        if member is _NONE:
            values.add(None)
        elif typing.get_origin(member) is Literal:
            values.update(typing.get_args(member))
        else:
            return None
    return frozenset(values)


def _abstract_container(tp: Any) -> bool:
    """``Sequence[...]`` or ``Mapping[...]``, as generated classes declare arrays and maps."""
    return typing.get_origin(tp) in (collections.abc.Sequence, collections.abc.Mapping)


def _container_hook(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """Arrays become lists and maps dicts, as JSON has them (cattrs would make tuples): an
    instance then equals one built by hand with lists. Items that need no conversion (JSON
    scalars) are copied in one call; others go through cattrs' hook for ``list[T]`` /
    ``dict[str, T]``."""

    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(tp)
        if typing.get_origin(tp) is collections.abc.Sequence:
            if _copied(args[0]):
                return lambda value, _: list(value)
            return converter.get_structure_hook(list[args[0]])  # type: ignore[valid-type]
        if _copied(args[1]):
            return lambda value, _: dict(value)
        return converter.get_structure_hook(dict[args[0], args[1]])  # type: ignore[valid-type]

    return factory


def _fast_record(
    cl: type[Any], converter: cattrs.Converter, building: set[type[Any]]
) -> Callable[[Any, Any], Any] | None:
    """A structuring function for a generated class, or None when it does not qualify.

    cattrs' own function calls the frozen dataclass's ``__init__`` (an ``object.__setattr__``
    per field) and one hook per field; measured on issue 17's five-field payload that is 0.2x
    of a whole ``codec.decode``. Generated classes have no ``__post_init__``, no validators and
    no ``init=False`` fields, and their data was validated, so this function fills the new
    instance's ``__dict__`` at once: scalars as decoded, ``Literal`` values checked against
    their set, everything else (nested classes, sequences, unions) through cattrs' hook for the
    field's type. Those hooks are made now, so a type cattrs cannot build fails here, except
    for a type that refers back to a class being built (``"$ref": "#"``), looked up on first use.
    """
    if not dataclasses.is_dataclass(cl) or attrs.has(cl) or hasattr(cl, "__post_init__"):
        return None
    if "__slots__" in vars(cl):
        return None
    fields = dataclasses.fields(cl)
    if not all(f.init for f in fields):
        return None
    hints = typing.get_type_hints(cl)
    namespace: dict[str, Any] = {"_new": object.__new__, "_cl": cl, "_bad": _not_in_literal}
    items = []
    for index, f in enumerate(fields):
        key = f.metadata.get(JSON_KEY, f.name)
        tp = hints[f.name]
        value = f"o[{key!r}]"
        literal = _literal_values(tp)
        if _copied(tp):
            expression = value
        elif literal is not None:
            namespace[f"_a{index}"] = literal
            expression = f"(v if (v := {value}) in _a{index} else _bad(v, _a{index}))"
        else:
            namespace[f"_t{index}"] = tp
            if _refers_to(tp, building | {cl}):
                namespace[f"_h{index}"] = _resolver(converter, namespace, f"_h{index}", tp)
            else:
                building.add(cl)
                try:
                    namespace[f"_h{index}"] = converter.get_structure_hook(tp)
                finally:
                    building.discard(cl)
            expression = f"_h{index}({value}, _t{index})"
        if f.default is not dataclasses.MISSING:
            namespace[f"_d{index}"] = f.default
            expression = f"({expression} if {key!r} in o else _d{index})"
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_f{index}"] = f.default_factory
            expression = f"({expression} if {key!r} in o else _f{index}())"
        items.append(f"        {f.name!r}: {expression},")
    source = "\n".join(
        [
            f"def structure_{cl.__name__}(o, _):",
            "    instance = _new(_cl)",
            "    instance.__dict__.update({",
            *items,
            "    })",
            "    return instance",
        ]
    )
    exec(compile(source, f"<polyn structure {cl.__qualname__}>", "exec"), namespace)
    function: Callable[[Any, Any], Any] = namespace[f"structure_{cl.__name__}"]
    return function


def _refers_to(tp: Any, classes: set[type[Any]]) -> bool:
    """Whether ``tp`` is or holds one of ``classes`` (looking into the fields of records)."""
    seen: set[int] = set()
    pending = [tp]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current in classes:
            return True
        pending.extend(typing.get_args(current))
        if isinstance(current, type) and dataclasses.is_dataclass(current):
            pending.extend(typing.get_type_hints(current).values())
    return False


def _resolver(
    converter: cattrs.Converter, namespace: dict[str, Any], slot: str, tp: Any
) -> Callable[[Any, Any], Any]:
    """A hook that finds cattrs' hook for ``tp`` on first call and puts it in its own place."""

    def resolve(value: Any, typ: Any) -> Any:
        hook = namespace[slot] = converter.get_structure_hook(tp)
        return hook(value, typ)

    return resolve


def _not_in_literal(value: Any, allowed: frozenset[Any]) -> Any:
    shown = ", ".join(sorted(repr(v) for v in allowed))
    raise ValueError(f"{value!r} is not one of {shown}")


def _structure_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=False, forbid_extra_keys=False)
    converter.register_structure_hook(float, _keep)
    configure_union_passthrough(_JSON_SCALARS, converter)
    converter.register_structure_hook_factory(_abstract_container, _container_hook(converter))

    building: set[type[Any]] = set()

    def record(cl: type[Any]) -> Callable[[Any, Any], Any]:
        if is_generated(cl) and (fast := _fast_record(cl, converter, building)) is not None:
            return fast
        overrides: dict[str, Any] = {
            name: override(rename=key) for name, key in _renamed(cl).items()
        }
        return make_dict_structure_fn(
            cl,
            converter,
            _cattrs_forbid_extra_keys=False,
            _cattrs_detailed_validation=False,
            **overrides,
        )

    def pydantic(cl: type[Any]) -> Callable[[Any, Any], Any]:
        validate = cl.model_validate
        return lambda value, _: validate(value)

    # pydantic first: a pydantic dataclass is a dataclass too, and pydantic should build it.
    converter.register_structure_hook_factory(is_pydantic, pydantic)
    converter.register_structure_hook_factory(
        lambda cl: is_record(cl) and not is_pydantic(cl), record
    )
    return converter


def _unstructure_converter() -> cattrs.Converter:
    converter = cattrs.Converter()

    def record(cl: type[Any]) -> Callable[[Any], Any]:
        renamed = _renamed(cl)
        omit_none = is_generated(cl)
        overrides: dict[str, Any] = {}
        for name, _, default in _fields(cl):
            omit = omit_none and default is None
            if name in renamed or omit:
                overrides[name] = override(rename=renamed.get(name), omit_if_default=omit)
        return make_dict_unstructure_fn(cl, converter, **overrides)

    def pydantic(cl: type[Any]) -> Callable[[Any], Any]:
        return lambda value: value.model_dump(mode="json")

    converter.register_unstructure_hook_factory(dumps_itself, pydantic)
    converter.register_unstructure_hook_factory(
        lambda cl: is_record(cl) and not dumps_itself(cl), record
    )
    return converter


_STRUCTURE = _structure_converter()
_UNSTRUCTURE = _unstructure_converter()


def structure_hook(cls: type[T]) -> Callable[[Any, type[T]], T]:
    """cattrs' structuring function for ``cls`` (made once, then cached by cattrs).

    Raises ``TypeError`` when ``cls`` cannot be built from JSON (no attrs class, dataclass,
    pydantic model or type cattrs knows).
    """
    try:
        return _STRUCTURE.get_structure_hook(cls)
    except (cattrs.StructureHandlerNotFoundError, NameError) as exc:
        raise TypeError(
            f"polyn cannot build {_name(cls)} from event data: {exc}. Use a class generated by "
            "`polyn schemas codegen`, an attrs class, a dataclass or a pydantic model"
        ) from exc


def unstructure(obj: Any) -> Any:
    """``obj`` as a JSON value, ready for :func:`polyn.codec.encode`.

    JSON values (dicts, lists, strings, numbers, booleans, ``None``) are returned as they are.
    Instances of generated classes, attrs classes and dataclasses become dicts (nested instances
    too, sequences become lists, enums their values, ``json_key`` metadata renames keys); pydantic
    models give ``model_dump(mode="json")``. An optional field of a generated class that is
    ``None`` is left out (see the module doc). Any object with pydantic's ``model_dump`` is
    dumped with it, pydantic or not. Anything else is returned unchanged, and the codec
    then says where it is not JSON.

    Example::

        unstructure(OrderPlacedV1(order_id="o-1", customer="ada", items=[...], total=9.5))
        # {'order_id': 'o-1', 'customer': 'ada', 'items': [...], 'total': 9.5}
    """
    if type(obj) in _PLAIN:
        return obj
    return _UNSTRUCTURE.unstructure(obj)


def _name(cls: Any) -> str:
    return getattr(cls, "__qualname__", None) or repr(cls)
