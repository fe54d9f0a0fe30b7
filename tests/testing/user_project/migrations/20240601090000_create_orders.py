def change(m):
    m.create_stream(name="ORDERS", subjects=["order.>"])
    for durable in ("billing_order_placed_v1", "billing_reports_order_placed_v1"):
        m.create_consumer(
            stream_name="ORDERS",
            durable_name=durable,
            filter_subject="order.placed.v1",
            ack_wait=30,
        )
