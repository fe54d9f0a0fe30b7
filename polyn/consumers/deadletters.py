"""Reading dead letters back: ``polyn deadletters list`` and ``polyn deadletters replay``.

Consumers publish a dead letter for every message they give up on (see
:mod:`polyn.consumers`); a stream on ``polyn.deadletter.>`` (the example's migrations create one)
stores them. This module reads that stream and republishes chosen dead letters to their original
subject, so events set aside during an outage or before a fix are not lost:

- :func:`read` lists them (stream sequence, time, original subject = event type, consumer, error
  type and reason), optionally only one type's or one consumer's, or given sequences;
- :func:`replay` republishes each one's **original body unchanged** (so the event keeps its id) to
  its ``Polyn-Original-Subject`` through JetStream, with ``Nats-Msg-Id:
  <original id>:replay:<dead-letter stream>:<sequence>`` — a new id, so the stream's duplicate
  window does not drop it as a repeat of the original, and the same one for every replay of that
  dead letter, so replaying twice within the window stores it once. The original ``traceparent``
  goes along (flags ``00`` / ``01``), and ``Polyn-Replayed-From: <stream>:<sequence>`` says where
  it came from. A dead letter whose body was cut to fit (``Polyn-Truncated``) is never replayed.

Dead letters stay in their stream after a replay (JetStream keeps what its limits keep); a
replayed event that fails again is dead-lettered again, as a new dead letter.

The reader is a short-lived consumer of the dead-letter stream (``ack_policy`` ``none``, removed
when done, and by the server after a minute if the command is killed).

Command line::

    polyn deadletters list [--stream NAME] [--type TYPE] [--consumer NAME] [--limit N]
    polyn deadletters replay (--seq N [N ...] | --type TYPE | --consumer NAME | --all)
                             [--stream NAME]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import attrs
import trio

from polyn.consumers._settlement import DEADLETTER_PREFIX, get_header
from polyn.errors import PolynError, StreamError
from polyn.nats import Message, PubAck, Transport
from polyn.tracing import wire_traceparent

__all__ = ["DeadLetter", "add_command", "find_stream", "read", "replay"]


@attrs.frozen
class DeadLetter:
    """One stored dead letter."""

    stream: str
    seq: int
    time: datetime | None
    original_subject: str
    consumer: str
    error_type: str
    reason: str
    original_id: str | None
    truncated: bool
    body: bytes = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)

    @classmethod
    def from_message(cls, stream: str, msg: Message) -> DeadLetter:
        headers = msg.headers
        metadata = msg.metadata
        subject = msg.subject.removeprefix(DEADLETTER_PREFIX)
        return cls(
            stream=stream,
            seq=metadata.stream_sequence if metadata else 0,
            time=metadata.timestamp if metadata else None,
            original_subject=get_header(headers, "Polyn-Original-Subject") or subject,
            consumer=get_header(headers, "Polyn-Consumer") or "",
            error_type=get_header(headers, "Polyn-Error-Type") or "",
            reason=get_header(headers, "Polyn-Error") or "",
            original_id=get_header(headers, "Polyn-Original-Id"),
            truncated=(get_header(headers, "Polyn-Truncated") or "").lower() == "true",
            body=msg.data,
            headers=dict(headers),
        )


async def find_stream(transport: Transport, stream: str | None = None) -> str:
    """The stream that stores dead letters: ``stream`` when given, else the one stream
    capturing ``polyn.deadletter.>``; :class:`~polyn.errors.StreamError` otherwise."""
    if stream:
        return stream
    names = await transport.stream_names(DEADLETTER_PREFIX + ">")
    if len(names) != 1:
        found = f"streams {', '.join(names)} capture" if names else "no stream captures"
        raise StreamError(
            f"{found} {DEADLETTER_PREFIX}>; create one stream for the dead letters (a "
            "create_stream migration with subjects=['polyn.deadletter.>']) or name it with "
            "--stream"
        )
    return names[0]


async def read(
    transport: Transport,
    stream: str | None = None,
    *,
    event_type: str | None = None,
    consumer: str | None = None,
    seqs: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """The stored dead letters, oldest first, filtered by type, consumer and sequences.

    Example::

        for letter in await deadletters.read(transport, event_type="order.placed.v1"):
            print(letter.seq, letter.reason)
    """
    stream = await find_stream(transport, stream)
    info = await transport.stream_info(stream)
    last = int(info.state.get("last_seq", 0))
    reader = f"polyn_deadletters_{uuid.uuid4().hex[:12]}"
    config: dict[str, Any] = {
        "durable_name": reader,
        "ack_policy": "none",
        "deliver_policy": "all",
        "inactive_threshold": 60,
    }
    if event_type:
        config["filter_subject"] = DEADLETTER_PREFIX + event_type
    await transport.create_consumer(stream, config)
    wanted = set(seqs) if seqs else None
    out: list[DeadLetter] = []
    try:
        with trio.fail_after(60):
            while True:
                batch = await transport.fetch(stream, reader, 500, expires=0.5)
                if not batch:
                    break
                done = False
                for msg in batch:
                    letter = DeadLetter.from_message(stream, msg)
                    if consumer and letter.consumer != consumer:
                        continue
                    if wanted is not None and letter.seq not in wanted:
                        continue
                    out.append(letter)
                    if limit is not None and len(out) >= limit:
                        done = True
                        break
                last_seen = batch[-1].metadata
                if done or (last_seen is not None and last_seen.stream_sequence >= last):
                    break
    finally:
        with trio.CancelScope(shield=True):
            try:
                await transport.delete_consumer(stream, reader)
            except PolynError:
                pass  # its inactive_threshold removes it
    return out


@attrs.frozen
class Replayed:
    """What :func:`replay` did with one dead letter."""

    letter: DeadLetter
    ack: PubAck | None
    skipped: str | None = None


def replay_id(letter: DeadLetter) -> str:
    """The ``Nats-Msg-Id`` of ``letter``'s replay (see the module doc)."""
    return f"{letter.original_id or 'no-id'}:replay:{letter.stream}:{letter.seq}"


