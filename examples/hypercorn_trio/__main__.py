"""``python -m examples.hypercorn_trio [--host H] [--port P]``: see the package doc."""

from __future__ import annotations

import functools
import logging
import signal
import sys

import trio

from examples.fastapi_app.__main__ import nats_and_socket, parse_args


async def serve(fd: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from examples.fastapi_app.app import app

    config = Config()
    config.bind = [f"fd://{fd}"]
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def shutdown() -> None:  # hypercorn stops gracefully (lifespan included)
            async for _ in signals:
                return

        await hypercorn_serve(app, config, shutdown_trigger=shutdown)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "python -m examples.hypercorn_trio", "hypercorn's trio worker")
    logging.basicConfig(level=logging.INFO, format="  log        %(name)s: %(message)s")
    with nats_and_socket(args) as sock:
        trio.run(functools.partial(serve, sock.detach()))  # hypercorn owns and closes it
    print("  stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
