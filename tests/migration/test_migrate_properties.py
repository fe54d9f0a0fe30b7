"""Property: running migrations as they arrive, in several runs, ends where one run ends.

A deployment runs ``polyn migrate`` each time new migration files arrive. Whatever points the
sorted list of migrations is split at, the bucket's record and the server's streams and
consumers must end the same as when every migration runs at once.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from polyn.config import Config
from polyn.errors import ConsumerError, StreamError
from polyn.migration import MigrationBucket, migrate
from polyn.nats import NatsTransport

Op = tuple[Any, ...]


@st.composite
def migration_plans(draw: st.DrawFn) -> list[list[Op]]:
    """Migrations (each a list of commands) valid in order: streams exist when used."""
    streams: set[int] = set()
    consumers: set[tuple[int, int]] = set()
    plan: list[list[Op]] = []
    for _ in range(draw(st.integers(1, 5))):
        commands: list[Op] = []
        for _ in range(draw(st.integers(0, 2))):  # 0: an empty migration, never recorded
            choices: list[Op] = [("create", max(streams, default=-1) + 1)]
            for k in sorted(streams):
                choices += [("describe", k, draw(st.sampled_from(["a", "b"]))), ("delete", k)]
                choices.append(("consumer", k, draw(st.integers(0, 1))))
            op = draw(st.sampled_from(choices))
            if op[0] == "consumer" and (op[1], op[2]) in consumers:
                op = ("describe", op[1], "c")
            if op[0] == "create":
                streams.add(op[1])
            elif op[0] == "delete":
                streams.discard(op[1])
                consumers = {c for c in consumers if c[0] != op[1]}
            elif op[0] == "consumer":
                consumers.add((op[1], op[2]))
            commands.append(op)
        plan.append(commands)
    return plan


def source(world: str, commands: list[Op]) -> str:
    lines = ["def change(m):", "    pass"]
    for op in commands:
        stream = f"S{op[1]}_{world}"
        if op[0] == "create":
            subject = f"{world.lower()}.s{op[1]}.>"
            lines.append(f"    m.create_stream(name={stream!r}, subjects=[{subject!r}])")
        elif op[0] == "describe":
            lines.append(f"    m.update_stream(name={stream!r}, description={op[2]!r})")
        elif op[0] == "delete":
            lines.append(f"    m.delete_stream({stream!r})")
        else:
            lines.append(f"    m.create_consumer(stream_name={stream!r}, durable_name='c{op[2]}')")
    return "\n".join(lines) + "\n"


async def server_state(transport: NatsTransport, world: str, size: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for k in range(size + 1):
        try:
            info = await transport.stream_info(f"S{k}_{world}")
        except StreamError:
            continue
        consumers = []
        for c in range(2):
            try:
                await transport.consumer_info(info.name, f"c{c}")
                consumers.append(c)
            except ConsumerError:
                pass
        state[f"S{k}"] = (info.config.get("description"), consumers)
    return state


def arrive(folder: Path, world: str, plan: list[list[Op]], indexes: range) -> None:
    folder.mkdir(exist_ok=True)
    for index in indexes:
        (folder / f"{1000 + index}_m{index}.py").write_text(source(world, plan[index]))


async def apply(
    transport: NatsTransport,
    config: Config,
    folder: Path,
    world: str,
    plan: list[list[Op]],
    cuts: list[int],
) -> tuple[list[str], dict[str, Any]]:
    bounds = [*sorted(set(cuts)), len(plan)]
    written = 0
    for bound in bounds:
        arrive(folder, world, plan, range(written, bound))  # this deployment's new files
        written = bound
        await migrate(transport, config, migrations_dir=folder, progress=lambda _: None)
    ids = await MigrationBucket(transport, config.migrations_bucket, config.source_root).ids()
    return ids, await server_state(transport, world, len(plan) * 2)


async def cleanup(transport: NatsTransport, world: str, size: int, bucket: str) -> None:
    for k in range(size + 1):
        try:
            await transport.delete_stream(f"S{k}_{world}")
        except StreamError:
            pass
    await transport.kv_delete_bucket(bucket)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=migration_plans(), data=st.data())
async def test_consecutive_runs_end_like_one_run(
    nats_url: str, config: Config, tmp_path: Path, plan: list[list[Op]], data: Any
) -> None:
    # A connection per example: pytest-trio runs each Hypothesis example in a trio run of its
    # own, so a transport fixture (bound to the first run) cannot be shared.
    cuts = data.draw(st.lists(st.integers(0, len(plan)), max_size=3), label="cuts")
    token = uuid.uuid4().hex[:8].upper()
    one, many = f"ONE{token}", f"MANY{token}"
    size = len(plan) * 2
    one_config = attrs.evolve(config, migrations_bucket=f"M_{one}")
    many_config = attrs.evolve(config, migrations_bucket=f"M_{many}")
    transport = await NatsTransport.connect(nats_url)
    try:
        expected = await apply(transport, one_config, tmp_path / one, one, plan, [])
        actual = await apply(transport, many_config, tmp_path / many, many, plan, cuts)
    finally:
        await cleanup(transport, one, size, one_config.migrations_bucket)
        await cleanup(transport, many, size, many_config.migrations_bucket)
        await transport.close()
    assert actual == expected
    recorded = [str(1000 + i) for i, commands in enumerate(plan) if commands]
    assert expected[0] == recorded
