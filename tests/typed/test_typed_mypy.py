"""What mypy sees in typed handlers (issue 23): a field a data class does not have is an error,
as is a handler annotated for another class or a message name published without data; untyped
handlers keep ``event.data`` as ``Any``. mypy runs in a process of its own, as a user's CI runs
it, on a service written against the example's generated classes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typed_support import ROOT

pytestmark = pytest.mark.slow

SERVICE = '''
import polyn
from polyn.nats import Message
from examples.shop.events import (
    OrderPlacedV1, PaymentCapturedV1, StockReportedV1, StockRequestedV1,
)


class Billing(polyn.PullConsumer[OrderPlacedV1]):
    type = "order.placed.v1"

    async def handle_message(self, event: polyn.Event[OrderPlacedV1], msg: Message) -> polyn.Ack:
        sku: str = event.data.items[0].sku
        print(sku, event.data.nonexistent_field)
        stock = await polyn.request(
            "nats", StockRequestedV1(sku=sku, quantity=1), reply_type=StockReportedV1
        )
        reserved: bool = stock.data.reserved
        payment = PaymentCapturedV1(
            order_id=event.data.order_id, customer="c", amount=event.data.total, currency="EUR"
        )
        await polyn.pub("nats", payment, ack=reserved)
        return polyn.Ack.ACK


class Misread(polyn.PullConsumer[OrderPlacedV1]):
    type = "order.placed.v1"

    async def handle_message(
        self, event: polyn.Event[PaymentCapturedV1], msg: Message
    ) -> polyn.Ack:
        return polyn.Ack.ACK


class Ledger(polyn.Pipeline[PaymentCapturedV1]):
    type = "payment.captured.v1"

    async def handle_batch(
        self,
        batcher: str,
        messages: list[polyn.PipelineMessage[PaymentCapturedV1]],
        batch_info: polyn.BatchInfo,
    ) -> None:
        total: float = sum(m.event.data.amount for m in messages)
        print(total)


class Inventory(polyn.Responder[StockRequestedV1]):
    subject = "stock.requested.v1"

    async def handle_request(
        self, event: polyn.Event[StockRequestedV1], msg: Message
    ) -> StockReportedV1:
        return StockReportedV1(sku=event.data.sku, available=1, reserved=True)


class Untyped(polyn.PullConsumer):
    type = "order.placed.v1"

    async def handle_message(self, event: polyn.Event, msg: Message) -> polyn.Ack:
        print(event.data["anything"])
        return polyn.Ack.ACK


async def publish(running: polyn.Running) -> None:
    await polyn.pub(running, "order.placed.v1", {"order_id": "A-1"})
    await polyn.pub(running, "order.placed.v1")
'''


def test_mypy_strict_rejects_a_missing_field_of_a_typed_event_and_a_mismatched_handler(
    tmp_path: Path,
) -> None:
    source = tmp_path / "typed_service.py"
    source.write_text(textwrap.dedent(SERVICE))
    lines = SERVICE.splitlines()

    def line_of(text: str) -> int:
        return next(number for number, line in enumerate(lines, 1) if text in line)

    # In a process of its own (mypy raises the interpreter's recursion limit for good), from the
    # repository's root so that `examples` is found as the service finds it.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(source),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert done.returncode == 1, done.stdout + done.stderr
    expected = {
        line_of("nonexistent_field"): '"OrderPlacedV1" has no attribute "nonexistent_field"',
        line_of("self, event: polyn.Event[PaymentCapturedV1]"): "incompatible with supertype",
        line_of('polyn.pub(running, "order.placed.v1")'): "No overload variant",
    }
    assert len(errors) == len(expected), done.stdout
    for number, text in expected.items():
        assert any(f":{number}:" in line and text in line for line in errors), (number, errors)
