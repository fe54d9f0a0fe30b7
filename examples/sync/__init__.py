"""Polyn from synchronous code: a plain script publishing from worker threads, and a WSGI app.

From the repository root, after ``pip install -e ".[dev]"``, one command each::

    python -m examples.sync                   # the script: 8 threads place 200 orders, then exit
    python -m examples.sync.wsgi --port 0     # the WSGI app (stdlib server, a thread per request)

Both start an embedded nats-server (unless ``NATS_URL`` is set), load the shop's schemas and run
its migrations, and run the web front's Polyn App (:mod:`examples.fastapi_app.service`) through
``with polyn.Portal(app) as portal:`` with blocking calls: ``portal.pub(...)``,
``portal.request(...)``, ``portal.health()``, from as many threads as you like.
"""
