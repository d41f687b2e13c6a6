"""Fixtures of the end-to-end tests: a loopback HTTP source of sales data for the workflows."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Sales(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"region": "East", "orders": 42, "revenue": 12345}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sales() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sales)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/sales"
    server.shutdown()
    server.server_close()
