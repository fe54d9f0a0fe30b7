"""The Sandbox: which test's transport (and :class:`~polyn.testing.MockNats`) a trio task uses.

The registry lives in a trio ``RunVar`` (per trio run; a ``ContextVar`` would be copied into
fixtures started before the sandbox exists). It maps each test's *test task* to that test's
:class:`~polyn.testing.SandboxTransport` (in-memory messaging, a snapshot of the server's
definitions, the real server's buckets), and every task allowed with :meth:`Sandbox.allow` to
the same one. A task finds its sandbox by, in order:

1. its own mapping (a test task, or a task allowed by one);
2. its nearest mapped ancestor task (so everything started beneath the test task: actor trees,
   nurseries, fixtures' helpers);
3. with async mode off (the default), the only test registered in this trio run;
4. else :class:`~polyn.errors.SandboxError`, naming the task and the remedies.

Under pytest-trio every fixture and the test body run as sibling tasks under one runner task,
one trio run per test, so the ``polyn_sandbox`` fixture registers that runner task: the body
and all fixtures resolve as its descendants. Async mode serves several tests sharing one trio
run outside pytest-trio.

The sandbox plugs into Polyn only through :func:`polyn.nats.set_transport_override`: while a
test is registered in the run, :func:`polyn.nats.transport_for` returns the calling task's
``SandboxTransport`` for a connection name, a ref or a running tree's handle (a transport object
passed explicitly is used as given). With no test registered the hook is removed: the sandbox is
never on by itself.

A sandboxed App still starts its ``NatsConnection`` (so :meth:`Sandbox.config` points its
``servers`` at the server the sandbox wraps), but nothing it publishes or consumes goes through
that connection. Run it with :meth:`Sandbox.run` on virtual time.

Example (outside pytest; the fixture does the same)::

    async with Sandbox.start(transport) as sandbox:
        await polyn.pub(running, "user.created.v1", {"name": "Ada"})
        assert [m.subject for m in sandbox.published()] == ["user.created.v1"]
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from polyn.actors import ActorRef
from polyn.app import App, Running
from polyn.config import Config
from polyn.errors import SandboxError
from polyn.naming import subject_matches
from polyn.nats import (
    Message,
    NatsConnection,
    NatsTransport,
    Transport,
    set_transport_override,
)
from polyn.testing._handler_errors import HandlerChecks
from polyn.testing._real import real_time
from polyn.testing.mock_nats import MockNats
from polyn.testing.sandbox_transport import SandboxTransport

__all__ = ["DEADLETTER_PREFIX", "Sandbox"]

DEADLETTER_PREFIX = "polyn.deadletter."
"""Dead letters of a message on subject ``s`` are published to ``polyn.deadletter.<s>``."""

Task = trio.lowlevel.Task


@attrs.define
class _Entry:
    transport: SandboxTransport
    allowed_by: Task | None  # None: this is a test task


@attrs.define
class _Registry:
    async_mode: bool = False
    entries: dict[Task, _Entry] = attrs.field(factory=dict)

    def tests(self) -> list[tuple[Task, _Entry]]:
        return [(task, e) for task, e in self.entries.items() if e.allowed_by is None]


_registry: trio.lowlevel.RunVar[_Registry] = trio.lowlevel.RunVar("polyn_sandbox_registry")


def _get_registry() -> _Registry:
    try:
        return _registry.get()
    except LookupError:
        registry = _Registry()
        _registry.set(registry)
        return registry


def _describe(task: Task) -> str:
    return repr(task.name)


def _no_mock_error(task: Task) -> SandboxError:
    return SandboxError(
        "There are no MockNats servers\n"
        f"associated with task {_describe(task)}.\n\n"
        "Polyn's test sandbox cannot tell which test this task belongs to. Either:\n"
        "  1. start it beneath the test's task (in the test body, a fixture of the test, or an "
        "App tree they started), with the `polyn_sandbox` fixture requested by the test;\n"
        "  2. allow it explicitly: `Sandbox.allow(sandbox.test_task, task)`;\n"
        "  3. or, when only one test runs in this trio run at a time, switch async mode off: "
        "`Sandbox.set_async_mode(False)`."
    )


async def _stop_all_but_connections(running: Running) -> None:
    """Stop the App's top-level children in reverse start order, its NatsConnections aside."""
    for child in reversed(await running.tree.which_children()):
        if child.ref is not None and not isinstance(child.spec, NatsConnection):
            await running.tree.terminate_child(child.spec)


