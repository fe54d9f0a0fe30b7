"""Serving a catalogue folder on loopback, for browsing (``polyn catalog serve``).

A plain :class:`http.server.ThreadingHTTPServer` bound to ``127.0.0.1`` only: the catalogue
is for the person at this machine, and binding loopback keeps it off the network. As a context
manager it serves from a thread of its own, stopped and joined on exit (the tests use it so);
:meth:`CatalogServer.serve_forever` serves from the calling thread until interrupted.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from polyn.errors import PolynError

__all__ = ["CatalogServer"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the base class's own class attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".json": "application/json",
        ".js": "text/javascript",
        ".css": "text/css",
        ".html": "text/html; charset=utf-8",
    }

    def end_headers(self) -> None:
        # A rebuilt catalogue shows at the next reload.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the URL the command printed


class CatalogServer:
    """Serve ``directory`` at ``http://127.0.0.1:<port>/`` (``port=0``: a free one).

    Example::

        with CatalogServer("catalog") as server:
            print(server.url)       # http://127.0.0.1:43817/
    """

    def __init__(self, directory: str | Path, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory)
        if not (self.directory / "index.html").is_file():
            raise PolynError(
                f"There is no catalogue in {self.directory} (no index.html): build one with "
                f"`polyn catalog --out {self.directory}`"
            )
        handler = functools.partial(_Handler, directory=str(self.directory))
        try:
            self._server = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise PolynError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the catalogue's index is, ``http://127.0.0.1:<port>/``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve_forever(self) -> None:
        """Serve from this thread until interrupted (KeyboardInterrupt), then close."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="polyn-catalog-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
