"""Declared, typed, validated options: the one option mechanism of Polyn's consumers.

Every consumer class declares its options once, as a frozen attrs class (``Consumer.Options``:
``PullConsumer.Options``, ``Pipeline.Options`` ...) whose fields carry the default, the type and
the range. An option may be given two ways, and both are checked **when the spec is built**
(``WelcomeMailer(prefetch="ten")`` raises at once, not deep inside the running consumer):

- as a class attribute of a subclass (``type = "user.created.v1"``, ``processors = {...}``);
- as a keyword argument (``WelcomeMailer(prefetch=50)``), which wins.

A wrong type or a value out of range raises :class:`~polyn.errors.OptionError` (a
``ConfigError`` that is also a ``TypeError`` and a ``ValueError``), naming the class, the option
and the value; an unknown keyword raises it too, listing the known ones.

For ``mypy --strict`` the same options are mirrored twice, and a test keeps the three in step:
as annotations on the consumer class (so a subclass's ``prefetch = "ten"`` is an incompatible
override) and as a ``TypedDict`` of keyword arguments (``**options: Unpack[...]``), so a
misspelt or mistyped keyword is a type error.

Later options (processor and batcher specs, typed events' ``data_type``) extend these classes
with the helpers below rather than inventing another mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import attrs

from polyn.errors import OptionError

__all__ = [
    "ACTOR_OPTIONS",
    "a_class",
    "build_options",
    "choice",
    "integer",
    "seconds",
    "text",
]

T = TypeVar("T")

ACTOR_OPTIONS = ("name", "restart", "shutdown", "mailbox_size")
"""The options every :class:`~polyn.actors.Actor` takes; the Actor checks them itself."""

_MISSING = attrs.NOTHING


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _validator(check: Callable[[object], str | None]) -> Callable[[Any, Any, Any], None]:
    """An attrs validator from ``check(value) -> problem or None``."""

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        problem = check(value)
        if problem is not None:
            raise OptionError(
                f"option {attribute.name!r} must be {problem}, not {_describe(value)}"
            )

    return validate


def integer(
    default: int | Any | None = _MISSING, *, at_least: int | None = None, optional: bool = False
) -> Any:
    """An ``int`` option (``bool`` refused), at least ``at_least``; ``None`` when ``optional``."""
    wanted = "an int" + (f" >= {at_least}" if at_least is not None else "")
    if optional:
        wanted += " or None"

    def check(value: object) -> str | None:
        if value is None and optional:
            return None
        if type(value) is bool or not isinstance(value, int):
            return wanted
        if at_least is not None and value < at_least:
            return wanted
        return None

    return attrs.field(default=default, validator=_validator(check))


def seconds(
    default: float | Any | None = _MISSING, *, positive: bool = True, optional: bool = False
) -> Any:
    """A duration in seconds (``int`` or ``float``, not ``bool``); ``None`` when ``optional``."""
    wanted = "a number of seconds" + (" > 0" if positive else " >= 0")
    if optional:
        wanted += " or None"

    def check(value: object) -> str | None:
        if value is None and optional:
            return None
        if type(value) is bool or not isinstance(value, int | float):
            return wanted
        if not (value > 0 if positive else value >= 0):  # also refuses NaN
            return wanted
        return None

    return attrs.field(default=default, validator=_validator(check))


def text(default: str | Any | None = _MISSING, *, optional: bool = True) -> Any:
    """A non-empty ``str`` option; ``None`` when ``optional``."""
    wanted = "a non-empty string" + (" or None" if optional else "")

    def check(value: object) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            return wanted
        return None

    return attrs.field(default=default, validator=_validator(check))


def choice(default: str, values: tuple[str, ...]) -> Any:
    """One of ``values`` (strings)."""
    wanted = "one of " + ", ".join(repr(v) for v in values)
    return attrs.field(
        default=default, validator=_validator(lambda v: None if v in values else wanted)
    )


def a_class(default: type | None = None, *, what: str = "a class or None") -> Any:
    """A class option (``data_type = OrderPlacedV1``); ``None`` allowed."""
    return attrs.field(
        default=default,
        validator=_validator(lambda v: None if v is None or isinstance(v, type) else what),
    )


def instance(kinds: type | tuple[type, ...], default: Any = _MISSING, *, what: str) -> Any:
    """An option of one of the classes ``kinds``."""
    return attrs.field(
        default=default, validator=_validator(lambda v: None if isinstance(v, kinds) else what)
    )


def build_options(owner: type, options_class: type[T], given: Mapping[str, Any]) -> T:
    """The options of ``owner`` (a consumer class): keyword arguments ``given``, else the class
    attributes of ``owner`` and its bases, else the declared defaults; checked.

    Raises :class:`~polyn.errors.OptionError` (naming ``owner``, the option and the value) for
    an unknown keyword, a wrong type or a value out of range.
    """
    fields = attrs.fields(cast(Any, options_class))
    known = {field.name for field in fields}
    unknown = sorted(set(given) - known)
    if unknown:
        raise OptionError(
            f"{owner.__name__}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; its options are {', '.join(sorted(known))} "
            f"(and the actor options {', '.join(ACTOR_OPTIONS)})"
        )
    values: dict[str, Any] = {}
    for field in fields:
        if field.name in given:
            values[field.name] = given[field.name]
        elif hasattr(owner, field.name):
            values[field.name] = getattr(owner, field.name)
    try:
        return options_class(**values)
    except OptionError as exc:
        raise OptionError(f"{owner.__name__}: {exc}") from None
