"""What the cluster and security scenarios share (issue 12): a service's project folder, the
command line run as a user runs it, and certificates made by the test.

Imported as ``_cluster_support`` (pytest puts this folder on ``sys.path``); it holds no fixtures,
so it does not disturb the folder's ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
import trustme

ORDER_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}},
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def write_project(
    root: Path,
    settings: Mapping[str, Any],
    *,
    schemas: Mapping[str, Any] | None = None,
    migrations: Mapping[str, str] | None = None,
) -> Path:
    """A service's folder as a user keeps it: ``pyproject.toml`` with ``[tool.polyn]``, a
    ``schemas/`` folder and a ``migrations/`` folder. Returns the pyproject's path."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[project]", 'name = "svc"', 'version = "0"', "", "[tool.polyn]"]
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    pyproject = root / "pyproject.toml"
    pyproject.write_text("\n".join(lines) + "\n")
    (root / "schemas").mkdir(exist_ok=True)
    for name, schema in (schemas or {}).items():
        (root / "schemas" / f"{name}.json").write_text(json.dumps(schema))
    (root / "migrations").mkdir(exist_ok=True)
    for file_name, text in (migrations or {}).items():
        (root / "migrations" / file_name).write_text(text)
    return pyproject


@attrs.frozen
class Completed:
    code: int
    stdout: str
    stderr: str


def user_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Polyn or NATS settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POLYN_", "NATS_")) or key == "POLYN_NATS_SERVER"
    }
    env.update(extra or {})
    return env


async def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Completed:
    """Run ``polyn ARGS`` as a separate process, as a user or a deployment would."""
    with trio.fail_after(timeout):
        done = await trio.run_process(
            [sys.executable, "-m", "polyn.cli", *args],
            cwd=cwd,
            env=user_environment(env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    return Completed(done.returncode, done.stdout.decode(), done.stderr.decode())


@attrs.frozen
class TlsFiles:
    """PEM files made by :func:`make_tls_files`: a CA, the server's pair and a client's pair."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the server shows: the "wrong CA"


def make_tls_files(folder: Path) -> TlsFiles:
    """Certificates for loopback: the server's for ``127.0.0.1`` and ``localhost``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("polyn-client@example.com")
    files = TlsFiles(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
        other_ca=folder / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    return files


def write_conf(folder: Path, name: str, text: str) -> Path:
    """A nats-server configuration file."""
    path = folder / name
    path.write_text(text)
    return path
