"""The App: a service's root supervisor plus its config, and how to run it.

``App(config, children)`` is a :class:`~polyn.actors.Supervisor` tree whose context carries the
config (``{"config": config}``), so every actor below finds it without importing the App. The
default strategy is ``rest_for_one``: with :class:`~polyn.NatsConnection` first, a restarted
connection restarts everything started after it, so nobody keeps a dead transport.

Two ways to run it:

- ``trio.run(app.main)`` runs the service until it is cancelled or gets SIGINT / SIGTERM, then
  stops the tree gracefully (children in reverse order, each running its ``terminate``) and
  returns. It raises :class:`~polyn.errors.ActorError` if a child fails to start or the restart
  intensity is exceeded.
- ``async with app.run() as running:`` starts the tree inside the current trio run (a test, a
  script) and yields a :class:`Running` handle; leaving the block stops the tree.

Inside the tree, :func:`current_app` gives the config and the registry.

Example::

    app = polyn.App(
        polyn.Config(domain="com.acme", source_root="orders.payments"),
        children=[polyn.NatsConnection(), polyn.SchemaStore(), ReceiptMailer()],
    )
    trio.run(app.main)

    # in a test or script:
    async with app.run() as running:
        await polyn.pub(running, "payment.captured.v1", {"amount": 10})
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Final

import attrs
import trio

from polyn.actors import Actor, ActorRef, Strategy, Supervisor, Tree, current_tree
from polyn.config import Config, redact_url
from polyn.consumers import Consumer, set_stuck_hook
from polyn.errors import ActorError, ConfigError, PolynError, describe_exception
from polyn.nats import NatsConnection

__all__ = ["App", "AppContext", "Running", "current_app"]

log = logging.getLogger("polyn.app")


@attrs.frozen
class AppContext:
    """What :func:`current_app` returns: the running App's config and registry."""

    config: Config
    tree: Tree

    def whereis(self, name: str) -> ActorRef | None:
        """The actor registered as ``name`` in the app's tree, or None."""
        return self.tree.whereis(name)


def current_app() -> AppContext:
    """The config and registry of the App the calling task runs in.

    Raises :class:`~polyn.errors.PolynError` outside a running tree, or in a tree started
    without a config.

    Example::

        class Mailer(polyn.Actor):
            async def init(self):
                self.domain = polyn.current_app().config.domain
    """
    tree = current_tree()
    if tree is None:
        raise PolynError(
            "current_app() was called outside a running App; use the handle of "
            "`async with app.run() as running` there"
        )
    config = tree.context.get("config")
    if not isinstance(config, Config):
        raise PolynError("current_app(): this tree was not started by a polyn.App (no config)")
    return AppContext(config=config, tree=tree)


class Running:
    """The handle of a running App: ``async with app.run() as running``.

    Attributes: ``config``, ``tree`` (the actors :class:`~polyn.actors.Tree`), ``context`` (the
    tree's read-only context). ``polyn.pub(running, ...)`` publishes through its connection.
    """

    __slots__ = ("config", "tree")

    def __init__(self, config: Config, tree: Tree) -> None:
        self.config = config
        self.tree = tree

    def __repr__(self) -> str:
        return f"<Running app domain={self.config.domain!r} {self.tree!r}>"

    @property
    def context(self) -> Mapping[str, Any]:
        """The tree's read-only context mapping (``{"config": config}``)."""
        return self.tree.context

    def whereis(self, name: str) -> ActorRef | None:
        """A ref following the actor registered as ``name``, or None when none runs now."""
        return self.tree.whereis(name)

    def ref(self, name: str) -> ActorRef:
        """Like :meth:`whereis`, but raises :class:`~polyn.errors.ActorError` when none runs."""
        return self.tree.ref(name)

    def health(self) -> bool:
        """Whether every child of the App runs now and every NatsConnection is connected.

        Synchronous and cheap, for a health-check endpoint. False while a child is being
        restarted or a connection is reconnecting, and while a consumer reports a problem
        (:meth:`polyn.consumers.Consumer.problem`: a schema missing from the store, no progress
        for its ``stall_timeout`` while messages are in hand).
        """
        tree = self.tree
        if not tree.running:
            return False
        counts = tree.count_children_nowait()
        if counts.active != counts.specs:
            return False
        for child in tree.which_children_nowait():
            if child.ref is not None and isinstance(child.spec, NatsConnection):
                try:
                    connection = child.ref.running_actor()
                except PolynError:
                    return False
                if not isinstance(connection, NatsConnection) or not connection.state.connected:
                    return False
            elif child.ref is not None and isinstance(child.spec, Consumer):
                try:
                    consumer = child.ref.running_actor()
                except PolynError:
                    return False
                if isinstance(consumer, Consumer) and consumer.problem() is not None:
                    return False
        return True


