"""Consumer options: declared once, checked when the spec is built, seen by mypy (issues 18, 20)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest

import polyn
from polyn.consumers import (
    BatcherSpec,
    Pipeline,
    PipelineMessage,
    ProcessorSpec,
    PullConsumer,
    Responder,
    Subscriber,
)
from polyn.consumers._kwargs import (
    ActorKwargs,
    PipelineKwargs,
    PullConsumerKwargs,
    ResponderKwargs,
    SubscriberKwargs,
)
from polyn.errors import ConfigError, ConsumerError, OptionError


class WelcomeMailer(PullConsumer):
    type = "user.created.v1"


class Ledger(Pipeline):
    type = "order.placed.v1"
    processors = {"default": {"concurrency": 4}}  # noqa: RUF012
    batchers = {"db": {"batch_size": 10, "batch_timeout": 0.5}}  # noqa: RUF012

    async def handle_message(self, processor: str, message: PipelineMessage) -> PipelineMessage:
        return message


def test_a_wrong_option_type_fails_at_construction_naming_the_option() -> None:
    with pytest.raises(OptionError) as failed:
        WelcomeMailer(prefetch="ten")  # type: ignore[arg-type]
    text = str(failed.value)
    assert "WelcomeMailer" in text and "'prefetch'" in text and "'ten'" in text
    assert isinstance(failed.value, ConfigError)
    assert isinstance(failed.value, TypeError)  # as Python's own argument errors


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"prefetch": 0}, "prefetch"),
        ({"prefetch": True}, "prefetch"),
        ({"max_failures": 0}, "max_failures"),
        ({"fetch_expires": -1}, "fetch_expires"),
        ({"handler_timeout": "5"}, "handler_timeout"),
        ({"stall_timeout": 0}, "stall_timeout"),
        ({"store": 3}, "store"),
        ({"connection": 3}, "connection"),
    ],
)
def test_values_out_of_range_fail_at_construction(options: dict[str, Any], name: str) -> None:
    with pytest.raises(OptionError, match=f"'{name}'"):
        WelcomeMailer(**options)


def test_class_attributes_are_checked_like_keyword_arguments() -> None:
    class Careless(PullConsumer):
        type = "user.created.v1"
        prefetch = "ten"  # type: ignore[assignment]

    with pytest.raises(OptionError, match="Careless: option 'prefetch' must be an int >= 1"):
        Careless()
    assert WelcomeMailer(prefetch=50).prefetch == 50  # a keyword wins over the class
    assert WelcomeMailer().options.prefetch == polyn.consumers.DEFAULT_PREFETCH


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(OptionError) as failed:
        WelcomeMailer(prefetc=10)  # type: ignore[call-arg]
    assert "unknown option 'prefetc'" in str(failed.value)
    assert "prefetch" in str(failed.value) and "max_failures" in str(failed.value)


def test_a_consumer_without_its_type_or_subject_is_refused() -> None:
    with pytest.raises(ConsumerError, match="needs a `type`"):
        PullConsumer()
    with pytest.raises(ConsumerError, match="needs a `subject`"):
        Subscriber()


def test_pipeline_specs_accept_the_dict_form_and_attrs_specs_and_check_both() -> None:
    ledger = Ledger()
    assert ledger.options.processors == {"default": ProcessorSpec(concurrency=4)}
    assert ledger.options.batchers == {"db": BatcherSpec(batch_size=10, batch_timeout=0.5)}
    typed = Ledger(batchers={"db": BatcherSpec(batch_size=5)})
    assert typed.options.batchers["db"].batch_size == 5
    with pytest.raises(OptionError, match=r"'batchers': 'db': option 'batch_size'"):
        Ledger(batchers={"db": {"batch_size": "many"}})
    with pytest.raises(OptionError, match="unknown options \\['size'\\]"):
        Ledger(batchers={"db": {"size": 3}})
    with pytest.raises(OptionError, match="exactly one processor"):
        Ledger(processors={"a": {}, "b": {}})
    with pytest.raises(OptionError, match="on_failure"):
        Ledger(on_failure="sometimes")


def test_the_typing_mirrors_list_exactly_the_declared_options() -> None:
    actor = set(ActorKwargs.__optional_keys__)
    for kwargs, cls in [
        (PullConsumerKwargs, PullConsumer),
        (PipelineKwargs, Pipeline),
        (SubscriberKwargs, Subscriber),
        (ResponderKwargs, Responder),
    ]:
        declared = {field.name for field in attrs.fields(cls.Options)}
        assert set(kwargs.__optional_keys__) == declared | actor, cls
        annotated: set[str] = set()
        for klass in cls.__mro__:
            annotated |= set(getattr(klass, "__annotations__", {}))
        assert declared <= annotated, cls  # each option is a typed attribute too


@pytest.mark.slow
def test_mypy_strict_rejects_a_wrong_option(tmp_path: Path) -> None:
    source = tmp_path / "service.py"
    source.write_text(
        textwrap.dedent(
            """
            import polyn

            class WelcomeMailer(polyn.PullConsumer):
                type = "user.created.v1"

            class Careless(polyn.PullConsumer):
                prefetch = "ten"

            WelcomeMailer(prefetch="ten")
            WelcomeMailer(prefetc=10)
            WelcomeMailer(prefetch=10, max_failures=3, name="mailer")
            polyn.Pipeline(type="x.v1", batchers={"db": polyn.BatcherSpec(batch_size=5)})
            """
        )
    )
    # In a process of its own: mypy raises the interpreter's recursion limit for good.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out, status = done.stdout, done.returncode
    assert status == 1
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 3, out
    assert any(":8:" in line and "Incompatible types in assignment" in line for line in errors), out
    assert any(":10:" in line and '"prefetch"' in line for line in errors), out
    assert any(":11:" in line and '"prefetc"' in line for line in errors), out
