"""Secrets (issue 12, scenario 5): passwords, tokens and nkey seeds never show.

Every way a secret could leak is exercised with the real server and asserted on: ``repr`` of the
config, the actors, the App and the transport; every log record (all loggers, DEBUG); every
error message along the chain of causes; the command line's output with ``--verbose``. Both the
successful connections and the refused ones are covered, with credentials in the config and in
the server URL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import nkeys
import pytest
import trio
from _cluster_support import ORDER_SCHEMA, run_cli, write_conf, write_project

import polyn
from polyn.app import App
from polyn.config import Config
from polyn.errors import ActorError, PolynError
from polyn.nats import NatsConnection, NatsTransport, transport_for
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer

TYPE = "order.placed.v1"
PASSWORD = "pw-Leak-Canary-31"
WRONG_PASSWORD = "pw-Wrong-Canary-47"
TOKEN = "tok-Leak-Canary-59"
WRONG_TOKEN = "tok-Wrong-Canary-61"


def new_seed() -> tuple[str, str]:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode()


SEED, PUBLIC = new_seed()
WRONG_SEED, _ = new_seed()
SECRETS = (PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN, SEED, WRONG_SEED)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret shows in {where}: {text!r}"


def error_texts(error: BaseException) -> str:
    """str and repr of the error and of every error it was raised from or during."""
    seen: list[str] = []
    stack: list[BaseException] = [error]
    visited: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        seen += [str(current), repr(current)]
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += list(getattr(current, "exceptions", ()))
    return "\n".join(seen)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = write_conf(
        tmp_path,
        "users.conf",
        "authorization {\n  users = [\n"
        f'    {{user: "alice", password: "{PASSWORD}"}}\n'
        f'    {{nkey: "{PUBLIC}"}}\n'
        "  ]\n}\n",
    )
    with NatsServer(config_file=conf) as running:
        yield running


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = write_conf(tmp_path, "token.conf", f'authorization {{ token: "{TOKEN}" }}\n')
    with NatsServer(config_file=conf) as running:
        yield running


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("polyn", "polyn.nats", "polyn.publish", "polyn.actors", "nats", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def seed_file(folder: Path, seed: str) -> Path:
    path = folder / f"{seed[:4]}-{len(seed)}-{os.urandom(3).hex()}.nk"
    path.write_text(seed + "\n")
    return path


def test_reprs_of_the_config_and_the_actors_hide_secrets(tmp_path: Path) -> None:
    config = Config(
        domain="com.test",
        source_root="secrets",
        servers=[f"nats://alice:{PASSWORD}@127.0.0.1:4222", f"nats://{TOKEN}@127.0.0.1:4223"],
        user="alice",
        password=PASSWORD,
        token=TOKEN,
        nkeys_seed=seed_file(tmp_path, SEED),
    )
    connection = NatsConnection(
        servers=f"nats://alice:{PASSWORD}@127.0.0.1:4222", password=PASSWORD, token=TOKEN
    )
    app = App(config, [connection, SchemaStore()])
    for value in (config, connection, app):
        assert_no_secret(repr(value), f"repr of {type(value).__name__}")
        assert_no_secret(str(value), f"str of {type(value).__name__}")
    assert "alice" in repr(config)  # the user name is not a secret


async def test_a_service_that_connects_logs_no_secret(
    server: NatsServer, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with_url = f"nats://alice:{PASSWORD}@127.0.0.1:{server.port}"
    configs = [
        Config(domain="com.test", source_root="s", servers=[with_url]),
        Config(
            domain="com.test",
            source_root="s",
            servers=[server.url],
            user="alice",
            password=PASSWORD,
        ),
        Config(
            domain="com.test",
            source_root="s",
            servers=[server.url],
            nkeys_seed=seed_file(tmp_path, SEED),
        ),
    ]
    for config in configs:
        app = App(config, [NatsConnection(), SchemaStore(schemas={TYPE: ORDER_SCHEMA})])
        async with app.run() as running:
            transport = transport_for(running)
            await polyn.pub(running, TYPE, {"n": 1})
            await transport.flush()
            for value in (running, transport, transport.state, app):
                assert_no_secret(repr(value), f"repr of {type(value).__name__}")
            state = await running.tree.ref("nats").call("state")
            assert_no_secret(repr(state), "the connection's state")
    assert "connected to NATS" in logs.text
    assert_no_secret(logs.text, "the logs")


async def test_refused_credentials_leak_into_no_error_and_no_log(
    server: NatsServer,
    token_server: NatsServer,
    logs: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    refused = [
        Config(domain="com.test", source_root="s", servers=[server.url], user="alice",
               password=WRONG_PASSWORD),
        Config(domain="com.test", source_root="s",
               servers=[f"nats://alice:{WRONG_PASSWORD}@127.0.0.1:{server.port}"]),
        Config(domain="com.test", source_root="s", servers=[token_server.url], token=WRONG_TOKEN),
        Config(domain="com.test", source_root="s",
               servers=[f"nats://{WRONG_TOKEN}@127.0.0.1:{token_server.port}"]),
        Config(domain="com.test", source_root="s", servers=[server.url],
               nkeys_seed=seed_file(tmp_path, WRONG_SEED)),
    ]  # fmt: skip
    for config in refused:
        with trio.fail_after(20), pytest.raises(ActorError) as failed:
            async with App(config, [NatsConnection()]).run():
                pytest.fail("started with wrong credentials")
        assert isinstance(failed.value.__cause__, PolynError)
        assert_no_secret(error_texts(failed.value), "the error")
    # the transport directly, as polyn.migration.open_transport uses it
    with pytest.raises(PolynError) as direct:
        await NatsTransport.connect(
            f"nats://alice:{WRONG_PASSWORD}@127.0.0.1:{server.port}", connect_timeout=1
        )
    assert_no_secret(error_texts(direct.value), "the transport's error")
    assert "Authorization Violation" in logs.text
    assert_no_secret(logs.text, "the logs")


async def test_the_command_line_prints_no_secret(
    server: NatsServer, token_server: NatsServer, tmp_path: Path
) -> None:
    folder = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "s", "servers": [server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    ).parent
    wrong_seed = seed_file(tmp_path, WRONG_SEED)
    runs = [
        (["--user", "alice"], {"POLYN_PASSWORD": PASSWORD}, 0),
        (["--user", "alice"], {"POLYN_PASSWORD": WRONG_PASSWORD}, 1),
        (["--server", f"nats://alice:{WRONG_PASSWORD}@127.0.0.1:{server.port}"], {}, 1),
        (["--server", token_server.url], {"POLYN_TOKEN": WRONG_TOKEN}, 1),
        (["--nkeys-seed", str(wrong_seed)], {}, 1),
    ]
    for flags, env, code in runs:
        done = await run_cli(["--verbose", "schemas", "load", *flags], folder, env=env)
        assert done.code == code, done.stderr
        assert_no_secret(done.stdout, "the command's output")
        assert_no_secret(done.stderr, "the command's errors")
    # a bad [tool.polyn] value names the setting, not the secret
    bad = write_project(
        tmp_path / "bad",
        {"domain": "com.test", "source_root": "s", "password": 12345},
    ).parent
    done = await run_cli(["migrations", "status"], bad)
    assert done.code == 1
    assert "12345" not in done.stderr


# -- passwords with URL delimiters (issue 21, finding 5) -------------------------------------------

# Every character that ends a URL's authority or separates its parts. nats-py connects with ``@``
# and ``:`` in a URL's password (it splits at the last ``@``); the others only work through the
# config's ``password`` field, but a user can still write them into a URL by mistake, and then the
# URL shows up in errors and logs.
ODD_PASSWORDS = (
    "pw@Odd-Canary-71",
    "pw/Odd-Canary-73",
    "pw#Odd-Canary-79",
    "pw?Odd-Canary-83",
    "pw:@/#?Odd-Canary-89",
)
ODD_CONNECTING = "pw@Odd:Canary@97"  # what the server accepts, through a URL


def assert_no_odd_secret(text: str, where: str) -> None:
    for secret in (*ODD_PASSWORDS, ODD_CONNECTING):
        for piece in (secret, secret.split("Canary")[1]):
            assert piece not in text, f"a secret (or its tail) shows in {where}: {text!r}"


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_redact_url_hides_a_password_whatever_it_contains(password: str) -> None:
    from polyn.config import redact_url, redact_urls_in

    for url in (
        f"nats://alice:{password}@127.0.0.1:4222",
        f"tls://{password}@nats.example.com:4222",
        f"alice:{password}@127.0.0.1:4222",
    ):
        shown = redact_url(url)
        assert_no_odd_secret(shown, "a redacted URL")
        assert shown.endswith("@127.0.0.1:4222") or shown.endswith("@nats.example.com:4222")
        if "://" in url:  # a URL quoted in an error text (dead letters, error replies)
            text = redact_urls_in(f"cannot reach {url}: refused")
            assert_no_odd_secret(text, "a redacted error text")
            assert text == f"cannot reach {shown}: refused"
    config = Config(
        domain="com.test", source_root="s", servers=[f"nats://alice:{password}@127.0.0.1:4222"]
    )
    connection = NatsConnection(servers=f"nats://alice:{password}@127.0.0.1:4222")
    for value in (config, connection, App(config, [connection])):
        assert_no_odd_secret(repr(value), f"repr of {type(value).__name__}")


@pytest.fixture
def odd_server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = write_conf(
        tmp_path,
        "odd.conf",
        f'authorization {{\n  users = [\n    {{user: "alice", password: "{ODD_CONNECTING}"}}\n'
        "  ]\n}\n",
    )
    with NatsServer(config_file=conf) as running:
        yield running


async def test_a_password_with_delimiters_leaks_into_no_repr_error_or_log(
    odd_server: NatsServer, logs: pytest.LogCaptureFixture
) -> None:
    good = f"nats://alice:{ODD_CONNECTING}@127.0.0.1:{odd_server.port}"
    transport = await NatsTransport.connect(good)
    try:
        assert_no_odd_secret(repr(transport), "the transport's repr")
    finally:
        await transport.close()
    for password in ODD_PASSWORDS:
        url = f"nats://alice:{password}@127.0.0.1:{odd_server.port}"
        with trio.fail_after(20), pytest.raises(PolynError) as failed:
            await NatsTransport.connect(url, connect_timeout=1)
        assert_no_odd_secret(error_texts(failed.value), "the connection error")
        config = Config(domain="com.test", source_root="s", servers=[url])
        with trio.fail_after(20), pytest.raises(ActorError) as crashed:
            async with App(config, [NatsConnection()]).run():
                pytest.fail("started with a wrong password")
        assert_no_odd_secret(error_texts(crashed.value), "the App's error")
    assert_no_odd_secret(logs.text, "the logs")


async def test_the_command_line_prints_no_password_with_delimiters(
    odd_server: NatsServer, tmp_path: Path
) -> None:
    folder = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "s", "servers": [odd_server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    ).parent
    for password in ODD_PASSWORDS:
        url = f"nats://alice:{password}@127.0.0.1:{odd_server.port}"
        done = await run_cli(["--verbose", "schemas", "load", "--server", url], folder)
        assert done.code == 1, done.stderr
        assert done.stderr.count("polyn: error:") == 1
        assert_no_odd_secret(done.stdout + done.stderr, "the command's output")


async def test_a_malformed_seed_file_is_one_clear_config_error(
    server: NatsServer, tmp_path: Path
) -> None:
    """Issue 21, finding 14: nats-py said only ``ErrInvalidSeed()``."""
    from polyn.errors import ConfigError

    bad = tmp_path / "bad.nk"
    bad.write_text("SUAM-not-a-seed-" + SEED[16:] + "\n")
    with trio.fail_after(20), pytest.raises(ConfigError) as refused:
        await NatsTransport.connect(server.url, nkeys_seed=str(bad))
    text = str(refused.value)
    assert str(bad) in text and "nkeys seed" in text and "\n" not in text
    assert_no_secret(error_texts(refused.value), "the seed error")
    folder = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "s", "servers": [server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    ).parent
    done = await run_cli(["schemas", "load", "--nkeys-seed", str(bad)], folder)
    assert done.code == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("polyn: error:") and str(bad) in done.stderr
    assert "ErrInvalidSeed" not in done.stderr and "Traceback" not in done.stderr
    assert_no_secret(done.stderr, "the command's error")
