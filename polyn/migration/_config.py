"""Typed stream and consumer configurations for migrations: :class:`StreamConfig` and
:class:`ConsumerConfig`.

Frozen attrs classes with JetStream's own option names (as nats-py's ``StreamConfig`` and
``ConsumerConfig`` spell them), durations in **seconds**, and every value checked when the object
is built, so a typo fails when the migration file is read, before anything reaches the server,
with the option's name in the message. ``mypy --strict`` checks a migration that builds them::

    from polyn.migration import ConsumerConfig, Migration, StreamConfig

    def change(m: Migration) -> None:
        m.create_stream(StreamConfig(name="ORDERS", subjects=["order.>"], max_age=7 * 24 * 3600))
        m.create_consumer(ConsumerConfig(stream_name="ORDERS",
                                         durable_name="orders_payments_order_placed_v1",
                                         filter_subject="order.placed.v1"))

The dict form (``m.create_stream(name="ORDERS", subjects=[...])``) goes through the same checks
(:meth:`StreamConfig.from_options`); an unknown option is refused with its name, the closest
valid name, and the list of valid ones.

An option left at ``None`` is not sent: the server's default applies. One default differs from
the server's, as in Elixir's ``Jetstream.API.Consumer``: ``ack_policy`` is ``"explicit"`` (the
server's default, ``none``, makes naks, terms and redelivery do nothing, and Polyn's consumers
refuse such a consumer at start).
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import attrs

from polyn.errors import MigrationError

__all__ = [
    "ConsumerConfig",
    "StreamConfig",
    "check_update_options",
    "is_valid_name",
    "is_valid_subject",
]

C = TypeVar("C", "StreamConfig", "ConsumerConfig")

# JetStream's rule for stream and consumer names (nats-server isValidName, plus the path
# separators refused since 2.10): no whitespace, '.', '*', '>', '/', '\' or control characters,
# at most 255 characters.
_NAME = re.compile(r"[^\s.*>/\\\x00-\x1f\x7f]{1,255}")


def is_valid_name(name: object) -> bool:
    """Whether ``name`` can name a JetStream stream or durable consumer.

    >>> is_valid_name("ORDERS"), is_valid_name("order.placed"), is_valid_name("a b")
    (True, False, False)
    """
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def is_valid_subject(subject: object) -> bool:
    """Whether ``subject`` is a subject or subject filter a stream or consumer can hold:
    dot-separated non-empty tokens without whitespace, ``>`` only as the last token.

    >>> is_valid_subject("order.>"), is_valid_subject("order..placed"), is_valid_subject(">.a")
    (True, False, False)
    """
    if not isinstance(subject, str) or not subject or re.search(r"\s", subject):
        return False
    tokens = subject.split(".")
    return "" not in tokens and ">" not in tokens[:-1]


# -- validators (they never look at the instance, so update_stream's options use them too) ----


def _fail(attribute: attrs.Attribute[Any], text: str, value: object) -> MigrationError:
    return MigrationError(f"{attribute.name} must be {text}, got {value!r}")


def _name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_valid_name(value):
        raise _fail(
            attribute,
            "a name without spaces, '.', '*', '>', '/' or '\\' (at most 255 characters)",
            value,
        )


def _optional(
    check: Callable[[object, attrs.Attribute[Any], object], None],
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def validate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check(instance, attribute, value)

    return validate


def _text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail(attribute, "a string", value)


def _flag(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise _fail(attribute, "True or False", value)


def _integer(low: int, high: int | None = None, *, or_unlimited: bool = False) -> Any:
    text = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    if or_unlimited:
        text += " (or -1: unlimited)"

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = type(value) is int and (
            (value >= low and (high is None or value <= high)) or (or_unlimited and value == -1)
        )
        if not ok:
            raise _fail(attribute, text, value)

    return validate


def _is_seconds(value: object, *, positive: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and (value > 0 if positive else value >= 0)


def _seconds(*, positive: bool = False) -> Any:
    text = "a duration in seconds (a number " + ("> 0)" if positive else ">= 0)")

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not _is_seconds(value, positive=positive):
            raise _fail(attribute, text, value)

    return validate


def _one_of(*choices: str) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in choices:
            raise _fail(attribute, "one of " + ", ".join(repr(c) for c in choices), value)

    return validate


def _subjects(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(s, str) for s in value):
        raise _fail(attribute, "a list of strings", _shown(value))
    for subject in value:
        if not is_valid_subject(subject):
            raise MigrationError(
                f"{attribute.name} holds {subject!r}, which is not a valid subject (dot-separated "
                "tokens without spaces, '>' only as the last token)"
            )


def _subject(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_valid_subject(value):
        raise _fail(
            attribute,
            "a subject (dot-separated tokens without spaces, '>' only as the last token)",
            value,
        )


def _durations(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(_is_seconds(v, positive=True) for v in value):
        raise _fail(attribute, "a list of durations in seconds (numbers > 0)", _shown(value))


def _mapping(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(attribute, "a mapping with string keys (JetStream's JSON object)", value)


def _mappings(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, Mapping) for v in value):
        raise _fail(attribute, "a list of mappings (JetStream's JSON objects)", _shown(value))


def _metadata(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(attribute, "a mapping of strings to strings", value)


def _time(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str | datetime.datetime) or (
        isinstance(value, datetime.datetime) and value.tzinfo is None
    ):
        raise _fail(attribute, "an RFC 3339 time (a string or a timezone-aware datetime)", value)


def _shown(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


# -- converters: lists become tuples (frozen, hashable); anything else is left for the validator


def _strings(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, list | tuple) else cast(Any, value)


def _optional_strings(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return _strings(value) if value is not None else None


def _numbers(value: Sequence[float] | None) -> tuple[float, ...] | None:
    return tuple(value) if isinstance(value, list | tuple) else cast(Any, value)


def _objects(value: Sequence[Mapping[str, Any]] | None) -> tuple[Mapping[str, Any], ...] | None:
    return tuple(value) if isinstance(value, list | tuple) else cast(Any, value)


_COUNT = _integer(0, or_unlimited=True)

RetentionPolicy = Literal["limits", "interest", "workqueue"]
StorageType = Literal["file", "memory"]
DiscardPolicy = Literal["old", "new"]
Compression = Literal["none", "s2"]
AckPolicy = Literal["explicit", "none", "all"]
DeliverPolicy = Literal[
    "all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"
]
ReplayPolicy = Literal["instant", "original"]


class _Options:
    """What both configurations share: the dict form in and out."""

    _command: str = ""

    @classmethod
    def from_options(cls: type[C], options: Mapping[str, Any]) -> C:
        """Build one from the dict form, refusing unknown option names (see the module doc)."""
        _check_names(cls, options)
        try:
            return cls(**options)
        except MigrationError as exc:
            raise MigrationError(f"{cls._command}: {exc}") from None

    def to_options(self) -> dict[str, Any]:
        """The options to send: JetStream's names, seconds, ``None`` left out, lists as lists."""
        out: dict[str, Any] = {}
        for field in attrs.fields(cast(Any, type(self))):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = [dict(v) if isinstance(v, Mapping) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, datetime.datetime):
                value = _rfc3339(value)
            out[field.name] = value
        return out

    def __repr__(self) -> str:  # the options given, not the 30-odd left to the server
        shown = ", ".join(f"{key}={value!r}" for key, value in self.to_options().items())
        return f"{type(self).__name__}({shown})"


