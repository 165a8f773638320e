"""The dashboard's web server on loopback: the page, its JSON, and ``/metrics`` for Prometheus.

stdlib ``http.server`` is enough for an ops page polled every few seconds, and keeps the dashboard
free of a web framework.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dashboard.collector import Collector
from dashboard.prometheus import dashboard_registry

__all__ = ["DashboardServer"]

_PAGE = (Path(__file__).parent / "page.html").read_bytes()


class DashboardServer:
    def __init__(self, collector: Collector, host: str, port: int, refresh_ms: int = 2000) -> None:
        self.collector = collector
        self.refresh_ms = refresh_ms
        #: this dashboard's own registry: two dashboards in one process (tests) do not collide
        self.registry = dashboard_registry(collector.snapshot)
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host!s}:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the page polls
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("content-type", ctype)
                self.send_header("cache-control", "no-store")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/":
                    page = _PAGE.replace(b"__REFRESH_MS__", str(server.refresh_ms).encode())
                    self._send(200, page, "text/html; charset=utf-8")
                elif path == "/api/state":
                    self._send(200, json.dumps(server.collector.snapshot()).encode(), "application/json")
                elif path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found", "text/plain")

        return Handler

    def start(self) -> None:
        self.collector.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mc-dashboard-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.collector.start()
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.collector.stop()
