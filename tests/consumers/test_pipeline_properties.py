"""The Pipeline's promise, as a property: nothing valid is lost, nothing invalid slips through.

For any mix of valid and invalid bodies on the stream, and with the pipeline's actor crashed
and restarted at any point of the run: every valid event is handled at least once and ends
acknowledged, a handler that deduplicates by event id sees each exactly once, and every invalid
body is terminated and dead-lettered.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio
from _support import Names, SharedDict
from consumer_support import Setup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyn.consumers import BatchInfo, Pipeline, PipelineMessage
from polyn.nats import NatsTransport

KINDS = ["valid", "valid", "valid", "bad-data", "bytes", "not-json", "not-a-cloudevent"]


def body_for(setup: Setup, kind: str, index: int) -> tuple[bytes, str | None]:
    """A body of the given kind, unique to ``index``; the event id when it is valid."""
    if kind == "valid":
        event = setup.event(index)
        from polyn import codec

        return codec.encode(event, setup.schemas, setup.config), event.id
    if kind == "bad-data":
        return setup.invalid_body(index), None
    if kind == "bytes":
        return bytes([0xFF, 0xFE, index % 256]) + index.to_bytes(4, "big"), None
    if kind == "not-json":
        return f"{{not json {index}".encode(), None
    return orjson.dumps({"hello": "world", "index": index}), None


class Dedup(Pipeline):
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 5, "batch_timeout": 0.05, "concurrency": 2}}  # noqa: RUF012
    fetch_expires = 0.3

    def __init__(self, record: dict[str, Any], **options: Any) -> None:
        super().__init__(**options)
        self.record = record

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        await trio.sleep(0.001)
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        for message in messages:
            self.record["attempts"].append(message.event.id)
            self.record["unique"].add(message.event.id)  # the deduplicating handler
        self.record["batches"] += 1


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=40),
    crash_after=st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
)
async def test_every_valid_event_is_handled_and_every_invalid_one_dead_lettered(
    nats_url: str, kinds: list[str], crash_after: int | None
) -> None:
    transport = await NatsTransport.connect(nats_url)
    setup = Setup(transport, Names(), nats_url)
    try:
        # a short ack_wait: what a crash left unacknowledged comes back quickly
        await setup.create(ack_wait=1)
        valid_ids: set[str] = set()
        invalid_bodies: set[bytes] = set()
        for index, kind in enumerate(kinds):
            body, event_id = body_for(setup, kind, index)
            await setup.publish_raw(body, msg_id=event_id or f"raw-{index}")
            if event_id is None:
                invalid_bodies.add(body)
            else:
                valid_ids.add(event_id)
        record: dict[str, Any] = SharedDict({"attempts": [], "unique": set(), "batches": 0})
        async with trio.open_nursery() as nursery:
            await setup.watch_deadletters(nursery)
            async with setup.tree(Dedup(record, type=setup.type, name="ledger")) as tree:
                if crash_after is not None:
                    with trio.fail_after(10):
                        while record["batches"] < crash_after and record["unique"] != valid_ids:  # noqa: ASYNC110
                            await trio.sleep(0.005)
                    actor = tree.ref("ledger").running_actor()

                    async def crash() -> None:
                        raise RuntimeError("simulated crash")

                    actor.nursery.start_soon(crash)
                with trio.fail_after(20):
                    while True:
                        state = await setup.consumer_state()
                        dead = {m.data for m in setup.deadletters}
                        if (
                            record["unique"] == valid_ids
                            and invalid_bodies <= dead
                            and state["num_ack_pending"] == 0
                            and state["num_pending"] == 0
                        ):
                            break
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert record["unique"] == valid_ids
        assert set(record["attempts"]) == valid_ids
        if crash_after is None:  # no crash: each handled exactly once, nothing redelivered
            assert sorted(record["attempts"]) == sorted(valid_ids)
        assert {m.data for m in setup.deadletters} == invalid_bodies
    finally:
        try:
            await transport.delete_stream(setup.stream)
        finally:
            await transport.close()
