"""A counting JSON-RPC proxy on loopback: forwards every call to a real endpoint (anvil) and counts
them by method, so a test can assert how many RPC calls a component made."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                calls = json.loads(body)
                with proxy.lock:
                    for call in calls if isinstance(calls, list) else [calls]:
                        proxy.counts[call.get("method", "?")] += 1
                req = urllib.request.Request(upstream, body, {"content-type": "application/json"})  # noqa: S310
                with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (loopback anvil)
                    data = r.read()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, method: str) -> int:
        with self.lock:
            return self.counts[method]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
