"""The shop's web front on hypercorn's trio worker: Polyn in the web server's own trio loop.

The web app is :mod:`examples.fastapi_app.app`, unchanged: under trio, its lifespan's
``async with polyn.Portal(app)`` runs the Polyn App in the current trio run (no thread, no
crossing: the AsyncPortal's calls are Polyn's trio calls). From the repository root, after
``pip install -e ".[dev]"``, one command::

    python -m examples.hypercorn_trio               # embedded nats-server, http://127.0.0.1:8000
    python -m examples.hypercorn_trio --port 0      # any free port (printed)

which is, once ``NATS_URL`` points at a server with the shop's schemas and streams::

    hypercorn --worker-class trio examples.fastapi_app.app:app
"""
