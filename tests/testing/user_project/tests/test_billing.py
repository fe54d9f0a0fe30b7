import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import polyn
from billing.service import Invoicer, Reports
from polyn.testing import Sandbox
from polyn.testing.strategies import events, invalid_events


class Ledger:
    def __init__(self, busy=False):
        self.busy = busy
        self.invoices = []


class Rows(list):
    """The reporting table. Not a plain list: an actor's plain list arguments are copied for
    each start, other objects (subclasses too) are shared with every run."""


def billing_app(config, schemas, *consumers):
    children = [polyn.NatsConnection(), polyn.SchemaStore(schemas=schemas), *consumers]
    return polyn.App(config, children)


async def eventually(predicate):
    with trio.fail_after(3600):  # virtual seconds: an hour passes in an instant
        while not predicate():
            await trio.sleep(1)


async def test_an_order_is_invoiced(polyn_sandbox, polyn_config, polyn_schemas, autojump_clock):
    ledger = Ledger()
    app = billing_app(polyn_config, polyn_schemas, Invoicer(ledger))
    async with polyn_sandbox.run(app) as running:
        await polyn.pub(running, "order.placed.v1", {"order_id": "A1", "total": 10}, ack=True)
        await eventually(lambda: ledger.invoices)
    assert ledger.invoices == ["A1"]
    (order,) = polyn_sandbox.published_json("order.placed.v1")
    assert order["type"] == "com.acme.order.placed.v1"


async def test_a_busy_ledger_is_retried_a_minute_later(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    ledger = Ledger(busy=True)
    app = billing_app(polyn_config, polyn_schemas, Invoicer(ledger))
    async with polyn_sandbox.run(app) as running:
        await polyn.pub(running, "order.placed.v1", {"order_id": "A1", "total": 10}, ack=True)
        start = trio.current_time()
        await trio.sleep(1)
        ledger.busy = False
        await eventually(lambda: ledger.invoices)
    assert trio.current_time() - start >= 60  # a minute of virtual time, no real waiting


async def test_big_orders_are_dead_lettered_and_the_rest_batched(
    polyn_sandbox, polyn_config, polyn_schemas, autojump_clock
):
    rows = Rows()
    app = billing_app(polyn_config, polyn_schemas, Reports(rows))
    async with polyn_sandbox.run(app) as running:
        await polyn.pub(running, "order.placed.v1", {"order_id": "A1", "total": 10}, ack=True)
        await polyn.pub(running, "order.placed.v1", {"order_id": "A2", "total": 20_000}, ack=True)
        await eventually(lambda: rows)  # the batch closes after its 5 s batch_timeout
    assert rows == [["A1"]]
    (letter,) = polyn_sandbox.dead_letters("order.placed.v1")
    assert letter.headers["Polyn-Error"] == "needs a manual review"


# Property test: a sandbox per example (Sandbox.start), on virtual time.

CONFIG = polyn.Config.load()  # the project's [tool.polyn]: events carry its domain
# The stored schema, narrowed to orders below the manual-review limit.
SCHEMAS = {
    "order.placed.v1": {
        "type": "object",
        "required": ["order_id", "total"],
        "properties": {
            "order_id": {"type": "string"},
            "total": {"type": "number", "minimum": 0, "maximum": 10_000},
        },
    }
}


@pytest.fixture(scope="module")
def examples_clock():
    # pytest-trio runs each Hypothesis example in a trio run of its own, on the clock among
    # the test's fixtures; a module-scoped one passes Hypothesis's fixture health check.
    return trio.testing.MockClock(autojump_threshold=0)


@settings(max_examples=20, deadline=None)
@given(
    valid=st.lists(events("order.placed.v1", SCHEMAS, config=CONFIG, encoded=True), max_size=5),
    invalid=st.lists(invalid_events("order.placed.v1", SCHEMAS, config=CONFIG), max_size=5),
)
async def test_valid_orders_reach_one_batch_and_invalid_ones_are_dead_lettered(
    nats_server, polyn_config, polyn_schemas, examples_clock, valid, invalid
):
    async with Sandbox.start(nats_server, schemas=polyn_schemas) as sandbox:
        rows = Rows()
        async with sandbox.run(billing_app(polyn_config, polyn_schemas, Reports(rows))) as running:
            for body in valid + invalid:
                await polyn.transport_for(running).js_publish("order.placed.v1", body)
            await eventually(
                lambda: (
                    sum(map(len, rows)) >= len(valid)
                    and len(sandbox.dead_letters("order.placed.v1")) >= len(invalid)
                )
            )
            await trio.sleep(600)  # and then nothing more: no redelivery, no duplicate
        assert sum(map(len, rows)) == len(valid)
        assert len(sandbox.dead_letters("order.placed.v1")) == len(invalid)
