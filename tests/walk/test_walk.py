"""A new user's first walk, replayed from an empty folder with the package as users get it.

Issue 20: a fresh project outside the repository, built from the README and the command line
alone, with the first mistakes a new user makes. This module builds the package as a wheel,
installs it with its ``testing`` extra into a new venv (dependencies from the package index),
and in an empty temporary folder runs every step as a subprocess of that venv: ``polyn server``,
``polyn schemas init`` / ``load``, ``polyn gen migration``, ``polyn migrate``, a service with a
PullConsumer run by ``trio.run(app.main)``, and the project's own tests under the sandbox.
Each mistake of the issue gets its message and exit code checked.

The steps share one project and run in file order (each builds on the ones before). Slow (the
venv takes about a minute), so it is marked ``walk`` and left out of the default run:
``pytest -q -m walk tests/walk`` (CI runs it after the main suite).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.walk

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180  # a liveness bound for one command, generous on a busy machine

PYPROJECT = """\
[project]
name = "signup"
version = "0.1.0"

[tool.polyn]
domain = "com.example"
source_root = "signup"

[tool.pytest.ini_options]
trio_mode = true
pythonpath = ["."]
"""

SERVICE = """\
import polyn
import trio


class Outbox(list):
    \"\"\"Mails sent (not a plain list: an actor's plain list arguments are copied per start).\"\"\"


class WelcomeMailer(polyn.PullConsumer):
    type = "user.created.v1"

    def __init__(self, outbox=None, **options):
        super().__init__(**options)
        self.outbox = outbox if outbox is not None else Outbox()

    async def handle_message(self, event, msg):
        self.outbox.append(f"Welcome, {event.data['email']}!")
        return polyn.Ack.ACK


def make_app(config=None, schema_store=None, outbox=None):
    return polyn.App(
        config or polyn.Config.load(),
        [polyn.NatsConnection(), schema_store or polyn.SchemaStore(), WelcomeMailer(outbox)],
    )


if __name__ == "__main__":
    trio.run(make_app().main)
"""

TESTS = """\
import json
from pathlib import Path

import polyn
import trio
from hypothesis import given, settings
from polyn.testing import strategies

from service import Outbox, make_app

CONFIG = polyn.Config.load()
SCHEMAS = polyn.codec.Schemas.from_dict(
    {"user.created.v1": json.loads(Path("schemas/user.created.v1.json").read_text())}
)


async def welcomed(polyn_sandbox, polyn_config, polyn_schemas, event_type):
    outbox = Outbox()
    app = make_app(polyn_config, polyn.SchemaStore(schemas=polyn_schemas), outbox)
    async with polyn_sandbox.run(app) as running:
        data = {"id": "1", "email": "ada@example.com"}
        await polyn.pub(running, event_type, data, ack=True)
        with trio.fail_after(60):
            while not outbox:
                await trio.sleep(0.1)
    return outbox


