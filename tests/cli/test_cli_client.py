"""The CLI's client of a node (NodeClient): what a node's answer can and cannot make it do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keyreg.cli.common import NodeClient, RemoteError
from keyreg.core.errors import ConfigError, NetworkError

HITS: list[str] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        HITS.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("location", "/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if self.path.startswith("/refused"):
            body = b'{"code":"bad_query","message":"no"}'
            self.send_response(400)
        else:
            body = b'{"ok":true,"path":"' + self.path.encode() + b'"}'
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    HITS.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


def test_answers_and_query_parameters(node_url: str) -> None:
    body = NodeClient(node_url).get("/v1/x", at=5, purpose=None, who="a b")
    assert body == {"ok": True, "path": "/v1/x?at=5&who=a+b"}


def test_a_refusal_carries_the_nodes_code(node_url: str) -> None:
    with pytest.raises(RemoteError) as exc:
        NodeClient(node_url).get("/refused")
    assert exc.value.code == "bad_query"


def test_a_redirect_is_not_followed(node_url: str) -> None:
    with pytest.raises(NetworkError, match="answered 302"):
        NodeClient(node_url).get("/redirect")
    assert HITS == ["/redirect"]  # /elsewhere was never asked for


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "127.0.0.1:8080", ""])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        NodeClient(url)
