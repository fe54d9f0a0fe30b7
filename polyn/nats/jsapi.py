"""The JetStream API client: requests on ``$JS.API.>``, their errors, pagination and info parsing.

JetStream administration (streams, consumers, listing) is a set of request / reply calls with
JSON bodies. :class:`JetStreamApi` makes them over any ``request`` function, so one client
serves both the real transport (:class:`~polyn.nats.NatsTransport` is a ``JetStreamApi`` over its
own batched requests) and the sandbox, whose snapshot of the server's definitions is read with
a ``JetStreamApi`` over the real transport it wraps (:mod:`polyn.testing.snapshot`).

Configurations are dicts spelled as the API spells them, with durations in **seconds** (floats)
on Polyn's side and nanoseconds on the wire; :func:`to_wire` and :func:`from_wire` convert.
API errors become :class:`~polyn.errors.StreamError` / :class:`~polyn.errors.ConsumerError`
carrying the server's ``code`` and ``err_code`` (:func:`api_error`).

Example::

    api = JetStreamApi(transport.request)
    for info in await api.list_streams():
        print(info.name, info.subjects)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from polyn.errors import (
    ConsumerError,
    JetStreamError,
    NatsConnectionError,
    RequestTimeout,
    StreamError,
)
from polyn.nats.message import Message
from polyn.nats.transport import ConsumerInfo, StreamInfo

__all__ = [
    "CONSUMER_DURATIONS",
    "STREAM_DURATIONS",
    "ApiRequest",
    "JetStreamApi",
    "api_error",
    "consumer_info_from",
    "from_wire",
    "required_name",
    "stream_info_from",
    "to_wire",
]

STREAM_DURATIONS = ("max_age", "duplicate_window", "subject_delete_marker_ttl")
CONSUMER_DURATIONS = ("ack_wait", "idle_heartbeat", "inactive_threshold", "max_expires")

ApiRequest = Callable[..., Awaitable[Message]]
"""``request(subject, data, *, timeout=...)``: one request / reply on the connection."""


def to_wire(config: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``config`` without ``None`` values, its duration ``fields`` (and ``backoff``) in ns."""
    out = {k: v for k, v in config.items() if v is not None}
    for field in fields:
        if field in out:
            out[field] = int(float(out[field]) * 1_000_000_000)
    if "backoff" in out:
        out["backoff"] = [int(float(b) * 1_000_000_000) for b in out["backoff"]]
    return out


