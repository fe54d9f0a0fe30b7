"""Every error Polyn raises, under one base class.

This module sits below every layer (the actor runtime included), so it imports nothing from
Polyn. The classes are plain exception classes on purpose: the two timeouts also derive from the
builtin :class:`TimeoutError`, which a slotted attrs class could not do, so ``except TimeoutError``
catches a timed-out call or request as well as ``except polyn.PolynError`` does.

Messages say what was wrong, with which value, and what to do; where the Polyn protocol fixes a
text (for example "Event names must be lowercase, alphanumeric and dot separated"), the message
is that text, so logs read the same as those of the Elixir and Ruby clients.

Example::

    try:
        await polyn.pub(running, "user.created.v1", {"name": 1})
    except polyn.ValidationError as exc:
        log.warning("not published: %s", exc)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotation only: this module imports nothing from Polyn
    from polyn.typed import Compatibility

__all__ = [
    "ActorError",
    "BucketNotFoundError",
    "CallTimeout",
    "ConfigError",
    "ConsumerError",
    "HeaderError",
    "IncompatibleSchemaError",
    "JetStreamError",
    "KeyValueConflictError",
    "MigrationError",
    "NamingError",
    "NatsConnectionError",
    "NoRespondersError",
    "OptionError",
    "PermissionDeniedError",
    "PolynError",
    "RequestTimeout",
    "ResponderError",
    "SandboxError",
    "SchemaError",
    "SchemaNotFoundError",
    "SchemaStoreError",
    "ServerError",
    "StreamError",
    "ValidationError",
]


class PolynError(Exception):
    """The base of every error Polyn raises on purpose.

    ``event_id`` is the id of the event a failed publish sent (``pub(..., ack=True)`` sets
    it), so the caller can retry with ``pub(..., id=err.event_id)`` and JetStream stores the
    event once; ``None`` when the error is about no one event.
    """

    event_id: str | None = None


class ValidationError(PolynError):
    """An event failed validation: not JSON, not a CloudEvent, or its ``data`` breaks its schema.

    Raised by :func:`polyn.codec.encode` before anything is published, and by
    :func:`polyn.codec.decode` for a received message (consumers then terminate and dead-letter it).
    """


class SchemaNotFoundError(ValidationError):
    """No schema for the event's type is in the schema store.

    A :class:`ValidationError` (the Elixir client raises its validation error, with the same
    text), but a distinct class because it says nothing about the event: the schema may be
    restored a moment later. Consumers treat it as a configuration fault (the message is kept and
    redelivered), never as a poison message.
    """


class NamingError(PolynError):
    """A message name, source or other Polyn name breaks the naming rules."""


class HeaderError(PolynError, ValueError):
    """A message header cannot be sent: its key or value would break the NATS wire format.

    Keys and values may not contain CR, LF or NUL, and keys may not be empty or contain ``:``
    or whitespace (NATS headers are written as ``Key: value`` lines). Refused before anything is
    written, on every transport, so a header can never inject another one (``Nats-Msg-Id``).
    A ``ValueError`` too, as Python's own ``http.client`` refuses such headers.
    """


class SchemaError(PolynError):
    """A schema is missing from the schema store, or a document is not a valid JSON Schema."""


class IncompatibleSchemaError(SchemaError):
    """A valid event's data cannot become an instance of the consumer's data class.

    The message's schema revision is incompatible with the one the class was generated from
    (``polyn schemas check`` rules: a property removed, a type changed...), or the data does not
    fit a hand-written class. Not a :class:`ValidationError`: the event is valid, this service is
    behind (another team changed the schema). Typed consumers nak such a message with a delay,
    without counting it towards ``max_failures``, and report it in ``health()``; they never
    terminate it. ``compatibility`` holds the judgement (a :class:`polyn.typed.Compatibility`),
    when there was one.

    Example::

        try:
            order = decoder.decode(event.data, name="order.placed.v1", schemas=schemas)
        except polyn.IncompatibleSchemaError as exc:
            await msg.nak(delay=30)
    """

    def __init__(self, message: str, compatibility: Compatibility | None = None) -> None:
        super().__init__(message)
        self.compatibility = compatibility


class SchemaStoreError(PolynError):
    """The schema store (a NATS key-value bucket) is missing or cannot be read."""


class JetStreamError(PolynError):
    """A JetStream operation failed; ``code`` and ``err_code`` are the server's, when it sent any.

    ``err_code`` is JetStream's own error number (for example 10059, stream not found), so
    callers can tell cases apart without matching on text.
    """

    def __init__(self, message: str, *, code: int | None = None, err_code: int | None = None):
        super().__init__(message)
        self.code = code
        self.err_code = err_code


class StreamError(JetStreamError):
    """No JetStream stream captures a subject, or a stream operation failed."""


class BucketNotFoundError(StreamError):
    """A key-value bucket does not exist (its stream ``KV_<bucket>`` is missing)."""


class ConsumerError(JetStreamError):
    """A durable JetStream consumer is missing or a consumer operation failed."""


class KeyValueConflictError(JetStreamError):
    """A compare-and-set write to a key-value bucket lost: the key exists already (a create)
    or changed since the revision the write expected (an update). Read it again and retry, or
    give up: someone else wrote first. ``err_code`` is JetStream's (10071)."""


