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

Inside the tree, :func:`current_app` gives the same handle (config and registry).

The App is a shortcut, not a requirement: a plain ``trio.run(polyn.Supervisor([...]).main)`` of
Polyn actors works too, with the config ``Config.load()`` reads (``[tool.polyn]``, ``POLYN_*``),
loaded once per tree, and any restart strategy (consumers find a restarted connection again).

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
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import trio

from polyn.actors import Actor, ActorRef, Strategy, Supervisor, Tree, current_tree
from polyn.config import Config, config_for
from polyn.consumers import PROBLEM, Consumer, set_stuck_hook
from polyn.errors import PolynError
from polyn.nats import TRANSPORT, NatsConnection

__all__ = ["App", "AppContext", "Running", "current_app"]

log = logging.getLogger("polyn.app")


def current_app() -> Running:
    """The handle of the tree the calling task runs in: its config and registry.

    Works in any Polyn tree: an App's, or a plain Supervisor's (whose config is then
    ``Config.load()``, once per tree; see :func:`polyn.config.config_for`). Raises
    :class:`~polyn.errors.PolynError` outside a running tree, and
    :class:`~polyn.errors.ConfigError` when the tree has no config and none can be loaded.

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
    return Running(config_for(tree), tree)


class Running:
    """The handle of a running App: ``async with app.run() as running``, and
    :func:`current_app` inside the tree — the one handle type of a running service.

    Attributes: ``config``, ``tree`` (the actors :class:`~polyn.actors.Tree`), ``context`` (the
    tree's read-only context). ``polyn.pub(running, ...)`` publishes through its connection.
    (``polyn.AppContext``, what ``current_app()`` returned before, is another name for it.)
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
        for its ``stall_timeout`` while messages are in hand, its connection gone). It reads
        what the children provide (:data:`polyn.nats.TRANSPORT`,
        :data:`polyn.consumers.PROBLEM`), never the actor instances.
        """
        tree = self.tree
        if not tree.running:
            return False
        counts = tree.count_children_nowait()
        if counts.active != counts.specs:
            return False
        for child in tree.which_children_nowait():
            ref = child.ref
            if ref is None:
                continue
            if isinstance(child.spec, NatsConnection):
                transport = ref.lookup(TRANSPORT)
                if transport is None or transport.connected_url is None:
                    return False
            elif isinstance(child.spec, Consumer):
                problem = ref.lookup(PROBLEM)
                if problem is not None and problem() is not None:
                    return False
        return True


AppContext = Running
"""The former name of what :func:`current_app` returns; now the one handle, :class:`Running`."""


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
        the app once it has started) and only in the main thread.

        A consumer whose handler ignores cancellation past its shutdown deadline (a shielded
        cancel scope) would keep the stop waiting forever: it is logged by name and the process
        ends at once with exit code 70 (``EX_SOFTWARE``), so a process manager sees a failure.
        """
        set_stuck_hook(_abandon)
        with _signals() as signals:
            async with self.run() as running, trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                await running.tree.wait_finished()
                nursery.cancel_scope.cancel()


def _abandon(description: str) -> None:
    """The stop cannot finish (see :meth:`App.main`): end the process with an error."""
    log.critical("the app cannot stop: %s; exiting with status 70", description)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(70)


@contextlib.contextmanager
def _signals() -> Iterator[AsyncIterator[int] | None]:
    if threading.current_thread() is not threading.main_thread():
        yield None  # signals can only be caught in the main thread
        return
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        yield signals


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for signum in signals:
        log.info("received %s, stopping the app", signal.Signals(signum).name)
        scope.cancel()
        return
