"""Compare-and-set writes to a key-value bucket: create a key only if it is missing, update it
only if it is still at the revision the writer read.

JetStream checks the expected revision on the server (the ``Nats-Expected-Last-Subject-Sequence``
header), so two writers racing on one key cannot both win: the loser gets
:class:`~polyn.errors.KeyValueConflictError` and can read the key again. This is what makes a
lock or a read-modify-write of a shared record safe (the migrations' lock and record use it).

The functions run on the transport's loop thread with nats-py's ``KeyValue`` object of the bucket;
:class:`~polyn.nats.NatsTransport` exposes them as ``kv_create_key`` and ``kv_update``.
"""

from __future__ import annotations

from typing import Any

import nats.js.errors

from polyn.errors import KeyValueConflictError, NamingError

__all__ = ["create_key", "update_key"]

# JetStream's "wrong last sequence" error codes (JSStreamWrongLastSequenceErrF / ...ConstantErr).
_WRONG_LAST_SEQUENCE = (10071, 10164)


async def create_key(kv: Any, bucket: str, key: str, value: bytes) -> int:
    """Store ``value`` under ``key`` only if the key is missing (or deleted); the new revision.

    Raises :class:`~polyn.errors.KeyValueConflictError` when the key holds a value.
    """
    try:
        revision: int = await kv.create(key, value)
    except nats.js.errors.InvalidKeyError as exc:
        raise _invalid_key(bucket, key) from exc
    except nats.js.errors.APIError as exc:
        if not _conflict(exc):
            raise
        raise KeyValueConflictError(
            f"key {key!r} of bucket {bucket} exists already (a create only writes a missing key)",
            code=400,
            err_code=getattr(exc, "err_code", None) or _WRONG_LAST_SEQUENCE[0],
        ) from None
    return revision


async def update_key(kv: Any, bucket: str, key: str, value: bytes, last_revision: int) -> int:
    """Store ``value`` under ``key`` only if the key's latest revision is ``last_revision``.

    Raises :class:`~polyn.errors.KeyValueConflictError` when someone wrote (or deleted) the key
    since that revision, and ``ValueError`` for a revision below 1 (use :func:`create_key`).
    """
    if type(last_revision) is not int or last_revision < 1:
        raise ValueError(f"last_revision must be a revision (an int >= 1), not {last_revision!r}")
    try:
        revision: int = await kv.update(key, value, last=last_revision)
    except nats.js.errors.InvalidKeyError as exc:
        raise _invalid_key(bucket, key) from exc
    except nats.js.errors.APIError as exc:
        if not _conflict(exc):
            raise
        raise KeyValueConflictError(
            f"key {key!r} of bucket {bucket} changed since revision {last_revision} "
            "(someone else wrote it first); read it again",
            code=400,
            err_code=getattr(exc, "err_code", None) or _WRONG_LAST_SEQUENCE[0],
        ) from None
    return revision


def _conflict(exc: nats.js.errors.APIError) -> bool:
    return isinstance(exc, nats.js.errors.KeyWrongLastSequenceError) or (
        getattr(exc, "err_code", None) in _WRONG_LAST_SEQUENCE
    )


def _invalid_key(bucket: str, key: str) -> NamingError:
    return NamingError(
        f"{key!r} is not a valid key of bucket {bucket}: keys are letters, digits and - / _ = . "
        "and do not start or end with a dot"
    )
