"""``polyn deadletters list`` / ``replay`` end to end (issue 21): a consumer dead-letters events,
the command line lists them, the handler is fixed, the replay brings the same events back."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import trio
from _support import SharedDict
from consumer_support import Setup, wait_until

from polyn.consumers import DEADLETTER_PREFIX, Ack, PullConsumer
from polyn.event import Event
from polyn.nats import Message


class Picky(PullConsumer):
    """Fails on odd events while ``broken`` is set; records (n, event id) of what it handled."""

    def __init__(self, state: dict[str, Any], **options: Any) -> None:
        super().__init__(**options)
        self.state = state

    async def handle_message(self, event: Event, msg: Message) -> Ack:
        n = event.data["n"]
        if self.state["broken"] and n % 2:
            raise LookupError(f"no customer for order {n}")
        self.state["handled"].append((n, event.id))
        return Ack.ACK


async def polyn_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYN_", "NATS_"))}
    done = await trio.run_process(
        [sys.executable, "-m", "polyn.cli", *args, "--server", url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_dead_letters_are_listed_and_replayed_to_their_consumer_once(setup: Setup) -> None:
    await setup.create()
    dead_stream = setup.stream + "_DEAD"
    await setup.transport.create_stream(
        {"name": dead_stream, "subjects": [DEADLETTER_PREFIX + setup.type], "storage": "memory"}
    )
    try:
        state: dict[str, Any] = SharedDict(broken=True, handled=[])
        published = [await setup.publish(n) for n in range(6)]
        await setup.publish_raw(b"not json at all")
        async with setup.tree(Picky(state, type=setup.type, max_failures=1)):
            await wait_until(lambda: len(state["handled"]) == 3)

            async def stored() -> int:
                info = await setup.transport.stream_info(dead_stream)
                return int(info.state.get("messages", 0))

            with trio.fail_after(10):
                while await stored() < 4:  # noqa: ASYNC110
                    await trio.sleep(0.05)

            listed = await polyn_cli(setup.url, "deadletters", "list")
            assert listed.returncode == 0, listed.stderr
            lines = listed.stdout.splitlines()
            assert lines[0] == "seq\ttime\ttype\tconsumer\treason"
            assert lines[-1] == "4 dead letters"
            rows = [line.split("\t") for line in lines[1:-1]]
            assert [row[2] for row in rows] == [setup.type] * 4
            assert {row[3] for row in rows} == {setup.consumer}
            reasons = sorted(row[4] for row in rows)
            assert reasons[:3] == [f"LookupError: no customer for order {n}" for n in (1, 3, 5)]
            assert reasons[3].startswith("ValidationError: ")

            # the fix is deployed; replaying the unknown-customer ones brings them back
            state["broken"] = False
            seqs = [row[0] for row in rows if row[4].startswith("LookupError")]
            replayed = await polyn_cli(setup.url, "deadletters", "replay", "--seq", *seqs)
            assert replayed.returncode == 0, replayed.stderr
            assert replayed.stdout.splitlines()[-1] == "3 of 3 dead letters replayed"
            await wait_until(lambda: len(state["handled"]) == 6)

            # a second replay of the same dead letters is dropped as a duplicate
            again = await polyn_cli(setup.url, "deadletters", "replay", "--seq", *seqs)
            assert again.returncode == 0, again.stderr
            assert again.stdout.count("(already replayed: duplicate)") == 3
            await trio.sleep(0.5)

            refused = await polyn_cli(setup.url, "deadletters", "replay")
            assert refused.returncode == 1
            assert "say which dead letters to replay" in refused.stderr
        handled = sorted(state["handled"])
        assert handled == sorted((n, e.id) for n, e in enumerate(published))  # ids kept
    finally:
        await setup.transport.delete_stream(dead_stream)
