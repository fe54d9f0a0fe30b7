"""docs/reference/formats.md says what each format accepts and refuses: every example holds.

The checks are the Elixir client's (ex_json_schema's regular expressions): a Python service
accepts what an Elixir one accepts and publishes nothing an Elixir one refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polyn._json_formats import FORMATS
from polyn.codec import Schemas

TABLE = {
    "date-time": (
        [
            "2022-10-20T16:59:58Z",
            "2022-10-20T16:59:58.123456Z",
            "2022-10-20T16:59:58+02:00",
            "2022-10-20T16:59:58",
            "-12022-10-20T16:59:58Z",
        ],
        [
            "2022-10-20 16:59:58",
            "2022-13-20T16:59:58Z",
            "2022-10-20T16:59:58z",
            "2022-10-20T24:00:00Z",
        ],
    ),
    "date": (["2022-10-20", "2022-13-45"], ["2022-1-2", "22-10-20"]),
    "time": (
        ["16:59:58", "16:59:58.5", "16:59:58Z", "16:59:58z", "16:59:58+02:00"],
        ["16:59", "4:59:58"],
    ),
    "email": (
        [
            "ada@example.com",
            "first.last+tag@mail.example.co.uk",
            "a!#$%&'*+/=?^_{}~-@example.museum",
        ],
        [
            "ada",
            "ada@localhost",
            "ada@example.c",
            "team@startup.technology",
            '"quoted"@example.com',
            "ada@[10.0.0.1]",
        ],
    ),
    "hostname": (
        ["example.com", "a-b.example", "localhost", "1.2.3.4"],
        ["-a.example", "a_b.example", "a..b"],
    ),
    "ipv4": (["10.0.0.1", "255.255.255.255", "010.0.0.1"], ["256.0.0.1", "1.2.3"]),
    "ipv6": (["::1", "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1"], ["1::2::3", "12345::"]),
    "uri": (
        ["https://example.com/a?b=c#d", "urn:example:x", "mailto:ada@example.com"],
        ["example.com/a", "https://a b"],
    ),
    "uri-reference": (
        ["com:acme:orders", "com.acme.orders", "a/b#c", "https://example.com"],
        ["a b", "\\foo", "a#\\b"],
    ),
    "json-pointer": (["", "/a/b", "/a~1b/~0c"], ["a", "/a~2"]),
}
DOC = (Path(__file__).parent.parent / "docs" / "reference" / "formats.md").read_text("utf-8")


def test_the_table_covers_every_format_polyn_checks() -> None:
    assert set(TABLE) == set(FORMATS)
    for name in FORMATS:
        assert f"| `{name}` |" in DOC


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_documented_example_is_judged_as_documented(name: str) -> None:
    accepted, refused = TABLE[name]
    schemas = Schemas.from_dict({"f.v1": {"type": "string", "format": name}})
    for value in accepted:
        shown = value or '""'
        assert f"`{shown}`" in DOC.replace("**", ""), value
        assert FORMATS[name](value), value
        assert FORMATS[name](value + "\n") == (name != "ipv6"), value  # PCRE's "$"
        assert schemas.is_valid("f.v1", value), value
    for value in refused:
        assert not FORMATS[name](value), value
        assert not schemas.is_valid("f.v1", value), value


def test_formats_polyn_does_not_check_are_annotations() -> None:
    schemas = Schemas.from_dict({"f.v1": {"format": "uuid"}, "g.v1": {"format": "regex"}})
    assert schemas.is_valid("f.v1", "not a uuid")
    assert schemas.is_valid("g.v1", "(unbalanced")
