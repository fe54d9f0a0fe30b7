"""The README's "Testing with the sandbox" project, run as its user would run it.

``user_project/`` is a service with ``[tool.polyn]``, a schema, a migration, a PullConsumer and
a Pipeline, and the test suite the README shows (``tests/conftest.py`` and
``tests/test_billing.py``, copied there verbatim). Running its pytest in a process of its own
checks the plugin end to end: loaded through the ``pytest11`` entry point, ``nats_server``
started by the plugin and extended by the project's conftest (``polyn schemas load`` and
``polyn migrate`` through the installed command line), ``polyn_config`` from ``[tool.polyn]``,
``polyn_schemas``, ``polyn_sandbox`` with ``sandbox.run(app)`` on virtual time, and a
Hypothesis property test with a sandbox per example.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent / "user_project"


def test_the_readme_user_project_passes_its_own_sandboxed_suite() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("POLYN_")}
    # its own nats-server (the plugin's), so its ORDERS stream meets nobody else's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout
