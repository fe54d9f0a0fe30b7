"""Authentication (issue 12, scenario 3): user / password, token and nkey.

Each way is used as a user would: through :class:`polyn.Config` (a service's
``NatsConnection``) and through the command line (``--user`` with ``POLYN_PASSWORD``,
``POLYN_TOKEN``, ``--nkeys-seed``). Wrong credentials fail the start at once with a
:class:`~polyn.errors.NatsConnectionError` that says the server refused them; the command line
exits 1 with one ``polyn: error:`` line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nkeys
import pytest
import trio
from _cluster_support import ORDER_SCHEMA, run_cli, write_conf, write_project

from polyn.app import App
from polyn.config import Config
from polyn.errors import ActorError, NatsConnectionError
from polyn.nats import NatsConnection, transport_for
from polyn.server import NatsServer

TYPE = "order.placed.v1"
PASSWORD = "pw-Secr3t-alice"
TOKEN = "tok-Secr3t-9f8e7d"


def new_nkey_seed(folder: Path, name: str) -> tuple[Path, str]:
    """A user nkey: its seed file (what the client keeps) and public key (what the server lists)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    path = folder / f"{name}.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return path, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("nkeys")
    return {"bob": new_nkey_seed(folder, "bob"), "mallory": new_nkey_seed(folder, "mallory")}


@pytest.fixture
def users_server(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> Iterator[NatsServer]:
    """alice with a password, bob with an nkey (mallory's nkey is unknown to it)."""
    conf = write_conf(
        tmp_path,
        "users.conf",
        "authorization {\n  users = [\n"
        f'    {{user: "alice", password: "{PASSWORD}"}}\n'
        f'    {{nkey: "{keys["bob"][1]}"}}\n'
        "  ]\n}\n",
    )
    with NatsServer(config_file=conf) as server:
        yield server


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = write_conf(tmp_path, "token.conf", f'authorization {{ token: "{TOKEN}" }}\n')
    with NatsServer(config_file=conf) as server:
        yield server


def config(server: NatsServer, **credentials: Any) -> Config:
    return Config(domain="com.test", source_root="auth", servers=[server.url], **credentials)


async def round_trip(config: Config) -> bytes:
    """Start a service with ``config``; publish and receive one message through its connection."""
    async with App(config, [NatsConnection()]).run() as running:
        transport = transport_for(running)
        subscription = await transport.subscribe("auth.ping")
        await transport.publish("auth.ping", b"hello")
        with trio.fail_after(5):
            message = await subscription.receive()
        await subscription.aclose()
        return message.data


async def refused_at_start(config: Config) -> NatsConnectionError:
    """Start a service with ``config``; it must fail at once with a NatsConnectionError."""
    started = trio.current_time()
    with trio.fail_after(20), pytest.raises(ActorError) as failed:
        async with App(config, [NatsConnection()]).run():
            pytest.fail("the service started with wrong credentials")
    assert trio.current_time() - started < 10
    error = failed.value.__cause__
    assert isinstance(error, NatsConnectionError), repr(failed.value)
    assert "could not connect to NATS at" in str(error)
    assert "Authorization Violation" in str(error)
    return error


def project(tmp_path: Path, server: NatsServer) -> Path:
    return write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "auth", "servers": [server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    ).parent


# -- user and password ----------------------------------------------------------------------


async def test_user_and_password_from_the_config(users_server: NatsServer) -> None:
    assert await round_trip(config(users_server, user="alice", password=PASSWORD)) == b"hello"


async def test_a_wrong_password_fails_the_start(users_server: NatsServer) -> None:
    await refused_at_start(config(users_server, user="alice", password="not-the-password"))
    await refused_at_start(config(users_server))  # no credentials at all


async def test_the_command_line_takes_the_user_flag_and_the_password_variable(
    users_server: NatsServer, tmp_path: Path
) -> None:
    folder = project(tmp_path, users_server)
    good = await run_cli(
        ["schemas", "load", "--user", "alice"], folder, env={"POLYN_PASSWORD": PASSWORD}
    )
    assert good.code == 0, good.stderr
    assert "1 added" in good.stdout or TYPE in good.stdout
    bad = await run_cli(
        ["schemas", "load", "--user", "alice"], folder, env={"POLYN_PASSWORD": "wrong"}
    )
    assert bad.code == 1
    assert bad.stderr.startswith("polyn: error: could not connect to NATS at ")
    assert "Authorization Violation" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- token ----------------------------------------------------------------------------------


async def test_token_from_the_config_and_the_command_line(
    token_server: NatsServer, tmp_path: Path
) -> None:
    assert await round_trip(config(token_server, token=TOKEN)) == b"hello"
    await refused_at_start(config(token_server, token="tok-wrong"))

    folder = project(tmp_path, token_server)
    good = await run_cli(["schemas", "load"], folder, env={"POLYN_TOKEN": TOKEN})
    assert good.code == 0, good.stderr
    bad = await run_cli(["schemas", "load"], folder, env={"POLYN_TOKEN": "tok-wrong"})
    assert bad.code == 1
    assert "Authorization Violation" in bad.stderr


# -- nkey -----------------------------------------------------------------------------------


async def test_nkey_seed_from_the_config_and_the_command_line(
    users_server: NatsServer, keys: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    bob, mallory = keys["bob"][0], keys["mallory"][0]
    assert await round_trip(config(users_server, nkeys_seed=bob)) == b"hello"
    await refused_at_start(config(users_server, nkeys_seed=mallory))

    folder = project(tmp_path, users_server)
    good = await run_cli(["schemas", "load", "--nkeys-seed", str(bob)], folder)
    assert good.code == 0, good.stderr
    bad = await run_cli(["schemas", "load", "--nkeys-seed", str(mallory)], folder)
    assert bad.code == 1
    assert bad.stderr.startswith("polyn: error: could not connect to NATS at ")
    assert "Authorization Violation" in bad.stderr
