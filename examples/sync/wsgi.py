"""``python -m examples.sync.wsgi [--host H] [--port P]``: the web front as a WSGI app.

A plain WSGI application (no framework) served by the standard library's server with a thread
per request, publishing through one blocking :class:`polyn.Portal`. The portal is started when
the server starts and stopped when it stops; under gunicorn, start it in each worker instead
(``post_fork``, see docs/howto/asyncio-and-sync.md). Endpoints, as the FastAPI example's::

    POST /orders          JetStream publish, answers {"stream", "seq", "total"}
    GET  /stock/<sku>     request / reply to StockDesk
    GET  /health          the App's health (503 when unhealthy)
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import polyn
from examples.fastapi_app.__main__ import interrupt_on_signals, nats_and_socket, parse_args
from examples.fastapi_app.service import ORDER_PLACED, STOCK_REQUESTED, StockBook, build_app

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_wsgi_app(portal: polyn.Portal) -> WSGIApp:
    """The WSGI app, publishing through ``portal`` (blocking calls, any request thread)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            if method == "POST" and path == "/orders":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                order = json.loads(environ["wsgi.input"].read(size))
                total = round(sum(i["quantity"] * i["price"] for i in order["items"]), 2)
                ack = portal.pub(ORDER_PLACED, {**order, "total": total}, ack=True)
                assert ack is not None
                return answer(start_response, 201, {"stream": ack.stream, "seq": ack.seq})
            if method == "GET" and path.startswith("/stock/"):
                sku = path.removeprefix("/stock/")
                reply = portal.request(STOCK_REQUESTED, {"sku": sku, "quantity": 1}, timeout=2)
                return answer(start_response, 200, reply.data)
            if method == "GET" and path == "/health":
                healthy = portal.health()
                return answer(start_response, 200 if healthy else 503, {"healthy": healthy})
            return answer(start_response, 404, {"detail": "not found"})
        except polyn.ValidationError as exc:
            return answer(start_response, 422, {"detail": str(exc)})
        except (KeyError, TypeError, ValueError) as exc:
            return answer(start_response, 400, {"detail": f"bad request: {exc!r}"})
        except TimeoutError as exc:
            return answer(start_response, 504, {"detail": str(exc)})

    return app


def answer(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    reasons = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found"}
    reasons |= {422: "Unprocessable Entity", 503: "Service Unavailable", 504: "Gateway Timeout"}
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {reasons[status]}", headers)
    return [data]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """The standard library's WSGI server with a thread per request."""

    daemon_threads = True


def serve_on(sock: socket.socket) -> ThreadingWSGIServer:
    """A :class:`ThreadingWSGIServer` on a socket already bound and listening."""
    address = sock.getsockname()[:2]
    server = ThreadingWSGIServer(address, WSGIRequestHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    host, port = sock.getsockname()[:2]
    server.server_name, server.server_port = host, port  # what server_bind() would set
    server.setup_environ()
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "python -m examples.sync.wsgi", "the standard library's WSGI server")
    interrupt_on_signals()  # SIGTERM too (a process manager's stop) leaves serve_forever
    with nats_and_socket(args) as sock:
        with polyn.Portal(build_app(StockBook(), blocking=True)) as portal:
            server = serve_on(sock)
            server.set_app(make_wsgi_app(portal))
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
    print("  stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
