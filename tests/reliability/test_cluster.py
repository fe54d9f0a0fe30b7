"""Node loss on a 3-node JetStream cluster (issue 12, scenario 1), and the cluster launcher.

A service's folder is set up as a user keeps it (``[tool.polyn]`` naming the three nodes, with
``kv_replicas = 3``; a schema; a migration creating the stream and consumer with
``num_replicas=3``), and ``polyn schemas load`` and ``polyn migrate`` run as separate processes.
The service then consumes with a Pipeline while producers publish with ``pub(..., ack=True)``;
half-way, the node that leads the stream, which is also the node the service is connected to,
is killed with SIGKILL. Afterwards:

- every event was acknowledged to its producer and is in the stream exactly once;
- every event was handled, while the node was still down (the consumer went on with two nodes);
- the connection moved to a surviving node from its server list;
- the killed node, restarted, rejoins and catches up.

The fail-over times are measured from the SIGKILL: to the connection's reconnect, to the new
stream leader, and the longest pause between two publish acknowledgements (what producers wait).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from _cluster_support import ORDER_SCHEMA, run_cli, write_project
from _support import Names
from reliability_support import wait_until

import polyn
from polyn.app import App
from polyn.config import Config
from polyn.consumers import BatchInfo, Pipeline, PipelineMessage
from polyn.errors import ServerError
from polyn.nats import NatsConnection, NatsTransport, transport_for
from polyn.schema_store import SchemaStore
from polyn.server import ClusterConfig, NatsCluster, NatsServer

EVENTS = 3_000
PRODUCERS = 16
TYPE = "order.placed.v1"
STREAM = "ORDERS"
CONSUMER = "ledger_order_placed_v1"  # naming.consumer_name(TYPE, config) for source_root ledger

MIGRATION = f'''
def change(m):
    m.create_stream(name="{STREAM}", subjects=["order.>"], storage="file", num_replicas=3)
    m.create_consumer(
        stream_name="{STREAM}",
        durable_name="{CONSUMER}",
        filter_subject="{TYPE}",
        ack_policy="explicit",
        ack_wait=5,
        max_ack_pending=1000,
    )
'''


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- the launcher ---------------------------------------------------------------------------


def test_cluster_of_three_elects_a_jetstream_leader_and_leaves_no_process_behind() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), NatsCluster(size=3) as cluster:
        assert len({server.port for server in cluster}) == 3
        assert len({server.cluster_port for server in cluster}) == 3
        assert cluster.names == ["polyn-1", "polyn-2", "polyn-3"]
        for server in cluster:
            assert server.pid is not None
            pids.append(server.pid)
            assert server.healthy()
            assert server.monitor_url is not None
            with urllib.request.urlopen(f"{server.monitor_url}/jsz") as answer:
                meta = json.load(answer)["meta_cluster"]
            assert meta["cluster_size"] == 3
            assert meta["leader"] in cluster.names
        raise RuntimeError("boom")
    assert len(pids) == 3
    assert not any(process_exists(pid) for pid in pids)


def test_a_killed_node_restarts_on_its_ports_and_rejoins() -> None:
    with NatsCluster(size=3) as cluster:
        node = cluster["polyn-2"]
        port, route_port, pid = node.port, node.cluster_port, node.pid
        assert cluster.kill("polyn-2") is node
        assert not node.running and not node.healthy()
        assert pid is not None and not process_exists(pid)
        cluster.restart(1)  # waits until the node reports healthy again
        assert node.healthy()
        assert (node.port, node.cluster_port) == (port, route_port)
        assert "polyn-2" in repr(node)


def test_a_node_can_be_named_by_index_or_name_only_within_the_cluster() -> None:
    cluster = NatsCluster(size=2, name="east")
    assert cluster.names == ["east-1", "east-2"]
    with pytest.raises(ServerError, match="not been started"):
        _ = cluster.urls
    with pytest.raises(ServerError, match="at least one node"):
        NatsCluster(size=0)
    with pytest.raises(ServerError, match="cluster name"):
        NatsCluster(name="has space")


def test_a_single_clustered_server_reports_its_route_port_and_name() -> None:
    config = ClusterConfig(name="solo", server_name="solo-1", routes="nats://127.0.0.1:1")
    assert config.routes == ("nats://127.0.0.1:1",)
    # Without JetStream a lone node need not reach its route to run.
    with NatsServer(jetstream=False, cluster=config) as server:
        assert server.name == "solo-1"
        assert server.route_url == f"nats://127.0.0.1:{server.cluster_port}"
        assert server.monitor_url is not None
    with pytest.raises(ServerError, match="not clustered"):
        _ = NatsServer().cluster_port


# -- scenario 1: node loss ------------------------------------------------------------------


@attrs.define
class Record:
    calls: collections.Counter[int] = attrs.Factory(collections.Counter)
    handled: set[int] = attrs.Factory(set)


class Ledger(Pipeline):
    """Writes each order once to a "database"; counts every call."""

    type = TYPE
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 50, "batch_timeout": 0.05, "concurrency": 2}}  # noqa: RUF012
    fetch_expires = 0.5

    def __init__(self, record: Record, **options: Any) -> None:
        super().__init__(**options)
        self.record = record

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message.put_batcher("db")

    async def handle_batch(
        self, batcher: str, messages: list[PipelineMessage], batch_info: BatchInfo
    ) -> None:
        for message in messages:
            n = message.event.data["n"]
            self.record.calls[n] += 1
            self.record.handled.add(n)


async def stream_cluster(transport: NatsTransport, stream: str) -> dict[str, Any]:
    info = await transport.stream_info(stream)
    return dict(info.cluster or {})


def stream_leader_seen_by(server: NatsServer, stream: str) -> str | None:
    """The stream's leader as ``server``'s monitoring endpoint reports it now."""
    assert server.monitor_url is not None
    with urllib.request.urlopen(f"{server.monitor_url}/jsz?streams=true", timeout=1) as answer:
        report = json.load(answer)
    for account in report.get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                leader = (detail.get("cluster") or {}).get("leader")
                return str(leader) if leader else None
    return None


async def stored_numbers(transport: NatsTransport, stream: str) -> collections.Counter[int]:
    """Every stored event's ``n``, read back with a consumer of the test's own."""
    reader = "reader"
    await transport.create_consumer(
        stream, {"durable_name": reader, "ack_policy": "none", "inactive_threshold": 30}
    )
    total = int((await transport.stream_info(stream)).state.get("messages", 0))
    numbers: collections.Counter[int] = collections.Counter()
    with trio.fail_after(30):
        while sum(numbers.values()) < total:
            for message in await transport.fetch(stream, reader, 1000, expires=1):
                numbers[message.json()["data"]["n"]] += 1
    await transport.delete_consumer(stream, reader)
    return numbers


async def test_stream_leader_killed_mid_run_loses_nothing_and_rejoins(
    tmp_path: Path, names: Names, figures: dict[str, Any]
) -> None:
    async with NatsCluster(size=3) as cluster:
        pyproject = write_project(
            tmp_path / "svc",
            {
                "domain": "com.test",
                "source_root": "ledger",
                "servers": cluster.urls,
                "kv_replicas": 3,
            },
            schemas={TYPE: ORDER_SCHEMA},
            migrations={"20260101000000_create_orders.py": MIGRATION},
        )
        folder = pyproject.parent
        loaded = await run_cli(["schemas", "load"], folder)
        assert loaded.code == 0, loaded.stderr
        migrated = await run_cli(["migrate"], folder)
        assert migrated.code == 0, migrated.stderr
        config = Config.load(pyproject=pyproject, environ={})
        assert config.kv_replicas == 3

        admin = await NatsTransport.connect(cluster.urls, reconnect_time_wait=0.1)
        try:
            # What the command line created is replicated on all three nodes.
            for name in (STREAM, "KV_POLYN_SCHEMAS", "KV_POLYN_MIGRATIONS"):
                info = await admin.stream_info(name)
                assert info.config["num_replicas"] == 3, name
            leader = (await stream_cluster(admin, STREAM))["leader"]
            victim = cluster[leader]
            survivors = [server for server in cluster if server is not victim]
        finally:
            await admin.close()

        # The service lists the stream leader first and keeps the order, so its connection is
        # on the node about to die; an observer watches from a node that survives.
        ordered = [victim.url, *(server.url for server in survivors)]
        app = App(
            attrs.evolve(config, servers=ordered),
            [
                NatsConnection(dont_randomize=True, reconnect_time_wait=0.1),
                SchemaStore(),
                Ledger(record := Record()),
            ],
        )
        observer = await NatsTransport.connect(survivors[0].url)
        acked: list[tuple[float, int]] = []
        failed: list[tuple[int, BaseException]] = []
        times: dict[str, float] = {}
        handled_at_kill = 0

        async def producer(running: polyn.Running, numbers: range) -> None:
            for n in numbers:
                try:
                    await polyn.pub(running, TYPE, {"n": n}, ack=True)
                except Exception as exc:  # a lost event: recorded, asserted below
                    failed.append((n, exc))
                    continue
                acked.append((trio.current_time(), n))

        async def kill_leader(running: polyn.Running) -> None:
            nonlocal handled_at_kill
            transport = transport_for(running)
            assert transport.connected_url == victim.url
            await wait_until(lambda: len(acked) >= EVENTS // 2, timeout=30)
            handled_at_kill = len(record.handled)
            times["kill"] = trio.current_time()
            await trio.to_thread.run_sync(victim.kill)
            await wait_until(lambda: transport.state.reconnects >= 1, timeout=20)
            times["reconnected"] = trio.current_time()
            # (STREAM.INFO waits for a leader; the monitoring port answers at once)
            await wait_until(
                lambda: stream_leader_seen_by(survivors[0], STREAM) not in (None, leader),
                timeout=20,
            )
            times["new_leader"] = trio.current_time()

        try:
            async with app.run() as running:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(kill_leader, running)
                    for p in range(PRODUCERS):
                        nursery.start_soon(producer, running, range(p, EVENTS, PRODUCERS))
                # (every acknowledged event; the assertions below say if any was not)
                await wait_until(lambda: len(record.handled) >= len(acked), timeout=30)
                connected_to = transport_for(running).connected_url
                handled_while_down = len(record.handled) - handled_at_kill
            await trio.to_thread.run_sync(victim.restart)  # waits for /healthz: caught up
            rejoined_at = trio.current_time()
            with trio.fail_after(20):
                while True:
                    info = await stream_cluster(observer, STREAM)
                    peers = {r["name"]: r for r in info.get("replicas") or []}
                    members = {info.get("leader"), *peers}
                    if members == set(cluster.names) and all(
                        r.get("current") for r in peers.values()
                    ):
                        break
                    await trio.sleep(0.05)
            stored = await stored_numbers(observer, STREAM)
            consumer = await observer.consumer_info(STREAM, CONSUMER)
        finally:
            await observer.close()

    kill = times["kill"]
    # Acks already on their way arrive just after the kill; the producers' stall is the longest
    # pause between two acknowledgements from the kill on.
    after = [kill, *sorted(t for t, _ in acked if t > kill)]
    failover = {
        "reconnect": round(times["reconnected"] - kill, 2),
        "leader": round(times["new_leader"] - kill, 2),
        "stall": round(max(b - a for a, b in itertools.pairwise(after)), 2),
    }
    lost = sorted(set(range(EVENTS)) - set(stored))
    duplicates_stored = sum(count - 1 for count in stored.values())
    figures.update(
        scenario="node loss: stream leader of a 3-node cluster SIGKILLed mid-run (R3)",
        events=EVENTS,
        kills=1,
        lost=len(lost) + len(failed),
        duplicates_stored=duplicates_stored,
        duplicates_handled=sum(record.calls.values()) - len(record.calls),
        notes=(
            f"fail-over from SIGKILL: reconnect {failover['reconnect']} s, new stream leader "
            f"{failover['leader']} s, longest publish stall {failover['stall']} s; {PRODUCERS} "
            f"producers, pub(ack=True), Pipeline consume; node rejoined "
            f"{round(rejoined_at - kill, 1)} s after the kill"
        ),
    )

    assert failed == [], f"{len(failed)} publishes failed, first: {failed[:1]}"
    assert sorted(n for _, n in acked) == list(range(EVENTS))
    assert lost == []
    assert duplicates_stored == 0
    assert record.handled == set(range(EVENTS))
    assert handled_while_down > 0  # the consumer went on with two nodes
    assert connected_to in {server.url for server in survivors}
    assert consumer.num_pending == 0 and consumer.num_ack_pending == 0
    assert failover["stall"] < 20
