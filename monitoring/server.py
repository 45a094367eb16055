"""The HTTP endpoint of a process: ``/metrics`` (Prometheus text format) and ``/health/live``, ``/health/ready``.

A small WSGI app on a threading server in a daemon thread (prometheus-client's own ``start_http_server`` serves
metrics only). Health answers are JSON with HTTP 200 when passing and 503 when failing, so that an orchestrator's
HTTP probe and a person with curl read the same thing. Requests are not logged.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from monitoring.health import Health, Status

log = logging.getLogger("kenshin_hub.monitoring")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

METRICS_PATH = "/metrics"
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds would drown the process's log."""


def health_app(registry: CollectorRegistry, health: Health) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def answer(start_response: StartResponse, status: Status) -> list[bytes]:
        body = json.dumps(status.to_json(), ensure_ascii=False).encode()
        start_response(
            "200 OK" if status.ok else "503 Service Unavailable",
            [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == LIVE_PATH:
            return answer(start_response, health.liveness())
        if path == READY_PATH:
            return answer(start_response, health.readiness())
        body = f"not found; try {METRICS_PATH}, {LIVE_PATH} or {READY_PATH}\n".encode()
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MonitorServer:
    """Serves :func:`health_app` on ``host:port`` (port 0: any free port; :attr:`port` is the bound one)."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        server_class = _IPv6Server if ":" in host else ThreadingWSGIServer
        self._server: WSGIServer = make_server(
            host, port, health_app(registry, health), server_class, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        if self.host in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
            host = "127.0.0.1" if self.host != "::" else "[::1]"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
