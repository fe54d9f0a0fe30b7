"""Two deploys at once (issue 21, finding 12), as they happen: ``polyn migrate`` processes
started together against one server, and one whose holder of the lock is SIGKILLed.

Each migration file notes every time its ``change`` is read for a run (in ``runs.log`` beside
the folder), so "ran once" is counted from the migrations themselves, besides the processes'
output and the record in the bucket.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio
from _support import Names

from polyn.nats import NatsTransport

pytestmark = pytest.mark.slow

PYPROJECT = '[tool.polyn]\ndomain = "com.test"\nsource_root = "user.backend"\n'
IDS = ["1111", "2222", "3333"]

MIGRATION = """\
import os
import time
from pathlib import Path


def change(m):
    hold = os.environ.get("HOLD_FILE")
    if hold:  # stand still while holding the lock, until killed
        Path(hold).write_text("holding")
        time.sleep(120)
    with open(Path(__file__).parent.parent / "runs.log", "a") as runs:
        runs.write("{id}\\n")
    m.create_stream(name="{stream}", subjects=["{subject}"])
"""


def environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POLYN_", "NATS_")) or key == "POLYN_NATS_SERVER"
    }
    env.update(extra)
    return env


def make_project(root: Path, names: Names, tag: str) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    folder = root / "migrations"
    folder.mkdir()
    for migration_id in IDS:
        (folder / f"{migration_id}_create.py").write_text(
            MIGRATION.format(
                id=migration_id,
                stream=names.stream(f"{tag}_{migration_id}"),
                subject=names.subject(f"{tag}.{migration_id}"),
            )
        )
    return root


def command(url: str, bucket: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "polyn.cli", "migrate",
        "--server", url, "--migrations-bucket", bucket, *extra,
    ]  # fmt: skip


async def deploy(argv: list[str], root: Path, done: list[trio.CompletedProcess[bytes]]) -> None:
    done.append(
        await trio.run_process(
            argv,
            cwd=root,
            env=environment(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    )


async def recorded(transport: NatsTransport, bucket: str) -> list[str]:
    entry = await transport.kv_get(bucket, "user.backend")
    assert entry is not None and entry.value is not None
    ids: list[str] = json.loads(entry.value)
    return ids


def runs(root: Path) -> list[str]:
    return sorted((root / "runs.log").read_text().split())


async def test_ten_pairs_of_concurrent_deploys_run_each_migration_once(
    nats_url: str, names: Names, tmp_path: Path, transport: NatsTransport
) -> None:
    for pair in range(10):
        root = make_project(tmp_path / f"pair{pair}", names, f"p{pair}")
        bucket = names.bucket(f"migrations{pair}")
        done: list[trio.CompletedProcess[bytes]] = []
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(deploy, command(nats_url, bucket), root, done)
        outputs = [p.stdout.decode() for p in done]
        assert [p.returncode for p in done] == [0, 0], [p.stderr.decode() for p in done]
        migrated = [
            line.split(":")[0]
            for output in outputs
            for line in output.splitlines()
            if line.startswith("== ") and ": migrated (" in line
        ]
        assert sorted(migrated) == [f"== {i}_create.py" for i in IDS], outputs
        assert runs(root) == IDS, f"pair {pair}: {outputs}"
        assert await recorded(transport, bucket) == IDS


async def test_a_killed_holder_blocks_the_next_deploy_only_for_its_lease(
    nats_url: str, names: Names, tmp_path: Path, transport: NatsTransport
) -> None:
    root = make_project(tmp_path / "project", names, "killed")
    bucket = names.bucket("migrations")
    hold = tmp_path / "holding"
    with trio.fail_after(60):
        holder = await trio.lowlevel.open_process(
            command(nats_url, bucket, "--lock-ttl", "1"),
            cwd=root,
            env=environment(HOLD_FILE=str(hold)),
        )
        try:
            while not hold.exists():  # noqa: ASYNC110 - another process writes it
                await trio.sleep(0.05)
        finally:
            holder.kill()  # SIGKILL: no clean-up of any kind
            await holder.wait()
        assert holder.returncode == -9
        lock = await transport.kv_get(bucket, "_lock.user.backend")
        assert lock is not None and lock.value  # left behind by the killed holder

        after = await trio.run_process(
            command(nats_url, bucket),
            cwd=root,
            env=environment(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = after.stdout.decode()
    assert after.returncode == 0, after.stderr.decode()
    assert "Migration lock: took over the expired lock of " in output
    assert output.strip().endswith(
        "Ran 3 migrations; 3 recorded for user.backend in bucket " + bucket
    )
    assert runs(root) == IDS  # the killed run never got as far as running one
    assert await recorded(transport, bucket) == IDS
    assert await transport.kv_get(bucket, "_lock.user.backend") is None
