"""Polyn's naming rules: message names, sources, consumer and stream names, subject matching.

Pure functions, no I/O. They reproduce the Elixir client (``polyn_naming``) exactly, error texts
included, so a Python service derives the same consumer names and event types as an Elixir or
Ruby one:

- a **message name** (event type without the domain) is lowercase alphanumeric tokens separated
  by dots: ``user.created.v1``;
- a **source** is lowercase alphanumeric tokens separated by dots or colons: ``orders.payments``;
- on the wire, ``type`` is ``<domain>.<message name>`` and ``source`` is the colon form
  ``<domain>:<source_root>[:<source>]``.

Decisions where the protocol leaves room (fact sheet section 16):

- Names are matched with :func:`re.fullmatch`, so a trailing newline is rejected (Elixir's ``$``
  accepts one; Ruby's ``\\z`` does not).
- :func:`trim_domain_prefix` removes the *first occurrence anywhere* of ``"<domain>."`` and then
  of ``"<domain with colons>:"``, as both clients do, so consumer names are identical to theirs
  even for odd names.
- Domains follow the stricter Ruby rule (lowercase alphanumeric tokens separated by dots or
  colons, checked by :class:`~polyn.Config`); Elixir does not check them.
- :func:`subject_matches` has real NATS token semantics (``*`` is exactly one token, ``>`` one or
  more trailing tokens), not the unanchored regular expression of the Elixir and Ruby mocks.

Example::

    >>> consumer_name("com.acme.user.created.v1", config)   # source_root "orders.payments"
    'orders_payments_user_created_v1'
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from polyn.errors import NamingError

if TYPE_CHECKING:
    from polyn.config import Config

__all__ = [
    "colon_to_dot",
    "consumer_name",
    "dot_to_colon",
    "full_source",
    "full_type",
    "is_valid_message_name",
    "is_valid_source_name",
    "stream_name",
    "subject_matches",
    "trim_domain_prefix",
    "trim_version_suffix",
    "validate_message_name",
    "validate_source_name",
    "version_suffix",
]

_MESSAGE_NAME = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")
_VERSION_SUFFIX = re.compile(r"[.:]+v\d+")
_SOURCE_NAME = re.compile(r"[a-z0-9]+(?:[.:][a-z0-9]+)*")

# The protocol's texts (Elixir's NamingException); logs then read like the other clients'.
_MESSAGE_NAME_ERROR = "Event names must be lowercase, alphanumeric and dot separated"
_SOURCE_NAME_ERROR = "Event source must be lowercase, alphanumeric and dot/colon separated"


def is_valid_message_name(name: object) -> bool:
    """Whether ``name`` is a valid message name (``user.created.v1``), without raising.

    >>> is_valid_message_name("user.created.v1"), is_valid_message_name("user created")
    (True, False)
    """
    return isinstance(name, str) and _MESSAGE_NAME.fullmatch(name) is not None


def is_valid_source_name(name: object) -> bool:
    """Whether ``name`` is a valid source (``orders.payments``, ``com:acme:orders``).

    >>> is_valid_source_name("user:backend"), is_valid_source_name("user-backend")
    (True, False)
    """
    return isinstance(name, str) and _SOURCE_NAME.fullmatch(name) is not None


def validate_message_name(name: object) -> str:
    """Return ``name`` if it is a valid message name, else raise :class:`~polyn.NamingError`.

    A message name is lowercase alphanumeric tokens separated by dots; no hyphens, underscores,
    colons, spaces, wildcards or empty tokens. Domain-prefixed types (``com.acme.user.created.v1``)
    are valid too.

    >>> validate_message_name("user.created.v1")
    'user.created.v1'
    >>> validate_message_name("user-created")   # raises NamingError:
    ... # Event names must be lowercase, alphanumeric and dot separated, got 'user-created'
    """
    if not is_valid_message_name(name):
        raise NamingError(f"{_MESSAGE_NAME_ERROR}, got {name!r}")
    assert isinstance(name, str)
    return name


def validate_source_name(name: object) -> str:
    """Return ``name`` if it is a valid source, else raise :class:`~polyn.NamingError`.

    A source is lowercase alphanumeric tokens separated by dots or colons.

    >>> validate_source_name("orders.payments")
    'orders.payments'
    >>> validate_source_name("orders payments")  # raises NamingError:
    ... # Event source must be lowercase, alphanumeric and dot/colon separated, got orders payments
    """
    if not is_valid_source_name(name):
        raise NamingError(f"{_SOURCE_NAME_ERROR}, got {name}")
    assert isinstance(name, str)
    return name


def dot_to_colon(name: str) -> str:
    """Replace every ``.`` with ``:``.

    >>> dot_to_colon("com.acme.user.created.v1")
    'com:acme:user:created:v1'
    """
    return name.replace(".", ":")


def colon_to_dot(name: str) -> str:
    """Replace every ``:`` with ``.``.

    >>> colon_to_dot("com:acme:user:created:v1")
    'com.acme.user.created.v1'
    """
    return name.replace(":", ".")


def trim_domain_prefix(name: str, domain: str) -> str:
    """Remove the domain from a type or source, in dot or colon form.

    Removes the first occurrence of ``"<domain>."``, then the first occurrence of
    ``"<domain with colons>:"``. Like the Elixir and Ruby clients, the occurrence need not be at
    the start: only the first one is removed.

    >>> trim_domain_prefix("com.acme.user.created.v1", "com.acme")
    'user.created.v1'
    >>> trim_domain_prefix("com:acme:user:created:v1", "com.acme")
    'user:created:v1'
    """
    name = name.replace(f"{domain}.", "", 1)
    return name.replace(f"{dot_to_colon(domain)}:", "", 1)


def version_suffix(name: str, version: int = 1) -> str:
    """``name`` with ``v<version>`` appended, as polyn_naming's ``version_suffix`` builds it.

    The separator is the caller's: ``name`` ends with the dot or colon it wants.

    >>> version_suffix("com:acme:user:created:")
    'com:acme:user:created:v1'
    >>> version_suffix("com.acme.user.created.", 2)
    'com.acme.user.created.v2'
    """
    return f"{name}v{version}"


def trim_version_suffix(name: str) -> str:
    """``name`` without its version: every ``.v<digits>`` or ``:v<digits>`` removed.

    Like polyn_naming, every match is removed, wherever it is (``[.:]+v\\d+``).

    >>> trim_version_suffix("com.acme.user.created.v1")
    'com.acme.user.created'
    >>> trim_version_suffix("com:acme:user:created:v1")
    'com:acme:user:created'
    """
    return _VERSION_SUFFIX.sub("", name)


@functools.lru_cache(maxsize=1024)
def _full_type(event_type: str, domain: str) -> str:
    validate_message_name(event_type)
    return f"{domain}.{trim_domain_prefix(event_type, domain)}"


@functools.lru_cache(maxsize=1024)
def _full_source(domain: str, source_root: str, source: str | None) -> str:
    root = dot_to_colon(f"{domain}:{source_root}")
    if source is None:
        return root
    validate_source_name(source)
    # The root holds only [a-z0-9:], so escaping changes nothing; it documents intent.
    rest = re.sub(re.escape(root) + ":?", "", source)
    return f"{root}:{dot_to_colon(rest)}" if rest else root


def full_type(event_type: str, config: Config) -> str:
    """The ``type`` an event carries on the wire: ``<domain>.<message name>``.

    Raises :class:`~polyn.NamingError` when ``event_type`` is not a valid message name. A type
    that already carries the domain is not prefixed twice.

    >>> full_type("user.created.v1", config)          # domain "com.acme"
    'com.acme.user.created.v1'
    >>> full_type("com.acme.user.created.v1", config)
    'com.acme.user.created.v1'
    """
    if type(event_type) is not str:
        validate_message_name(event_type)  # raises the naming error
    return _full_type(event_type, config.domain)


def full_source(config: Config, source: str | None = None) -> str:
    """The ``source`` an event carries on the wire: ``<domain>:<source_root>[:<source>]``.

    The root is the colon form of ``"<domain>:<source_root>"``. A ``source`` is validated, every
    occurrence of the root in it (with an optional following colon) is removed, and what remains
    is appended in colon form, so passing a full source does not duplicate the root.

    >>> full_source(config)                          # domain "com.acme", root "orders.payments"
    'com:acme:orders:payments'
    >>> full_source(config, "refunds.new")
    'com:acme:orders:payments:refunds:new'
    >>> full_source(config, "com:acme:orders:payments:refunds")
    'com:acme:orders:payments:refunds'
    """
    if source is not None and type(source) is not str:
        validate_source_name(source)  # raises the naming error
    return _full_source(config.domain, config.source_root, source)


def consumer_name(event_type: str, config: Config, source: str | None = None) -> str:
    """The durable JetStream consumer name for ``event_type`` in this service.

    ``<source_root>[_<source>]_<message name>``, dots and colons turned into underscores, the
    domain left out, exactly as the Elixir and Ruby clients (and the Polyn CLI) build it.

    >>> consumer_name("user.created.v1", config)      # source_root "orders.payments"
    'orders_payments_user_created_v1'
    >>> consumer_name("com.acme.user.created.v1", config, "notifications")
    'orders_payments_notifications_user_created_v1'
    """
    validate_message_name(event_type)
    name = _underscore(trim_domain_prefix(event_type, config.domain))
    prefix = _underscore(config.source_root)
    if source is not None:
        prefix = f"{prefix}_{_underscore(validate_source_name(source))}"
    return f"{prefix}_{name}"


def stream_name(name: str) -> str:
    """The conventional stream name for a message name: uppercase, ``.``/``:`` -> ``_``.

    The runtime never derives stream names this way (it looks streams up by subject); this is the
    naming convention for streams created in migrations.

    >>> stream_name("user.created.v1")
    'USER_CREATED_V1'
    """
    return _underscore(name).upper()


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subscription ``pattern`` receives messages published to ``subject``.

    Real NATS token semantics: tokens are separated by ``.``; ``*`` matches exactly one token;
    ``>`` as the last token matches one or more tokens; any other token must be equal. Inputs the
    server would refuse never match: empty tokens in either, a ``>`` that is not the last token
    of the pattern, and a subject containing a wildcard token.

    >>> subject_matches("orders.*", "orders.created")
    True
    >>> subject_matches("orders.>", "orders")
    False
    >>> subject_matches("orders", "orders.created")
    False
    """
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    if "" in subject_tokens or "*" in subject_tokens or ">" in subject_tokens:
        return False
    last = len(pattern_tokens) - 1
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return index == last and len(subject_tokens) > index
        if index >= len(subject_tokens) or token == "":
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(pattern_tokens) == len(subject_tokens)


def _underscore(name: str) -> str:
    return name.replace(".", "_").replace(":", "_")
