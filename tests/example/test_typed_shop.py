"""The example shop's typed consumers and typed publishing in the test sandbox (issue 23).

The shop's handlers are declared for the classes of ``examples/shop/events.py``
(``Billing(PullConsumer[OrderPlacedV1])``...): these tests publish instances, check what the
handlers made of them, and ask the typed Responder for a typed reply, all on the sandbox's
MockNats and virtual time.
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing

from examples.shop.demo import DeadLetters, Expected, new_order, wait_until_done
from examples.shop.events import PaymentCapturedV1, StockReportedV1, StockRequestedV1
from examples.shop.service import (
    PAYMENT_CAPTURED,
    STOCK,
    Journal,
    build_app,
    make_config,
)
from polyn.publish import pub, request
from polyn.testing import Sandbox


async def test_typed_handlers_get_instances_and_a_typed_request_gets_a_typed_reply(
    polyn_sandbox: Sandbox,
    shop_server: str,
    polyn_schemas: dict[str, Any],
    autojump_clock: trio.testing.MockClock,
) -> None:
    lines: list[str] = []
    journal = Journal(say=lines.append)
    letters = DeadLetters(lines.append)
    app = build_app(make_config(shop_server), journal, schemas=polyn_schemas)
    async with app.run() as running, trio.open_nursery() as nursery:
        await nursery.start(letters.collect, running)
        # typed pub: the instance names its event type
        await pub(running, new_order("T-1", "ada", [("kettle", 2, 39.0)]), ack=True)
        one = Expected(published=1, invalid=0, charged=1, declined=0)
        assert await wait_until_done(journal, letters, one) == []
        stock = await request(
            running, StockRequestedV1(sku="mug", quantity=5), reply_type=StockReportedV1
        )
        await pub(
            running,
            PaymentCapturedV1(order_id="T-2", customer="bob", amount=1.5, currency="EUR"),
        )
        with trio.fail_after(5):
            while "T-2" not in journal.receipts:  # noqa: ASYNC110 - the journal's state
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert isinstance(stock.data, StockReportedV1)
    assert stock.data == StockReportedV1(sku="mug", available=STOCK["mug"], reserved=True)
    assert journal.charged == ["T-1"]
    assert journal.receipts == ["T-1", "T-2"]
    assert journal.batches[0][0] == 1 and journal.batches[0][2] == 78.0
    payments = [json.loads(m.data)["data"] for m in polyn_sandbox.published(PAYMENT_CAPTURED)]
    assert payments == [
        {"order_id": "T-1", "customer": "ada", "amount": 78.0, "currency": "EUR"},
        {"order_id": "T-2", "customer": "bob", "amount": 1.5, "currency": "EUR"},
    ]
