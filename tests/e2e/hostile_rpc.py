"""A hostile Ethereum JSON-RPC endpoint for tests: a tiny real HTTP server on loopback.

It serves a consistent little chain (``eth_chainId``, ``eth_blockNumber``, ``eth_getBlockByNumber``
with linked hashes, code at every address, and a ``domainSeparator()`` that is a protocol-2 keyreg
registry's at whatever address is called, so a node takes it for its registry) whose registry logs
are well-formed ABI but hostile in value: every block carries a ``HeadAnchored`` event for a subject
with ``seq = 2**64 - 1`` (a valid uint64 that no SQL integer column holds) and a ``GovernanceRevoked`` event with
``effectiveAt = 2**64 - 1``. Anything else is answered with a JSON-RPC error. Run as a module
(``python hostile_rpc.py PORTFILE``) it writes its port to PORTFILE and serves until killed.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak

CHAIN_ID = 31337
HEAD = 12
MAX_U64 = 2**64 - 1
SUBJECT = bytes.fromhex("ab" * 32)


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


DOMAIN_SEPARATOR_CALL = _hex(keccak(text="domainSeparator()")[:4])


def domain_separator(address: str) -> bytes:
    """The EIP-712 domain separator of a protocol-2 keyreg registry at ``address`` on CHAIN_ID."""
    typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [typehash, keccak(text="keyreg"), keccak(text="2"), CHAIN_ID, address],
        )
    )


def block_hash(n: int) -> bytes:
    return keccak(b"hostile block %d" % n)


def _topic(signature: str) -> str:
    return _hex(keccak(text=signature))


def _logs(address: str, start: int, end: int) -> list[dict[str, Any]]:
    out = []
    for n in range(max(start, 1), min(end, HEAD) + 1):
        anchored = {
            "topics": [_topic("HeadAnchored(bytes32,uint64,bytes32,uint8)"), _hex(SUBJECT)],
            "data": _hex(encode(["uint64", "bytes32", "uint8"], [MAX_U64, keccak(b"junk"), 0])),
        }
        revoked = {
            "topics": [
                _topic("GovernanceRevoked(bytes32,bytes32,string,uint64,bytes32,uint256,address)"),
                _hex(SUBJECT),
                _hex(keccak(text="k1")),
                _hex((1).to_bytes(32, "big")),
            ],
            "data": _hex(
                encode(
                    ["string", "uint64", "bytes32", "address"],
                    ["k1", MAX_U64, keccak(b"why"), "0x" + "11" * 20],
                )
            ),
        }
        for i, lg in enumerate((anchored, revoked)):
            out.append(
                {
                    **lg,
                    "address": address,
                    "blockNumber": hex(n),
                    "blockHash": _hex(block_hash(n)),
                    "transactionHash": _hex(keccak(b"tx %d %d" % (n, i))),
                    "transactionIndex": "0x0",
                    "logIndex": hex(i),
                    "removed": False,
                }
            )
    return out


def _block(n: int) -> dict[str, Any] | None:
    if n > HEAD:
        return None
    return {
        "number": hex(n),
        "hash": _hex(block_hash(n)),
        "parentHash": _hex(block_hash(n - 1) if n else bytes(32)),
        "timestamp": hex(1_700_000_000 + n),
        "transactions": [],
    }


def answer(method: str, params: list[Any]) -> Any:
    """The result for one call; raises LookupError for methods this endpoint refuses."""
    if method == "eth_chainId":
        return hex(CHAIN_ID)
    if method == "net_version":
        return str(CHAIN_ID)
    if method == "eth_blockNumber":
        return hex(HEAD)
    if method == "eth_getCode":
        return "0x6001600101"
    if method == "eth_call" and params[0].get("data", params[0].get("input", ""))[:10] == DOMAIN_SEPARATOR_CALL:
        return _hex(domain_separator(params[0]["to"]))
    if method == "eth_getBlockByNumber":
        tag = params[0]
        return _block(HEAD if tag in ("latest", "safe", "finalized") else int(tag, 16))
    if method == "eth_getLogs":
        f = params[0]
        address = f.get("address")
        address = address[0] if isinstance(address, list) else address
        start = int(f.get("fromBlock", "0x0"), 16)
        end = HEAD if f.get("toBlock") in (None, "latest") else int(f["toBlock"], 16)
        return _logs(address, start, end)
    raise LookupError(method)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        calls = body if isinstance(body, list) else [body]
        out = []
        for c in calls:
            try:
                out.append({"jsonrpc": "2.0", "id": c["id"], "result": answer(c["method"], c.get("params") or [])})
            except LookupError:
                out.append({"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32601, "message": "no"}})
        data = json.dumps(out if isinstance(body, list) else out[0]).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(port: int = 0) -> ThreadingHTTPServer:
    """Start the endpoint on 127.0.0.1 in a daemon thread; ``server.server_address[1]`` is its port."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    srv = serve()
    Path(sys.argv[1]).write_text(str(srv.server_address[1]))
    threading.Event().wait()
