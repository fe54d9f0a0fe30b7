"""Naming rules: the fact sheet's conformance cases §13.1-13.3 and properties.

The subject-matching property runs against the session's real nats-server: random patterns are
subscribed, random subjects published, and who received what is compared with
``subject_matches``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyn import NamingError
from polyn.config import Config
from polyn.naming import (
    colon_to_dot,
    consumer_name,
    dot_to_colon,
    full_source,
    full_type,
    stream_name,
    subject_matches,
    trim_domain_prefix,
    validate_message_name,
    validate_source_name,
)

CONFIG = Config(domain="com.test", source_root="user.backend")

BAD_NAMES = [
    "user   created",
    "user\tcreated",
    "user\n\rcreated",
    "user:*%[]<>$!@#-_created",
    ".user",
    "user.",
    ":user",
    "user:",
    None,
    "user.created\n",
    "User.created",
    "",
]


def test_dot_and_colon_conversions() -> None:
    assert (
        dot_to_colon("com.acme.user.created.v1.schema.v1") == "com:acme:user:created:v1:schema:v1"
    )
    assert (
        colon_to_dot("com:acme:user:created:v1:schema:v1") == "com.acme.user.created.v1.schema.v1"
    )


@pytest.mark.parametrize(
    ("name", "trimmed"),
    [
        ("com.test.user.created.v1.schema.v1", "user.created.v1.schema.v1"),
        ("com:test:user:created:v1:schema:v1", "user:created:v1:schema:v1"),
        # Only the first occurrence goes, as in both clients.
        ("com.test.user.created.com.test.v1.schema.v1", "user.created.com.test.v1.schema.v1"),
        ("user.created.v1", "user.created.v1"),
    ],
)
def test_trim_domain_prefix(name: str, trimmed: str) -> None:
    assert trim_domain_prefix(name, "com.test") == trimmed


@pytest.mark.parametrize("name", ["user.created", "user.created.foo", "com.test.user.created.v1"])
def test_valid_message_names_pass(name: str) -> None:
    assert validate_message_name(name) == name


@pytest.mark.parametrize("name", [*BAD_NAMES, "user:test"])
def test_invalid_message_names_raise_the_protocol_text(name: str | None) -> None:
    with pytest.raises(NamingError) as caught:
        validate_message_name(name)
    assert str(caught.value).startswith(
        "Event names must be lowercase, alphanumeric and dot separated, got "
    )
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["user.backend", "nats.graphql.proxy", "user:backend", "com.test", "com.test.foo", "com:test"],
)
def test_valid_sources_pass(name: str) -> None:
    assert validate_source_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_sources_raise_the_protocol_text(name: str | None) -> None:
    with pytest.raises(NamingError) as caught:
        validate_source_name(name)
    assert str(caught.value) == (
        f"Event source must be lowercase, alphanumeric and dot/colon separated, got {name}"
    )


@pytest.mark.parametrize(
    ("event_type", "source", "expected"),
    [
        ("foo.bar.v1", None, "user_backend_foo_bar_v1"),
        ("foo.bar.v1", "my.source", "user_backend_my_source_foo_bar_v1"),
        ("foo.bar.v1", "my:source", "user_backend_my_source_foo_bar_v1"),
        ("com.test.foo.bar.v1", "my:source", "user_backend_my_source_foo_bar_v1"),
        ("user.created.v1", None, "user_backend_user_created_v1"),
        ("user.created.v1", "notifications", "user_backend_notifications_user_created_v1"),
        ("pull.consumer.test.event.v1", None, "user_backend_pull_consumer_test_event_v1"),
        ("company.created.v1", None, "user_backend_company_created_v1"),
        ("calc.add.v1", None, "user_backend_calc_add_v1"),
    ],
)
def test_consumer_names_match_the_other_clients(
    event_type: str, source: str | None, expected: str
) -> None:
    assert consumer_name(event_type, CONFIG, source) == expected


def test_consumer_name_rejects_invalid_type_and_source() -> None:
    with pytest.raises(NamingError, match="Event names must be"):
        consumer_name("foo bar", CONFIG)
    with pytest.raises(NamingError, match="Event source must be"):
        consumer_name("foo.bar", CONFIG, "my source")


def test_stream_names() -> None:
    assert stream_name("foo.bar") == "FOO_BAR"
    assert stream_name("user.created.v1") == "USER_CREATED_V1"


def test_full_type_prefixes_the_domain_once() -> None:
    assert full_type("user.created.v1", CONFIG) == "com.test.user.created.v1"
    assert full_type("com.test.user.created.v1", CONFIG) == "com.test.user.created.v1"


@pytest.mark.parametrize("event_type", ["user created v1", "com test user created v1"])
def test_full_type_rejects_invalid_names(event_type: str) -> None:
    with pytest.raises(NamingError, match="Event names must be"):
        full_type(event_type, CONFIG)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "com:test:user:backend"),
        ("orders", "com:test:user:backend:orders"),
        ("orders.new", "com:test:user:backend:orders:new"),
        ("com:test:user:backend", "com:test:user:backend"),
        ("com:test:user:backend:orders:new", "com:test:user:backend:orders:new"),
        # The clients' quirk, kept: a dotted root is not recognised.
        ("com.test.user.backend.orders", "com:test:user:backend:com:test:user:backend:orders"),
    ],
)
def test_full_source(source: str | None, expected: str) -> None:
    assert full_source(CONFIG, source) == expected


@pytest.mark.parametrize("source", ["*orders*", "orders   new"])
def test_full_source_rejects_invalid_sources(source: str) -> None:
    with pytest.raises(NamingError, match=re.escape(f"separated, got {source}")):
        full_source(CONFIG, source)


@pytest.mark.parametrize(
    ("subject", "pattern", "expected"),
    [
        ("foo", "foo", True),
        ("foo.bar.v1", "foo.bar.v1", True),
        ("foo.bar.v1", "bar.baz.v1", False),
        ("foo.bar", "foo.*", True),
        ("foo", "foo.*", False),
        ("foo.bar.baz", "foo.*.*", True),
        ("foo.bar", "foo.*.*", False),
        ("foo.bar", "foo.>", True),
        ("foo.bar.baz.qux", "foo.>", True),
        ("foo", "foo.bar.>", False),
        ("foo.bar.baz.qux", "foo.*.>", True),
        ("foo.bar.baz.qux.other.thing", "foo.*.*.>", True),
        ("foo.bar", "foo.*.*.>", False),
        # Where the mocks' unanchored regex was wrong: real NATS semantics.
        ("foo.bar", "foo", False),
        ("foobar", "foo", False),
        ("foo.bar.baz", "foo.*", False),
        ("foo", ">", True),
        ("foo.>", "foo.>", False),
        ("foo.bar", "foo.>.bar", False),
        ("foo..bar", "foo.*.bar", False),
    ],
)
def test_subject_matching(subject: str, pattern: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


_token = st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True)
message_names = st.lists(_token, min_size=1, max_size=5).map(".".join)
sources = st.lists(_token, min_size=1, max_size=4).flatmap(
    lambda tokens: st.lists(
        st.sampled_from(".:"), min_size=len(tokens) - 1, max_size=len(tokens) - 1
    ).map(lambda seps: "".join(t + s for t, s in zip(tokens, [*seps, ""], strict=True)))
)


@given(event_type=message_names, source=st.none() | sources, with_domain=st.booleans())
def test_consumer_names_of_valid_names_are_word_characters(
    event_type: str, source: str | None, with_domain: bool
) -> None:
    if with_domain:
        event_type = f"com.test.{event_type}"
    assert re.fullmatch(r"[a-z0-9_]+", consumer_name(event_type, CONFIG, source))


# -- subject_matches against a real server -------------------------------------------------------

_subject_tokens = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4)
_subjects = _subject_tokens.map(".".join)
_patterns = st.builds(
    lambda tokens, tail: ".".join([*tokens, *tail]),
    st.lists(st.sampled_from(["a", "b", "*"]), min_size=0, max_size=3),
    st.sampled_from([[], [">"], ["c"], ["*"]]),
).filter(bool)


class _Server:
    """One asyncio loop and nats-py connection shared by the examples (nats-py is asyncio-only)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.nc = self.loop.run_until_complete(nats.connect(url))

    def receivers(self, patterns: list[str], subjects: list[str]) -> set[tuple[int, int]]:
        return self.loop.run_until_complete(self._receivers(patterns, subjects))

    async def _receivers(self, patterns: list[str], subjects: list[str]) -> set[tuple[int, int]]:
        # A prefix of our own keeps other traffic on the shared server out; it changes nothing
        # about matching ("p.>" needs a token after "p" exactly as ">" needs one).
        prefix = "m" + uuid.uuid4().hex[:12]
        subs = [await self.nc.subscribe(f"{prefix}.{pattern}") for pattern in patterns]
        for index, subject in enumerate(subjects):
            await self.nc.publish(f"{prefix}.{subject}", str(index).encode())
        # The server may answer a PING read together with our PUBs before it delivers them back
        # to us (about one time in ten); by the PONG of a second round trip they have arrived.
        await self.nc.flush()
        await self.nc.flush()
        received = set()
        for sub_index, sub in enumerate(subs):
            for _ in range(sub.pending_msgs):
                msg = await sub.next_msg(timeout=1)
                received.add((sub_index, int(msg.data)))
            await sub.unsubscribe()
        return received

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


