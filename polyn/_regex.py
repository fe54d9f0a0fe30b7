"""The one regular-expression engine of JSON Schema ``pattern`` and ``patternProperties``.

Both validators of :mod:`polyn._validator` must give a pattern the same meaning, and no input
may make matching slow. Python's :mod:`re` backtracks (``^([a-zA-Z0-9_.-]+)*@example\\.com$``
against 30 characters takes tens of seconds, holding the GIL), and its syntax differs from
ECMA-262 and from other engines. So every pattern is run by the Rust ``regex`` crate, through
jsonschema-rs (``RegexOptions``): matching takes time linear in the input, whatever the pattern.
The fast validator is compiled with the same options, and the wording validator calls
:func:`search` below, which evaluates a one-keyword jsonschema-rs validator: one engine, one
semantics.

The price: patterns that need backtracking features (look-around such as ``(?=...)`` or
``(?<!...)``, backreferences such as ``\\1``) cannot be compiled, and a schema using one is
refused when it is loaded, with the pattern and the reason (:func:`problem`). Patterns must also
be ECMA-262 syntax, as JSON Schema asks (jsonschema-rs checks that for drafts 4 to 7 whatever
Polyn does, so every draft gets the same rule): ``(?i)`` and ``\\Z`` are Python's and PCRE's,
not ECMA-262's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jsonschema_rs

__all__ = ["OPTIONS", "problem", "search"]

OPTIONS = jsonschema_rs.RegexOptions()
"""The pattern options every jsonschema-rs validator of Polyn is compiled with."""


@functools.lru_cache(maxsize=4096)
def _matcher(pattern: str) -> Callable[[object], bool]:
    # Draft 7 checks the pattern's syntax against ECMA-262 (the meta-schema's "regex" format,
    # which jsonschema-rs asserts for every draft up to 7) before the crate compiles it.
    validator = jsonschema_rs.Draft7Validator({"pattern": pattern}, pattern_options=OPTIONS)
    return validator.is_valid


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text`` (JSON Schema's unanchored ``pattern``).

    Raises ``ValueError`` when the engine cannot compile ``pattern``; schemas are checked with
    :func:`problem` when loaded, so this does not happen for a loaded schema.
    """
    return _matcher(pattern)(text)


def problem(pattern: object) -> str | None:
    """Why ``pattern`` cannot be used, or ``None`` when the engine compiles it."""
    if not isinstance(pattern, str):
        return f"pattern {pattern!r} is not a string"
    try:
        _matcher(pattern)
    except Exception as exc:
        reason = str(exc).split("\n", 1)[0]
        return (
            f"pattern {pattern!r} cannot be compiled by Polyn's linear-time regular-expression "
            "engine (ECMA-262 syntax run by the Rust regex crate: no look-around, no "
            "backreferences, no inline flags such as (?i), bounded size): "
            f"{reason}"
        )
    return None
