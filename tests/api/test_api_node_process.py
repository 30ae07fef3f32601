"""Findings 15 and 16 against a real `keyreg node run` process, with raw sockets.

The same attacks as tests/api/test_api_framing.py, but on the node as it is started (node.app
wires the front end's limits from the config and its counters into /metrics): nothing in the
node's log at ERROR, no traceback, no 5xx, and the counters say what happened.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from keyreg.p2p.testing import KeyregNode


def _connect(api: str) -> socket.socket:
    host, port = api.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (the socket's timeout bounds the wait)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _counter(metrics: str, event: str) -> float:
    m = re.search(r"keyreg_http_connection_events_total\{event=\"" + event + r"\"\} ([0-9.]+)", metrics)
    assert m is not None, event
    return float(m.group(1))


@pytest.mark.e2e
def test_framing_attacks_on_a_node_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYREG_API_BODY_TIMEOUT_S", "0.5")
    node = KeyregNode(tmp_path / "node").start()
    try:
        # 15: CL+TE, then a pipelined GET in the same write: one 400, then the close
        with _connect(node.api) as s:
            s.sendall(
                b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n"
            )
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert answer.count(b"HTTP/1.1") == 1  # the smuggled GET was not served
        # 16: abandoned bodies (declared and chunked), then a slow one
        for framing in (b"content-length: 5000\r\n", b"transfer-encoding: chunked\r\n") * 3:
            with _connect(node.api) as s:
                s.sendall(b"POST /v1/events HTTP/1.1\r\nhost: t\r\n" + framing + b'\r\n{"events":[')
        with _connect(node.api) as s:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n{")
            started = time.monotonic()
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b'"body_timeout"' in answer
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 20
        while True:  # the node counts each disconnect as its connection task ends
            metrics = node.http.get("/metrics").text
            if _counter(metrics, "client_disconnects") >= 6 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert _counter(metrics, "client_disconnects") >= 6
        assert _counter(metrics, "body_timeouts") == 1
        assert _counter(metrics, "refused") >= 2
        assert not re.search(r'keyreg_http_request_seconds_count\{[^}]*status="5', metrics)
        assert node.health()["ok"] is True
    finally:
        node.stop()
    log = (tmp_path / "node" / "node.log").read_text(errors="replace")
    assert "ERROR" not in log
    assert "Traceback" not in log
