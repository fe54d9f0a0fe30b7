"""The shop's web front on FastAPI and uvicorn: Polyn from an asyncio program.

From the repository root, after ``pip install -e ".[dev]"``, one command::

    python -m examples.fastapi_app                  # embedded nats-server, http://127.0.0.1:8000
    python -m examples.fastapi_app --port 0         # any free port (printed)
    NATS_URL=nats://127.0.0.1:4222 python -m examples.fastapi_app   # your server instead

It starts an embedded nats-server (unless ``NATS_URL`` is set), loads the shop's schemas and runs
its migrations, then serves :mod:`examples.fastapi_app.app` with uvicorn until Ctrl-C. Try::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' -d \\
      '{"order_id": "W-1", "customer": "ada", "items": [{"sku": "mug", "quantity": 2, "price": 8}]}'
    curl localhost:8000/stock/mug?quantity=3
    curl localhost:8000/health

The Polyn side (the App, its Responder, the host's stock book) is
:mod:`examples.fastapi_app.service`.
"""
