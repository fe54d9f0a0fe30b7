"""The JSON Schema ``format`` checks Polyn asserts, as lenient as the Elixir client's.

The Elixir client validates with ex_json_schema, whose format checks are regular expressions
(PCRE, ASCII classes, ``$`` also accepting one trailing newline). A Python service must accept
every event an Elixir one accepts, and should not publish one an Elixir consumer would reject,
so these checks mirror that leniency instead of using RFC-strict checkers:

- ``date-time``: the time zone is optional (naive ``2022-10-20T16:59:58.123456`` passes).
- ``uri-reference``: any text without whitespace (``com:test:user:backend`` passes).
- ``uri``: a scheme followed by text without whitespace.
- ``date``, ``time``, ``email``, ``hostname``, ``ipv4``, ``ipv6``, ``json-pointer`` likewise.

Every other format name is an annotation only (never asserted), as in ex_json_schema. One table
serves both validators of :mod:`polyn.codec`, so they cannot disagree on a format.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

__all__ = ["FORMATS", "always_valid"]

# PCRE's default \s (ASCII whitespace) and "$" (end, or before one final newline).
_WS = r" \t\n\x0b\x0c\r"
_END = r"\n?"
_FLAGS = re.ASCII | re.IGNORECASE


def _regex(pattern: str, flags: int = re.ASCII) -> Callable[[object], bool]:
    compiled = re.compile(pattern + _END, flags)

    def check(value: object) -> bool:
        # Formats constrain strings only; anything else is another keyword's business.
        return not isinstance(value, str) or compiled.fullmatch(value) is not None

    return check


_date_time = _regex(
    r"-?(?:[1-9][0-9]*)?[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
# In ex_json_schema's scheme class "+-." is a range, which also takes ",".
_SCHEME = r"[a-z][a-z0-9+,.\-]*:"
_uri_reference = _regex(
    rf"(?:(?:{_SCHEME})?/?/)?(?:[^\\{_WS}#][^{_WS}#]*)?(?:#[^\\{_WS}]*)?", _FLAGS
)
_uri_scheme = _regex(rf"{_SCHEME}(?:/?/)?[^{_WS}]*", _FLAGS)
_EMAIL_ATOM = r"[A-Za-z0-9_!#$%&'*+/=?`{|}~^-]+"


def _uri(value: object) -> bool:
    return _uri_scheme(value) and _uri_reference(value)


def _ipv6(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def always_valid(value: object) -> bool:
    """The check of a format Polyn does not assert."""
    return True


FORMATS: Mapping[str, Callable[[object], bool]] = MappingProxyType(
    {
        "date-time": _date_time,
        "date": _regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
        "time": _regex(
            r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:z|[+-][0-9]{2}:[0-9]{2})?", _FLAGS
        ),
        "uri-reference": _uri_reference,
        "uri": _uri,
        "email": _regex(
            rf"{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*@(?:[a-z0-9-]+\.)+[a-z]{{2,6}}", _FLAGS
        ),
        "hostname": _regex(
            r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
            _FLAGS,
        ),
        "ipv4": _regex(
            r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}"
            r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
        ),
        "ipv6": _ipv6,
        "json-pointer": _regex(r"(?:/(?:[^~/]|~0|~1)*)*"),
    }
)
