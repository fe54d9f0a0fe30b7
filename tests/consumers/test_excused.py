"""Events excused as configuration faults (a missing schema; for typed consumers, a schema
revision the data class cannot read) are naked with backoff on a consumer created without a
``max_deliver``, not held as if at their last delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from _support import Shared
from consumer_support import Setup

from polyn.actors import Supervisor, Tree
from polyn.consumers import Ack, PullConsumer
from polyn.event import Event
from polyn.nats import Message, NatsConnection
from polyn.schema_store import SchemaStore


class Recorder(PullConsumer):
    def __init__(self, seen: list[Any], **options: Any) -> None:
        super().__init__(**options)
        self.seen = seen

    async def handle_message(self, event: Event, msg: Message) -> Ack:
        self.seen.append(event.data)
        return Ack.ACK


@asynccontextmanager
async def without_schemas(setup: Setup, consumer: Recorder) -> AsyncIterator[Tree]:
    children = [NatsConnection(), SchemaStore(schemas={}), consumer]
    async with Supervisor(children, strategy="rest_for_one").run(
        context={"config": setup.config}
    ) as tree:
        yield tree


async def test_a_missing_schema_is_naked_and_redelivered_when_max_deliver_is_unlimited(
    setup: Setup,
) -> None:
    await setup.create()  # no max_deliver: the server reports -1, unlimited
    assert (await setup.transport.consumer_info(setup.stream, setup.consumer)).config[
        "max_deliver"
    ] == -1
    await setup.publish(1)
    seen: list[Any] = Shared()
    consumer = Recorder(seen, type=setup.type, max_failures=1, name="recorder")
    async with without_schemas(setup, consumer) as tree:
        with trio.fail_after(10):
            while (await setup.consumer_state())["num_redelivered"] == 0:  # noqa: ASYNC110
                await trio.sleep(0.05)
        running = tree.ref("recorder").running_actor()
        assert isinstance(running, Recorder)
        assert "no schema in the store" in (running.problem() or "")
        assert "holding" not in (running.problem() or "")
    assert seen == []
    state = await setup.consumer_state()
    assert state["num_ack_pending"] == 1  # kept: neither acked nor terminated
