"""The ``polyn`` command line run as a user runs it: a subprocess against a real nats-server.

Every test works in a project folder of its own (``pyproject.toml`` with the service's domain
and source root) and passes its unique bucket names by flags, so tests run in parallel on one
server. The environment is cleaned of ``POLYN_*`` / ``NATS_*`` settings first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from _support import Names, Shared

from polyn import PullConsumer, codec
from polyn.actors import Supervisor
from polyn.config import Config
from polyn.consumers import Ack
from polyn.errors import StreamError
from polyn.event import Event
from polyn.nats import Message, NatsConnection, NatsTransport
from polyn.schema_store import SchemaStore

PYPROJECT = """\
[tool.polyn]
domain = "com.test"
source_root = "user.backend"
"""
UNREACHABLE = "nats://127.0.0.1:1"


def clean_environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POLYN_", "NATS_")) or key == "POLYN_NATS_SERVER"
    }
    env.update(extra)
    return env


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


@attrs.define
class Project:
    """A service's folder, and ``run(...)`` to call ``polyn`` in it with this test's buckets."""

    root: Path
    url: str
    names: Names

    @property
    def migrations_bucket(self) -> str:
        return self.names.bucket("migrations")

    @property
    def schema_bucket(self) -> str:
        return self.names.bucket("schemas")

    def flags(self) -> list[str]:
        return [
            "--server",
            self.url,
            "--migrations-bucket",
            self.migrations_bucket,
            "--schema-bucket",
            self.schema_bucket,
        ]

    async def run(self, *args: str, flags: bool = True, **env: str) -> Result:
        command = [sys.executable, "-m", "polyn.cli", *args, *(self.flags() if flags else [])]
        done = await trio.run_process(
            command,
            cwd=self.root,
            env=clean_environment(**env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    def write_migration(self, file_name: str, body: str) -> None:
        folder = self.root / "migrations"
        folder.mkdir(exist_ok=True)
        (folder / file_name).write_text(body)


@pytest.fixture
def project(tmp_path: Path, nats_url: str, names: Names) -> Project:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return Project(tmp_path, nats_url, names)


@pytest.fixture
async def transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    transport = await NatsTransport.connect(nats_url)
    try:
        yield transport
    finally:
        await transport.close()


def create_stream(stream: str, subject: str) -> str:
    return (
        "def change(m):\n"
        f'    m.create_stream(name="{stream}", subjects=["{subject}"])\n'
        f'    m.create_consumer(stream_name="{stream}", durable_name="billing")\n'
    )


async def test_migrate_dry_run_migrate_status_and_rollback(
    project: Project, names: Names, transport: NatsTransport
) -> None:
    stream = names.stream()
    generated = await project.run("gen", "migration", "CreateOrders", flags=False)
    assert generated.returncode == 0, generated.stderr
    path = Path(generated.stdout.split()[-1])
    assert path.parent == Path("migrations") and path.name.endswith("_create_orders.py")
    (project.root / path).write_text(create_stream(stream, names.subject("order.>")))

    dry = await project.run("migrate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"   create_stream {stream}" in dry.stdout
    assert "Dry run: 1 migration would run; nothing was changed" in dry.stdout
    with pytest.raises(StreamError):
        await transport.stream_info(stream)

    migrated = await project.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"== {path.name}: migrated" in migrated.stdout
    assert migrated.stdout.strip().endswith(
        f"Ran 1 migration; 1 recorded for user.backend in bucket {project.migrations_bucket}"
    )
    assert (await transport.consumer_info(stream, "billing")).name == "billing"
    stored = await transport.kv_entries(project.migrations_bucket)
    assert stored == {"user.backend": json.dumps([path.name[:14]]).replace(" ", "").encode()}

    again = await project.run("migrate")
    assert again.stdout.strip() == "No pending migrations"

    project.write_migration("29990101000000_later.py", "def change(m):\n    pass\n")
    status = await project.run("migrations", "status")
    assert status.returncode == 0, status.stderr
    assert f"  applied  {path.name}" in status.stdout
    assert "  pending  29990101000000_later.py" in status.stdout
    assert status.stdout.strip().endswith("1 applied, 1 pending")

    rolled = await project.run("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert f"== {path.name}: rolled back" in rolled.stdout
    with pytest.raises(StreamError):
        await transport.stream_info(stream)
    assert await transport.kv_entries(project.migrations_bucket) == {"user.backend": b"[]"}


async def test_a_failing_migration_exits_1_naming_the_file_and_reason(project: Project) -> None:
    project.write_migration("1234_update.py", 'def change(m):\n    m.update_stream(name="NOPE")\n')
    result = await project.run("migrate")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "polyn: error: Error running migration file 1234_update.py - step 1 of 1 "
        "(update_stream NOPE): stream NOPE does not exist and no earlier step creates it. "
        "Nothing was changed: every step is checked before any runs"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["schemas", "check"]],
)
async def test_an_unreachable_server_is_one_clear_line(
    project: Project, command: list[str]
) -> None:
    (project.root / "schemas").mkdir()
    result = await project.run(*command, "--server", UNREACHABLE, flags=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"polyn: error: could not connect to NATS at {UNREACHABLE}")


async def test_migrate_without_a_service_name_says_what_to_configure(tmp_path: Path) -> None:
    project = Project(tmp_path, UNREACHABLE, Names())
    result = await project.run("migrate")
    assert result.returncode == 1
    assert "You must configure the `domain` for Polyn" in result.stderr
    assert "Traceback" not in result.stderr


async def test_flags_beat_environment_beat_pyproject(project: Project) -> None:
    (project.root / "pyproject.toml").write_text(
        PYPROJECT + 'migrations-bucket = "FROM_PYPROJECT"\n'
    )
    base = ["migrations", "status", "--server", project.url]
    from_file = await project.run(*base, flags=False)
    assert "(bucket FROM_PYPROJECT," in from_file.stdout, from_file.stderr
    from_env = await project.run(*base, flags=False, POLYN_MIGRATIONS_BUCKET="FROM_ENV")
    assert "(bucket FROM_ENV," in from_env.stdout
    from_flag = await project.run(
        *base, "--migrations-bucket", "FROM_FLAG", flags=False, POLYN_MIGRATIONS_BUCKET="FROM_ENV"
    )
    assert "(bucket FROM_FLAG," in from_flag.stdout
    from_nats_url = await project.run("migrations", "status", flags=False, NATS_URL=project.url)
    assert from_nats_url.returncode == 0, from_nats_url.stderr


async def test_gen_migration_refuses_a_duplicate_name(project: Project) -> None:
    first = await project.run("gen", "migration", "my_migration", flags=False)
    assert first.returncode == 0
    second = await project.run("gen", "migration", "MyMigration", flags=False)
    assert second.returncode == 1
    assert "migration can't be created, there is already a migration file with name" in (
        second.stderr
    )
    assert len(list((project.root / "migrations").iterdir())) == 1


async def test_schemas_init_load_check_breaking_and_prune(
    project: Project, transport: NatsTransport
) -> None:
    init = await project.run("schemas", "init", flags=False)
    assert init.returncode == 0, init.stderr
    example = project.root / "schemas" / "user.created.v1.json"
    assert example.is_file()

    loaded = await project.run("schemas", "load")
    assert loaded.returncode == 0, loaded.stderr
    assert "    added user.created.v1" in loaded.stdout
    entries = await transport.kv_entries(project.schema_bucket)
    assert json.loads(entries["user.created.v1"]) == json.loads(example.read_text())

    await transport.kv_put(project.schema_bucket, "other.team.v1", b'{"type":"null"}')
    schema = json.loads(example.read_text())
    del schema["properties"]["email"]
    schema["required"] = ["id"]
    example.write_text(json.dumps(schema))

    checked = await project.run("schemas", "check")
    assert checked.returncode == 1
    assert "     kept other.team.v1" in checked.stdout
    assert "backwards-incompatible change on schema user.created.v1" in checked.stderr
    assert "#/properties/email: property removed" in checked.stderr

    refused = await project.run("schemas", "load")
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("Nothing was written.")
    assert await transport.kv_entries(project.schema_bucket) == {
        **entries,
        "other.team.v1": b'{"type":"null"}',
    }

    forced = await project.run("schemas", "load", "--allow-breaking", "--prune", "other.team.v1")
    assert forced.returncode == 0, forced.stderr
    assert "  removed other.team.v1" in forced.stdout
    assert list(await transport.kv_entries(project.schema_bucket)) == ["user.created.v1"]


async def test_invalid_schema_files_are_reported_before_connecting(project: Project) -> None:
    folder = project.root / "elsewhere"
    folder.mkdir()
    (folder / "Bad Name.json").write_text("{}")
    (folder / "app.widgets.v1.json").write_text('{"type": "not-a-valid-type"}')
    result = await project.run("schemas", "load", "elsewhere", "--server", UNREACHABLE, flags=False)
    assert result.returncode == 1
    assert "Message names must be lowercase, alphanumeric and dot separated" in result.stderr
    assert "Invalid JSON Schema document for event app.widgets.v1" in result.stderr
    assert "could not connect" not in result.stderr


async def _two_foreign_keys(project: Project, transport: NatsTransport) -> None:
    (project.root / "schemas").mkdir()
    (project.root / "schemas" / "mine.v1.json").write_text('{"type": "string"}')
    await transport.kv_create(project.schema_bucket)
    for key in ("other.team.v1", "third.team.v1"):
        await transport.kv_put(project.schema_bucket, key, b'{"type":"null"}')


async def test_prune_without_keys_refuses_and_names_the_consumers_that_read_them(
    project: Project, transport: NatsTransport, names: Names
) -> None:  # issue 21, item 2
    await _two_foreign_keys(project, transport)
    stream = names.stream("other")
    await transport.create_stream({"name": stream, "subjects": ["other.team.v1"]})
    try:
        await transport.create_consumer(
            stream,
            {
                "durable_name": "billing_other_team_v1",
                "filter_subject": "other.team.v1",
                "ack_policy": "explicit",
            },
        )
        for flags in (["--prune"], ["--prune-all"]):
            refused = await project.run("schemas", "load", *flags)
            assert refused.returncode == 1, refused.stdout
            assert "Refusing to delete them unasked" in refused.stderr
            assert f"other.team.v1 (read by consumer {stream}/billing_other_team_v1)" in (
                refused.stderr
            )
            assert "third.team.v1" in refused.stderr
            assert "Traceback" not in refused.stderr
            assert set(await transport.kv_entries(project.schema_bucket)) == {
                "other.team.v1",
                "third.team.v1",
            }
        named = await project.run("schemas", "load", "--prune", "other.team.v1")
        assert named.returncode == 0, named.stderr
        assert "  removed other.team.v1" in named.stdout
        assert f"other.team.v1 was read by consumer {stream}/billing_other_team_v1" in named.stdout
        assert set(await transport.kv_entries(project.schema_bucket)) == {
            "third.team.v1",
            "mine.v1",
        }
        typo = await project.run("schemas", "load", "--prune", "mine.v1")
        assert typo.returncode == 1
        assert "--prune takes keys that are in the bucket and not on disk" in typo.stderr
        everything = await project.run("schemas", "load", "--prune-all", "--yes")
        assert everything.returncode == 0, everything.stderr
        assert list(await transport.kv_entries(project.schema_bucket)) == ["mine.v1"]
    finally:
        await transport.delete_stream(stream)


async def test_prune_asks_key_by_key_on_a_terminal(
    project: Project, transport: NatsTransport
) -> None:
    await _two_foreign_keys(project, transport)

    def answer_on_a_terminal() -> tuple[int, str]:
        import pty

        main, terminal = pty.openpty()
        command = [
            sys.executable,
            "-m",
            "polyn.cli",
            "schemas",
            "load",
            "--prune",
            *project.flags(),
        ]
        process = subprocess.Popen(
            command,
            cwd=project.root,
            env=clean_environment(),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(terminal)
        os.write(main, b"y\nn\n")  # delete other.team.v1, keep third.team.v1
        output, _ = process.communicate(timeout=60)
        os.close(main)
        return process.returncode, output.decode()

    code, output = await trio.to_thread.run_sync(answer_on_a_terminal)
    assert code == 0, output
    assert "Delete other.team.v1? [y/N]" in output
    assert "Delete third.team.v1? [y/N]" in output
    assert set(await transport.kv_entries(project.schema_bucket)) == {"third.team.v1", "mine.v1"}


async def test_a_schema_polyn_does_not_take_is_one_clear_line(project: Project) -> None:
    folder = project.root / "schemas"
    folder.mkdir()
    (folder / "five.v1.json").write_text('{"$schema": 5}')
    result = await project.run("schemas", "load", "--server", UNREACHABLE, flags=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("polyn: error: Invalid JSON Schema document for event five.v1")
    assert "$schema 5 is not a string naming a draft" in lines[0]


async def test_remote_references_are_refused_by_load_and_check(project: Project) -> None:
    folder = project.root / "schemas"
    folder.mkdir()
    (folder / "meta.v1.json").write_text(
        '{"$dynamicRef": "http://169.254.169.254/latest/meta-data/"}'
    )
    secret = project.root / "id_rsa"
    secret.write_text('"-----BEGIN PRIVATE KEY----- s3cr3t-k3y"')
    (folder / "secret.v1.json").write_text(json.dumps({"$ref": secret.as_uri()}))
    for command in ("load", "check"):
        result = await project.run("schemas", command, "--server", UNREACHABLE, flags=False)
        assert result.returncode == 1
        assert "meta.v1 (" in result.stderr and "secret.v1 (" in result.stderr
        assert "does not resolve inside the schema; Polyn fetches nothing" in result.stderr
        assert "s3cr3t" not in result.stderr + result.stdout


async def test_a_json_syntax_error_names_the_file_line_and_column(project: Project) -> None:
    folder = project.root / "schemas"
    folder.mkdir()
    path = folder / "broken.v1.json"
    path.write_text('{\n  "type": "object",\n  properties: {}\n}\n')
    result = await project.run("schemas", "check", "--server", UNREACHABLE, flags=False)
    assert result.returncode == 1
    where = path.relative_to(project.root)
    assert f"({where}, line 3, column 3: Expecting property name enclosed in double quotes)" in (
        result.stderr
    )


async def test_schemas_init_refuses_a_folder_that_is_not_empty(project: Project) -> None:
    folder = project.root / "schemas"
    folder.mkdir()
    (folder / "order.placed.v1.json").write_text('{"type": "object"}')
    result = await project.run("schemas", "init", flags=False)
    assert result.returncode == 1
    assert "is not empty (order.placed.v1.json); nothing was written" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["order.placed.v1.json"]
    (project.root / "fresh").mkdir()
    (project.root / "fresh" / ".gitkeep").write_text("")
    fine = await project.run("schemas", "init", "fresh", flags=False)
    assert fine.returncode == 0, fine.stderr


async def test_a_subcommand_group_without_a_subcommand_is_a_usage_error(project: Project) -> None:
    result = await project.run("gen", flags=False)
    assert result.returncode == 2
    assert "usage: polyn gen" in result.stderr


def test_server_prints_its_url_keeps_its_store_under_dot_polyn_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "polyn.cli", "server", "--port", "0"],
        cwd=tmp_path,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("nats-server with JetStream at nats://127.0.0.1:"), line
        url = line.split()[4]

        async def use_jetstream() -> None:
            transport = await NatsTransport.connect(url)
            try:
                await transport.kv_create("CLI_SERVER_CHECK")
            finally:
                await transport.close()

        trio.run(use_jetstream)
        assert (tmp_path / ".polyn" / "jetstream").is_dir()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "Stopping nats-server" in out
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_installed_console_script_runs() -> None:
    script = Path(sysconfig.get_path("scripts")) / "polyn"
    result = subprocess.run(
        [str(script), "migrate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout and "--migrations-bucket" in result.stdout


# -- migrations through the Migrator tree, the lock and the generator (issues 20 and 21) ------


async def test_a_start_up_failure_is_one_line_with_one_traceback_only_at_debug(
    project: Project,
) -> None:
    project.write_migration("1111_noop.py", "def change(m):\n    pass\n")
    quiet = await project.run("migrate", "--server", UNREACHABLE, flags=False)
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == [
        f"polyn: error: could not connect to NATS at {UNREACHABLE}: [Errno 111] Connect call "
        "failed ('127.0.0.1', 1)"
    ]
    debug = await project.run(
        "migrate", "--log-level", "debug", "--server", UNREACHABLE, flags=False
    )
    assert debug.returncode == 1
    assert debug.stderr.count("Traceback (most recent call last)") == 1, debug.stderr
    assert debug.stderr.splitlines()[-1] == quiet.stderr.strip()
    assert not re.search(r"\b_[A-Z]\w+", debug.stderr), debug.stderr  # no private class names
    status = await project.run("--log-level", "debug", "migrations", "status", flags=False,
                               NATS_URL=UNREACHABLE)  # fmt: skip
    assert status.returncode == 1
    assert status.stderr.count("Traceback (most recent call last)") == 1


def test_migrate_rollback_and_status_run_through_the_migrator_actor(
    tmp_path: Path, nats_url: str, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyn.cli import main
    from polyn.migration import MigrateRequest, Migrator, StatusRequest

    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "migrations").mkdir()
    stream = names.stream()
    (tmp_path / "migrations" / "1111_create.py").write_text(
        create_stream(stream, names.subject("order.>"))
    )
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith(("POLYN_", "NATS_"))]:
        monkeypatch.delenv(key)
    calls: list[object] = []
    handle_call = Migrator.handle_call

    async def spy(self: Migrator, request: object) -> object:
        calls.append(request)
        return await handle_call(self, request)

    monkeypatch.setattr(Migrator, "handle_call", spy)
    flags = ["--server", nats_url, "--migrations-bucket", names.bucket("migrations")]
    assert main(["migrate", "--dry-run", *flags]) == 0
    assert main(["migrate", *flags]) == 0
    assert main(["migrations", "status", *flags]) == 0
    assert main(["rollback", "--break-lock", *flags]) == 0
    assert calls == [
        MigrateRequest("up", dry_run=True),
        MigrateRequest("up"),
        StatusRequest(),
        MigrateRequest("down", break_lock=True),
    ]


async def test_a_held_lock_is_waited_for_named_and_broken_on_request(
    project: Project, transport: NatsTransport
) -> None:
    project.write_migration("1111_noop_stream.py", create_stream(project.names.stream(), "x.y"))
    holder = {"holder": "deploy-7:4242:0a1b", "ttl": 600, "since": "2024-05-01T09:30:00+00:00"}
    await transport.kv_create(project.migrations_bucket)
    await transport.kv_create_key(
        project.migrations_bucket, "_lock.user.backend", json.dumps(holder).encode()
    )
    waited = await project.run("migrate", "--lock-wait", "0.5")
    assert waited.returncode == 1
    assert "Waiting for the migration lock, held by deploy-7:4242:0a1b" in waited.stdout
    assert waited.stderr.startswith(
        f"polyn: error: The migration lock (_lock.user.backend in bucket "
        f"{project.migrations_bucket}) is held by deploy-7:4242:0a1b; waited 0.5 s. If that run "
        "is dead, its lease expires 600 s after its last renewal; `polyn migrate --break-lock` "
        "takes the lock at once"
    )
    broken = await project.run("migrate", "--break-lock")
    assert broken.returncode == 0, broken.stderr
    assert "Migration lock: broke (--break-lock) lock of deploy-7:4242:0a1b" in broken.stdout
    assert await transport.kv_get(project.migrations_bucket, "_lock.user.backend") is None


class GeneratedConsumer(PullConsumer):
    """A PullConsumer of the type given: what a user writes after ``gen migration --consumer``."""

    def __init__(self, seen: list[object], **options: object) -> None:
        super().__init__(**options)
        self.seen = seen

    async def handle_message(self, event: Event, msg: Message) -> Ack:
        self.seen.append(event.data)
        return Ack.ACK


async def test_a_generated_consumer_migration_gives_a_consumer_polyn_starts_on(
    project: Project, names: Names, transport: NatsTransport
) -> None:
    stream, event_type = names.stream("orders"), names.subject("order.placed.v1")
    generated = await project.run(
        "gen", "migration", "consume_orders", "--stream", stream,
        "--subjects", names.subject("order.>"), "--consumer", f"com.test.{event_type}",
        flags=False,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    source = (project.root / generated.stdout.split()[-1]).read_text()
    durable = f"user_backend_{event_type.replace('.', '_')}"
    assert f'durable_name="{durable}"' in source and 'ack_policy="explicit"' in source

    migrated = await project.run("migrate")
    assert migrated.returncode == 0, migrated.stderr

    config = Config(domain="com.test", source_root="user.backend", servers=[project.url])
    schema = {"type": "object"}
    event = Event.new(config, event_type, {"order": 1})
    body = codec.encode(event, codec.Schemas.from_dict({event_type: schema}), config)
    await transport.js_publish(event_type, body)
    seen: list[object] = Shared()
    children = [
        NatsConnection(),
        SchemaStore(schemas={event_type: schema}),
        GeneratedConsumer(seen, type=event_type),
    ]
    async with Supervisor(children, strategy="rest_for_one").run(context={"config": config}):
        with trio.fail_after(10):
            while not seen:  # noqa: ASYNC110 - the consumer's task appends
                await trio.sleep(0.02)
    assert seen == [{"order": 1}]
    info = await transport.consumer_info(stream, durable)
    assert info.config["filter_subject"] == event_type


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--consumer", "order.placed.v1"], "name the stream (--stream)"),
        (["--stream", "ORDERS"], "give the subjects of stream ORDERS (--subjects)"),
        (
            ["--stream", "ORDERS", "--subjects", "payment.>", "--consumer", "order.placed.v1"],
            "the subjects of stream ORDERS (payment.>) do not capture order.placed.v1",
        ),
        (["--stream", "ORDERS", "--consumer", "Order Placed"], "Event names must be lowercase"),
    ],
)
async def test_gen_migration_refuses_templates_that_would_not_work(
    project: Project, args: list[str], message: str
) -> None:
    result = await project.run("gen", "migration", "consume", *args, flags=False)
    assert result.returncode == 1
    assert result.stderr.startswith("polyn: error: ") and message in result.stderr
    assert not (project.root / "migrations").exists() or not any(
        (project.root / "migrations").iterdir()
    )
