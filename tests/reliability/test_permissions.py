"""Permissions (issue 12, scenario 4): a user the server limits gets clear Polyn errors.

The server's user ``clerk`` may publish only on ``order.>`` (plus the JetStream API, inboxes and
acknowledgements) and may not read the schema bucket. What the service sees:

- a request or an acknowledged publish (``pub(..., ack=True)``) on a subject it may not use
  raises :class:`~polyn.errors.PermissionDeniedError` at once, not after its timeout;
- a plain publish cannot wait for an answer: it returns, and the next call on that subject
  raises the error (nothing is dropped silently);
- a SchemaStore that may not read its bucket fails the start with a Polyn error instead of
  hanging.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from _cluster_support import ORDER_SCHEMA, run_cli, write_conf, write_project

import polyn
from polyn.app import App, Running
from polyn.config import Config
from polyn.errors import ActorError, PermissionDeniedError
from polyn.nats import NatsConnection, transport_for
from polyn.schema_store import SchemaStore
from polyn.server import NatsServer

ALLOWED = "order.placed.v1"
DENIED = "secret.placed.v1"
QUESTION = "quote.asked.v1"
SCHEMAS = {ALLOWED: ORDER_SCHEMA, DENIED: ORDER_SCHEMA, QUESTION: ORDER_SCHEMA}
BUCKET = "KV_POLYN_SCHEMAS"

CONF = f"""
authorization {{
  users = [
    {{user: "admin", password: "admin-pw"}}
    {{user: "clerk", password: "clerk-pw", permissions: {{
      publish: {{
        allow: ["order.>", "$JS.API.>", "$JS.ACK.>", "_INBOX.>"]
        deny: [
          "$JS.API.STREAM.INFO.{BUCKET}",
          "$JS.API.CONSUMER.CREATE.{BUCKET}",
          "$JS.API.CONSUMER.CREATE.{BUCKET}.>",
          "$JS.API.DIRECT.GET.{BUCKET}.>",
        ]
      }}
      subscribe: {{ allow: ["_INBOX.>", "order.>"] }}
    }}}}
  ]
}}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(config_file=write_conf(tmp_path, "perms.conf", CONF)) as running:
        yield running


def clerk(server: NatsServer) -> Config:
    return Config(
        domain="com.test",
        source_root="clerk",
        servers=[server.url],
        user="clerk",
        password="clerk-pw",
    )


@pytest.fixture
async def running(server: NatsServer) -> AsyncIterator[Running]:
    """The clerk's service, its schemas given in code (it may not read the bucket)."""
    app = App(clerk(server), [NatsConnection(), SchemaStore(schemas=SCHEMAS)])
    async with app.run() as handle:
        yield handle


async def test_a_request_on_a_denied_subject_fails_at_once(running: Running) -> None:
    started = trio.current_time()
    with pytest.raises(PermissionDeniedError) as denied:
        await polyn.request(running, QUESTION, {"n": 1}, timeout=10)
    assert trio.current_time() - started < 2
    assert QUESTION in str(denied.value)
    assert "permissions violation" in str(denied.value).lower()


async def test_an_acknowledged_publish_on_a_denied_subject_fails_at_once(
    running: Running,
) -> None:
    started = trio.current_time()
    with pytest.raises(PermissionDeniedError, match=DENIED):
        await polyn.pub(running, DENIED, {"n": 1}, ack=True)
    assert trio.current_time() - started < 2


async def test_a_plain_publish_on_a_denied_subject_fails_on_the_next_call(
    running: Running,
) -> None:
    assert await polyn.pub(running, DENIED, {"n": 1}) is None  # cannot know yet
    await transport_for(running).flush()  # the server's -ERR comes before its PONG
    with trio.fail_after(2):
        while True:
            try:
                await polyn.pub(running, DENIED, {"n": 2})
            except PermissionDeniedError as exc:
                assert DENIED in str(exc)
                break
            await trio.sleep(0.01)
    # the subjects it may use still work, on the same connection
    transport = transport_for(running)
    subscription = await transport.subscribe(ALLOWED)
    await polyn.pub(running, ALLOWED, {"n": 3})
    with trio.fail_after(5):
        assert (await subscription.receive()).json()["data"] == {"n": 3}
    await subscription.aclose()


async def test_a_schema_store_that_may_not_read_its_bucket_fails_the_start(
    server: NatsServer, tmp_path: Path
) -> None:
    folder = write_project(
        tmp_path / "svc",
        {"domain": "com.test", "source_root": "admin", "servers": [server.url]},
        schemas=SCHEMAS,
    ).parent
    loaded = await run_cli(
        ["schemas", "load", "--user", "admin"], folder, env={"POLYN_PASSWORD": "admin-pw"}
    )
    assert loaded.code == 0, loaded.stderr

    started = trio.current_time()
    with trio.fail_after(30), pytest.raises(ActorError) as failed:
        async with App(clerk(server), [NatsConnection(), SchemaStore()]).run():
            pytest.fail("the schema store started without reading its bucket")
    cause = failed.value.__cause__
    assert isinstance(cause, PermissionDeniedError), repr(failed.value)
    assert "POLYN_SCHEMAS" in str(cause) or BUCKET in str(cause)
    assert trio.current_time() - started < 15
