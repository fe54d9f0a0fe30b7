"""Codec cost per event, per JSON Schema draft, against pydantic in the same run.

Run by hand (not part of the tests): ``python benchmarks/codec.py [SECONDS]``. Tracing is not
involved. Numbers measured while other programs use the CPU are indicative only.

The payload and schema are issue 17's realistic ones: five fields (``name``, ``email``, ``age``,
``tags``, ``active``), the schema declaring each draft in turn (4, 6, 7, 2019-09, 2020-12), plus
the same schema without ``$schema`` (read as draft-07). The baseline is the pydantic model a
FastStream service would use for it (``str``, ``str``, ``int >= 0``, ``list[str]``, ``bool``):

- encode: ``polyn.codec.encode(event)`` (envelope built from an ``Event``, envelope and payload
  validated, JSON written) against ``Model.model_validate(data).model_dump_json()``;
- decode: ``polyn.codec.decode(body)`` (JSON read, envelope and payload validated, ``Event``
  built) against ``Model.model_validate_json(payload)``.

Each row gives microseconds of CPU time per event (the best of 25 short rounds, the rounds of
all contestants interleaved, so that other programs' load falls on all alike) and the ratio to
pydantic; the target is at most 3x. Then the pathological inputs
of issue 21 (a backtracking-prone ``pattern`` against 30 characters, ``uniqueItems`` over 6,001
objects), timed once each on the yes/no path and the wording path (an invalid event, its error
message built).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, Field

from polyn import ValidationError
from polyn.codec import Schemas, decode, encode
from polyn.config import Config
from polyn.event import Event

CONFIG = Config(domain="com.acme", source_root="users.backend")
TYPE = "user.created.v1"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "email", "age", "tags", "active"],
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "active": {"type": "boolean"},
    },
}
DATA = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "age": 36,
    "tags": ["math", "engines", "poetry"],
    "active": True,
}
DRAFTS = {
    "draft-04": "http://json-schema.org/draft-04/schema#",
    "draft-06": "http://json-schema.org/draft-06/schema#",
    "draft-07": "http://json-schema.org/draft-07/schema#",
    "2019-09": "https://json-schema.org/draft/2019-09/schema",
    "2020-12": "https://json-schema.org/draft/2020-12/schema",
    "no $schema (draft-07)": None,
}


class User(BaseModel):
    name: str
    email: str
    age: int = Field(ge=0)
    tags: list[str]
    active: bool


ROUNDS = 25
_clock = time.process_time  # CPU time: another program taking the CPU does not count


def _per_event(work: Callable[[], object], seconds: float) -> float:
    """Microseconds per call of ``work`` (CPU time), over about ``seconds``."""
    count, started = 0, _clock()
    while (elapsed := _clock() - started) < seconds:
        for _ in range(200):
            work()
        count += 200
    return elapsed / count * 1e6


def _best(contestants: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    for work in contestants.values():
        work()
    best = dict.fromkeys(contestants, float("inf"))
    for _ in range(ROUNDS):  # short interleaved rounds: load on the machine hits all alike
        for name, work in contestants.items():
            best[name] = min(best[name], _per_event(work, seconds / ROUNDS))
    return best


def codec_table(seconds: float) -> list[str]:
    payload = orjson.dumps(DATA)
    contestants: dict[str, Callable[[], object]] = {
        "pydantic encode": lambda: User.model_validate(DATA).model_dump_json(),
        "pydantic decode": lambda: User.model_validate_json(payload),
    }
    for draft, uri in DRAFTS.items():
        schema = SCHEMA if uri is None else {"$schema": uri, **SCHEMA}
        schemas = Schemas.from_dict({TYPE: schema})
        event = Event.new(CONFIG, TYPE, DATA)
        body = encode(event, schemas, CONFIG)
        contestants[f"{draft} encode"] = lambda e=event, s=schemas: encode(e, s, CONFIG)
        contestants[f"{draft} decode"] = lambda b=body, s=schemas: decode(b, s, CONFIG)
    best = _best(contestants, seconds)
    lines = [
        f"{'schema':24}{'encode µs':>11}{'vs pydantic':>13}{'decode µs':>11}{'vs pydantic':>13}",
        f"{'pydantic (baseline)':24}{best['pydantic encode']:>11.2f}{'1.00x':>13}"
        f"{best['pydantic decode']:>11.2f}{'1.00x':>13}",
    ]
    for draft in DRAFTS:
        enc, dec = best[f"{draft} encode"], best[f"{draft} decode"]
        lines.append(
            f"{draft:24}{enc:>11.2f}{enc / best['pydantic encode']:>12.2f}x"
            f"{dec:>11.2f}{dec / best['pydantic decode']:>12.2f}x"
        )
    return lines


def _once(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    try:
        work()
    except ValidationError:
        pass
    return time.perf_counter() - started


def pathological_table() -> list[str]:
    naive = r"^([a-zA-Z0-9_.-]+)*@example\.com$"
    pattern = Schemas.from_dict({"p.v1": {"type": "string", "pattern": naive}})
    unique = Schemas.from_dict({"u.v1": {"type": "array", "uniqueItems": True}})
    value = "a" * 30 + "!"
    items = [{"n": n, "k": "v"} for n in range(6000)]
    duplicated = [*items, {"k": "v", "n": 5999}]
    size = len(json.dumps(duplicated))

    def body(event_type: str, data: Any) -> bytes:
        return orjson.dumps(
            {
                "id": "1",
                "specversion": "1.0.1",
                "type": f"com.acme.{event_type}",
                "source": "x",
                "data": data,
            }
        )

    rows = [
        (
            f"pattern {naive} vs 30 chars",
            _once(lambda: pattern.is_valid("p.v1", value)),
            _once(lambda: decode(body("p.v1", value), pattern, CONFIG)),
        ),
        (
            f"uniqueItems over 6,001 objects ({size // 1000} KB)",
            _once(lambda: unique.is_valid("u.v1", duplicated)),
            _once(lambda: decode(body("u.v1", duplicated), unique, CONFIG)),
        ),
    ]
    lines = [f"{'pathological input':58}{'yes/no':>12}{'worded':>12}"]
    for label, fast, worded in rows:
        lines.append(f"{label:58}{fast * 1e3:>10.2f}ms{worded * 1e3:>10.2f}ms")
    return lines


def main(seconds: float = 2.0) -> None:
    print(
        f"Python {platform.python_version()} on {platform.machine()}; realistic payload "
        f"{len(orjson.dumps(DATA))} bytes; CPU time, best of {ROUNDS} interleaved rounds"
    )
    for line in codec_table(seconds):
        print(line)
    print()
    for line in pathological_table():
        print(line)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