@attrs.frozen(repr=False, kw_only=True)
class StreamConfig(_Options):
    """A JetStream stream's configuration, for ``m.create_stream(StreamConfig(...))``.

    ``name`` and ``subjects`` are required; every other option is keyword-only and left to the
    server's default when ``None``. Durations (``max_age``, ``duplicate_window``,
    ``subject_delete_marker_ttl``) are seconds. ``num_replicas`` above the config's
    ``max_replicas`` is clamped when the migration runs (ADR 0018).

    Example::

        StreamConfig(name="ORDERS", subjects=["order.>"], max_age=7 * 24 * 3600,
                     storage="file", num_replicas=3)
    """

    _command = "create_stream"

    name: str = attrs.field(validator=_name)
    subjects: Sequence[str] = attrs.field(converter=_strings, validator=_subjects)
    description: str | None = attrs.field(default=None, validator=_optional(_text))
    retention: RetentionPolicy | None = attrs.field(
        default=None, validator=_optional(_one_of("limits", "interest", "workqueue"))
    )
    max_consumers: int | None = attrs.field(default=None, validator=_optional(_COUNT))
    max_msgs: int | None = attrs.field(default=None, validator=_optional(_COUNT))
    max_bytes: int | None = attrs.field(default=None, validator=_optional(_COUNT))
    max_age: float | None = attrs.field(default=None, validator=_optional(_seconds()))
    max_msgs_per_subject: int | None = attrs.field(default=None, validator=_optional(_COUNT))
    max_msg_size: int | None = attrs.field(default=None, validator=_optional(_COUNT))
    discard: DiscardPolicy | None = attrs.field(
        default=None, validator=_optional(_one_of("old", "new"))
    )
    discard_new_per_subject: bool | None = attrs.field(default=None, validator=_optional(_flag))
    storage: StorageType | None = attrs.field(
        default=None, validator=_optional(_one_of("file", "memory"))
    )
    num_replicas: int | None = attrs.field(default=None, validator=_optional(_integer(1, 5)))
    no_ack: bool | None = attrs.field(default=None, validator=_optional(_flag))
    template_owner: str | None = attrs.field(default=None, validator=_optional(_text))
    duplicate_window: float | None = attrs.field(default=None, validator=_optional(_seconds()))
    placement: Mapping[str, Any] | None = attrs.field(default=None, validator=_optional(_mapping))
    mirror: Mapping[str, Any] | None = attrs.field(default=None, validator=_optional(_mapping))
    sources: Sequence[Mapping[str, Any]] | None = attrs.field(
        default=None, validator=_optional(_mappings), converter=_objects
    )
    sealed: bool | None = attrs.field(default=None, validator=_optional(_flag))
    deny_delete: bool | None = attrs.field(default=None, validator=_optional(_flag))
    deny_purge: bool | None = attrs.field(default=None, validator=_optional(_flag))
    allow_rollup_hdrs: bool | None = attrs.field(default=None, validator=_optional(_flag))
    allow_direct: bool | None = attrs.field(default=None, validator=_optional(_flag))
    mirror_direct: bool | None = attrs.field(default=None, validator=_optional(_flag))
    first_seq: int | None = attrs.field(default=None, validator=_optional(_integer(0)))
    republish: Mapping[str, Any] | None = attrs.field(default=None, validator=_optional(_mapping))
    subject_transform: Mapping[str, Any] | None = attrs.field(
        default=None, validator=_optional(_mapping)
    )
    compression: Compression | None = attrs.field(
        default=None, validator=_optional(_one_of("none", "s2"))
    )
    metadata: Mapping[str, str] | None = attrs.field(default=None, validator=_optional(_metadata))
    consumer_limits: Mapping[str, Any] | None = attrs.field(
        default=None, validator=_optional(_mapping)
    )
    allow_msg_ttl: bool | None = attrs.field(default=None, validator=_optional(_flag))
    subject_delete_marker_ttl: float | None = attrs.field(
        default=None, validator=_optional(_seconds())
    )


