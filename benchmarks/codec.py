"""Codec throughput: encode+validate and decode+validate, events per second.

Run by hand (not part of the tests): ``python benchmarks/codec.py``. Tracing is not involved.

The event is a CloudEvent with a five-property payload. Polyn's codec (jsonschema-rs for the yes/no,
orjson) is compared with two loops doing the same work, envelope schema then payload schema:

(a) naive: ``jsonschema.validate`` per event (the schema is checked and a validator built each
    time) and the standard library's ``json``;
(b) precompiled: jsonschema validators built once, the standard library's ``json``.

Both baselines use the same format checks as Polyn, so they do exactly the same validation.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import jsonschema

from polyn._json_formats import FORMATS
from polyn.codec import Schemas, decode, encode
from polyn.config import Config
from polyn.event import Event

CONFIG = Config(domain="com.acme", source_root="users.backend")
PAYLOAD_SCHEMA = {
    "type": "object",
    "required": ["name", "email", "age", "active", "tags"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "age": {"type": "integer", "minimum": 0},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
PAYLOAD = {"name": "Ada", "email": "ada@example.com", "age": 36, "active": True, "tags": ["a", "b"]}


def _checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    return checker


def _rate(work: Callable[[], object], seconds: float) -> float:
    """Events per second of ``work``, best of three runs of about ``seconds`` each."""
    work()
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(50):
                work()
            count += 50
        best = max(best, count / elapsed)
    return best


def main(seconds: float = 1.0) -> None:
    envelope = json.loads(
        resources.files("polyn").joinpath("cloud_event_schema.json").read_text("utf-8")
    )
    checker = _checker()
    schemas = Schemas.from_dict({"user.created.v1": PAYLOAD_SCHEMA})
    event = Event.new(CONFIG, "user.created.v1", PAYLOAD)
    body = encode(event, schemas, CONFIG)
    document: dict[str, Any] = json.loads(body)

    def naive_encode() -> bytes:
        jsonschema.validate(document, envelope, format_checker=checker)
        jsonschema.validate(document["data"], PAYLOAD_SCHEMA, format_checker=checker)
        return json.dumps(document, separators=(",", ":")).encode()

    def naive_decode() -> object:
        received = json.loads(body)
        jsonschema.validate(received, envelope, format_checker=checker)
        jsonschema.validate(received["data"], PAYLOAD_SCHEMA, format_checker=checker)
        return received

    envelope_validator = jsonschema.Draft7Validator(envelope, format_checker=checker)
    payload_validator = jsonschema.Draft7Validator(PAYLOAD_SCHEMA, format_checker=checker)

    def compiled_encode() -> bytes:
        envelope_validator.validate(document)
        payload_validator.validate(document["data"])
        return json.dumps(document, separators=(",", ":")).encode()

    def compiled_decode() -> object:
        received = json.loads(body)
        envelope_validator.validate(received)
        payload_validator.validate(received["data"])
        return received

    print(f"Python {platform.python_version()} on {platform.machine()}, {len(body)}-byte event")
    print(f"{'':42}{'events/s':>12}{'vs (a)':>10}{'vs (b)':>10}")
    for what, polyn_work, naive, compiled in (
        ("encode+validate", lambda: encode(event, schemas, CONFIG), naive_encode, compiled_encode),
        ("decode+validate", lambda: decode(body, schemas, CONFIG), naive_decode, compiled_decode),
    ):
        a, b = _rate(naive, seconds / 4), _rate(compiled, seconds)
        ours = _rate(polyn_work, seconds)
        print(f"{what + ', (a) jsonschema.validate':42}{a:>12,.0f}")
        print(f"{what + ', (b) precompiled':42}{b:>12,.0f}{b / a:>9.1f}x")
        print(f"{what + ', polyn':42}{ours:>12,.0f}{ours / a:>9.1f}x{ours / b:>9.1f}x")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
