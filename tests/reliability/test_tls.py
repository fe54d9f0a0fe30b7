"""TLS (issue 12, scenario 2): certificates made by the test with ``trustme``.

The server shows a certificate for ``127.0.0.1`` signed by the test's CA. A service that trusts
that CA (``Config.tls_ca_file``) connects, loads schemas and exchanges events over TLS; with
``verify`` on, it must also show a client certificate (``tls_cert_file`` / ``tls_key_file``). A
client that trusts another CA, or shows no certificate where one is required, fails at start
with a :class:`~polyn.errors.NatsConnectionError` that says so, and the command line exits 1 with
one ``polyn: error:`` line.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from _cluster_support import (
    ORDER_SCHEMA,
    TlsFiles,
    make_tls_files,
    run_cli,
    write_conf,
    write_project,
)

import polyn
from polyn.app import App
from polyn.config import Config
from polyn.errors import ActorError, NatsConnectionError
from polyn.nats import NatsConnection, NatsTransport, transport_for
from polyn.nats.options import build_tls_context
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer

TYPE = "order.placed.v1"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_conf(folder: Path, tls: TlsFiles, *, verify: bool) -> Path:
    lines = [
        "tls {",
        f'  cert_file: "{tls.server_cert}"',
        f'  key_file: "{tls.server_key}"',
        "  timeout: 2",
    ]
    if verify:
        lines += [f'  ca_file: "{tls.ca}"', "  verify: true"]
    return write_conf(folder, "tls.conf", "\n".join([*lines, "}", ""]))


@pytest.fixture
def tls_server(tmp_path: Path, tls: TlsFiles) -> Iterator[NatsServer]:
    """A server that speaks TLS only; clients need not show a certificate."""
    with NatsServer(config_file=tls_conf(tmp_path, tls, verify=False), monitoring=True) as server:
        yield server


@pytest.fixture
def mtls_server(tmp_path: Path, tls: TlsFiles) -> Iterator[NatsServer]:
    """A server that speaks TLS only and verifies client certificates against the test's CA."""
    with NatsServer(config_file=tls_conf(tmp_path, tls, verify=True), monitoring=True) as server:
        yield server


def connections(server: NatsServer) -> list[dict[str, Any]]:
    assert server.monitor_url is not None
    with urllib.request.urlopen(f"{server.monitor_url}/connz?auth=true", timeout=2) as answer:
        return list(json.load(answer).get("connections") or [])


async def exchange_an_event(config: Config) -> dict[str, Any]:
    """Run a service on ``config``: subscribe, pub an event, receive it back."""
    app = App(config, [NatsConnection(), SchemaStore()])
    async with app.run() as running:
        transport = transport_for(running)
        subscription = await transport.subscribe(TYPE)
        await polyn.pub(running, TYPE, {"n": 7})
        with trio.fail_after(5):
            message = await subscription.receive()
        await subscription.aclose()
        return dict(message.json())


async def test_a_service_trusting_the_ca_loads_schemas_and_exchanges_events_over_tls(
    tls_server: NatsServer, tls: TlsFiles, tmp_path: Path
) -> None:
    pyproject = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "tls", "servers": [tls_server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    )
    loaded = await run_cli(["schemas", "load", "--tls-ca", str(tls.ca)], pyproject.parent)
    assert loaded.code == 0, loaded.stderr

    config = Config.load(pyproject=pyproject, environ={}, tls_ca_file=tls.ca)
    event = await exchange_an_event(config)
    assert event["data"] == {"n": 7}
    # (the service has gone; the CLI's and this connection both used TLS: no plain client
    # could have talked to this server at all, see the next test)


async def test_a_plain_client_cannot_talk_to_the_tls_server(tls_server: NatsServer) -> None:
    with trio.fail_after(15), pytest.raises(NatsConnectionError, match="could not connect"):
        await NatsTransport.connect(tls_server.url, connect_timeout=1)


async def test_the_server_sees_a_tls_connection(tls_server: NatsServer, tls: TlsFiles) -> None:
    transport = await NatsTransport.connect(
        tls_server.url, tls=build_tls_context(str(tls.ca), None, None), name="tls-probe"
    )
    try:
        await transport.flush()
        seen = await trio.to_thread.run_sync(connections, tls_server)
        probe = [c for c in seen if c.get("name") == "tls-probe"]
        assert probe and probe[0].get("tls_version", "").startswith("1.")
    finally:
        await transport.close()


async def test_a_client_certificate_is_required_and_accepted(
    mtls_server: NatsServer, tls: TlsFiles, tmp_path: Path
) -> None:
    pyproject = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "mtls", "servers": [mtls_server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    )
    flags = ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.client_cert)]
    flags += ["--tls-key", str(tls.client_key)]
    loaded = await run_cli(["schemas", "load", *flags], pyproject.parent)
    assert loaded.code == 0, loaded.stderr
    config = Config.load(
        pyproject=pyproject,
        environ={},
        tls_ca_file=tls.ca,
        tls_cert_file=tls.client_cert,
        tls_key_file=tls.client_key,
    )
    assert (await exchange_an_event(config))["data"] == {"n": 7}

    # Without its certificate the same client is refused at start, clearly and quickly.
    with trio.fail_after(15), pytest.raises(NatsConnectionError) as refused:
        await NatsTransport.connect(
            mtls_server.url, tls=build_tls_context(str(tls.ca), None, None), connect_timeout=1
        )
    assert "could not connect to NATS" in str(refused.value)
    no_cert = await run_cli(["schemas", "load", "--tls-ca", str(tls.ca)], pyproject.parent)
    assert no_cert.code == 1
    assert no_cert.stderr.startswith("polyn: error: could not connect to NATS")


async def test_a_wrong_ca_fails_the_start_with_a_clear_error(
    tls_server: NatsServer, tls: TlsFiles
) -> None:
    config = Config(
        domain="com.test", source_root="tls", servers=[tls_server.url], tls_ca_file=tls.other_ca
    )
    started = trio.current_time()
    with trio.fail_after(20), pytest.raises(ActorError) as failed:
        async with App(config, [NatsConnection()]).run():
            pytest.fail("the app started although the server's certificate is not trusted")
    error = failed.value.__cause__
    assert isinstance(error, NatsConnectionError)
    assert "certificate verify failed" in str(error)
    assert "could not connect to NATS at nats://127.0.0.1" in str(error)
    assert trio.current_time() - started < 15


async def test_the_command_line_reports_a_wrong_ca_in_one_line(
    tls_server: NatsServer, tls: TlsFiles, tmp_path: Path
) -> None:
    pyproject = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "tls", "servers": [tls_server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    )
    done = await run_cli(["schemas", "load", "--tls-ca", str(tls.other_ca)], pyproject.parent)
    assert done.code == 1
    assert done.stderr.startswith("polyn: error: could not connect to NATS at ")
    assert "certificate verify failed" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_missing_certificate_file_is_named_in_the_error(
    tls_server: NatsServer, tmp_path: Path
) -> None:
    pyproject = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "tls", "servers": [tls_server.url]},
        schemas={TYPE: ORDER_SCHEMA},
    )
    missing = tmp_path / "no-such-ca.pem"
    done = await run_cli(["schemas", "load", "--tls-ca", str(missing)], pyproject.parent)
    assert done.code == 1
    assert done.stderr.startswith("polyn: error: ")
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr
