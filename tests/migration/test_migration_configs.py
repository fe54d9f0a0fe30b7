"""Typed stream and consumer configurations in migrations (issue 18): frozen attrs classes,
checked when built, the dict form accepted with the same checks, unknown options refused with
the valid ones; and the consumer default that makes a migration's consumer usable by Polyn."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from _support import Names
from hypothesis import given
from hypothesis import strategies as st

from polyn.config import Config
from polyn.errors import MigrationError
from polyn.migration import ConsumerConfig, Migration, StreamConfig, migrate
from polyn.migration._checks import subject_within, subjects_overlap
from polyn.naming import subject_matches
from polyn.nats import NatsTransport

WriteMigration = Callable[[str, str], Path]


def test_typed_and_dict_forms_record_the_same_command() -> None:
    typed, plain = Migration(), Migration()
    typed.create_stream(StreamConfig(name="ORDERS", subjects=["order.>"], max_age=3600))
    plain.create_stream(name="ORDERS", subjects=("order.>",), max_age=3600)
    typed.create_consumer(
        ConsumerConfig(stream_name="ORDERS", durable_name="c", ack_wait=30, backoff=[1, 5])
    )
    plain.create_consumer(stream_name="ORDERS", durable_name="c", ack_wait=30, backoff=(1, 5))
    assert typed.commands == plain.commands
    assert typed.commands[0].options == {
        "name": "ORDERS",
        "subjects": ["order.>"],
        "max_age": 3600,
    }
    assert typed.commands[1].options == {
        "stream_name": "ORDERS",
        "durable_name": "c",
        "ack_policy": "explicit",
        "ack_wait": 30,
        "backoff": [1, 5],
    }


def test_configurations_are_frozen_and_show_only_what_was_given() -> None:
    config = StreamConfig(name="ORDERS", subjects=["order.>"], storage="memory")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.name = "OTHER"  # type: ignore[misc]
    assert repr(config) == "StreamConfig(name='ORDERS', subjects=['order.>'], storage='memory')"
    assert attrs.evolve(config, max_age=60).to_options()["max_age"] == 60
    assert hash(config) == hash(
        StreamConfig(name="ORDERS", subjects=("order.>",), storage="memory")
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"name": "ORDERS", "subjects": ["a"], "max_agee": 1},
            "create_stream: unknown option 'max_agee' (did you mean 'max_age'?); valid options: "
            "allow_direct, allow_msg_ttl, allow_rollup_hdrs, compression, consumer_limits, ",
        ),
        (
            {"name": "order.stream", "subjects": ["a"]},
            "create_stream: name must be a name without spaces, '.', '*', '>', '/' or '\\' (at "
            "most 255 characters), got 'order.stream'",
        ),
        (
            {"name": "ORDERS", "subjects": "order.>"},
            "create_stream: subjects must be a list of strings, got 'order.>'",
        ),
        (
            {"name": "ORDERS", "subjects": ["order..x"]},
            "create_stream: subjects holds 'order..x', which is not a valid subject",
        ),
        (
            {"name": "ORDERS", "subjects": ["a"], "max_age": "7d"},
            "create_stream: max_age must be a duration in seconds (a number >= 0), got '7d'",
        ),
        (
            {"name": "ORDERS", "subjects": ["a"], "retention": "Limits"},
            "create_stream: retention must be one of 'limits', 'interest', 'workqueue', got "
            "'Limits'",
        ),
        (
            {"name": "ORDERS", "subjects": ["a"], "num_replicas": 7},
            "create_stream: num_replicas must be an integer from 1 to 5, got 7",
        ),
        (
            {"name": "ORDERS", "subjects": ["a"], "max_msgs": True},
            "create_stream: max_msgs must be an integer >= 0 (or -1: unlimited), got True",
        ),
    ],
)
def test_stream_options_are_checked_with_their_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(MigrationError) as caught:
        Migration().create_stream(**options)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"durable_name": "c"}, "create_consumer: stream_name"),
        (
            {"stream_name": "S", "durable_name": "c", "ack_policy": "explicitly"},
            "create_consumer: ack_policy must be one of 'explicit', 'none', 'all', got "
            "'explicitly'",
        ),
        (
            {"stream_name": "S", "durable_name": "c", "ack_wait": 0},
            "create_consumer: ack_wait must be a duration in seconds (a number > 0), got 0",
        ),
        (
            {"stream_name": "S", "durable_name": "c", "backoff": [1, -2]},
            "create_consumer: backoff must be a list of durations in seconds (numbers > 0), got "
            "[1, -2]",
        ),
        (
            {"stream_name": "S", "durable_name": "c", "max_deliver": 0},
            "create_consumer: max_deliver must be an integer >= 1 (or -1: unlimited), got 0",
        ),
        (
            {"stream_name": "S", "durable_name": "billing.v1"},
            "create_consumer: durable_name must be a name without spaces",
        ),
        (
            {
                "stream_name": "S",
                "durable_name": "c",
                "opt_start_time": datetime.datetime(2024, 1, 1),  # naive: the point
            },
            "create_consumer: opt_start_time must be an RFC 3339 time (a string or a "
            "timezone-aware datetime)",
        ),
        (
            {"stream_name": "S", "durable_name": "c", "name": "c"},
            "create_consumer: unknown option 'name'",
        ),
    ],
)
def test_consumer_options_are_checked_with_their_name(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(MigrationError) as caught:
        Migration().create_consumer(**options)
    assert str(caught.value).startswith(message)


def test_update_stream_checks_names_and_values_and_none_removes() -> None:
    m = Migration()
    m.update_stream(name="ORDERS", description=None, max_age=60)
    assert m.commands[0].options == {"name": "ORDERS", "description": None, "max_age": 60}
    with pytest.raises(MigrationError, match=r"update_stream: unknown option 'max_agee'"):
        m.update_stream(name="ORDERS", max_agee=60)
    with pytest.raises(MigrationError, match=r"update_stream: max_age must be a duration"):
        m.update_stream(name="ORDERS", max_age="1h")


def test_a_typed_config_and_keyword_arguments_together_are_refused() -> None:
    with pytest.raises(MigrationError, match="not both"):
        Migration().create_stream(StreamConfig(name="S", subjects=["a"]), max_age=1)
    with pytest.raises(MigrationError, match="takes a StreamConfig"):
        Migration().create_stream(ConsumerConfig(stream_name="S", durable_name="c"))  # type: ignore[arg-type]


def test_a_timezone_aware_start_time_is_sent_as_rfc3339() -> None:
    moment = datetime.datetime(
        2024, 5, 1, 11, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    config = ConsumerConfig(
        stream_name="S", durable_name="c", deliver_policy="by_start_time", opt_start_time=moment
    )
    assert config.to_options()["opt_start_time"] == "2024-05-01T09:30:00Z"


async def test_a_consumer_created_without_ack_policy_is_one_polyn_accepts(
    transport: NatsTransport, config: Config, names: Names, write_migration: WriteMigration
) -> None:
    """The server's default is ``none``, which Polyn's consumers refuse at start; Elixir's
    Consumer struct (and now ours) defaults to ``explicit``."""
    stream = names.stream()
    write_migration(
        "1111_consumer.py",
        f"""
        from polyn.migration import ConsumerConfig, StreamConfig

        def change(m):
            m.create_stream(StreamConfig(name="{stream}", subjects=["{names.subject("a")}"],
                                         max_age=60))
            m.create_consumer(ConsumerConfig(stream_name="{stream}", durable_name="typed",
                                             ack_wait=12.5))
            m.create_consumer(stream_name="{stream}", durable_name="plain")
        """,
    )
    await migrate(transport, config)
    typed = await transport.consumer_info(stream, "typed")
    plain = await transport.consumer_info(stream, "plain")
    assert typed.config["ack_policy"] == plain.config["ack_policy"] == "explicit"
    assert typed.config["ack_wait"] == 12.5
    assert (await transport.stream_info(stream)).config["max_age"] == 60


# -- the subject rules the checks use, against Polyn's own subject matching ------------------

tokens = st.sampled_from(["a", "b", "c"])
subjects = st.lists(tokens, min_size=1, max_size=4).map(".".join)
filters = st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=4).flatmap(
    lambda parts: st.sampled_from([".".join(parts), ".".join([*parts[:-1], ">"])])
)


@given(filters, filters, subjects)
def test_filters_matching_one_subject_overlap(a: str, b: str, subject: str) -> None:
    if subject_matches(a, subject) and subject_matches(b, subject):
        assert subjects_overlap(a, b)
    assert subjects_overlap(a, b) == subjects_overlap(b, a)


@given(filters, filters, subjects)
def test_a_filter_within_another_matches_nothing_more(inner: str, outer: str, subject: str) -> None:
    if subject_within(inner, outer) and subject_matches(inner, subject):
        assert subject_matches(outer, subject)
    if subject_within(inner, outer):
        assert subjects_overlap(inner, outer)
