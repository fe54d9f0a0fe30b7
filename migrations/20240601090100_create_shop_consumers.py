"""The durable consumers of the example shop (``source_root = "shop"``).

Their names are what ``polyn.naming.consumer_name(type, config)`` derives, which is the name
``PullConsumer`` and ``Pipeline`` look for: ``<source_root>_<message name>`` with dots turned
into underscores.
"""


def change(m):
    # examples.shop.Billing (a PullConsumer)
    m.create_consumer(
        stream_name="ORDERS",
        durable_name="shop_order_placed_v1",
        filter_subject="order.placed.v1",
        ack_policy="explicit",
        ack_wait=30,
    )
    # examples.shop.Ledger (a Pipeline)
    m.create_consumer(
        stream_name="PAYMENTS",
        durable_name="shop_payment_captured_v1",
        filter_subject="payment.captured.v1",
        ack_policy="explicit",
        ack_wait=30,
        max_ack_pending=1000,
    )
