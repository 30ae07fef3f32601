"""Test and benchmark helpers for the p2p layer: signed event streams, generated once and cached.

Signing costs ~0.4 ms an event, so the benchmarks and multi-process tests pre-generate their
events (in a process pool) and cache them in a file keyed by the parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..core import builder
from ..core.codec import encode_event
from ..core.eip712 import event_digest
from ..core.records import Domain, PublishedKey, SignedEvent

RETRY_DEADLINE_S = 60.0  # how long NodeProcess.submit keeps re-sending a batch the node throttles (429)


def subject_log(domain: Domain, secret: bytes, updates: int, timestamp: int, tag: str = "") -> list[SignedEvent]:
    """An inception then ``updates`` metadata updates for one controller secret."""
    ctrl = builder.controller_set([secret])
    inc = builder.inception(timestamp, ctrl, 1, metadata=f"subject {tag}")
    signed = builder.sign_event(domain, inc, [secret])
    out = [signed]
    subject = prev = event_digest(domain, inc)
    for seq in range(1, updates + 1):
        up = builder.update(subject, seq, prev, timestamp, metadata=f"m{seq}")
        signed = builder.sign_event(domain, up, [secret])
        prev = event_digest(domain, up)
        out.append(signed)
    return out


def conflicting_update(domain: Domain, secret: bytes, head: SignedEvent, tag: str) -> SignedEvent:
    """Another valid update at the seq after ``head`` (an equivocation when two are made)."""
    subject = head.event.subject if head.event.kind != "inception" else event_digest(domain, head.event)
    prev = event_digest(domain, head.event)
    key = PublishedKey(f"k-{tag}", "Ed25519", hashlib.sha256(tag.encode()).digest(), ("sig",), 0, 0)
    up = builder.update(subject, head.event.seq + 1, prev, head.event.timestamp, publish=[key])
    return builder.sign_event(domain, up, [secret])


def _gen(args: tuple[int, bytes, int, int, int, int]) -> list[bytes]:
    chain_id, contract, start, count, updates, timestamp = args
    domain = Domain(chain_id, contract)
    out: list[bytes] = []
    for i in range(start, start + count):
        secret = hashlib.sha256(b"keyreg-p2p-test-%d" % i).digest()
        out.extend(encode_event(s) for s in subject_log(domain, secret, updates, timestamp, str(i)))
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0.0 where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid``, whichever of its threads started them (Linux /proc)."""
    out: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in children.read_text().split()]
        except OSError:  # the thread ended
            continue
    return out


def generate(
    domain: Domain, subjects: int, updates: int = 0, cache_dir: Path | None = None, workers: int | None = None
) -> list[bytes]:
    """Wire bytes of ``subjects`` logs of 1 + ``updates`` events each, subject by subject.

    Deterministic secrets; timestamps are fixed per cache file so cached events stay valid.
    """
    # the protocol version too: events signed under another version's domain are refused (malformed)
    key = f"v{domain.version}-{domain.chain_id}-{domain.verifying_contract.hex()}-{subjects}-{updates}"
    path = Path(cache_dir) / f"events-{key}.jsonl" if cache_dir else None
    if path is not None and path.exists():
        return [line.encode() for line in path.read_text().splitlines()]
    timestamp = int(time.time()) - 60
    workers = workers or max(1, min(os.cpu_count() or 1, 4))
    step = max(1, subjects // (workers * 4))
    jobs = [
        (domain.chain_id, domain.verifying_contract, s, min(step, subjects - s), updates, timestamp)
        for s in range(0, subjects, step)
    ]
    out: list[bytes] = []
    if workers == 1 or subjects < 64:
        for j in jobs:
            out.extend(_gen(j))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_gen, jobs):
                out.extend(part)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(e.decode() + "\n" for e in out))
        tmp.replace(path)
    return out


def interleave(events: list[bytes], per_subject: int) -> list[bytes]:
    """Reorder subject-by-subject logs round-robin (seq 0 of all, then seq 1 ...): gossip-like load."""
    logs = [events[i : i + per_subject] for i in range(0, len(events), per_subject)]
    return [log[k] for k in range(per_subject) for log in logs if k < len(log)]


def digest_hex(domain: Domain, raw: bytes) -> str:
    """0x digest of a wire event (test bookkeeping)."""
    from ..core.codec import decode_event

    return "0x" + event_digest(domain, decode_event(raw).event).hex()


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------------- node processes