class App:
    """A Polyn service: a root supervisor of ``children`` with ``config`` in its context.

    ``App(config, children, strategy="rest_for_one", max_restarts=3, max_seconds=5,
    publishes=())``; the supervision arguments are :class:`~polyn.actors.Supervisor`'s. See the
    module doc.

    ``publishes`` declares the message names the service sends from outside its actors (a web
    handler, a script using the ``running`` handle); actors declare their own with a
    ``publishes`` class attribute, and a Responder its answer with ``reply_type``. Nothing
    checks them at run time: ``polyn catalog`` reads them to show who sends each event.
    """

    def __init__(
        self,
        config: Config,
        children: Iterable[Actor],
        strategy: Strategy | str = Strategy.REST_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5,
        publishes: Iterable[str] = (),
    ) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"App needs a polyn.Config, not {config!r}")
        self.config = config
        self.publishes = (publishes,) if isinstance(publishes, str) else tuple(publishes)
        self.supervisor = Supervisor(
            children, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        )

    def __repr__(self) -> str:
        return f"App({self.config!r}, {list(self.supervisor.children)!r})"

    @property
    def context(self) -> Mapping[str, Any]:
        """The context every actor of the App's tree sees."""
        return {"config": self.config}

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[Running]:
        """Start the tree in the current trio run; yield its :class:`Running` handle.

        Every child has started when the block begins (else ActorError is raised); leaving the
        block stops the tree gracefully and returns once every actor has finished.
        """
        async with self.supervisor.run(self.context) as tree:
            yield Running(self.config, tree)

    async def main(self) -> None:
        """Run the App until cancelled, SIGINT / SIGTERM, or the tree stops by itself.

        A signal stops the tree gracefully and ``main`` returns normally. ``trio.run(app.main)``.
        Signals are caught from before the first child starts (a signal during start-up stops
        the app once it has started) and only in the main thread. A **second** SIGINT or
        SIGTERM while the tree stops ends the process at once, with status 128 + the signal's
        number (130 for Ctrl-C): messages a consumer holds are redelivered by JetStream, events
        queued for publishing and not yet sent are lost.

        A child that fails to start raises :class:`~polyn.errors.ActorError` whose one-line
        message names the child and the cause (``the app could not start: child 'nats'
        (NatsConnection): could not connect to NATS at ...``); its traceback is the cause's when
        the cause is not a Polyn error (a bug in an ``init``), so an uncaught start failure
        prints one traceback at most. The supervisor's own error is its ``__context__``.

        **Logging**: the app logs one INFO line on ``polyn.app`` once every child has started
        (the children and the NATS server) and one when it has stopped. When logging is not
        configured at all (the root logger has no handler), ``main`` installs a handler on
        stderr for its run, at the level of ``POLYN_LOG_LEVEL`` (``debug``, ``info``,
        ``warning``, ``error``; default ``info``), and removes it when it returns.

        A consumer whose handler ignores cancellation past its shutdown deadline (a shielded
        cancel scope) would keep the stop waiting forever: it is logged by name and the process
        ends at once with exit code 70 (``EX_SOFTWARE``), so a process manager sees a failure.
        """
        set_stuck_hook(_abandon)
        with _default_logging(), _signals() as signals:
            stop = _Stop()
            failure: Exception | None = None
            async with trio.open_nursery() as watchers:
                if signals is not None:
                    watchers.start_soon(_watch_signals, signals, stop)
                try:
                    await self._run_until_stopped(stop)
                except Exception as exc:  # raised below, bare rather than in an exception group
                    failure = exc
                watchers.cancel_scope.cancel()
            if failure is not None:
                raise failure

    async def _run_until_stopped(self, stop: _Stop) -> None:
        """The body of :meth:`main`, with a start failure's error made readable."""
        started_at = trio.current_time()
        try:
            with stop.scope:
                async with self.run() as running:
                    log.info("the app is up: %s", _describe_running(running))
                    stop.started()
                    await running.tree.wait_finished()
        except ActorError as error:
            if error.start_failure is None:
                raise
            which, cause = error.start_failure
            clean = ActorError(f"the app could not start: {which}: {describe_exception(cause)}")
            if not isinstance(cause, PolynError):
                raise clean.with_traceback(cause.__traceback__) from None
            raise clean from None
        log.info(
            "the app stopped%s after %.1f s",
            f" ({stop.reason})" if stop.reason else "",
            trio.current_time() - started_at,
        )


