"""The realistic payload of issue 17, shared by the publish and request benchmarks.

Five fields (``name``, ``email``, ``age``, a ``tags`` array, ``active``), in a CloudEvent of
about 384 bytes, with its schema declaring ``"$schema"`` draft 2020-12 (as JSON Schema tooling
writes by default) or draft-07. FastStream validates the same fields with a pydantic model of
``str``, ``str``, ``int >= 0``, ``list[str]``, ``bool``.

Also the harness: every contender runs in a process of its own (``run_one``), rounds are
interleaved, and medians and ratios are reported (``report``). ``--polyn-path`` runs a contender
against another checkout of polyn (old vs new in the same run).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"},
    "email": {"type": "string"},
    "age": {"type": "integer", "minimum": 0},
    "tags": {"type": "array", "items": {"type": "string"}},
    "active": {"type": "boolean"},
}
REQUIRED = ["name", "email", "age", "tags", "active"]
SCHEMAS: dict[str, dict[str, Any]] = {
    "2020-12": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": REQUIRED,
        "properties": PROPERTIES,
    },
    "draft-07": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": REQUIRED,
        "properties": PROPERTIES,
    },
}


def data(i: int = 0) -> dict[str, Any]:
    return {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "age": 36 + i % 2,
        "tags": ["math", "engines", "poetry"],
        "active": True,
    }


def pydantic_model() -> Any:
    from pydantic import BaseModel, Field

    class UserCreated(BaseModel):
        name: str
        email: str
        age: int = Field(ge=0)
        tags: list[str]
        active: bool

    return UserCreated


def run_one(script: str, args: Sequence[str], polyn_path: str | None = None) -> Any:
    """Run ``script --one ARGS`` in a fresh process and return the JSON it prints last."""
    env = dict(os.environ)
    if polyn_path:
        env["PYTHONPATH"] = polyn_path + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, script, "--one", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, list[float]], baseline: str, unit: str, higher: bool) -> None:
    """Medians per contender, and each one's ratio to ``baseline`` (>1: better)."""
    base = statistics.median(results[baseline])
    print(f"{'contender':<44} {'median':>12} {'rounds':>24} {'vs ' + baseline:>14}")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = median / base if higher else base / median
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:<44} {median:>10,.0f}{unit:>2} {shown:>24} {ratio:>13.2f}x")
