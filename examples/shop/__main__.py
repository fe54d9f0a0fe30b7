"""``python -m examples.shop [--keep-running] [--verbose]``: see :mod:`examples.shop`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys

import trio

from examples.shop.demo import install_tracing, run
from examples.shop.service import make_config
from polyn.errors import PolynError
from polyn.server import NatsServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Run the example shop end to end: an embedded nats-server (unless NATS_URL "
        "is set), schemas, migrations, the service tree, sample orders, a summary and a trace.",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the service (and the embedded server) running until Ctrl-C",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Polyn's own log lines as well"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Polyn logs every dead letter with its full error; the example prints them its own way.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="  log        %(levelname)s %(name)s: %(message)s",
    )
    say = functools.partial(print, flush=True)
    say("Polyn example shop: orders and payments on NATS JetStream")
    exporter = install_tracing()
    try:
        with contextlib.ExitStack() as stack:
            url = os.environ.get("NATS_URL")
            if url:
                say(f"  nats       using NATS_URL={url}")
            else:
                server = stack.enter_context(NatsServer())
                url = server.url
                say(f"  nats       started nats-server at {url} (JetStream in a temporary dir)")
            outcome = trio.run(
                functools.partial(
                    run,
                    make_config(url),
                    say=say,
                    keep_running=args.keep_running,
                    exporter=exporter,
                )
            )
    except PolynError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if outcome.missing:
        say("FAILED: not everything was handled in time (see MISSING above)")
        return 1
    say("done: every order handled, every invalid message dead-lettered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