async def test_a_new_user_gets_a_welcome_mail(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    outbox = await welcomed(polyn_sandbox, polyn_config, polyn_schemas, "user.created.v1")
    assert outbox == ["Welcome, ada@example.com!"]


async def test_a_type_given_with_the_domain_reaches_the_consumer(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    full = "com.example.user.created.v1"
    outbox = await welcomed(polyn_sandbox, polyn_config, polyn_schemas, full)
    assert outbox == ["Welcome, ada@example.com!"]


@settings(max_examples=300, deadline=None)
@given(strategies.events("user.created.v1", SCHEMAS, config=CONFIG))
def test_every_drawn_user_is_publishable(event):
    # The schema polyn schemas init wrote has "format": "email": every drawn address passes
    # the checks pub makes.
    polyn.codec.encode(event, SCHEMAS, CONFIG)
"""

MISTAKES = """\
import polyn
import trio


class Buggy(polyn.PullConsumer):
    type = "user.created.v1"

    async def handle_message(self, event, msg):
        return event.data["nickname"]


class Forgetful(polyn.PullConsumer):
    type = "user.created.v1"

    async def handle_message(self, event, msg):
        return None


async def publish_to(consumer, polyn_sandbox, polyn_config, polyn_schemas):
    store = polyn.SchemaStore(schemas=polyn_schemas)
    app = polyn.App(polyn_config, [polyn.NatsConnection(), store, consumer])
    async with polyn_sandbox.run(app) as running:
        data = {"id": "1", "email": "ada@example.com"}
        await polyn.pub(running, "user.created.v1", data, ack=True)
        await trio.sleep(5)


async def test_buggy(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    await publish_to(Buggy(), polyn_sandbox, polyn_config, polyn_schemas)


async def test_forgetful(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    await publish_to(Forgetful(), polyn_sandbox, polyn_config, polyn_schemas)
"""

HALF_FAILING = """\
from polyn.migration import Migration, StreamConfig


def change(m: Migration) -> None:
    m.create_stream(StreamConfig(name="AUDIT", subjects=["audit.>"]))
    m.create_stream(StreamConfig(name="LOGINS", subjects=["login.>"]{replicas}))
"""

PLAIN_SUPERVISOR = """\
import polyn
import trio

from service import WelcomeMailer


class Ready(polyn.Actor):
    async def init(self):
        print("ready", flush=True)


async def main():
    tree = polyn.Supervisor(
        [polyn.NatsConnection(), polyn.SchemaStore(), WelcomeMailer(), Ready()]
    )
    with trio.move_on_after(2):
        await tree.main()
    print("stopped", flush=True)


trio.run(main)
"""


# -- the package, installed as a user installs it ---------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel built from this checkout and its ``testing`` extra; its bin."""
    root = tmp_path_factory.mktemp("walk-venv")
    cache = {"PIP_CACHE_DIR": str(Path(tempfile.gettempdir()) / "polyn-walk-pip-cache")}
    env = {**os.environ, **cache}
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(REPO)],
        check=True,
        env=env,
        timeout=600,
    )
    (wheel,) = dist.glob("polyn-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    bin_dir = root / "venv" / "bin"
    subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", f"{wheel}[testing]"],
        check=True,
        env=env,
        timeout=900,
    )
    return bin_dir


class Project:
    """The user's project folder and how they run things in it (the venv's commands)."""

    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder = folder
        self.bin = bin_dir
        self.url = ""
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POLYN_", "NATS_", "PYTEST_", "PYTHON", "VIRTUAL_ENV"))
        }
        environ["PATH"] = f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}"
        environ["VIRTUAL_ENV"] = str(bin_dir.parent)
        self.env = environ

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.folder,
            env={**self.env, "NATS_URL": self.url, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def start(self, *command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.folder,
            env={**self.env, "NATS_URL": self.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def project(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """An empty folder with the config in pyproject.toml and ``polyn server`` running in it."""
    folder = tmp_path_factory.mktemp("signup")
    assert not any(folder.iterdir())
    walk = Project(folder, venv)
    walk.write("pyproject.toml", PYPROJECT)
    server = walk.start("polyn", "server", "--port", "0")
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("nats-server with JetStream at nats://127.0.0.1:"), line
        walk.url = line.split()[4]
        yield walk
    finally:
        out, err = stop(server)
    assert server.returncode == 0, err
    assert "Stopping nats-server" in out


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# -- the walk, step by step --------------------------------------------------------------------


def test_01_a_second_polyn_server_in_the_folder_is_refused_at_once(project: Project) -> None:
    result = project.run("polyn", "server", "--port", "0")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "polyn: error: the store .polyn/jetstream is in use by another polyn server (pid "
    )
    assert project.url in line


def test_02_a_service_on_a_fresh_server_names_polyn_schemas_load(project: Project) -> None:
    project.write("service.py", SERVICE)
    result = project.run("python", "service.py")
    assert result.returncode == 1
    assert last_line(result) == (
        "polyn.errors.ActorError: the app could not start: child 'POLYN_SCHEMAS' (SchemaStore): "
        "The Schema Store has not been setup on your NATS server. Make sure you use the Polyn "
        "CLI to create it (bucket 'POLYN_SCHEMAS'): `polyn schemas load` creates it with the "
        "schemas folder's schemas"
    )
    assert result.stderr.count("Traceback") <= 1


def test_03_schemas_init_writes_the_example_and_refuses_a_non_empty_folder(
    project: Project,
) -> None:
    first = project.run("polyn", "schemas", "init")
    assert first.returncode == 0, first.stderr
    assert "Created schemas/user.created.v1.json" in first.stdout
    again = project.run("polyn", "schemas", "init")
    assert again.returncode == 1
    assert again.stderr.splitlines()[0] == (
        "polyn: error: schemas is not empty (user.created.v1.json); nothing was written. "
        "`polyn schemas init` starts a new schemas folder: name a new or empty one"
    )
    assert [p.name for p in (project.folder / "schemas").iterdir()] == ["user.created.v1.json"]


def test_04_a_json_syntax_error_names_the_file_line_and_column(project: Project) -> None:
    broken = project.write("schemas/broken.v1.json", '{\n  "type": "object",\n  oops: 1\n}\n')
    result = project.run("polyn", "schemas", "load")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "polyn: error: Invalid JSON Schema document for event broken.v1 "
        "(schemas/broken.v1.json, line 3, column 3: Expecting property name enclosed in double "
        "quotes)"
    )
    broken.unlink()
    loaded = project.run("polyn", "schemas", "load")
    assert loaded.returncode == 0, loaded.stderr
    assert "1 schemas loaded into POLYN_SCHEMAS: 1 added" in loaded.stdout


def test_05_gen_migration_and_migrate_create_the_consumer_polyn_looks_up(
    project: Project,
) -> None:
    generated = project.run(
        "polyn", "gen", "migration", "create_users",
        "--stream", "USERS", "--subjects", "user.>", "--consumer", "user.created.v1",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    (migration,) = (project.folder / "migrations").glob("*_create_users.py")
    text = migration.read_text()
    assert 'durable_name="signup_user_created_v1"' in text
    assert 'ack_policy="explicit"' in text
    migrated = project.run("polyn", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "Ran 1 migration" in migrated.stdout


def test_06_a_migration_failing_halfway_is_undone_and_not_recorded(project: Project) -> None:
    path = project.write(
        "migrations/29990101000000_audit.py", HALF_FAILING.format(replicas=", num_replicas=3")
    )
    failed = project.run("polyn", "migrate")
    assert failed.returncode == 1
    assert "replicas > 1 not supported in non-clustered mode" in failed.stderr
    assert "Step 2 of 2 (create_stream LOGINS) failed." in failed.stderr
    assert "step 1 create_stream AUDIT: undone (deleted again)" in failed.stderr
    assert "was not recorded; fix it and run it again" in failed.stderr
    status = project.run("polyn", "migrations", "status")
    assert "pending  29990101000000_audit.py" in status.stdout
    # Fixed, it runs: AUDIT was really deleted, or its create would now clash.
    path.write_text(HALF_FAILING.format(replicas=""))
    fixed = project.run("polyn", "migrate")
    assert fixed.returncode == 0, fixed.stderr


def test_07_the_service_logs_when_it_is_up_and_when_it_stopped(project: Project) -> None:
    service = project.start("python", "service.py")
    try:
        assert service.stderr is not None
        up = service.stderr.readline()
    except BaseException:
        service.kill()
        raise
    _, err = stop(service)
    assert service.returncode == 0, err
    assert " INFO polyn.app: the app is up: 3 children started " in up
    assert "(nats, POLYN_SCHEMAS, WelcomeMailer)" in up
    assert "INFO polyn.app: the app stopped (SIGINT)" in err.splitlines()[-1]


def test_08_the_server_down_is_one_line_naming_the_actor(project: Project) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"nats://127.0.0.1:{probe.getsockname()[1]}"
    result = project.run("python", "service.py", NATS_URL=closed)
    assert result.returncode == 1
    assert last_line(result).startswith(
        "polyn.errors.ActorError: the app could not start: child 'nats' (NatsConnection): "
        f"could not connect to NATS at {closed}: "
    )
    assert result.stderr.count("could not connect") == 1
    assert result.stderr.count("Traceback") <= 1
    assert "_StartError" not in result.stderr


def test_09_a_wrong_option_names_the_option(project: Project) -> None:
    result = project.run(
        "python", "-c", "import service; service.WelcomeMailer(prefetch='ten')"
    )
    assert result.returncode == 1
    assert last_line(result) == (
        "polyn.errors.OptionError: WelcomeMailer: option 'prefetch' must be an int >= 1, "
        "not 'ten' (str)"
    )


@pytest.mark.xfail(
    strict=True,
    reason="issue 20 point 9: a plain Supervisor using Config.load comes with the ws/deps "
    "branch (issue 18); remove this mark once it is merged",
)
def test_10_a_plain_supervisor_of_polyn_actors_uses_the_projects_config(
    project: Project,
) -> None:
    project.write("plain.py", PLAIN_SUPERVISOR)
    result = project.run("python", "plain.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ready", "stopped"]


def test_11_the_projects_tests_pass_under_the_sandbox(project: Project) -> None:
    project.write("tests/test_service.py", TESTS)
    result = project.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_service.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_12_a_handler_bug_and_an_unsettled_message_fail_their_tests_at_once(
    project: Project,
) -> None:
    project.write("tests/test_mistakes.py", MISTAKES)
    result = project.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_mistakes.py")
    assert result.returncode == 1
    out = result.stdout
    assert "2 failed" in out
    # The handler's own exception and line, not a timeout elsewhere.
    assert "KeyError: 'nickname'" in out
    assert 'return event.data["nickname"]' in out
    assert "TooSlowError" not in out
    assert "1 message left unsettled: the handler returned None" in out
    assert "- user.created.v1 (consumer signup_user_created_v1)" in out