class MigrationError(PolynError):
    """A JetStream migration could not be read, run, recorded or reversed."""


class ConfigError(PolynError):
    """A configuration value is missing or invalid; the message names the field and the value."""


class OptionError(ConfigError, TypeError, ValueError):
    """An actor option given at construction has the wrong type or is out of range.

    A :class:`ConfigError`, and also a :class:`TypeError` / :class:`ValueError` as Python's own
    argument errors are; the message names the class, the option and the value.
    """


class SandboxError(PolynError):
    """The test sandbox cannot tell which test's mock NATS the current task belongs to."""


class NatsConnectionError(PolynError):
    """The NATS connection failed, was closed for good, or the server refused an operation.

    Named so as not to shadow the builtin :class:`ConnectionError`.
    """


class ServerError(PolynError):
    """A nats-server process could not be found, started or stopped (see :mod:`polyn.server`)."""


class ActorError(PolynError):
    """An actor is not running (a call to a dead actor) or failed to start.

    When a supervisor could not start a child, ``start_failure`` is ``(which, cause)``: the
    child that failed, with the supervisors between it and the one that raised (``"child
    'mailer' (Mailer) of supervisor 'workers'"``), and the exception its ``init`` raised (also
    the end of the ``__cause__`` chain). None for any other ActorError.
    """

    start_failure: tuple[str, BaseException] | None = None


def describe_exception(exc: BaseException) -> str:
    """A failure in one line: a Polyn error's own text, else ``Type: text``.

    Polyn's errors say what was wrong and what to do; another exception (a bug in an ``init``)
    needs its class to be understood: ``KeyError: 'email'``.
    """
    text = str(exc)
    if isinstance(exc, PolynError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CallTimeout(PolynError, TimeoutError):
    """An :meth:`ActorRef.call` got no reply in time. The callee is not affected."""


class RequestTimeout(PolynError, TimeoutError):
    """A NATS request got no reply in time."""


class ResponderError(PolynError):
    """A Responder failed on a request and answered with an error reply instead of an event.

    ``error_type`` is the class name of the responder's error and ``reason`` its first line
    (redacted; empty when the responder was told to keep reasons to itself). Raised by
    :func:`polyn.request`.
    """

    def __init__(self, message: str, *, error_type: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.reason = reason


class NoRespondersError(RequestTimeout):
    """A NATS request found nobody subscribed to its subject (the server said so at once)."""


class PermissionDeniedError(NatsConnectionError):
    """The server refused an operation on a subject the connection's user may not use."""
