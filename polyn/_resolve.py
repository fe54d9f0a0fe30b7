"""How layer-4 calls find their tree, config, transport and schema snapshot from ``conn``.

``polyn.pub(conn, ...)`` and the consumers accept a connection in several shapes; this module
turns each into one :class:`Resolved` value:

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

from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from polyn import codec
from polyn.actors import ActorRef, Key, Tree, current_tree
from polyn.config import Config
from polyn.errors import ActorError, ConfigError, SchemaStoreError
from polyn.nats import Transport, transport_for

if TYPE_CHECKING:
    from polyn.app import Running

__all__ = ["SCHEMAS", "Conn", "Resolved", "resolve", "schemas_for"]

SCHEMAS: Final = Key("schemas", codec.Schemas)
"""What a running :class:`~polyn.schema_store.SchemaStore` provides to its tree: its current
snapshot, replaced as a whole on every change (read without a mailbox hop by every publish)."""

Conn: TypeAlias = "str | ActorRef | Running | Tree"
"""What layer-4 calls accept as ``conn``."""


@attrs.frozen
class Resolved:
    """What a publish or a consumer needs: the tree's config, the tree, and the transport."""

    config: Config
    tree: Tree
    transport: Transport


def _tree_of(conn: object) -> Tree:
    if isinstance(conn, str):
        tree = current_tree()
        if tree is None:
            raise ActorError(
                f"the connection name {conn!r} was used outside a running tree; pass the "
                "handle of `async with app.run() as running` (or a ref) instead"
            )
        return tree
    if isinstance(conn, ActorRef):
        return conn.tree
    if isinstance(conn, Tree):
        return conn
    tree = getattr(conn, "tree", None)  # the App's Running handle
    if isinstance(tree, Tree):
        return tree
    raise TypeError(
        f"conn must be a connection name, an ActorRef, an app's running handle or a Tree, "
        f"not {conn!r}"
    )


def config_of(tree: Tree) -> Config:
    """The :class:`~polyn.Config` in ``tree``'s context; ConfigError when it has none."""
    config = tree.context.get("config")
    if not isinstance(config, Config):
        raise ConfigError(
            "this tree has no polyn.Config in its context: run it with polyn.App(config, ...) "
            "or Supervisor.run(context={'config': config})"
        )
    return config


def resolve(conn: Conn = "nats") -> Resolved:
    """The config, tree and transport behind ``conn`` (see the module doc for its shapes).

    Raises :class:`~polyn.errors.ActorError` when the connection is not running,
    :class:`~polyn.errors.NatsConnectionError` when it is not connected and
    :class:`~polyn.errors.ConfigError` when the tree has no config.

    Example::

        resolved = resolve(running)
        await resolved.transport.flush()
    """
    tree = _tree_of(conn)
    return Resolved(config_of(tree), tree, transport_for(conn))


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
