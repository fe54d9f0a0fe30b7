"""What a NATS server accepts: the subject, header and size checks of every transport.

Both transports (:class:`~polyn.nats.NatsTransport` and the sandbox's ``MockNats``) check every
message with these functions *before* anything is queued or written, so they refuse exactly the
same messages with the same errors, whichever write path the real transport then takes (its
direct wire path or nats-py's public API, see :mod:`polyn.nats._wire`).

- Subjects: non-empty, no whitespace, no empty token (``a..b``, a leading or trailing dot).
  Raises :class:`~polyn.errors.NamingError`.
- Headers: keys non-empty without CR, LF, NUL, ``:`` or whitespace; values without CR, LF or
  NUL. Anything else could end the ``Key: value`` line early and inject a header of its own
  (an injected ``Nats-Msg-Id`` makes JetStream drop the next event as a duplicate), so it
  raises :class:`~polyn.errors.HeaderError` (a ``ValueError`` too). Keys and values are
  ``str``.
- Size: body plus headers, counted as nats-py counts them, at most the server's
  ``max_payload``; raises :class:`PayloadTooLargeError`.

The checks are memoised where their input repeats on the hot path (subjects and header keys),
in module-level LRU caches: pure functions of their argument, so sharing them between
connections and trio runs is safe.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from polyn.errors import HeaderError, NamingError, PayloadTooLargeError

__all__ = [
    "PayloadTooLargeError",
    "check_headers",
    "check_subject",
    "checked_headers",
    "headers_size",
    "subject_ok",
]

_BAD_SUBJECT_CHARS = re.compile(r"\s")
_BAD_KEY = re.compile(r"[\r\n\0:\s]")
_BAD_VALUE = re.compile(r"[\r\n\0]")




@functools.lru_cache(maxsize=4096)
def subject_ok(subject: str) -> bool:
    """Whether ``subject`` is a subject NATS accepts (wildcards allowed)."""
    return not (
        not subject
        or _BAD_SUBJECT_CHARS.search(subject)
        or ".." in subject
        or subject[0] == "."
        or subject[-1] == "."
    )


def check_subject(subject: str, what: str = "subject") -> None:
    """Raise :class:`~polyn.errors.NamingError` unless ``subject`` is a valid NATS subject."""
    if type(subject) is not str or not subject_ok(subject):
        raise NamingError(f"{subject!r} is not a valid NATS {what}")


@functools.lru_cache(maxsize=1024)
def _key_ok(key: str) -> bool:
    return bool(key) and _BAD_KEY.search(key) is None


def check_headers(headers: Mapping[str, str]) -> None:
    """Raise :class:`~polyn.errors.HeaderError` when a header cannot be written safely."""
    for key, value in headers.items():
        if type(key) is not str or not _key_ok(key):
            raise HeaderError(
                f"header name {key!r} is not allowed: a NATS header name is a non-empty "
                "string without CR, LF, NUL, ':' or whitespace"
            )
        if type(value) is not str or _BAD_VALUE.search(value) is not None:
            raise HeaderError(
                f"the value of header {key!r} is not allowed: {value!r}; a NATS header value "
                "is a string without CR, LF or NUL"
            )


def headers_size(headers: Mapping[str, str]) -> int:
    """The bytes ``headers`` take on the wire (``NATS/1.0`` line and blank line included)."""
    if not headers:
        return 0
    size = 12
    for key, value in headers.items():  # a loop, not sum() of a generator: this is per publish
        size += len(key) + len(value) + 4
    return size


def checked_headers(
    subject: str, data: bytes, headers: Mapping[str, str] | None, max_payload: int
) -> dict[str, str]:
    """A copy of ``headers``, after checking them and that the message fits ``max_payload``.

    Raises :class:`~polyn.errors.HeaderError` or :class:`PayloadTooLargeError`.
    """
    hdrs = dict(headers) if headers else {}
    size = len(data)
    if hdrs:
        check_headers(hdrs)
        size += headers_size(hdrs)
    if size > max_payload:
        raise PayloadTooLargeError(
            f"a message of {size} bytes on {subject!r} exceeds the server's max_payload of "
            f"{max_payload} bytes"
        )
    return hdrs