async def replay(transport: Transport, letters: Sequence[DeadLetter]) -> list[Replayed]:
    """Republish each dead letter to its original subject (see the module doc)."""
    out: list[Replayed] = []
    for letter in letters:
        if letter.truncated:
            out.append(Replayed(letter, None, "its body was cut to fit the dead letter"))
            continue
        headers = {
            "Nats-Msg-Id": replay_id(letter),
            "Polyn-Replayed-From": f"{letter.stream}:{letter.seq}",
        }
        traceparent = get_header(letter.headers, "traceparent")
        if traceparent:
            headers["traceparent"] = wire_traceparent(traceparent)
        ack = await transport.js_publish(letter.original_subject, letter.body, headers=headers)
        out.append(Replayed(letter, ack))
    return out


# -- the command line ---------------------------------------------------------------------------

Connected = Callable[[Any, Callable[[Transport], Awaitable[int]]], int]


def add_command(
    commands: Any,
    config: argparse.ArgumentParser,
    load_config: Callable[[argparse.Namespace], Any],
    connected: Connected,
) -> None:
    """Register ``polyn deadletters list|replay`` on the CLI's subcommands."""
    top = commands.add_parser("deadletters", help="read stored dead letters back, replay them")
    sub = top.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    sub.required = True

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--stream", help="the dead-letter stream (default: the one on polyn.deadletter.>)"
        )
        parser.add_argument("--type", dest="event_type", help="only this event type's")
        parser.add_argument("--consumer", help="only this consumer's")

    listing = sub.add_parser("list", parents=[config], help="list the stored dead letters")
    common(listing)
    listing.add_argument("--limit", type=int, default=None, help="at most this many")
    listing.set_defaults(handler=lambda args: _list(args, load_config(args), connected))

    again = sub.add_parser(
        "replay", parents=[config], help="republish dead letters to their original subject"
    )
    common(again)
    again.add_argument("--seq", type=int, nargs="+", help="these dead letters (stream sequences)")
    again.add_argument("--all", action="store_true", help="every stored dead letter (filtered)")
    again.set_defaults(handler=lambda args: _replay(args, load_config(args), connected))


def _list(args: argparse.Namespace, config: Any, connected: Connected) -> int:
    async def work(transport: Transport) -> int:
        letters = await read(
            transport,
            args.stream,
            event_type=args.event_type,
            consumer=args.consumer,
            limit=args.limit,
        )
        print("seq\ttime\ttype\tconsumer\treason")
        for letter in letters:
            when = letter.time.isoformat(timespec="seconds") if letter.time else "-"
            reason = f"{letter.error_type}: {letter.reason}" if letter.error_type else letter.reason
            print(f"{letter.seq}\t{when}\t{letter.original_subject}\t{letter.consumer}\t{reason}")
        print(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}", flush=True)
        return 0

    return connected(config, work)


def _replay(args: argparse.Namespace, config: Any, connected: Connected) -> int:
    if not (args.seq or args.event_type or args.consumer or args.all):
        raise PolynError(
            "say which dead letters to replay: --seq N [N ...], --type TYPE, --consumer NAME, "
            "or --all"
        )

    async def work(transport: Transport) -> int:
        letters = await read(
            transport,
            args.stream,
            event_type=args.event_type,
            consumer=args.consumer,
            seqs=args.seq,
        )
        results = await replay(transport, letters)
        failed = 0
        for result in results:
            letter = result.letter
            if result.skipped:
                failed += 1
                print(f"{letter.seq}\tnot replayed: {result.skipped}")
            else:
                assert result.ack is not None
                note = " (already replayed: duplicate)" if result.ack.duplicate else ""
                print(
                    f"{letter.seq}\treplayed to {letter.original_subject} "
                    f"({result.ack.stream} #{result.ack.seq}){note}"
                )
        print(f"{len(results) - failed} of {len(results)} dead letters replayed", flush=True)
        return 1 if failed else 0

    return connected(config, work)
