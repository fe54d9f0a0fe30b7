"""Every use of nats-py below its public API, in this one module, and why.

Measured on a 2-vCPU machine, every hop through an asyncio task costs 25-30 µs, about as much as
the network round trip to a local server. nats-py's public API adds two such hops on the way out
(its ``publish`` wakes a flusher task that writes) and one on the way in (a task per subscription
feeds its callback). The transport already pays thread crossings that raw nats-py does not, so it
takes back those hops:

- **Writing** (:func:`encode_publish`, :func:`writable_now`, :func:`write_frames`): when nothing
  of nats-py's own is waiting to be flushed (``Client._pending`` is empty) and the socket's write
  buffer is small, a batch of publishes is written to the socket (``Client._transport``) at once,
  and nats-py's ``stats`` are kept true. Otherwise it goes through ``Client.publish``, which queues
  behind what is pending, so the order of everything written is always the order it was queued
  in. The PUB / HPUB frame is assembled by the caller, on the trio side.
- **Reading** (:func:`direct_subscribe`): a subscription's pending queue
  (``Subscription._pending_queue``) is replaced by an object whose ``put_nowait`` hands the
  message straight to Polyn (nats-py's read loop calls it), instead of a queue read by a task of
  its own.
- **Reconnecting** (:func:`set_reconnect_attempts`): the first connection is tried a few times
  only, then the client reconnects forever; nats-py reads ``Client.options`` on every reconnect,
  and that dict is changed after the first connect.

Gate: these are used only with a nats-py version in :data:`TESTED` (the range the suite ran on
with them), and never when the environment variable :data:`PUBLIC_API_ENV`
(``POLYN_NATS_PUBLIC_API=1``) is set. Outside the range, or forced, the transport uses nats-py's
public API only (``fast=False``): a subscription callback, ``Client.publish``, and a first
connection bounded in time instead of in attempts. A nats-py release that changes the internals
then costs speed, not correctness; the suite runs both ways (CI runs the transport, core and
consumer tests again with ``POLYN_NATS_PUBLIC_API=1``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg

__all__ = [
    "PUBLIC_API_ENV",
    "TESTED",
    "DirectQueue",
    "direct_subscribe",
    "encode_publish",
    "internals_allowed",
    "nats_py_version",
    "set_reconnect_attempts",
    "supported",
    "writable_now",
    "write_frames",
]

TESTED: tuple[tuple[int, int], tuple[int, int]] = ((2, 16), (2, 17))
"""nats-py versions whose internals the fast paths were tested with: ``[low, high)``."""

PUBLIC_API_ENV = "POLYN_NATS_PUBLIC_API"
"""Set to ``1`` to force nats-py's public API (the fallback) whatever the version."""

_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0\r\n"
# Beyond this many bytes waiting in the socket's buffer, writes go through nats-py, whose flusher
# waits for the buffer to drain: that is the backpressure against a slow network.
_SOCKET_BACKLOG_LIMIT = 1 << 20


@functools.cache
def nats_py_version() -> tuple[int, ...]:
    """The installed nats-py's version as numbers (``(2, 16, 0)``); ``()`` when unknown."""
    try:
        text = importlib.metadata.version("nats-py")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed oddly
        return ()
    numbers: list[int] = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits or digits != part:
            if digits:
                numbers.append(int(digits))
            break
        numbers.append(int(digits))
    return tuple(numbers)


def internals_allowed() -> bool:
    """Whether this process may use nats-py's internals (version in range, not forced off)."""
    if os.environ.get(PUBLIC_API_ENV, "").strip() not in ("", "0"):
        return False
    low, high = TESTED
    return low <= nats_py_version()[:2] < high


def supported(nc: Client) -> bool:
    """Whether the fast paths may be used with this connected client."""
    return (
        internals_allowed()
        and isinstance(getattr(nc, "_pending", None), list)
        and isinstance(getattr(nc, "stats", None), dict)
        and socket_backlog(nc) is not None
    )


