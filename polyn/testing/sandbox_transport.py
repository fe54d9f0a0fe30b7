"""``SandboxTransport``: the transport a sandboxed test's code gets from ``transport_for``.

It is a :class:`~polyn.nats.CombinedTransport` of the sandbox's three parts, each the one the
Polyn protocol and virtual time call for:

- **messaging**: :class:`~polyn.testing.MockNats`, in memory and private to the test;
- **administration**: :class:`~polyn.testing.snapshot.SnapshotAdmin`, the real server's stream
  and consumer definitions read once (at start, and on :meth:`SandboxTransport.refresh`), so no
  lookup crosses into the real server while virtual time runs;
- **key-value**: the real server's buckets (:mod:`polyn.testing._kv`: virtual time paused while
  a call runs, schema-bucket reads from the session's snapshot).

Build one yourself to run code against the sandbox without the registry (the parity suite does
this); ``Sandbox.start`` and the ``polyn_sandbox`` fixture build one per test.

Example::

    transport = SandboxTransport(real)          # real: a connected NatsTransport
    await transport.refresh()                   # snapshot the server's definitions
    await transport.js_publish("orders.placed", b"{}")
    assert transport.crossings == 1             # the snapshot; the publish stayed in memory
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyn.nats.transport import CombinedTransport, Transport
from polyn.testing._kv import SandboxKeyValue
from polyn.testing._real import RealServer
from polyn.testing.mock_nats import MockNats
from polyn.testing.snapshot import SnapshotAdmin

__all__ = ["SandboxTransport"]


class SandboxTransport(CombinedTransport):
    """A test's transport: in-memory messaging, snapshot administration, real key-value.

    Args:
        real: the real transport whose server defines the streams, consumers and buckets;
            ``None`` for definitions kept in memory only (key-value is then refused).
        schemas: the schema bucket's contents as plain data, answered from memory
            (the ``polyn_schemas`` fixture); ``None`` reads the real bucket.
        schema_bucket: the name of that bucket (the config's ``schema_store``).
        mock: the :class:`MockNats` to use (default: a new one).

    Nothing is read from the server until :meth:`refresh`.
    """

    messaging: MockNats
    admin: SnapshotAdmin
    kv: SandboxKeyValue

    def __init__(
        self,
        real: Transport | None = None,
        *,
        schemas: Mapping[str, Any] | None = None,
        schema_bucket: str = "POLYN_SCHEMAS",
        mock: MockNats | None = None,
    ) -> None:
        if mock is None:
            # The mock refuses what the server would: the same max_payload.
            mock = MockNats() if real is None else MockNats(max_payload=real.max_payload)
        self.real = real
        self._server: RealServer[Transport] = RealServer(real)
        super().__init__(
            mock,
            SnapshotAdmin(mock.jetstream, self._server),
            SandboxKeyValue(self._server, schemas=schemas, schema_bucket=schema_bucket),
        )

    @property
    def mock(self) -> MockNats:
        """The in-memory messaging (its ``messages`` record every publish)."""
        return self.messaging

    @property
    def connected_url(self) -> str | None:
        """The real server's URL (what spans and logs name), ``None`` once closed."""
        if self.messaging.closed:
            return None
        return self.real.connected_url if self.real is not None else self.messaging.connected_url

    @property
    def crossings(self) -> int:
        """How many calls went to the real server (a test on virtual time can assert none)."""
        return self._server.crossings

    async def refresh(self) -> None:
        """(Re-)read the server's streams and consumers into the snapshot."""
        await self.admin.snapshot()

    async def aclose(self) -> None:
        """Close the mock (its subscriptions end) and refuse further calls.

        The real transport is left open: whoever created it closes it.
        """
        self._server.closed = True
        await self.messaging.aclose()
