"""The migration lock: one migration run per service at a time, even across machines.

Two replicas deploying at once both run ``polyn migrate``; without a lock both run the same
pending migration, and both rewrite the record (issue 21, finding 12). The lock is a key in the
migrations bucket, taken with a compare-and-set **create** (only one writer can create a missing
key), held as a **lease**: the holder rewrites it (compare-and-set on its revision) every third of
its ``ttl`` while it runs, and deletes it when done.

A holder that is killed (SIGKILL, a lost machine) stops renewing. Another run that finds the key
watches its revision on its *own* clock: once the revision has not changed for the holder's
``ttl`` seconds, the lease has expired and it takes the lock over with a compare-and-set update of
that very revision (so two waiters cannot both take it). No clocks are compared across machines.
``--break-lock`` (``break_lock=True``) takes the lock at once, whoever holds it: for a holder
known to be dead when waiting out its lease is not wanted.

The key is ``_lock.<source_root>`` (``:`` written ``_``): a record key is a ``source_root``,
which never contains ``_`` (sources are lowercase letters, digits, ``.`` and ``:``), so the lock
can never collide with any service's record, and each service has a lock of its own. Elixir
services read only their own record key and never see it. Its value is a JSON object naming the
holder (host, process id, a random token), its ``ttl`` and when it was taken, for the messages of
those who wait.

A holder that finds its lease taken over (its renewal's compare-and-set fails) knows it is no
longer alone: :meth:`Lease.check` raises, so the run stops before its next command and before
recording anything.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from polyn.errors import KeyValueConflictError, MigrationError, PolynError
from polyn.nats.transport import Transport

__all__ = ["DEFAULT_LOCK_TTL", "DEFAULT_LOCK_WAIT", "Lease", "hold_lock", "lock_key"]

log = logging.getLogger("polyn.migration")

DEFAULT_LOCK_TTL = 30.0
DEFAULT_LOCK_WAIT = 600.0
_RELEASED = b""


def lock_key(source_root: str) -> str:
    """The lock's key in the migrations bucket for a service's ``source_root``.

    >>> lock_key("orders.payments")
    '_lock.orders.payments'
    """
    return "_lock." + source_root.replace(":", "_")


class Lease:
    """The lock while this run holds it: :meth:`check` before each change, renewed meanwhile."""

    def __init__(
        self, transport: Transport, bucket: str, key: str, ttl: float, value: bytes, revision: int
    ) -> None:
        self.transport = transport
        self.bucket = bucket
        self.key = key
        self.ttl = ttl
        self._value = value
        self.revision = revision
        self._lost: str | None = None
        self._renewed = trio.current_time()

    @property
    def held(self) -> bool:
        """Whether this run still holds the lock, as far as it knows."""
        return self._lost is None

    async def check(self) -> None:
        """Renew now; raise :class:`~polyn.MigrationError` if the lease was lost meanwhile."""
        await self._renew()
        if self._lost is not None:
            raise MigrationError(self._lost)

    async def _renew(self) -> None:
        if self._lost is not None:
            return
        try:
            self.revision = await self.transport.kv_update(
                self.bucket, self.key, self._value, self.revision
            )
            self._renewed = trio.current_time()
        except KeyValueConflictError:
            holder = await _describe_holder(self.transport, self.bucket, self.key)
            self._lost = (
                f"The migration lock ({self.key} in bucket {self.bucket}) was taken over by "
                f"{holder} while this run held it (its lease had expired, or --break-lock); "
                "stopped so that two runs never migrate at once"
            )
        except PolynError as exc:
            # A passing outage: try again at the next tick. Past the ttl, others may take over.
            if trio.current_time() - self._renewed > self.ttl:
                self._lost = (
                    f"The migration lock ({self.key} in bucket {self.bucket}) could not be "
                    f"renewed for {self.ttl:g} s ({exc}); stopped, as another run may have taken "
                    "it over"
                )
            else:
                log.warning("could not renew the migration lock %s: %s", self.key, exc)

    async def _keep(self) -> None:
        while self._lost is None:
            await trio.sleep(self.ttl / 3)
            await self._renew()

    async def _release(self) -> None:
        # Mark it released (proving it is still ours), then delete it. A waiter that sees the
        # released mark waits for the delete; a crash in between leaves a mark that expires.
        if self._lost is not None:
            return
        try:
            await self.transport.kv_update(self.bucket, self.key, _RELEASED, self.revision)
            await self.transport.kv_delete(self.bucket, self.key)
        except PolynError as exc:
            log.warning(
                "could not release the migration lock %s: %s (it expires after %g s)",
                self.key,
                exc,
                self.ttl,
            )


@asynccontextmanager
async def hold_lock(
    transport: Transport,
    bucket: str,
    source_root: str,
    *,
    ttl: float = DEFAULT_LOCK_TTL,
    wait: float = DEFAULT_LOCK_WAIT,
    break_lock: bool = False,
    say: Callable[[str], None] = log.info,
) -> AsyncIterator[Lease]:
    """Take the service's migration lock (waiting up to ``wait`` seconds for another holder),
    keep it renewed while the block runs, and release it afterwards.

    Raises :class:`~polyn.MigrationError` naming the holder when ``wait`` runs out.
    """
    if not ttl > 0:
        raise ValueError(f"the lock's ttl must be > 0 seconds, not {ttl!r}")
    key = lock_key(source_root)
    lease = await _acquire(transport, bucket, key, ttl, wait, break_lock, say)
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lease._keep)
            try:
                yield lease
            except BaseException as exc:  # raised as it is below, not in the nursery's group
                error = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await lease._release()
    if error is not None:
        raise error


async def _acquire(
    transport: Transport,
    bucket: str,
    key: str,
    ttl: float,
    wait: float,
    break_lock: bool,
    say: Callable[[str], None],
) -> Lease:
    value = json.dumps(
        {
            "holder": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            "ttl": ttl,
            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        separators=(",", ":"),
    ).encode()
    deadline = trio.current_time() + wait
    seen: tuple[int, float] | None = None  # (revision, when this run first saw it)
    told = False
    while True:
        entry = await transport.kv_get(bucket, key)
        try:
            if entry is None:
                revision = await transport.kv_create_key(bucket, key, value)
                return Lease(transport, bucket, key, ttl, value, revision)
            holder, holder_ttl = _holder(entry.value)
            now = trio.current_time()
            if seen is None or seen[0] != entry.revision:
                seen = (entry.revision, now)
            expired = now - seen[1] >= holder_ttl
            if break_lock or expired:
                revision = await transport.kv_update(bucket, key, value, entry.revision)
                how = "broke (--break-lock)" if break_lock else "took over the expired"
                say(f"Migration lock: {how} lock of {holder}")
                log.warning("migration lock %s: %s lock of %s", key, how, holder)
                return Lease(transport, bucket, key, ttl, value, revision)
        except KeyValueConflictError:
            continue  # someone else wrote it first: look again
        if now >= deadline:
            raise MigrationError(
                f"The migration lock ({key} in bucket {bucket}) is held by {holder}; waited "
                f"{wait:g} s. If that run is dead, its lease expires {holder_ttl:g} s after its "
                "last renewal; `polyn migrate --break-lock` takes the lock at once"
            )
        if not told and entry.value:
            say(f"Waiting for the migration lock, held by {holder}")
            told = True
        await trio.sleep(min(0.25, holder_ttl / 4, max(0.0, deadline - now)))


def _holder(value: bytes | None) -> tuple[str, float]:
    """Who holds the lock and the ttl of their lease, from the key's value."""
    if not value:  # released, about to be deleted (or its holder died in between)
        return "a run that is releasing it", DEFAULT_LOCK_TTL
    try:
        raw = json.loads(value)
        holder = str(raw["holder"])
        ttl = float(raw["ttl"])
    except (ValueError, KeyError, TypeError):
        return f"an unknown holder ({value[:80]!r})", DEFAULT_LOCK_TTL
    return holder, ttl if ttl > 0 else DEFAULT_LOCK_TTL


async def _describe_holder(transport: Transport, bucket: str, key: str) -> str:
    try:
        entry = await transport.kv_get(bucket, key)
    except PolynError:
        return "another run"
    return "nobody (it was deleted)" if entry is None else _holder(entry.value)[0]
