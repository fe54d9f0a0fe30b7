"""Pull consumers on the real transport: ``fetch`` of a durable consumer's messages.

Each durable consumer gets one pull inbox (a wildcard subscription) and its fetches run one at a
time; a pull request is a publish on ``$JS.API.CONSUMER.MSG.NEXT`` queued into the transport's
outbox like any other, and the delivered messages are collected on the loop thread and handed to
the waiting trio task in one wake-up when the batch is full or the request ends.

:class:`PullClient` is a mixin of :class:`~polyn.nats.NatsTransport`; it uses the transport's
outbox, bridge and subscription helper, declared below for the type checker.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import outcome
import trio
from nats.aio.msg import Msg as NatsMsg

from polyn.errors import ConsumerError
from polyn.nats._bridge import LoopThread, Outbox, Waiter
from polyn.nats._errors import translate
from polyn.nats.message import Message

if TYPE_CHECKING:
    from polyn.nats.nats_transport import ConnectionState

__all__ = ["FETCH_GRACE", "Fetch", "PullClient", "Puller"]

# How much longer than a pull request's own expiry we wait for the server's answer before
# assuming the request was lost (for example in a reconnect).
FETCH_GRACE = 2.0
class Fetch:
    """One pull request in flight: its reply subject and the messages delivered for it."""

    __slots__ = ("batch", "error", "messages", "reply", "waiter")

    def __init__(self, batch: int, reply: str) -> None:
        self.batch = batch
        self.reply = reply
        self.waiter: Waiter[None] = Waiter()
        self.messages: list[Message] = []
        self.error: BaseException | None = None


class Puller:
    """The pull inbox of one durable consumer; its fetches run one at a time.

    Pulled messages arrive with their original subject, so they cannot be told apart by reply
    token: they belong to the fetch in flight. Messages arriving when none is in flight (late
    deliveries for a request that was cancelled) are stashed and returned by the next fetch, so
    they are not left waiting for ``ack_wait``. Status messages (no messages, expired, errors)
    do carry the request's reply subject and end only their own request.
    """

    def __init__(self, inbox: str) -> None:
        self.inbox = inbox
        self.lock = trio.Lock()  # trio side: one fetch at a time
        self.mutex = threading.Lock()  # guards current and stash across the two threads
        self.current: Fetch | None = None
        self.stash: collections.deque[Message] = collections.deque()
        self.subscription: Any = None


class PullClient:
    """``fetch`` for :class:`~polyn.nats.NatsTransport` (a mixin: see the module doc)."""

    _bridge: LoopThread
    _outbox: Outbox
    _pullers: dict[tuple[str, str], Puller]
    _reply_prefix: str
    state: ConnectionState

    if TYPE_CHECKING:

        @property
        def closed(self) -> bool: ...

        def _check_open(self) -> None: ...

        def _new_token(self) -> str: ...

        def enqueue_ack(self, subject: str, body: bytes) -> None: ...

        def _convert(self, msg: NatsMsg) -> Message: ...

        async def _nats_subscribe(
            self, subject: str, queue: str | None, deliver: Callable[[NatsMsg], None]
        ) -> Any: ...

    async def fetch(
        self,
        stream: str,
        consumer: str,
        batch: int,
        *,
        expires: float | None = None,
        no_wait: bool = False,
    ) -> list[Message]:
        """Pull up to ``batch`` messages (see :meth:`polyn.nats.Transport.fetch`).

        Without ``no_wait`` the request expires after ``expires`` seconds (5 when not given), so
        no pull request outlives its caller for long. If the calling task is cancelled, the
        messages already delivered for the request are naked at once, to be redelivered without
        waiting for ``ack_wait``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if not self.state.connected:
            # During an outage the request would wait in the paused outbox and reach the
            # server only after it, long after this fetch gave up; every such stale request
            # then delivers a batch that no fetch waits for, beyond the caller's in-flight
            # bound. So wait for the connection instead, and send nothing.
            with trio.move_on_after(1.0 if no_wait or expires is None else expires):
                while not self.state.connected and not self.closed:  # noqa: ASYNC110 (loop thread)
                    await trio.sleep(0.05)
            return []
        puller = self._pullers.get((stream, consumer))
        if puller is None:
            puller = await self._new_puller(stream, consumer)
        request: dict[str, Any] = {"batch": batch}
        if no_wait:
            request["no_wait"] = True
        else:
            expires = 5.0 if expires is None else expires
            request["expires"] = int(expires * 1_000_000_000)
        async with puller.lock:
            with puller.mutex:
                if puller.stash:
                    stash = puller.stash
                    return [stash.popleft() for _ in range(min(batch, len(stash)))]
                fetch = Fetch(batch, f"{puller.inbox}.{self._new_token()}")
                puller.current = fetch
            finished = False
            try:
                self._outbox.put(
                    (
                        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                        json.dumps(request).encode(),
                        fetch.reply,
                        None,
                    )
                )
                with trio.move_on_after((expires or 0.0) + FETCH_GRACE):
                    await fetch.waiter.wait()
                finished = True
            finally:
                with puller.mutex:
                    if puller.current is fetch:
                        puller.current = None
                    messages = fetch.messages
                if not finished and not self.closed:
                    # Cancelled: hand back what was delivered so it need not wait for ack_wait.
                    for message in messages:
                        if message.reply_to:
                            self.enqueue_ack(message.reply_to, b"-NAK")
        if fetch.error is not None and not messages:
            raise fetch.error
        return messages

    async def _new_puller(self, stream: str, consumer: str) -> Puller:
        puller = Puller(f"{self._reply_prefix}pull{self._new_token()}")

        async def subscribe() -> None:
            puller.subscription = await self._nats_subscribe(
                puller.inbox + ".*", None, lambda msg: self._on_pulled(puller, msg)
            )

        await self._bridge.run(subscribe, translate)
        # Another task may have created one meanwhile: keep the first.
        return self._pullers.setdefault((stream, consumer), puller)

    def _on_pulled(self, puller: Puller, msg: NatsMsg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        with puller.mutex:
            current = puller.current
            if status is None:
                message = self._convert(msg)
                if current is None:
                    puller.stash.append(message)
                    return
                current.messages.append(message)
                if len(current.messages) < current.batch:
                    return
            elif current is None or msg.subject != current.reply or status == "100":
                return  # the end of an earlier request, or an idle heartbeat
            elif status not in ("404", "408"):
                description = (msg.headers or {}).get("Description", "")
                if status == "503":
                    current.error = ConsumerError(
                        "the consumer does not exist (no responders)", code=503
                    )
                else:
                    current.error = ConsumerError(
                        f"pull request ended: {status} {description}".strip(), code=int(status)
                    )
            puller.current = None
        self._bridge.resolve(current.waiter, outcome.Value(None))
