def change(m):
    m.create_stream(name="ORDERS", subjects=["order.>"])
    m.create_stream(name="PAYMENTS", subjects=["payment.>"])
    m.create_stream(name="DEADLETTERS", subjects=["polyn.deadletter.>"])
    for type_ in ("order.placed.v1", "payment.captured.v1"):
        m.create_consumer(
            stream_name="ORDERS" if type_.startswith("order") else "PAYMENTS",
            durable_name="orders_payments_" + type_.replace(".", "_"),
            filter_subject=type_,
            ack_policy="explicit",
            ack_wait=30,
        )
