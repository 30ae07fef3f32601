"""Real HTTP servers on loopback standing in for hostile JSON-RPC endpoints (issue 13 review, C1/M2/M3).

- :class:`LogsEndpoint`: a consistent little chain whose ``eth_getLogs`` returns the raw log
  objects a test gives it, as they are (any field, any value);
- :class:`TricklingEndpoint`: answers every request one byte at a time, slowly (in the status line
  or in the body), for far longer than the client's timeout, and counts connections in flight;
- :class:`BigAnswerEndpoint`: answers with a well-formed JSON body of any size.
Each runs a ThreadingHTTPServer in daemon threads; ``url`` is its address; ``close()`` stops it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_utils import keccak

CHAIN_ID = 31337


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def block_hash(n: int) -> bytes:
    return keccak(b"test block %d" % n)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.endpoint.handle(self, body)  # type: ignore[attr-defined]


class Endpoint:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.endpoint = self
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


class LogsEndpoint(Endpoint):
    """A chain of ``head`` blocks with linked hashes; ``eth_getLogs`` returns ``logs`` in the range."""

    def __init__(self, logs: list[dict[str, Any]], head: int = 12) -> None:
        super().__init__()
        self.logs = logs
        self.head = head

    def answer(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return hex(CHAIN_ID)
        if method == "eth_blockNumber":
            return hex(self.head)
        if method == "eth_getCode":
            return "0x6001600101"
        if method == "eth_getBlockByNumber":
            n = self.head if params[0] == "latest" else int(params[0], 16)
            if n > self.head:
                return None
            return {"number": hex(n), "hash": _hex(block_hash(n)), "timestamp": hex(1_700_000_000 + n),
                    "parentHash": _hex(block_hash(n - 1) if n else bytes(32)), "transactions": []}  # fmt: skip
        if method == "eth_getLogs":
            f = params[0]
            start, end = int(f["fromBlock"], 16), int(f["toBlock"], 16)

            def inside(lg: dict[str, Any]) -> bool:
                try:
                    n = int(lg["blockNumber"], 16)
                except (KeyError, TypeError, ValueError):
                    n = self.head + 1
                # a log in no block of this chain (unusable or impossible number): served with the first range
                return start == 1 if n > self.head else start <= n <= end

            return [lg for lg in self.logs if inside(lg)]
        raise LookupError(method)

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        call = json.loads(body)
        with self.lock:
            self.requests.append(call)
        try:
            out = {"jsonrpc": "2.0", "id": call["id"], "result": self.answer(call["method"], call.get("params") or [])}
        except LookupError:
            out = {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "no"}}
        self.reply(h, json.dumps(out).encode())


class TricklingEndpoint(Endpoint):
    """Sends a valid answer one byte per ``interval`` s, for at most ``hold_s`` s per request.

    ``where="head"`` trickles from the status line on; ``where="body"`` sends the head at once
    (with the full content-length) and trickles the body. ``in_flight``/``max_in_flight`` count
    the connections being answered."""

    def __init__(self, where: str = "body", interval: float = 0.2, hold_s: float = 30.0) -> None:
        super().__init__()
        self.where, self.interval, self.hold_s = where, interval, hold_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.served = 0

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        call = json.loads(body)
        with self.lock:
            self.auth.append(h.headers.get("authorization"))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            payload = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x" + "0" * 4000 + "7"}).encode()
            head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                    "\r\n").encode()  # fmt: skip
            if self.where == "body":
                h.wfile.write(head)
                rest = payload
            else:
                rest = head + payload
            stop = time.monotonic() + self.hold_s
            for i in range(len(rest)):
                # the trickle's pace, not a wait for a condition: this server is the slow party
                if self.stopping.wait(self.interval) or time.monotonic() > stop:
                    break
                h.wfile.write(rest[i : i + 1])
            h.close_connection = True
        except OSError:
            pass  # the client gave up and closed: what a bounded client does
        finally:
            with self.lock:
                self.in_flight -= 1
                self.served += 1


class BigAnswerEndpoint(Endpoint):
    """Answers eth_blockNumber with a valid JSON-RPC body of ``size`` bytes (padding in a field)."""

    def __init__(self, size: int, chunked: bool = False) -> None:
        super().__init__()
        self.size, self.chunked = size, chunked

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        call = json.loads(body)
        pad = max(0, self.size - 60)
        data = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x7", "pad": "x" * pad}).encode()
        if not self.chunked:
            self.reply(h, data)
            return
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        try:
            for i in range(0, len(data), 65536):
                part = data[i : i + 65536]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # refused midway by the client's byte cap