@attrs.frozen(repr=False, kw_only=True)
class ConsumerConfig(_Options):
    """A durable JetStream consumer's configuration, for ``m.create_consumer(...)``.

    ``stream_name`` and ``durable_name`` are required; every other option is keyword-only and
    left to the server's default when ``None``, except ``ack_policy``, ``"explicit"`` by
    default (see the module doc). Durations (``ack_wait``, ``backoff``, ``idle_heartbeat``,
    ``inactive_threshold``, ``max_expires``) are seconds.

    A :class:`~polyn.PullConsumer` or :class:`~polyn.Pipeline` of type ``T`` reads the durable
    named ``polyn.naming.consumer_name(T, config, source)``, filtered on ``T`` without the
    domain; ``polyn gen migration NAME --stream S --consumer T`` writes it for you.

    Example::

        ConsumerConfig(stream_name="ORDERS", durable_name="orders_payments_order_placed_v1",
                       filter_subject="order.placed.v1", ack_wait=30, max_deliver=10)
    """

    _command = "create_consumer"

    stream_name: str = attrs.field(validator=_name)
    durable_name: str = attrs.field(validator=_name)
    description: str | None = attrs.field(default=None, validator=_optional(_text))
    deliver_policy: DeliverPolicy | None = attrs.field(
        default=None,
        validator=_optional(
            _one_of("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
        ),
    )
    opt_start_seq: int | None = attrs.field(default=None, validator=_optional(_integer(0)))
    opt_start_time: str | datetime.datetime | None = attrs.field(
        default=None, validator=_optional(_time)
    )
    ack_policy: AckPolicy = attrs.field(
        default="explicit", validator=_one_of("explicit", "none", "all")
    )
    ack_wait: float | None = attrs.field(default=None, validator=_optional(_seconds(positive=True)))
    max_deliver: int | None = attrs.field(
        default=None, validator=_optional(_integer(1, or_unlimited=True))
    )
    backoff: Sequence[float] | None = attrs.field(
        default=None, validator=_optional(_durations), converter=_numbers
    )
    filter_subject: str | None = attrs.field(default=None, validator=_optional(_subject))
    filter_subjects: Sequence[str] | None = attrs.field(
        default=None, validator=_optional(_subjects), converter=_optional_strings
    )
    replay_policy: ReplayPolicy | None = attrs.field(
        default=None, validator=_optional(_one_of("instant", "original"))
    )
    rate_limit_bps: int | None = attrs.field(default=None, validator=_optional(_integer(0)))
    sample_freq: str | None = attrs.field(default=None, validator=_optional(_text))
    max_waiting: int | None = attrs.field(default=None, validator=_optional(_integer(0)))
    max_ack_pending: int | None = attrs.field(
        default=None, validator=_optional(_integer(1, or_unlimited=True))
    )
    flow_control: bool | None = attrs.field(default=None, validator=_optional(_flag))
    idle_heartbeat: float | None = attrs.field(default=None, validator=_optional(_seconds()))
    headers_only: bool | None = attrs.field(default=None, validator=_optional(_flag))
    deliver_subject: str | None = attrs.field(default=None, validator=_optional(_subject))
    deliver_group: str | None = attrs.field(default=None, validator=_optional(_text))
    inactive_threshold: float | None = attrs.field(default=None, validator=_optional(_seconds()))
    num_replicas: int | None = attrs.field(default=None, validator=_optional(_integer(0, 5)))
    mem_storage: bool | None = attrs.field(default=None, validator=_optional(_flag))
    metadata: Mapping[str, str] | None = attrs.field(default=None, validator=_optional(_metadata))
    max_batch: int | None = attrs.field(default=None, validator=_optional(_integer(0)))
    max_expires: float | None = attrs.field(default=None, validator=_optional(_seconds()))
    max_bytes: int | None = attrs.field(default=None, validator=_optional(_integer(0)))

    def __attrs_post_init__(self) -> None:
        if self.filter_subject is not None and self.filter_subjects is not None:
            raise MigrationError("give filter_subject or filter_subjects, not both")


def _check_names(
    cls: type[StreamConfig] | type[ConsumerConfig], options: Mapping[str, Any]
) -> None:
    fields = attrs.fields(cls)
    valid = [field.name for field in fields]
    for key in options:
        if key not in valid:
            raise _unknown(cls._command, key, valid)
    for field in fields:
        if field.default is attrs.NOTHING and field.name not in options:
            raise MigrationError(f"{cls._command}: {field.name} is required")


def _unknown(command: str, key: object, valid: Sequence[str]) -> MigrationError:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return MigrationError(
        f"{command}: unknown option {key!r}{hint}; valid options: {', '.join(sorted(valid))}"
    )


def check_update_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``update_stream``'s options checked: known names, ``name`` required, each other value
    valid for its option or ``None`` (which removes it). Returns them with lists as lists."""
    fields = attrs.fields_dict(StreamConfig)
    for key in options:
        if key not in fields:
            raise _unknown("update_stream", key, list(fields))
    out: dict[str, Any] = {}
    for key, value in options.items():
        field = fields[key]
        if key == "name" or value is not None:
            if field.converter is not None:
                value = field.converter(value)  # type: ignore[operator]
            if field.validator is not None:
                try:
                    field.validator(None, field, value)
                except MigrationError as exc:
                    raise MigrationError(f"update_stream: {exc}") from None
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
