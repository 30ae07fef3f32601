"""Deep JSON and lone surrogates against every entry point, in processes that imported web3.

py_ecc (imported through web3) raises the interpreter's recursion limit to 100,000, so the stdlib
JSON parser's recursion guard no longer fires before the C stack ends: ``[`` x 100,000 then ``]`` x
100,000 (~200 KB, under every size cap) segfaulted the node, ``keyreg event validate|digest`` and
``keyreg verify --bundle`` (issue 13, finding 13). A lone surrogate in a posted event was a 500
(finding 9). Each test here runs real processes with that recursion limit and the review's input.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from keyreg.config import Config
from keyreg.core.codec import encode_event
from keyreg.p2p.testing import KeyregNode, subject_log

DEEP = b"[" * 100_000 + b"]" * 100_000  # the review's input
LAUNCH = "import sys; from keyreg.cli import main; sys.argv[0] = 'keyreg'; main()"  # the real `keyreg`

# Run in a fresh interpreter: import web3 first (the limit goes to 100,000), then hit each entry point.
ENTRY_POINTS = textwrap.dedent(
    """
    import sys, zlib, gzip
    import trio, web3  # noqa: F401
    assert sys.getrecursionlimit() >= 100_000, sys.getrecursionlimit()
    from keyreg.core.codec import decode_event, loads_strict
    from keyreg.core.errors import KeyregError
    from keyreg.core.limits import DEFAULT_LIMITS, Limits
    from keyreg.gov.ballots import decode_ballot
    from keyreg.p2p.wire import FrameReader, canonical_batch, decode_message, parse_message
    from keyreg.verify import Verifier
    from keyreg.verify.bundle import decode_envelope

    DEEP = b"[" * 100_000 + b"]" * 100_000
    WRAPPED = b'{"events":' + DEEP + b',"type":"events"}'
    BIG = 1 << 24

    class Pipe:
        def __init__(self, data): self.data = data
        async def read(self, n):
            out, self.data = self.data[:n], self.data[n:]
            return out

    async def frame():
        return await FrameReader(Pipe(len(WRAPPED).to_bytes(4, "big") + WRAPPED), BIG, 5.0).read()

    cases = {
        "loads_strict": lambda: loads_strict(DEEP),
        "decode_event": lambda: decode_event(DEEP, Limits(max_event_bytes=BIG)),
        "parse_message": lambda: parse_message(WRAPPED),
        "decode_message": lambda: decode_message(WRAPPED, BIG, 4096, DEFAULT_LIMITS),
        "decode_message raw": lambda: decode_message(WRAPPED, BIG, 4096, DEFAULT_LIMITS, raw=True),
        "decode_message zlib": lambda: decode_message(zlib.compress(WRAPPED), BIG, 4096, DEFAULT_LIMITS),
        "canonical_batch": lambda: canonical_batch(WRAPPED, DEFAULT_LIMITS) or loads_strict(WRAPPED),
        "sync frame": lambda: trio.run(frame),
        "ballot": lambda: decode_ballot(b"[" * 500 + b"]" * 500),
        "ballot oversized": lambda: decode_ballot(DEEP),
        "bundle envelope": lambda: decode_envelope(DEEP),
        "bundle gzip": lambda: Verifier.from_bundle(gzip.compress(DEEP), "0x" + "00" * 32),
    }
    for name, call in cases.items():
        try:
            call()
        except KeyregError as exc:
            print(f"{name}: {type(exc).__name__}", flush=True)
        else:
            print(f"{name}: accepted", flush=True)
    print("alive", flush=True)
    """
)


# A hostile JSON-RPC endpoint (an RPC provider is untrusted): every answer is the review's input
# inside a JSON-RPC envelope. The node's chain client, the DAO client, `keyreg verify export` and
# the CLI's client of a node (--node URL) read it through web3's or httpx's stdlib parser, which
# segfaulted on it.
HOSTILE_RPC = textwrap.dedent(
    """
    import sys, threading, trio
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import web3  # noqa: F401
    assert sys.getrecursionlimit() >= 100_000, sys.getrecursionlimit()
    from keyreg.chain.client import ChainClient
    from keyreg.cli.common import NodeClient
    from keyreg.core.errors import ChainError, NetworkError
    from keyreg.export import RpcProofSource
    from keyreg.gov.tx import connect

    BODY = b'{"id":1,"jsonrpc":"2.0","result":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.do_POST()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cases = {
        "chain client": lambda: trio.run(ChainClient(url, "0x" + "11" * 20).block_number),
        "dao client": lambda: connect(url).eth.block_number,
        "export": lambda: RpcProofSource(url).chain_id(),
        "cli node client": lambda: NodeClient(url).get("/v1/health"),
    }
    for name, call in cases.items():
        try:
            call()
        except (ChainError, NetworkError) as exc:
            print(f"{name}: {type(exc).__name__}: {exc.message[:160]}", flush=True)
        else:
            print(f"{name}: accepted", flush=True)
    server.shutdown()
    print("alive", flush=True)
    """
)


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]


def test_every_library_entry_point_refuses_deep_json_with_web3_imported() -> None:
    r = _run([sys.executable, "-c", ENTRY_POINTS])
    assert r.returncode == 0, f"exit {r.returncode} (-11 is the segfault): {r.stdout}{r.stderr[-3000:]}"
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert r.stdout.rstrip().endswith("alive")
    assert len(lines) == 12
    assert all(outcome != "accepted" for outcome in lines.values()), lines
    assert lines["loads_strict"] == lines["decode_event"] == lines["parse_message"] == "MalformedEvent"
    assert lines["sync frame"] == "FrameError"
    assert lines["ballot"] == lines["ballot oversized"] == "BallotRejected"
    assert lines["bundle envelope"] == lines["bundle gzip"] == "BundleFormatError"


def test_rpc_answers_nested_deep_are_refused_not_parsed() -> None:
    r = _run([sys.executable, "-c", HOSTILE_RPC])
    assert r.returncode == 0, f"exit {r.returncode} (-11 is the segfault): {r.stdout}{r.stderr[-3000:]}"
    lines = [line for line in r.stdout.splitlines() if ": " in line]
    assert len(lines) == 4
    assert all("ChainError" in line and "nest deeper" in line for line in lines[:3]), lines
    assert "NetworkError" in lines[3], lines  # "answered 200 with a non-JSON body"
    assert r.stdout.rstrip().endswith("alive")


def test_the_node_process_raises_the_recursion_limit() -> None:
    # The precondition of the node test below: the services `keyreg node run` loads at start
    # import web3, so the node runs with the 100,000 limit the review found.
    code = "import sys, keyreg.chain.service, keyreg.gov.service; print(sys.getrecursionlimit())"
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 100_000


@pytest.mark.slow
def test_keyreg_event_and_verify_refuse_deep_json(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    gz = tmp_path / "deep.json.gz"
    gz.write_bytes(gzip.compress(DEEP))
    surrogate = tmp_path / "surrogate.json"
    surrogate.write_bytes(b'{"kind":"\\ud800"}')
    checkpoint = "0x" + "11" * 32
    for args, code in [
        (["event", "validate", str(deep), str(surrogate)], 2),
        (["event", "digest", "-"], 2),
        (["verify", "0x" + "22" * 32, "k1", "--bundle", str(deep), "--checkpoint", checkpoint], 20),
        (["verify", "0x" + "22" * 32, "k1", "--bundle", str(gz), "--checkpoint", checkpoint], 20),
    ]:
        stdin = DEEP if args[-1] == "-" else None
        r = subprocess.run(
            [sys.executable, "-c", LAUNCH, *args], input=stdin, capture_output=True, timeout=120, env=os.environ
        )
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == code, f"keyreg {' '.join(args)}: exit {r.returncode} (-11 is the segfault): {out}"
        assert "Traceback" not in out
        assert "malformed" in out or "not JSON" in out or "nest deeper" in out, out


@pytest.mark.slow
def test_a_real_node_answers_400_to_deep_json_and_lone_surrogates_and_keeps_serving(tmp_path: Path) -> None:
    node = KeyregNode(tmp_path / "node").start()
    try:
        assert node.proc is not None
        bodies = [
            DEEP,  # the review's input
            b'{"events":' + DEEP + b"}",
            b'{"events":[{"kind":"\\ud800"}]}',  # finding 9 (was a 500)
            b'{"kind":"update","metadata":"\\udc00"}',
        ]
        for body in bodies:
            r = node.http.post("/v1/events", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (r.status_code, r.text[:300])
            assert r.json()["code"] == "malformed"
            assert node.proc.poll() is None, f"the node died with {node.proc.returncode}"
        # Still serving: a valid event is accepted and the health view answers.
        events = subject_log(Config().domain, b"\x42" * 32, 1, int(time.time()) - 60)
        body = b'{"events":[' + b",".join(encode_event(e) for e in events) + b"]}"
        r = node.http.post("/v1/events", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text[:300]
        assert r.json()["accepted"] == len(events)
        assert node.health()["subjects"] == 1
    finally:
        node.stop()
