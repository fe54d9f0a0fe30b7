"""Event construction: the fact sheet's conformance cases §13.3 (#46-50), adapted to Python."""

from __future__ import annotations

import platform
import re
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from polyn import NamingError, __version__
from polyn.config import Config
from polyn.event import Event

CONFIG = Config(domain="com.test", source_root="user.backend")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_new_event_has_the_elixir_defaults() -> None:
    before = datetime.now(UTC)
    event = Event.new(CONFIG, "test.event", {"foo": "bar"}, source="test.service")
    assert event.type == "com.test.test.event"
    assert event.source == "com:test:user:backend:test:service"
    assert event.specversion == "1.0.1"
    assert event.datacontenttype == "application/json"
    assert event.dataschema is None
    assert event.data == {"foo": "bar"}
    assert event.polyndata == {
        "clientlang": "python",
        "clientlangversion": platform.python_version(),
        "clientversion": __version__,
    }
    assert UUID4.fullmatch(event.id)
    assert event.time is not None
    # UTC with microseconds and a Z, like Elixir's DateTime.to_iso8601(DateTime.utc_now()).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.time)
    sent = datetime.fromisoformat(event.time)
    assert before <= sent <= datetime.now(UTC) + timedelta(seconds=1)


def test_new_event_without_source_uses_the_root() -> None:
    assert Event.new(CONFIG, "user.created.v1", None).source == "com:test:user:backend"


def test_each_new_event_has_its_own_id() -> None:
    ids = {Event.new(CONFIG, "user.created.v1", None).id for _ in range(100)}
    assert len(ids) == 100


def test_given_fields_are_kept() -> None:
    event = Event.new(
        CONFIG,
        "user.xml.v1",
        '<much wow="xml"/>',
        id="12345678-1234-1234-1234-1234567890ab",
        time="2022-10-20T16:59:58Z",
        specversion="1.1.0",
        datacontenttype="application/xml",
    )
    assert event.id == "12345678-1234-1234-1234-1234567890ab"
    assert event.time == "2022-10-20T16:59:58Z"
    assert event.specversion == "1.1.0"
    assert event.datacontenttype == "application/xml"


def test_given_polyndata_keeps_its_clientversion() -> None:
    event = Event.new(CONFIG, "user.created.v1", None, polyndata={"clientversion": "9.9.9"})
    assert event.polyndata == {"clientversion": "9.9.9"}


def test_given_polyndata_without_clientversion_gets_ours() -> None:
    given = {"clientlang": "python", "clientlangversion": "3.11"}
    event = Event.new(CONFIG, "user.created.v1", None, polyndata=given)
    assert event.polyndata == {**given, "clientversion": __version__}
    assert "clientversion" not in given  # the caller's dict is not changed


@pytest.mark.parametrize("event_type", ["user created v1", "com test user created v1", "User.v1"])
def test_invalid_types_raise_naming_error(event_type: str) -> None:
    with pytest.raises(NamingError, match="Event names must be lowercase"):
        Event.new(CONFIG, event_type, None)


@pytest.mark.parametrize("source", ["*orders*", "orders   new"])
def test_invalid_sources_raise_naming_error(source: str) -> None:
    with pytest.raises(NamingError, match="Event source must be lowercase"):
        Event.new(CONFIG, "user.created.v1", None, source=source)


def test_type_comes_from_event_type_and_unknown_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="from event_type, not type="):
        Event.new(CONFIG, "user.created.v1", None, type="com.test.other.v1")
    with pytest.raises(TypeError):
        Event.new(CONFIG, "user.created.v1", None, colour="red")


def test_events_are_frozen_values() -> None:
    event = Event.new(CONFIG, "user.created.v1", {"a": 1}, id="1", time="t")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.id = "2"  # type: ignore[misc]
    assert event == Event.new(CONFIG, "user.created.v1", {"a": 1}, id="1", time="t")
    assert attrs.evolve(event, data={"a": 2}).data == {"a": 2}


# The child only makes one id, writes it to a pipe and exits: fork's thread warning (3.12+) does
# not apply to it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_new_ids_are_uuid4_unique_and_differ_in_a_forked_child() -> None:
    import os
    import uuid

    from polyn.event import _new_id

    ids = [_new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id
        os.write(write, _new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child != _new_id()  # the parent's next id (from the same pool) differs


def test_ids_made_in_many_threads_at_once_are_unique() -> None:
    """Several trio runs (a portal's, the host's) and a portal's callers make ids at once: no
    two threads may be handed the same random bytes, however often the interpreter switches
    between them."""
    import sys
    import threading

    from polyn.event import _new_id

    made: list[list[str]] = [[] for _ in range(8)]
    go = threading.Event()

    def make(into: list[str]) -> None:
        go.wait()
        for _ in range(5000):
            into.append(_new_id())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=make, args=(into,)) for into in made]
        for thread in threads:
            thread.start()
        go.set()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every = [i for into in made for i in into]
    assert len(every) == 40_000
    assert len(set(every)) == 40_000


def test_new_times_are_utc_with_microseconds_and_z() -> None:
    import re
    from datetime import UTC, datetime

    from polyn.event import _now

    before = datetime.now(UTC)
    text = _now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert before <= datetime.fromisoformat(text.replace("Z", "+00:00")) <= after


def test_new_event_id_and_new_timestamp_are_public_as_in_the_seed() -> None:
    import re as _re

    from polyn import Event as _Event

    ids = {_Event.new_event_id() for _ in range(100)}
    assert len(ids) == 100
    for event_id in ids:
        assert _re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event_id
        )
    stamp = _Event.new_timestamp()
    assert _re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
