"""nats-py's and asyncio's exceptions translated into Polyn's (:mod:`polyn.errors`).

Nothing from nats-py or asyncio leaves :mod:`polyn.nats`: every call that runs on the loop thread
passes its exception through :func:`translate` before trio sees it.
"""

from __future__ import annotations

import asyncio
import re

import nats.errors
import nats.js.errors
import trio

from polyn.errors import (
    BucketNotFoundError,
    JetStreamError,
    NatsConnectionError,
    NoRespondersError,
    PolynError,
    RequestTimeout,
    StreamError,
)

__all__ = ["PERMISSION_RE", "translate"]

# nats-server says "Permissions Violation for Publish to ..."; nats-py 2.x lowercases it.
PERMISSION_RE = re.compile(
    r"Permissions Violation for (Publish|Subscription) to \"?([^\"\s]+)", re.IGNORECASE
)

def translate(exc: BaseException) -> BaseException:
    """Turn a nats-py or asyncio exception into a Polyn error (others pass through)."""
    if isinstance(exc, PolynError | trio.Cancelled):
        return exc
    if isinstance(exc, nats.js.errors.BucketNotFoundError):
        err: PolynError = BucketNotFoundError(f"key-value bucket not found: {exc}")
    elif isinstance(exc, nats.js.errors.NotFoundError):
        err = StreamError(
            str(exc) or "not found", code=404, err_code=getattr(exc, "err_code", None)
        )
    elif isinstance(exc, nats.js.errors.APIError):
        err = JetStreamError(
            exc.description or str(exc), code=exc.code, err_code=getattr(exc, "err_code", None)
        )
    elif isinstance(exc, nats.errors.NoRespondersError):
        err = NoRespondersError("no responders")
    elif isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError | TimeoutError):
        err = RequestTimeout(f"NATS operation timed out: {type(exc).__name__}")
    elif isinstance(exc, nats.errors.AuthorizationError):
        err = NatsConnectionError(f"the NATS server refused the credentials: {exc}")
    elif isinstance(exc, nats.errors.Error | OSError | asyncio.CancelledError):
        err = NatsConnectionError(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
    else:
        return exc
    err.__cause__ = exc if not isinstance(exc, asyncio.CancelledError) else None
    return err
