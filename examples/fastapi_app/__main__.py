"""``python -m examples.fastapi_app [--host H] [--port P]``: see :mod:`examples.fastapi_app`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from types import FrameType

from polyn.server import NatsServer


def parse_args(argv: list[str] | None, prog: str, server: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Serve the shop's web front with {server}: an embedded nats-server (unless "
        "NATS_URL is set), the shop's schemas and streams, then the web app until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    return parser.parse_args(argv)


@contextlib.contextmanager
def shop_nats() -> Iterator[str]:
    """A NATS server with the shop's schemas and streams (``NATS_URL``'s, or an embedded one).

    ``NATS_URL`` is set for the web app (which reads it in its lifespan).
    """
    from examples.fastapi_app.service import prepare

    with contextlib.ExitStack() as stack:
        url = os.environ.get("NATS_URL")
        if url:
            print(f"  nats       using NATS_URL={url}", flush=True)
        else:
            url = stack.enter_context(NatsServer()).url
            os.environ["NATS_URL"] = url
            print(f"  nats       started nats-server at {url}", flush=True)
        prepare(url)
        yield url


@contextlib.contextmanager
def nats_and_socket(args: argparse.Namespace) -> Iterator[socket.socket]:
    """:func:`shop_nats`, and the web app's listening socket on ``--host`` / ``--port``."""
    with shop_nats(), socket.create_server((args.host, args.port)) as sock:
        host, port = sock.getsockname()[:2]
        print(f"  serving    http://{host}:{port} (Ctrl-C to stop)", flush=True)
        yield sock


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, so the ``with`` blocks
    unwind (the embedded nats-server stops too) whoever sends them, a terminal or a process
    manager. uvicorn re-raises the signal it caught once it has shut down gracefully."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv, "python -m examples.fastapi_app", "uvicorn")
    logging.basicConfig(level=logging.INFO, format="  log        %(name)s: %(message)s")
    interrupt_on_signals()
    with nats_and_socket(args) as sock:
        config = uvicorn.Config("examples.fastapi_app.app:app", log_level="info", lifespan="on")
        with contextlib.suppress(KeyboardInterrupt):  # after uvicorn's graceful shutdown
            uvicorn.Server(config).run(sockets=[sock])
    print("  stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
