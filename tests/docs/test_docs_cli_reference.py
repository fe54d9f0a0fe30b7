"""docs/reference/cli.md names every command and flag of ``polyn --help``.

The parser is walked (``polyn.cli.build_parser``): every command path (``polyn schemas load``)
must appear on the page in backquotes, every flag of a command that is particular to it must
appear on a line that names the command, and the flags several commands share (configuration,
``--log-level``) and the top-level ones must appear somewhere on the page. Fast and needing no
extra, so it runs in the default ``pytest`` run: a flag added without its documentation fails.
"""

from __future__ import annotations

import argparse
import re

from docs_support import DOCS

from polyn.cli import build_parser

PAGE = DOCS / "reference" / "cli.md"


def commands() -> dict[tuple[str, ...], list[str]]:
    """Every command path, with its long flags (``--help`` left out)."""
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        flags = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            else:
                flags += [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        found[path] = flags

    walk(build_parser(), ("polyn",))
    return found


def test_the_parser_has_the_commands_the_page_is_about() -> None:
    assert ("polyn", "schemas", "load") in commands()
    assert "--prune" in commands()[("polyn", "schemas", "load")]


def test_every_command_and_flag_is_on_the_cli_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    lines = page.splitlines()
    every = commands()
    # flags of more than one command (configuration, --log-level) may be documented once
    counts: dict[str, int] = {}
    for flags in every.values():
        for flag in flags:
            counts[flag] = counts.get(flag, 0) + 1
    shared = {flag for flag, count in counts.items() if count > 1}
    missing = []
    for path, flags in every.items():
        name = " ".join(path)
        if path != ("polyn",) and f"`{name}" not in page:
            missing.append(f"command {name}")
            continue
        if path == ("polyn",):
            missing += [f"{name} {flag}" for flag in flags if flag not in page]
            continue
        here = [line for line in lines if re.search(rf"`{re.escape(name)}(\s|`)", line)]
        for flag in flags:
            if flag in shared:
                if flag not in page:
                    missing.append(f"{name} {flag}")
            elif not any(flag in line for line in here):
                missing.append(f"{name} {flag}")
    assert missing == [], f"not in docs/reference/cli.md: {missing}"
