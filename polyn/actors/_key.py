"""Keys: the name and type of a value an actor provides to its tree (``Actor.provide``)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Key(Generic[T]):
    """The name and type of a value an actor publishes for others to find, without a mailbox hop.

    ``Key("transport", Transport)``: an actor publishes with :meth:`Actor.provide
    <polyn.actors.Actor.provide>`, others read with :meth:`Tree.lookup
    <polyn.actors.Tree.lookup>` / :meth:`Tree.require <polyn.actors.Tree.require>` or
    :meth:`ActorRef.lookup <polyn.actors.ActorRef.lookup>`, typed as ``T`` for mypy. When the
    type is a class, ``provide`` checks the value with ``isinstance`` and raises ``TypeError``
    for a wrong one, so a mistake shows where it is made, not where the value is used. For a
    ``typing.Protocol`` (which mypy does not accept as a ``type[T]`` argument) write
    ``Key[Transport]("transport")``: typed for mypy, not checked at run time.

    Keys compare by identity, like ``ContextVar``: define one at module level and import it
    wherever it is provided or looked up, so two libraries' keys never collide.

    Example::

        SNAPSHOT: Final = Key("schemas", Schemas)

        class SchemaStore(Actor):
            async def init(self):
                self.provide(SNAPSHOT, await load())

        schemas = tree.require("POLYN_SCHEMAS", SNAPSHOT)   # a Schemas, for mypy too
    """

    __slots__ = ("_check", "name", "type")

    def __init__(self, name: str, type_: type[T] | None = None) -> None:
        self.name = name
        self.type = type_
        self._check: type[Any] | None = None
        if isinstance(type_, type):
            try:
                isinstance(None, type_)
            except TypeError:
                pass  # a Protocol that is not runtime_checkable: typed only
            else:
                self._check = type_

    def checked(self, value: Any, label: str) -> T:
        check = self._check
        if check is not None and not isinstance(value, check):
            raise TypeError(
                f"actor {label} provided {value!r} for {self!r}, which needs "
                f"{check.__module__}.{check.__qualname__}"
            )
        return cast("T", value)

    def __repr__(self) -> str:
        type_ = self.type
        shown = "" if type_ is None else f", {getattr(type_, '__qualname__', type_)}"
        return f"Key({self.name!r}{shown})"
