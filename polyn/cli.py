"""The ``polyn`` command line.

Subcommands (migrations, schemas, a development server) are added by later layers; each is a
function taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from polyn._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``polyn`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="polyn",
        description=(
            "Polyn for Python: validated CloudEvents on NATS JetStream. "
            "Manage schemas, JetStream migrations and a development nats-server."
        ),
    )
    parser.add_argument("--version", action="version", version=f"polyn {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``polyn`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