def set_reconnect_attempts(nc: Client, attempts: int) -> bool:
    """Let a connected client reconnect ``attempts`` times (-1: forever); False if it cannot."""
    options = getattr(nc, "options", None)
    if not internals_allowed() or not isinstance(options, dict):
        return False
    options["max_reconnect_attempts"] = attempts
    return True


def socket_backlog(nc: Client) -> int | None:
    """Bytes waiting in the socket's write buffer, or ``None`` if that cannot be known."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport = getattr(writer, "transport", None)
    size = getattr(transport, "get_write_buffer_size", None)
    if size is None:
        return None
    value = size()
    return value if isinstance(value, int) else None


def writable_now(nc: Client) -> bool:
    """True when a direct write keeps the order of everything queued and the socket has room."""
    if nc._pending or not nc.is_connected:
        return False
    backlog = socket_backlog(nc)
    return backlog is not None and backlog < _SOCKET_BACKLOG_LIMIT


def write_frames(nc: Client, frames: list[bytes], messages: int, payload_bytes: int) -> None:
    """Write encoded frames to the socket at once, counting them in nats-py's ``stats``."""
    transport = nc._transport
    assert transport is not None
    transport.writelines(frames)
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += payload_bytes


def encode_publish(
    subject: str, reply: str, data: bytes, headers: Mapping[str, str] | None
) -> bytes:
    """The PUB or HPUB protocol line and body, as nats-py itself would write them.

    Headers must have been checked (:func:`polyn.nats.limits.check_headers`): nothing here
    escapes them.
    """
    if not headers:
        return b"".join((f"PUB {subject} {reply} {len(data)}\r\n".encode(), data, _CRLF))
    header = bytearray(_HEADER_LINE)
    for key, value in headers.items():
        header += f"{key}: {value}\r\n".encode()
    header += _CRLF
    return b"".join(
        (
            f"HPUB {subject} {reply} {len(header)} {len(header) + len(data)}\r\n".encode(),
            header,
            data,
            _CRLF,
        )
    )


async def direct_subscribe(
    nc: Client,
    subject: str,
    queue: str | None,
    deliver: Callable[[NatsMsg], None],
    *,
    direct: bool,
) -> Any:
    """Subscribe, handing each message to ``deliver`` on the loop thread.

    With ``direct`` (and the internals allowed), the subscription's pending queue is swapped for
    a :class:`DirectQueue` that nats-py's read loop calls; otherwise (or if the subscription has
    no such queue) a callback subscription with a large pending limit delivers through
    nats-py's own task.
    """
    if direct and internals_allowed():
        sub = await nc.subscribe(subject, queue=queue or "")
        earlier = getattr(sub, "_pending_queue", None)
        if earlier is not None and hasattr(earlier, "get_nowait"):
            sub._pending_queue = DirectQueue(sub, deliver)  # type: ignore[assignment]
            while not earlier.empty():  # delivered before the swap (rare): keep their order
                deliver(earlier.get_nowait())
            return sub
        await sub.unsubscribe()  # pragma: no cover - internals changed within the range
    return await nc.subscribe(
        subject, queue=queue or "", cb=_callback(deliver), pending_msgs_limit=1_000_000
    )


def _callback(deliver: Callable[[NatsMsg], None]) -> Callable[[NatsMsg], Awaitable[None]]:
    async def callback(msg: NatsMsg) -> None:
        deliver(msg)

    return callback


class DirectQueue:
    """Stands in for a nats-py subscription's pending queue and delivers at once.

    nats-py's read loop adds each message's size to the subscription's pending size and calls
    ``put_nowait``; nothing ever takes it out again, so the size is given back here.
    """

    __slots__ = ("_deliver", "_subscription")

    def __init__(self, subscription: Any, deliver: Callable[[NatsMsg], None]) -> None:
        self._subscription = subscription
        self._deliver = deliver

    def put_nowait(self, msg: NatsMsg) -> None:
        self._subscription._pending_size -= len(msg.data)
        self._deliver(msg)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:  # pragma: no cover - nobody reads from this queue
        pass
