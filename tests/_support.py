"""Helpers shared by the test modules (importable as ``_support``: pytest puts ``tests/`` on
``sys.path`` because ``tests/conftest.py`` lives there)."""

from __future__ import annotations

import uuid


class Names:
    """Names unique to one test: ``names.stream("orders")`` -> ``ORDERS_T1A2B3C4D``.

    Subjects start with the test's own token (``t1a2b3c4d.orders.created.v1``), so a stream can
    capture all of a test's subjects with ``names.subject(">")``; every name is also a valid Polyn
    message name.
    """

    def __init__(self) -> None:
        self.token = "t" + uuid.uuid4().hex[:10]

    def subject(self, name: str) -> str:
        return f"{self.token}.{name}"

    def stream(self, name: str = "stream") -> str:
        return f"{name}_{self.token}".upper().replace(".", "_")

    def bucket(self, name: str = "bucket") -> str:
        return f"{name}_{self.token}".upper().replace(".", "_")

    def consumer(self, name: str = "consumer") -> str:
        return f"{name}_{self.token}".replace(".", "_")


class Shared(list):  # type: ignore[type-arg]
    """A list a test shares with its actors.

    Every start of an actor copies the plain ``list``, ``dict`` and ``set`` among its
    constructor arguments (so that a restart begins from the spec), but passes every other
    object by identity, subclasses included: a ``Shared`` list is the same object in the test
    and in every run.
    """


class SharedDict(dict):  # type: ignore[type-arg]
    """A dict a test shares with its actors (see :class:`Shared`)."""


class SharedSet(set):  # type: ignore[type-arg]
    """A set a test shares with its actors (see :class:`Shared`)."""
