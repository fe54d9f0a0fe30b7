"""The ``NatsConnection`` actor and :func:`transport_for`, how layer 4 reaches a transport.

The actor owns a :class:`~polyn.nats.NatsTransport`'s lifecycle, not its traffic: publishers
and consumers call the transport object directly (no mailbox hop per message), found with
``transport_for("nats")``. The sandbox (``polyn.testing``) plugs in through one hook,
:func:`set_transport_override`, consulted first.

One resolution point for all three parts of the seam: ``transport_for`` returns a whole
:class:`~polyn.nats.Transport` (messaging, JetStream administration, key-value), and each caller
uses the part it needs (annotate with :class:`~polyn.nats.Messaging`,
:class:`~polyn.nats.JetStreamAdmin` or :class:`~polyn.nats.KeyValue` to say which). The real
transport is the three in one object; the sandbox's hook returns a
:class:`~polyn.nats.CombinedTransport` of its in-memory messaging, its snapshot of the server's
definitions and the real server's buckets, so the parts can differ without a second lookup.

Example::

    app = polyn.App(config, children=[NatsConnection(), ...])

    # anywhere inside the tree:
    transport = transport_for("nats")
    await transport.publish("greeting.v1", b"{}")
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import trio

from polyn.actors import Actor, ActorRef, Key, Tree, current_tree
from polyn.config import redact_url
from polyn.errors import ActorError, NatsConnectionError
from polyn.nats.nats_transport import ConnectionState, NatsTransport
from polyn.nats.options import SECRET_OPTIONS, build_tls_context
from polyn.nats.transport import Transport

__all__ = [
    "TRANSPORT",
    "NatsConnection",
    "TransportOverride",
    "set_transport_override",
    "transport_for",
]

log = logging.getLogger("polyn.nats")

_ACTOR_OPTIONS = ("restart", "shutdown", "mailbox_size")


class _HasWhereis(Protocol):
    def whereis(self, name: str) -> ActorRef | None: ...


TransportOverride = Callable[[object], "Transport | None"]
"""Given the ``conn`` passed to :func:`transport_for`, return a transport or None (no override)."""

_override: trio.lowlevel.RunVar[TransportOverride | None] = trio.lowlevel.RunVar(
    "polyn_transport_override", default=None
)


def set_transport_override(hook: TransportOverride | None) -> None:
    """Install (or with None remove) the hook :func:`transport_for` consults first.

    It is per trio run (a ``RunVar``), so two runs never see each other's hook. The sandbox
    installs one that returns the calling test's ``SandboxTransport``; production code never
    calls this.
    """
    _override.set(hook)


TRANSPORT: Final = Key[Transport]("transport")
"""What a running :class:`NatsConnection` provides to its tree: its connected transport."""


def transport_for(conn: str | ActorRef | _HasWhereis | Transport = "nats") -> Transport:
    """The transport behind ``conn``: a connection name in the calling task's tree (default
    ``"nats"``), a ref to a :class:`NatsConnection`, a running tree's handle (its ``"nats"``),
    or a transport itself.

    Raises :class:`~polyn.errors.ActorError` when no connection runs under that name and
    :class:`~polyn.errors.NatsConnectionError` when it has not connected or has closed.
    """
    try:
        hook = _override.get()
    except RuntimeError:  # outside a trio run
        hook = None
    if hook is not None:
        found = hook(conn)
        if found is not None:
            return found
    # The running connection provides its transport (Actor.provide): two dict lookups, no
    # mailbox hop and no reach into the actor, on every publish.
    if isinstance(conn, ActorRef):
        transport = conn.lookup(TRANSPORT)
        if transport is not None:
            return transport
        ref = conn
    elif isinstance(tree := getattr(conn, "tree", None), Tree):  # a running App's handle
        transport = tree.lookup("nats", TRANSPORT)
        if transport is not None:
            return transport
        ref = tree.ref("nats")
    elif isinstance(conn, str):
        current = current_tree()
        if current is None:
            raise ActorError(
                f"transport_for({conn!r}) was called outside a running tree; pass the ref or "
                "the handle returned by app.run() instead"
            )
        transport = current.lookup(conn, TRANSPORT)
        if transport is not None:
            return transport
        ref = current.ref(conn)
    elif hasattr(conn, "whereis"):
        found_ref = conn.whereis("nats")
        if found_ref is None:
            raise ActorError("no connection named 'nats' runs in this tree")
        ref = found_ref
        transport = ref.lookup(TRANSPORT)
        if transport is not None:
            return transport
    else:
        return conn  # already a transport
    raise NatsConnectionError(f"{ref!r} is not a connected NatsConnection")


def _hidden(key: str, value: object) -> str:
    if key in SECRET_OPTIONS and value is not None:
        return "'***'"
    if isinstance(value, str):
        return repr(redact_url(value))
    if isinstance(value, list | tuple):
        return repr(type(value)(redact_url(v) if isinstance(v, str) else v for v in value))
    return repr(value)


class NatsConnection(Actor):
    """The actor that owns the connection to NATS (the seed's ``Gnat.ConnectionSupervisor``).

    ``servers`` default to the tree's config (``config.servers``), as do credentials, nkeys,
    user / password, token and TLS files; every other keyword (``reconnect_time_wait``,
    ``max_reconnect_attempts``, ``connect_timeout``, ``connect_attempts``, ``fast`` ...) goes
    to :meth:`NatsTransport.connect`, and through it to nats-py. Actor options (``restart``,
    ``shutdown``, ``mailbox_size``) are taken out first.

    While running, the connection reconnects by itself and :attr:`state` shows the outages. A
    connection closed for good (reconnect attempts exhausted, or closed by the server) crashes
    the actor with :class:`~polyn.errors.NatsConnectionError`, so its supervisor restarts it
    and, under the App's ``rest_for_one``, everything started after it. The connection is
    flushed and closed in a shielded ``finally`` when the actor stops; its thread ends with it.

    Calls: ``"state"`` returns a copy of the :class:`ConnectionState`; ``"health"`` returns
    whether it is connected now.
    """

    def __init__(
        self, name: str = "nats", servers: str | list[str] | None = None, **options: Any
    ) -> None:
        actor_options = {key: options.pop(key) for key in _ACTOR_OPTIONS if key in options}
        super().__init__(name=name, **actor_options)
        self.servers = [servers] if isinstance(servers, str) else servers
        self.options = options
        self.transport: NatsTransport | None = None
        self._stopping = False

    def connect_options(self, context: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """The servers and nats-py options for this connection, from the config and overrides."""
        config = context.get("config")
        options: dict[str, Any] = {}
        servers = self.servers
        if config is not None:
            if servers is None:
                servers = list(config.servers)
            if config.credentials:
                options["user_credentials"] = config.credentials
            if config.nkeys_seed:
                options["nkeys_seed"] = config.nkeys_seed
            if config.user:
                options["user"] = config.user
            if config.password:
                options["password"] = config.password
            if config.token:
                options["token"] = config.token
            tls = build_tls_context(config.tls_ca_file, config.tls_cert_file, config.tls_key_file)
            if tls is not None:
                options["tls"] = tls
        options.update(self.options)
        return servers or ["nats://127.0.0.1:4222"], options

    def __repr__(self) -> str:
        # The spec's arguments may carry secrets (``password=``, ``token=``, ``nkeys_seed=``, a
        # password in a server URL): shown hidden, as Config shows them.
        args, kwargs = self._polyn_spec
        shown = [_hidden("servers", arg) for arg in args]
        shown += [f"{key}={_hidden(key, value)}" for key, value in kwargs.items()]
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def state(self) -> ConnectionState:
        """The live connection state (connected, url, disconnects, reconnects, last error)."""
        if self.transport is None:
            return ConnectionState()
        return self.transport.state

    async def init(self) -> None:
        servers, options = self.connect_options(self.context)
        self.transport = await NatsTransport.connect(servers, **options)
        self.provide(TRANSPORT, self.transport)
        # Debug only: an App's "up" line names the server, a restart is the supervisor's line.
        log.debug("connected to NATS at %s", self.transport.state.url)
        self.nursery.start_soon(self._own, self.transport)

    async def _own(self, transport: NatsTransport) -> None:
        # A helper task's finally runs however the actor ends (even cancelled without
        # terminate), so the loop thread never outlives the actor.
        try:
            reason = await transport.wait_closed()
            if not self._stopping:
                raise NatsConnectionError(reason)
        finally:
            with trio.CancelScope(shield=True):
                await transport.close()

    async def handle_call(self, request: Any) -> Any:
        if request == "state":
            return copy.copy(self.state)
        if request == "health":
            return self.state.connected
        return await super().handle_call(request)

    async def terminate(self, reason: object) -> None:
        self._stopping = True
        transport, self.transport = self.transport, None
        if transport is not None:
            with trio.CancelScope(shield=True):
                await transport.close()