def from_wire(config: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``config`` with its duration ``fields`` (and ``backoff``) in seconds."""
    out = dict(config)
    for field in fields:
        if isinstance(out.get(field), int):
            out[field] = out[field] / 1_000_000_000
    if isinstance(out.get("backoff"), list):
        out["backoff"] = [b / 1_000_000_000 for b in out["backoff"]]
    return out


def stream_info_from(raw: Mapping[str, Any]) -> StreamInfo:
    """A :class:`StreamInfo` from the API's stream info (or stream list item) JSON."""
    config = from_wire(raw.get("config") or {}, STREAM_DURATIONS)
    return StreamInfo(
        name=config.get("name", ""),
        config=config,
        state=raw.get("state") or {},
        cluster=raw.get("cluster"),
    )


def consumer_info_from(raw: Mapping[str, Any]) -> ConsumerInfo:
    """A :class:`ConsumerInfo` from the API's consumer info (or consumer list item) JSON."""
    config = from_wire(raw.get("config") or {}, CONSUMER_DURATIONS)
    return ConsumerInfo(
        stream=raw.get("stream_name", ""),
        name=raw.get("name", ""),
        config=config,
        num_pending=raw.get("num_pending", 0),
        num_ack_pending=raw.get("num_ack_pending", 0),
        num_redelivered=raw.get("num_redelivered", 0),
        num_waiting=raw.get("num_waiting", 0),
        raw=raw,
    )


def api_error(raw: Mapping[str, Any], what: str, kind: type[JetStreamError]) -> JetStreamError:
    """The Polyn error for an API answer with an ``error`` member."""
    error = raw.get("error") or {}
    description = error.get("description") or "unknown error"
    err_code = error.get("err_code")
    code = error.get("code")
    if err_code == 10059 or (kind is StreamError and code == 404):
        return StreamError(f"{what}: {description}", code=code, err_code=err_code)
    if err_code == 10014:
        return ConsumerError(f"{what}: {description}", code=code, err_code=err_code)
    return kind(f"{what}: {description}", code=code, err_code=err_code)


def required_name(config: Mapping[str, Any], field: str, what: str) -> str:
    """``config[field]`` when it is a non-empty string, else StreamError."""
    name = config.get(field)
    if not name or not isinstance(name, str):
        raise StreamError(f"a {what} configuration needs a {field!r}, got {config!r}")
    return name


class JetStreamApi:
    """JetStream administration (the :class:`~polyn.nats.JetStreamAdmin` protocol) over a
    ``request`` function. Raises the errors of :func:`api_error`; a timeout becomes the call's
    own error kind, and no responders (JetStream off) a NatsConnectionError."""

    def __init__(self, request: ApiRequest) -> None:
        self._api_request = request

    async def api(
        self,
        subject: str,
        payload: Mapping[str, Any] | None,
        what: str,
        kind: type[JetStreamError],
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """One call of ``$JS.API.<subject>``: its answer, or the error it carries."""
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            reply = await self._api_request("$JS.API." + subject, data, timeout=timeout)
        except RequestTimeout as exc:
            raise kind(f"{what}: JetStream did not answer within {timeout} s") from exc
        if reply.headers.get("Status") == "503":
            raise NatsConnectionError(
                f"{what}: JetStream is not enabled on the NATS server (no responders)"
            )
        raw: dict[str, Any] = json.loads(reply.data)
        if "error" in raw:
            raise api_error(raw, what, kind)
        return raw

    async def _pages(
        self,
        api: str,
        member: str,
        what: str,
        kind: type[JetStreamError],
        query: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        items: list[Any] = []
        offset = 0
        while True:
            raw = await self.api(api, {"offset": offset, **(query or {})}, what, kind)
            page = raw.get(member) or []
            items.extend(page)
            offset += len(page)
            if not page or offset >= raw.get("total", 0):
                return items

    async def stream_names(self, subject: str | None = None) -> list[str]:
        query = {} if subject is None else {"subject": subject}
        names: list[str] = await self._pages(
            "STREAM.NAMES", "streams", "listing streams", StreamError, query
        )
        return names

    async def list_streams(self) -> list[StreamInfo]:
        """Every stream's configuration and state (all pages)."""
        raw = await self._pages("STREAM.LIST", "streams", "listing streams", StreamError)
        return [stream_info_from(item) for item in raw]

    async def list_consumers(self, stream: str) -> list[ConsumerInfo]:
        """Every consumer of ``stream``; none when the stream is gone meanwhile."""
        what = f"listing the consumers of stream {stream!r}"
        try:
            raw = await self._pages(f"CONSUMER.LIST.{stream}", "consumers", what, ConsumerError)
        except StreamError as exc:
            if exc.err_code == 10059:
                return []
            raise
        return [consumer_info_from(item) for item in raw]

    async def stream_info(self, name: str) -> StreamInfo:
        raw = await self.api(f"STREAM.INFO.{name}", None, f"stream {name!r}", StreamError)
        return stream_info_from(raw)

    async def create_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        name = required_name(config, "name", "stream")
        body = to_wire(config, STREAM_DURATIONS)
        what = f"creating stream {name!r}"
        raw = await self.api(f"STREAM.CREATE.{name}", body, what, StreamError)
        return stream_info_from(raw)

    async def update_stream(self, config: Mapping[str, Any]) -> StreamInfo:
        name = required_name(config, "name", "stream")
        body = to_wire(config, STREAM_DURATIONS)
        what = f"updating stream {name!r}"
        raw = await self.api(f"STREAM.UPDATE.{name}", body, what, StreamError)
        return stream_info_from(raw)

    async def delete_stream(self, name: str) -> None:
        await self.api(f"STREAM.DELETE.{name}", None, f"deleting stream {name!r}", StreamError)

    async def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        raw = await self.api(
            f"CONSUMER.INFO.{stream}.{consumer}",
            None,
            f"consumer {consumer!r} of stream {stream!r}",
            ConsumerError,
        )
        return consumer_info_from(raw)

    async def create_consumer(self, stream: str, config: Mapping[str, Any]) -> ConsumerInfo:
        name = config.get("durable_name") or config.get("name")
        if not name:
            raise ConsumerError("a consumer configuration needs a durable_name")
        body = {"stream_name": stream, "config": to_wire(config, CONSUMER_DURATIONS)}
        raw = await self.api(
            f"CONSUMER.CREATE.{stream}.{name}",
            body,
            f"creating consumer {name!r} on stream {stream!r}",
            ConsumerError,
        )
        return consumer_info_from(raw)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        await self.api(
            f"CONSUMER.DELETE.{stream}.{consumer}",
            None,
            f"deleting consumer {consumer!r} of stream {stream!r}",
            ConsumerError,
        )