class NodeProcess:
    """One ``python -m keyreg.p2p.testnode`` OS process and a client for its control socket."""

    def __init__(
        self,
        data_dir: Path,
        bootstrap: list[str] | None = None,
        settings: dict[str, object] | None = None,
        record_times: bool = False,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bootstrap = list(bootstrap or [])
        self.settings = dict(settings or {})
        self.record_times = record_times
        self.log_path = log_path or self.data_dir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._buf = b""
        self.addr = ""
        self.peer_id = ""

    def start(self, timeout: float = 30.0) -> NodeProcess:
        import sys

        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "control.port"
        port_file.unlink(missing_ok=True)
        # Started like `keyreg` (a main module that imports nothing heavy): spawned signature workers
        # re-import the main module, and ``-m keyreg.p2p.testnode`` would make each import libp2p.
        launcher = "from keyreg.p2p.testnode import main; main()"
        cmd = [sys.executable, "-c", launcher, "--data-dir", str(self.data_dir)]
        for b in self.bootstrap:
            cmd += ["--bootstrap", b]
        for k, v in self.settings.items():
            cmd += ["--set", f"p2p.{k}={v}"]
        if self.record_times:
            cmd.append("--record-times")
        log = open(self.log_path, "ab")  # noqa: SIM115  # handed to the child, closed in stop()
        self._log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"node did not start in {timeout}s; see {self.log_path}")
            time.sleep(0.02)
        self.sock = socket.create_connection(("127.0.0.1", int(port_file.read_text())), timeout=120)
        self._buf = b""
        st = self.call("status")
        self.addr = st["addrs"][0]
        self.peer_id = st["peer_id"]
        return self

    def call(self, op: str, **kw: object) -> Any:
        assert self.sock is not None, "node not started"
        self.sock.sendall(json.dumps({"op": op, **kw}).encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"node closed the control socket; see {self.log_path}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        out = json.loads(line)
        if not out["ok"]:
            raise RuntimeError(out["error"])
        return out["result"]

    def submit(self, events: list[bytes]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("submit", events=[e.decode() for e in events])
        return result

    def count(self) -> int:
        return int(self.call("state")["count"])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the node process and its live children (the signature
        workers) have used so far (from /proc; 0 if unknown)."""
        if self.proc is None:
            return 0.0
        pid = self.proc.pid
        total = process_cpu_seconds(pid)
        for child in child_pids(pid):
            total += process_cpu_seconds(child)
        return total

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    kill = stop


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class KeyregNode:
    """A real node process (``keyreg node run``: SQL store, HTTP API, p2p) for end-to-end tests.

    p2p settings reach it through ``KEYREG_P2P_*`` environment variables; the API port is chosen
    by the OS and read from ``<data_dir>/node.json``.
    """

    def __init__(
        self, data_dir: Path, bootstrap: list[str] | None = None, settings: dict[str, object] | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bootstrap = list(bootstrap or [])
        self.settings = dict(settings or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.addr = ""
        self.peer_id = ""
        self._log: Any = None

    def start(self, timeout: float = 40.0) -> KeyregNode:
        import sys

        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        runfile = self.data_dir / "node.json"
        runfile.unlink(missing_ok=True)
        env = dict(os.environ)
        env["KEYREG_P2P_BOOTSTRAP"] = ",".join(self.bootstrap)
        for k, v in self.settings.items():
            env[f"KEYREG_P2P_{k.upper()}"] = str(v)
        env.setdefault("KEYREG_CHAIN_RPC_URL", "")
        # `keyreg node run`, registering only the node sub-command (fast, and independent of the others).
        launcher = "import sys; from keyreg.cli import app; import keyreg.cli.node; sys.argv[0] = 'keyreg'; app()"
        cmd = [sys.executable, "-c", launcher, "node", "run", "--data-dir", str(self.data_dir)]
        cmd += ["--port", "0", "--admin-port", "0", "--no-keystore", "--log-level", "warning"]
        self._log = open(self.data_dir / "node.log", "ab")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + timeout
        while not runfile.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}; see {self.data_dir / 'node.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"node did not start in {timeout}s; see {self.data_dir / 'node.log'}")
            time.sleep(0.05)
        self.api = json.loads(runfile.read_text())["api"]
        self.http = httpx.Client(base_url=self.api, timeout=60)
        p2p = self.p2p()
        self.addr, self.peer_id = p2p["addrs"][0], p2p["peer_id"]
        return self

    def health(self) -> dict[str, Any]:
        r = self.http.get("/v1/health")
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def p2p(self) -> dict[str, Any]:
        out: dict[str, Any] = self.health()["services"]["p2p"]
        return out

    def submit(self, events: list[bytes]) -> dict[str, Any]:
        """POST /v1/events as batches of at most 1,000 (the API's cap); merged counts.

        Like any well-behaved client, a batch refused with 429 is sent again after the Retry-After the
        node names (the per-client event, byte and new-subject budgets of a real node apply to tests
        too), within ``RETRY_DEADLINE_S`` per batch.
        """
        totals: dict[str, Any] = {"accepted": 0, "known": 0, "duplicity": 0, "rejected": 0, "results": []}
        for i in range(0, len(events), 1000):
            body = b'{"events":[' + b",".join(events[i : i + 1000]) + b"]}"
            deadline = time.monotonic() + RETRY_DEADLINE_S
            while True:
                r = self.http.post("/v1/events", content=body, headers={"content-type": "application/json"})
                if r.status_code != 429 or time.monotonic() >= deadline:
                    break
                time.sleep(min(float(r.headers.get("retry-after", "1")), max(0.0, deadline - time.monotonic())))
            r.raise_for_status()
            out = r.json()
            for k in ("accepted", "known", "duplicity", "rejected"):
                totals[k] += out[k]
            totals["results"].extend(out["results"])
        return totals

    def subject(self, subject: str) -> dict[str, Any] | None:
        r = self.http.get(f"/v1/subjects/{subject}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def duplicity(self, subject: str) -> dict[str, Any] | None:
        r = self.http.get(f"/v1/subjects/{subject}/duplicity")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def count(self) -> int:
        return int(self.health()["subjects"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
            self.http = None  # type: ignore[assignment]
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
