"""The two places where Polyn goes below nats-py's public API, and why.

Measured on a 2-vCPU machine, every hop through an asyncio task costs 25-30 µs, about as much as
the network round trip to a local server. nats-py's public API adds two such hops on the way out
(its ``publish`` wakes a flusher task that writes) and one on the way in (a task per subscription
feeds its callback). The transport already pays thread crossings that raw nats-py does not, so it
takes back those hops:

- **Writing**: when nothing of nats-py's own is waiting to be flushed (its ``_pending`` buffer is
  empty) and the socket's write buffer is small, a batch of publishes is encoded here and written
  to the socket at once. Otherwise it goes through ``Client.publish``, which queues behind what
  is pending, so the order of everything written is always the order it was queued in.
- **Reading**: a subscription's pending queue is replaced by an object whose ``put_nowait``
  hands the message straight to Polyn (nats-py's read loop calls it), instead of a queue read by
  a task of its own.

Both depend on private attributes of nats-py (``Client._pending``, ``Client._transport``,
``Subscription._pending_queue``); :func:`supported` checks they exist and behave as expected, and
the transport falls back to the public API when they do not (``fast=False``), so a nats-py
release that changes them costs speed, not correctness. Both paths are tested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.aio.subscription import Subscription as NatsSubscription

__all__ = ["DirectQueue", "encode_publish", "socket_backlog", "supported", "writable_now"]

_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0\r\n"
# Beyond this many bytes waiting in the socket's buffer, writes go through nats-py, whose flusher
# waits for the buffer to drain: that is the backpressure against a slow network.
_SOCKET_BACKLOG_LIMIT = 1 << 20


def supported(nc: Client) -> bool:
    """Whether this nats-py client has the internals the fast paths use."""
    probe = NatsSubscription.__init__.__code__.co_names
    return (
        isinstance(getattr(nc, "_pending", None), list)
        and hasattr(nc, "_pending_data_size")
        and hasattr(nc, "_transport")
        and "_pending_queue" in probe
        and socket_backlog(nc) is not None
    )


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


def encode_publish(
    subject: str, reply: str, data: bytes, headers: Mapping[str, str] | None
) -> bytes:
    """The PUB or HPUB protocol line and body, as nats-py itself would write them."""
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
