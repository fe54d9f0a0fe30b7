"""How layer-4 calls find their tree, config, transport and schema snapshot from ``conn``.

``polyn.pub(conn, ...)`` and the consumers accept a connection in several shapes; this module
turns each into one :class:`Resolved` value (the shapes are decoded in one place,
:func:`polyn.nats.locate`, and the config read in one place, :func:`polyn.config.config_for`):

- a **connection name** (``"nats"``): looked up in the calling task's tree, so it works inside
  actors and the tasks they start;
- an :class:`~polyn.actors.ActorRef` (to the connection, or any actor of the tree): its tree;
- the **running handle** of ``async with app.run() as running`` or a :class:`~polyn.actors.Tree`:
  that tree's ``"nats"`` connection, so scripts and test bodies can publish from outside.

The transport always comes from :func:`polyn.nats.transport_for`, given the caller's ``conn``
itself, so the sandbox's override hook sees every call. The schema snapshot is the value the
running :class:`~polyn.schema_store.SchemaStore` provides under :data:`SCHEMAS` (no mailbox
hop): an immutable :class:`~polyn.codec.Schemas` that the store replaces as a whole on every
change.
"""

from __future__ import annotations

from typing import Final

import attrs

from polyn import codec
from polyn.actors import Key, Tree
from polyn.config import Config, config_for
from polyn.errors import SchemaStoreError
from polyn.nats import Conn, Transport, locate, transport_for

__all__ = ["SCHEMAS", "Conn", "Resolved", "config_of", "resolve", "schemas_for"]

SCHEMAS: Final = Key("schemas", codec.Schemas)
"""What a running :class:`~polyn.schema_store.SchemaStore` provides to its tree: its current
snapshot, replaced as a whole on every change (read without a mailbox hop by every publish)."""

@attrs.frozen
class Resolved:
    """What a publish or a consumer needs: the tree's config, the tree, and the transport."""

    config: Config
    tree: Tree
    transport: Transport


def config_of(tree: Tree) -> Config:
    """The tree's config (:func:`polyn.config.config_for`: its context's, else loaded once)."""
    return config_for(tree)


def resolve(conn: Conn = "nats") -> Resolved:
    """The config, tree and transport behind ``conn`` (see the module doc for its shapes).

    Raises :class:`~polyn.errors.ActorError` when the connection is not running,
    :class:`~polyn.errors.NatsConnectionError` when it is not connected and
    :class:`~polyn.errors.ConfigError` when the tree has no config and ``Config.load()`` fails.

    ``Resolved`` is a per-call record, not a handle: a consumer resolves again when its
    connection restarts (the transport changes; the tree and config do not).

    Example::

        resolved = resolve(running)
        await resolved.transport.flush()
    """
    tree, _ = locate(conn)
    return Resolved(config_for(tree), tree, transport_for(conn))


def schemas_for(resolved: Resolved, store: str | None = None) -> codec.Schemas:
    """The current snapshot of the SchemaStore registered as ``store`` in the resolved tree.

    ``store`` defaults to the config's ``schema_store`` (a SchemaStore registers under its bucket
    name). Raises :class:`~polyn.errors.SchemaStoreError` naming the store when none runs.

    Example::

        event = codec.decode(msg.data, schemas_for(resolved), resolved.config)
    """
    name = store or resolved.config.schema_store
    schemas = resolved.tree.lookup(name, SCHEMAS)
    if schemas is None:
        raise SchemaStoreError(
            f"no SchemaStore named {name!r} is running in this tree: add "
            f"polyn.SchemaStore({'' if store is None else repr(store)}) to the App's children, "
            "after the NatsConnection"
        )
    return schemas