class _Stop:
    """What :meth:`App.main` and its signal watcher share: the stop scope and its reason."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.reason = ""
        self.requested = False
        self.running = False

    def started(self) -> None:
        self.running = True
        if self.requested:  # a signal came during start-up: stop now that it has started
            self.scope.cancel()

    def request(self, reason: str) -> None:
        self.requested = True
        self.reason = reason
        if self.running:
            self.scope.cancel()


def _describe_running(running: Running) -> str:
    """The children of a running app and the NATS servers it is connected to, for its log."""
    names = []
    servers = []
    for child in running.tree.which_children_nowait():
        names.append(child.name or type(child.spec).__name__)
        if child.ref is not None and isinstance(child.spec, NatsConnection):
            with contextlib.suppress(PolynError):
                connection = child.ref.running_actor()
                if isinstance(connection, NatsConnection) and connection.state.url:
                    servers.append(redact_url(connection.state.url))
    where = f"; NATS at {', '.join(servers)}" if servers else ""
    return f"{len(names)} children started ({', '.join(names)}){where}"


_LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


@contextlib.contextmanager
def _default_logging() -> Iterator[None]:
    """A stderr handler at ``POLYN_LOG_LEVEL`` while :meth:`App.main` runs, when logging is not
    configured at all; logging a program configured itself is never touched."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    name = os.environ.get("POLYN_LOG_LEVEL", "").strip().lower() or "info"
    if name not in _LOG_LEVELS:
        raise ConfigError(
            f"POLYN_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {name!r}"
        )
    level = getattr(logging, name.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    asyncio_logger = logging.getLogger("asyncio")
    saved = (root.level, asyncio_logger.level)
    root.addHandler(handler)
    root.setLevel(level)
    # The NATS client's event loop runs in a thread of its own; its asyncio chatter is not ours.
    asyncio_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        asyncio_logger.setLevel(saved[1])


def _abandon(description: str) -> None:
    """The stop cannot finish (see :meth:`App.main`): end the process with an error."""
    log.critical("the app cannot stop: %s; exiting with status 70", description)
    _flush_output()
    os._exit(70)


@contextlib.contextmanager
def _signals() -> Iterator[AsyncIterator[int] | None]:
    if threading.current_thread() is not threading.main_thread():
        yield None  # signals can only be caught in the main thread
        return
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        yield signals


async def _watch_signals(signals: AsyncIterator[int], stop: _Stop) -> None:
    """The first signal stops the app gracefully; a second one ends the process at once."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.requested:
            log.info("received %s: stopping the app (send it again to stop at once)", name)
            stop.request(name)
            continue
        log.warning("received %s again: exiting at once, without the graceful stop", name)
        _flush_output()
        os._exit(128 + signum)


def _flush_output() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
