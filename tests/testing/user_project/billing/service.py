import polyn


class Invoicer(polyn.PullConsumer):
    """Invoices each order; a busy ledger means: try again in a minute."""

    type = "order.placed.v1"

    def __init__(self, ledger, **options):
        super().__init__(**options)
        self.ledger = ledger

    async def handle_message(self, event, msg):
        if self.ledger.busy:
            return polyn.Nak(delay=60)
        self.ledger.invoices.append(event.data["order_id"])
        return polyn.Ack.ACK


class Reports(polyn.Pipeline):
    """Writes orders to the reporting database in batches."""

    type = "order.placed.v1"
    source = "reports"
    batchers = {"db": {"batch_size": 100, "batch_timeout": 5.0}}  # noqa: RUF012

    def __init__(self, rows, **options):
        super().__init__(**options)
        self.rows = rows

    async def handle_message(self, processor, message):
        if message.event.data["total"] > 10_000:
            return message.fail("needs a manual review", term=True)
        return message.put_batcher("db")

    async def handle_batch(self, batcher, messages, batch_info):
        self.rows.append([m.event.data["order_id"] for m in messages])
