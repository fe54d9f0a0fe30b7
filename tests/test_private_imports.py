"""No module imports another package's private names (issue 18).

A *package* is a directory: ``polyn/nats/*``, ``polyn/actors/*``, ``polyn/consumers/*`` ...;
the modules at the root of ``polyn/`` are package ``polyn``. Importing ``_name`` or a module
``_mod`` of another package is a failure: a seam between packages is made of public names.
Third-party private names (nats-py's internals) may be imported in ``polyn/nats/_wire.py``
only, the one module with a tested version range and a public-API fallback.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import polyn

ROOT = Path(polyn.__file__).parent


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _package_of_module(dotted: str, root: Path = ROOT) -> str:
    """The package (directory) a ``polyn...`` module or package name belongs to."""
    parts = dotted.split(".")
    path = root.parent.joinpath(*parts)
    return dotted if path.is_dir() else ".".join(parts[:-1])


def _violations(root: Path = ROOT) -> list[str]:
    found = []
    wire = (root / "nats" / "_wire.py").resolve()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        own = ".".join(relative.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [(alias.name, "") for alias in node.names]
            else:
                continue
            for module, name in targets:
                parts = module.split(".")
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                if parts[0] != "polyn":
                    if parts[0] in sys.stdlib_module_names:
                        continue  # the standard library's _thread and the like are public
                    if path.resolve() != wire and (any(map(_private, parts)) or _private(name)):
                        found.append(f"{where} imports {module}.{name} (third-party private)")
                    continue
                package = _package_of_module(module, root)
                if package == own:
                    continue
                # A private module of another package, or a private name from it.
                module_private = any(map(_private, parts[len(package.split(".")) :]))
                if module_private or _private(name):
                    found.append(f"{where} imports {module}.{name} from package {package}")
    return found


def test_no_module_imports_another_packages_private_names() -> None:
    assert _violations() == []


def test_the_check_reports_each_kind_of_private_import(tmp_path: Path) -> None:
    package = tmp_path / "polyn"
    for folder in ("nats", "consumers"):
        (package / folder).mkdir(parents=True)
    files = {
        "codec.py": "from polyn.event import _now\n",  # same package: fine
        "nats/_wire.py": "from nats.aio.client import _CRLF_\n",  # the one allowed place
        "nats/transport.py": "from nats.aio import _private_thing\nimport _thread\n",
        "consumers/base.py": (
            "from polyn._resolve import resolve\n"
            "from polyn.nats._wire import supported\n"
            "from polyn.nats import _hook\n"
            "from polyn.nats.connection import transport_for\n"
            "from polyn import __version__\n"
        ),
    }
    for name, text in files.items():
        (package / name).write_text(text)
    found = _violations(package)
    assert [line.split(" imports ")[0] for line in found] == [
        "polyn/consumers/base.py:1",
        "polyn/consumers/base.py:2",
        "polyn/consumers/base.py:3",
        "polyn/nats/transport.py:1",
    ]
