"""The example shop's streams, and the stream that keeps every service's dead letters.

Stream names follow ``polyn.naming.stream_name``'s convention; subjects are message names
without the domain, as ``polyn.pub`` publishes them.
"""


def change(m):
    m.create_stream(
        name="ORDERS",
        subjects=["order.>"],
        description="Orders placed in the shop",
        max_age=7 * 24 * 3600,
    )
    m.create_stream(
        name="PAYMENTS",
        subjects=["payment.>"],
        description="Payments captured for orders",
        max_age=7 * 24 * 3600,
    )
    # Consumers dead-letter what they cannot handle to polyn.deadletter.<subject>; this stream
    # keeps those messages (with their Polyn-Error headers) for someone to look at.
    m.create_stream(
        name="DEADLETTERS",
        subjects=["polyn.deadletter.>"],
        description="Messages Polyn consumers could not handle",
        max_age=30 * 24 * 3600,
    )