@pytest.fixture(scope="module")
def server(nats_url: str) -> Iterator[_Server]:
    server = _Server(nats_url)
    yield server
    server.close()


@settings(max_examples=40)
@given(
    patterns=st.lists(_patterns, min_size=1, max_size=8, unique=True),
    subjects=st.lists(_subjects, min_size=1, max_size=8, unique=True),
)
def test_subject_matches_agrees_with_nats_server(
    server: _Server, patterns: list[str], subjects: list[str]
) -> None:
    expected = {
        (p, s)
        for p, pattern in enumerate(patterns)
        for s, subject in enumerate(subjects)
        if subject_matches(pattern, subject)
    }
    assert server.receivers(patterns, subjects) == expected


# -- version suffixes (§13 cases 6-8) ------------------------------------------------------------


def test_version_suffix_appends_the_version() -> None:
    from polyn.naming import version_suffix

    assert version_suffix("com:acme:user:created:") == "com:acme:user:created:v1"  # case 6
    assert version_suffix("com.acme.user.created.", 2) == "com.acme.user.created.v2"  # case 7


def test_trim_version_suffix_removes_every_version_token() -> None:  # case 8
    from polyn.naming import trim_version_suffix

    assert trim_version_suffix("com.acme.user.created.v1") == "com.acme.user.created"
    assert trim_version_suffix("com:acme:user:created:v1") == "com:acme:user:created"
    assert trim_version_suffix("user.created") == "user.created"
    assert trim_version_suffix("a.v1.b:v22") == "a.b"  # polyn_naming removes all matches


def test_domains_follow_the_stricter_ruby_rule() -> None:
    from polyn import Config, ConfigError

    for domain in ("com.acme", "com:acme", "acme"):
        assert Config(domain=domain, source_root="svc").domain == domain
    for domain in ("Com.Acme", "com-acme", "com..acme", "com.acme.", ""):
        with pytest.raises(ConfigError, match="It must be lowercase, alphanumeric and dot/colon"):
            Config(domain=domain, source_root="svc")
