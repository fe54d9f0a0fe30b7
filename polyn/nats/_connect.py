"""The first connection to NATS: tried a bounded number of times, refusals reported at once.

Once connected, a transport reconnects forever by default; but the first connection is tried
only ``connect_attempts`` times (:func:`polyn.nats.options.connect_options`), so a wrong URL or
wrong credentials fail the start with one clear :class:`~polyn.errors.NatsConnectionError`.
Without nats-py's internals the attempts cannot be changed after the first connection (see
:mod:`polyn.nats._wire`): that one is then bounded in time instead.

A refusal (a failed TLS handshake, credentials the server rejects) will not succeed on the next
attempt, and nats-py 2.x never returns from ``connect`` after a failed handshake: it waits
forever for the broken socket to close (nats-io/nats.py#718). So the error callback recognises
refusals during the first connect (:meth:`FirstConnect.on_error`) and the attempt ends at once,
reporting the refusal rather than the connection reset that follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client

from polyn.config import redact_url
from polyn.errors import NatsConnectionError
from polyn.nats import _wire
from polyn.nats.options import connect_options

__all__ = ["FirstConnect"]

Callback = Any  # nats-py callbacks (async functions)


class FirstConnect:
    """The first connection of one transport (created in trio, used on the loop thread)."""

    def __init__(self, servers: Sequence[str], options: Mapping[str, Any], fast: bool) -> None:
        self.servers = list(servers)
        self.options, self.reconnect_attempts = connect_options(options)
        self.limit: float | None = None  # seconds, when bounded in time
        if not (fast and _wire.internals_allowed()):
            count = max(1, len(self.servers))
            per_try = float(self.options["connect_timeout"]) + float(
                self.options["reconnect_time_wait"]
            )
            self.limit = count * (int(self.options["max_reconnect_attempts"]) + 1) * per_try + 1
            self.options["max_reconnect_attempts"] = self.reconnect_attempts
        self.refusal: str | None = None
        self._refused: asyncio.Event | None = None
        self.done = False

    def on_error(self, exc: Exception, text: str) -> None:
        """Called by the connection's error callback (loop thread) with the error's text."""
        if self.done or self.refusal is not None:
            return
        if isinstance(exc, ssl.SSLError):
            self.refusal = f"TLS handshake failed: {text}"
        elif isinstance(exc, nats.errors.AuthorizationError) or (
            "authorization violation" in str(exc).lower()
        ):
            self.refusal = f"the server refused the credentials: {text}"
        if self.refusal is not None and self._refused is not None:
            self._refused.set()

    async def connect(
        self, callbacks: Mapping[str, Callback], last_error: Callable[[], str | None]
    ) -> Client:
        """Connect (loop thread) and return the connected client, or NatsConnectionError.

        ``callbacks`` are nats-py's ``error_cb``, ``disconnected_cb``, ``reconnected_cb`` and
        ``closed_cb``; ``last_error`` reads the last error they recorded.
        """
        self._refused = refused_event = asyncio.Event()
        if self.refusal is not None:
            refused_event.set()
        nc = Client()
        connecting = asyncio.ensure_future(
            nc.connect(servers=self.servers, **callbacks, **self.options)
        )
        refused = asyncio.ensure_future(refused_event.wait())
        gave_up = False
        try:
            await asyncio.wait(
                {connecting, refused}, timeout=self.limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            refused.cancel()
            if not connecting.done():
                gave_up = not refused_event.is_set()
                connecting.cancel()
        try:
            await connecting
        except (TimeoutError, nats.errors.Error, OSError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not (refused_event.is_set() or gave_up):
                raise  # the caller was cancelled
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(nc.close(), 2)
            reason = self.refusal or last_error() or f"{type(exc).__name__} {exc}".strip()
            servers = ", ".join(redact_url(s) for s in self.servers)
            raise NatsConnectionError(f"could not connect to NATS at {servers}: {reason}") from None
        finally:
            self.done = True
        if self.limit is None:
            _wire.set_reconnect_attempts(nc, self.reconnect_attempts)
        return nc