def _hook(conn: object) -> Transport | None:
    if not isinstance(conn, str | ActorRef) and not hasattr(conn, "whereis"):
        return None  # a transport passed explicitly is used as given
    registry = _get_registry()
    if not registry.entries:
        return None
    return _resolve(registry, trio.lowlevel.current_task())


def _resolve(registry: _Registry, task: Task) -> SandboxTransport:
    current: Task | None = task
    while current is not None:
        entry = registry.entries.get(current)
        if entry is not None:
            return entry.transport
        nursery = current.parent_nursery
        current = nursery.parent_task if nursery is not None else None
    tests = registry.tests()
    if not registry.async_mode and len(tests) == 1:
        return tests[0][1].transport
    raise _no_mock_error(task)


class Sandbox:
    """One test's sandbox: its transport (``.transport``, what ``transport_for`` gives the
    test's code), its :class:`MockNats` (``.mock``, the in-memory messaging), its ``test_task``,
    and helpers to read what the test published. The static methods operate on the registry of
    the current trio run.

    Create one with :meth:`start` (or the ``polyn_sandbox`` pytest fixture).
    """

    def __init__(
        self, transport: SandboxTransport, test_task: Task, url: str | None = None
    ) -> None:
        self.transport = transport
        """The test's :class:`SandboxTransport`: messaging, administration and key-value."""
        self.mock = transport.mock
        """The test's :class:`MockNats` (``messages``, ``subscriptions``)."""
        self.test_task = test_task
        self.url = url
        """The URL of the real server the sandbox wraps (None for a mock without one)."""
        self.handler_checks = HandlerChecks()
        """Handler errors and unsettled messages of this test (:mod:`._handler_errors`)."""

    def __repr__(self) -> str:
        return f"<Sandbox of task {self.test_task.name!r} {self.mock!r}>"

    # -- the registry -------------------------------------------------------------------------

    @staticmethod
    def setup_test(test_task: Task, mock: SandboxTransport | MockNats) -> None:
        """Register ``test_task`` as a test using ``mock``; switches the transport hook on.

        A bare :class:`MockNats` is put into a :class:`SandboxTransport` without a server.
        """
        transport = mock if isinstance(mock, SandboxTransport) else SandboxTransport(mock=mock)
        registry = _get_registry()
        entry = registry.entries.get(test_task)
        if entry is not None:
            raise SandboxError(
                f"task {_describe(test_task)} is already associated with a running test's "
                "MockNats; tear that test down first"
            )
        registry.entries[test_task] = _Entry(transport, None)
        set_transport_override(_hook)

    @staticmethod
    def teardown_test(test_task: Task) -> None:
        """Forget ``test_task`` and every task it allowed; the hook goes when no test is left."""
        registry = _get_registry()
        for task, entry in list(registry.entries.items()):
            if task is test_task or entry.allowed_by is test_task:
                del registry.entries[task]
        if not registry.entries:
            set_transport_override(None)

    @staticmethod
    def allow(test_task: Task, task: Task) -> None:
        """Let ``task`` (and the tasks beneath it) use ``test_task``'s MockNats.

        For tasks that are not descendants of the test task: a system task, or a task of a
        nursery opened elsewhere. Allowing a task that another test already mapped is a
        :class:`~polyn.errors.SandboxError`; allowing it again for the same test is a no-op.
        """
        registry = _get_registry()
        owner = registry.entries.get(test_task)
        if owner is None or owner.allowed_by is not None:
            raise SandboxError(
                f"task {_describe(test_task)} is not a test registered with the sandbox; "
                "request the `polyn_sandbox` fixture or use `Sandbox.start()` first"
            )
        existing = registry.entries.get(task)
        if existing is not None:
            if existing.transport is owner.transport:
                return
            other = existing.allowed_by or task
            raise SandboxError(
                f"You tried to call `Sandbox.allow(test_task, task)` with task {_describe(task)}, "
                f"which is already associated with a running test (task {_describe(other)}). "
                "A task can use one test's MockNats only: start a separate task for each test."
            )
        registry.entries[task] = _Entry(owner.transport, test_task)

    @staticmethod
    def set_async_mode(enabled: bool) -> None:
        """With async mode on, a task that resolves to no test is an error even when only one
        test is registered; off (the default), that one test's mock is used."""
        _get_registry().async_mode = bool(enabled)

    @staticmethod
    def async_mode() -> bool:
        """Whether async mode is on in this trio run."""
        return _get_registry().async_mode

    @staticmethod
    def mapped_tasks() -> dict[Task, MockNats]:
        """Every mapped task (tests and allowed tasks) and its mock, in this trio run."""
        return {task: entry.transport.mock for task, entry in _get_registry().entries.items()}

    @staticmethod
    def mock_for(task: Task | None = None) -> MockNats:
        """The MockNats of ``task`` (default: the calling task), or SandboxError."""
        return _resolve(_get_registry(), task or trio.lowlevel.current_task()).mock

    # -- one test's sandbox -------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        real: Transport | str | None,
        *,
        schemas: Mapping[str, Any] | None = None,
        schema_bucket: str = "POLYN_SCHEMAS",
        test_task: Task | None = None,
    ) -> AsyncIterator[Sandbox]:
        """Run a sandbox for ``test_task`` (default: the calling task) for the block's duration.

        ``real`` is the transport (or the URL of the server) whose streams, consumers and
        buckets are real; a URL is connected here and closed at the end. The server's stream
        and consumer definitions are snapshotted now (see :meth:`refresh`). ``schemas`` is the
        schema bucket's contents as plain data (the ``polyn_schemas`` fixture), answered
        without reading the bucket again. On exit the test's mapping and every task it allowed
        are removed, whatever happened, and the mock is closed.
        """
        task = test_task or trio.lowlevel.current_task()
        owned: NatsTransport | None = None
        url = real if isinstance(real, str) else real.connected_url if real is not None else None
        if isinstance(real, str):
            with real_time():
                owned = await NatsTransport.connect(real)
            real = owned
        try:
            transport = SandboxTransport(real, schemas=schemas, schema_bucket=schema_bucket)
            if real is not None:
                await transport.refresh()
            Sandbox.setup_test(task, transport)
            try:
                yield cls(transport, task, url)
            finally:
                Sandbox.teardown_test(task)
                with trio.CancelScope(shield=True):
                    await transport.aclose()
        finally:
            if owned is not None:
                with trio.CancelScope(shield=True), real_time():
                    await owned.close()

    def config(self, config: Config | None = None, **fields: Any) -> Config:
        """The :class:`~polyn.Config` for an App under test, its ``servers`` pointed at the
        server this sandbox wraps.

        ``config`` as given (``sandbox.config(polyn.Config(domain=..., source_root=...))``), or
        else the project's own (``Config.load(**fields)``: ``[tool.polyn]`` of
        ``pyproject.toml``, then ``POLYN_*`` variables, then ``fields``).

        Why a server at all: the App's :class:`~polyn.NatsConnection` is the production child
        and still connects (``running.health()`` reports on it), though no message goes
        through it; the sandbox answers stream and consumer lookups from its own snapshot of
        that same server.

        Example::

            app = polyn.App(polyn_sandbox.config(), [polyn.NatsConnection(), ...])
        """
        if self.url is None:
            raise SandboxError(
                "this sandbox wraps no real server, so there is no URL to point an App at"
            )
        if config is None:
            return Config.load(**{**fields, "servers": [self.url]})
        if fields:
            config = attrs.evolve(config, **fields)
        return attrs.evolve(config, servers=(self.url,))

    @asynccontextmanager
    async def run(self, app: App) -> AsyncIterator[Running]:
        """``app.run()`` made for virtual time: ``async with sandbox.run(app) as running:``.

        On a real clock it is ``app.run()``. On a ``trio.testing.MockClock`` with autojump, the
        App's :class:`~polyn.NatsConnection` connecting and closing are calls into the real
        server, which the autojump would take for idleness (jumping past their timeouts); so
        this starts the App with the autojump paused, and on leaving stops every child except
        the connections on virtual time first (consumers finish their pull requests, batchers
        flush: no real time), then the connections with the autojump paused.

        Example::

            async with polyn_sandbox.run(App(config, [NatsConnection(), ...])) as running:
                await polyn.pub(running, "order.placed.v1", {"n": 1}, ack=True)
        """
        manager = app.run()
        with real_time():
            running = await manager.__aenter__()
        try:
            yield running
            await _stop_all_but_connections(running)
        except BaseException as exc:
            # The tree still runs: stop it on virtual time too — also when the test is being
            # cancelled (a handler error failing it): with the autojump paused, virtual time
            # would stand still and the consumers' stop would wait forever.
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await _stop_all_but_connections(running)
            with real_time():
                if await manager.__aexit__(type(exc), exc, exc.__traceback__):
                    return
            raise
        with real_time():
            await manager.__aexit__(None, None, None)

    async def refresh(self) -> None:
        """Re-read the server's streams and consumers, after the test changed them some other
        way than through this sandbox's transport (which keeps its snapshot current itself)."""
        await self.transport.refresh()

    @property
    def real(self) -> Transport | None:
        """The real transport whose server the sandbox wraps (``None`` without one)."""
        return self.transport.real

    def allow_handler_errors(self, *types: type[BaseException]) -> None:
        """Let this test's handlers raise ``types`` (every exception when none is given)
        without failing the test; they are then handled as in production (nak, dead letter).
        See :mod:`polyn.testing._handler_errors`; the marker
        ``@pytest.mark.polyn_allow_handler_errors(types=...)`` does the same."""
        self.handler_checks.allow(*types)

    def allow_unsettled(self) -> None:
        """Do not fail this test for messages a handler left unsettled."""
        self.handler_checks.allow_unsettled()

    def allow_task(self, task: Task) -> None:
        """``Sandbox.allow(self.test_task, task)``."""
        Sandbox.allow(self.test_task, task)

    def published(self, subject: str | None = None) -> list[Message]:
        """Every message published in this sandbox, in order (core and JetStream, replies and
        dead letters included); only those whose subject matches ``subject`` (wildcards
        allowed) when given."""
        messages = self.mock.messages
        if subject is None:
            return list(messages)
        return [m for m in messages if subject_matches(subject, m.subject)]

    def published_json(self, subject: str | None = None) -> list[Any]:
        """The bodies of :meth:`published` decoded as JSON (CloudEvents are dicts)."""
        return [json.loads(m.data) for m in self.published(subject)]

    def dead_letters(self, subject: str | None = None) -> list[Message]:
        """Dead letters published in this sandbox: of messages on ``subject`` when given
        (``polyn.deadletter.<subject>``), else all of them. Their headers say why
        (``Polyn-Error``, ``Polyn-Error-Type``, ``Polyn-Consumer``...)."""
        pattern = DEADLETTER_PREFIX + (subject if subject is not None else ">")
        return self.published(pattern)
