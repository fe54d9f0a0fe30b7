"""``python -m examples.sync [--orders N] [--threads T]``: a script publishing from threads.

Places ``--orders`` orders (JetStream, ``ack=True``) from ``--threads`` worker threads through one
portal, asks for the stock of a product (request / reply), and prints what happened.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import polyn
from examples.fastapi_app.__main__ import shop_nats
from examples.fastapi_app.service import ORDER_PLACED, STOCK_REQUESTED, StockBook, build_app


def order(n: int) -> dict[str, object]:
    return {
        "order_id": f"S-{n:05d}",
        "customer": "script",
        "items": [{"sku": "mug", "quantity": 1, "price": 8.0}],
        "total": 8.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.sync", description=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    with shop_nats():
        book = StockBook()
        with polyn.Portal(build_app(book, blocking=True)) as portal:
            print(f"  portal     {portal!r}", flush=True)

            def place(n: int) -> int:
                ack = portal.pub(ORDER_PLACED, order(n), ack=True)
                assert ack is not None
                return ack.seq

            start = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                seqs = sorted(pool.map(place, range(args.orders)))
            took = time.perf_counter() - start
            print(
                f"  published  {len(seqs)} orders from {args.threads} threads in {took:.2f} s, "
                f"stored as ORDERS {seqs[0]}..{seqs[-1]}",
                flush=True,
            )
            reply = portal.request(STOCK_REQUESTED, {"sku": "teapot", "quantity": 2})
            print(f"  stock      {reply.data}", flush=True)
            print(f"  health     {portal.health()}", flush=True)
    print("  stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
