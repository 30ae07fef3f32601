"""Benchmark: key-verdict queries against a real node process, load from a separate process.

    python bench/api_query.py [--quick] [--runs 3] [--duration 10] [--rate 1000] [--concurrency 32]
                              [--server lean|hypercorn] [--no-wrk] [--no-save]

Starts ``keyreg node run`` (SQLite, temp data dir, rate limit off) on a free loopback port,
pre-loads N subjects through POST /v1/events, then, per run, drives GET /v1/subjects/{id}/keys/{kid}
for random subjects from a SEPARATE process (a minimal epoll HTTP/1.1 client: C keep-alive
connections, one request in flight each, no pipelining), bounded by time and a request cap:

1. **fixed rate** (the headline): ``--rate`` requests/s offered in total, evenly spread over the C
   connections; latency counts from each request's *scheduled* send time, so a server that falls
   behind pays for the queue it causes (no coordinated omission). This is "p99 at >= R requests/s".
2. **closed loop** (saturation): each connection sends again as soon as it has an answer; the
   throughput is the most the node serves with C connections, and latency there is mostly queueing
   (about C / throughput).

If ``wrk`` is installed (Debian: ``apt-get install wrk``), one closed-loop cross-check runs with
``wrk -t1 -cC`` as well; without it the bench runs unchanged and the JSON says ``"wrk": null``.
Human lines first, then one JSON line (the last line of stdout), also saved to
bench/results/api_query.json unless --no-save: ``p50_ms``, ``p99_ms``, ``requests_per_s`` (the
median fixed-rate run by p99), ``best_p99_ms``, ``meets_target``, ``saturation_requests_per_s``,
every run, node CPU per request, the generator's CPU per request and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- load generator


def _worker(
    url: str, targets: list[str], concurrency: int, duration: float, warmup: float, max_requests: int, rate: float
) -> None:
    """C keep-alive connections, one request in flight each (no pipelining), on one epoll loop.

    ``rate`` 0: closed loop, each connection sends its next request as soon as the answer is in
    (saturation; latency = time from send to full answer). ``rate`` R > 0: fixed offered load,
    connection i sends at t0 + i/R + k*C/R; latency is measured from the *scheduled* time, so a
    slow answer that delays the next send counts against the server (no coordinated omission).

    Plain non-blocking sockets and ``selectors`` (no async framework): on a shared 2-CPU box every
    microsecond the generator spends is taken from the node, so it is kept as cheap as we can in
    Python (about a quarter of the trio client's CPU per request).
    """
    import heapq
    import selectors
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    interval = concurrency / rate if rate > 0 else 0.0
    rnd = random.Random(0)
    reqs = [b"GET %s HTTP/1.1\r\nhost: %s\r\n\r\n" % (p.encode(), host.encode()) for p in targets]
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = late = 0

    class Conn:
        __slots__ = ("buf", "sched", "sock")

        def __init__(self) -> None:
            self.sock = socket.create_connection((host, int(port)))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.setblocking(False)
            self.buf = b""
            self.sched = 0.0
            sel.register(self.sock, selectors.EVENT_READ, self)

        def reopen(self) -> None:
            sel.unregister(self.sock)
            self.sock.close()
            self.__init__()  # type: ignore[misc]

    conns = [Conn() for _ in range(concurrency)]
    start = time.perf_counter()
    window = start + warmup  # requests scheduled (or sent) from here on are measured
    deadline = window + duration
    ready: list[tuple[float, int]] = []  # (send time, connection index) of idle connections
    for i in range(concurrency):
        heapq.heappush(ready, (start + (i * interval / concurrency), i))
    busy = 0
    measured = 0
    last_done = window
    hard_stop = deadline + 30  # a server that stops answering must not hang the bench

    def send(i: int, when: float, now: float) -> None:
        nonlocal late
        c = conns[i]
        if interval and now - when > interval:
            late += 1  # behind schedule by more than one slot: the server is not keeping up
        c.sched = when if interval else now
        c.sock.sendall(reqs[rnd.randrange(len(reqs))])  # ~60 bytes into an empty socket buffer

    while True:
        now = time.perf_counter()
        while ready and ready[0][0] <= now and measured < max_requests:
            when, i = heapq.heappop(ready)
            if when >= deadline:
                ready.clear()
                break
            send(i, when, now)
            busy += 1
        if busy == 0 and (not ready or measured >= max_requests):
            break
        if now > hard_stop:
            raise RuntimeError(f"{busy} requests unanswered 30 s after the deadline")
        timeout = (
            max(0.0, ready[0][0] - now)
            if ready and not busy
            else (min(0.05, max(0.0, ready[0][0] - now)) if ready else 0.05)
        )
        for key, _ in sel.select(timeout):
            c = key.data
            data = c.sock.recv(65536)
            if not data:
                raise RuntimeError("server closed the connection")
            c.buf += data
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = c.buf[:end]
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if len(c.buf) < end + 4 + length:
                continue
            done = time.perf_counter()
            c.buf = c.buf[end + 4 + length :]
            busy -= 1
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            if c.sched >= window:
                latencies.append(done - c.sched)
                measured += 1
                last_done = done
            if close:  # the server ends keep-alive: reconnect
                c.reopen()
            i = conns.index(c)
            heapq.heappush(ready, (c.sched + interval if interval else done, i))
    # until the last measured answer: a server that falls behind a fixed rate shows a lower rate
    elapsed = max(1e-9, last_done - window)
    for c in conns:
        c.sock.close()
    lat = sorted(latencies)

    def pct(q: float) -> float | None:
        return 1000 * lat[min(len(lat) - 1, int(len(lat) * q))] if lat else None

    print(
        json.dumps(
            {
                "requests": len(lat),
                "errors": errors,
                "elapsed_s": elapsed,
                "late": late,
                "p50_ms": pct(0.50),
                "p90_ms": pct(0.90),
                "p99_ms": pct(0.99),
                "max_ms": 1000 * lat[-1] if lat else None,
            }
        )
    )


def _wrk(url: str, targets: list[str], concurrency: int, duration: float, tmp: Path) -> dict[str, Any] | None:
    """Closed-loop saturation with wrk (1 thread, C connections, random targets), if wrk is installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = tmp / "targets.lua"
    paths = ",".join(json.dumps(p) for p in targets)
    script.write_text(f"local paths = {{{paths}}}\n" + WRK_LUA)
    out = subprocess.run(
        [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("JSON "))
    result: dict[str, Any] = json.loads(line[5:])
    return result


WRK_LUA = r"""
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "errors": %d, "elapsed_s": %f, "p50_ms": %f, "p90_ms": %f, "p99_ms": %f, "max_ms": %f}\n',
    summary.requests, e.status + e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


# ----------------------------------------------------------------------------- driver


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _preload(api: str, n: int, domain: object) -> list[str]:
    import httpx

    from keyreg.core import builder
    from keyreg.core.codec import event_to_obj
    from keyreg.core.eip712 import event_digest
    from keyreg.keys.service_keys import ServiceKey

    now = int(time.time())
    paths, batch = [], []
    for i in range(n):
        secret = (i + 1).to_bytes(32, "big")
        key = ServiceKey.generate("Ed25519", f"k{i}")
        ev = builder.inception(now, builder.controller_set([secret]), 1, keys=[key.published(("sig",), now)])
        signed = builder.sign_event(domain, ev, [secret])  # type: ignore[arg-type]
        paths.append(f"/v1/subjects/0x{event_digest(domain, ev).hex()}/keys/k{i}")  # type: ignore[arg-type]
        batch.append(event_to_obj(signed))
    with httpx.Client(base_url=api, timeout=60) as client:
        for start in range(0, n, 500):
            body = client.post("/v1/events", json={"events": batch[start : start + 500]}).json()
            assert body["accepted"] == len(batch[start : start + 500]), body
    return paths


def _run_worker(api: str, targets: Path, args: argparse.Namespace, duration: float, rate: float) -> dict[str, Any]:
    """One load phase in a separate process; adds its achieved rate and the generator's CPU."""
    before = os.times()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            api,
            "--targets",
            str(targets),
            "--concurrency",
            str(args.concurrency),
            "--duration",
            str(duration),
            "--max-requests",
            str(args.max_requests),
            "--rate",
            str(rate),
        ]
        + (["--quick"] if args.quick else []),
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=True,
    )
    after = os.times()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["requests_per_s"] = result["requests"] / result["elapsed_s"]
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    result["loadgen_cpu_ms_per_request"] = 1000 * cpu / max(1, result["requests"])
    return result


def _show(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label}: {r['requests_per_s']:.0f} requests/s ({r['requests']} in {r['elapsed_s']:.1f}s, "
        f"{r['errors']} non-200), p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"max {r['max_ms']:.1f} ms"
        + (f", node CPU {r['node_cpu_ms_per_request']:.3f} ms/request" if "node_cpu_ms_per_request" in r else "")
        + (f", {r['late']} sends more than a slot late" if r.get("late") else "")
    )


def _rounded(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~3 s phases, one run")
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase")
    ap.add_argument(
        "--rate", type=float, default=1100.0, help="offered requests/s of the fixed-rate phase (target: >= 1000)"
    )
    ap.add_argument("--runs", type=int, default=3, help="fixed-rate + saturation runs against the same node")
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    ap.add_argument("--server", choices=("lean", "hypercorn"), default="lean", help="KEYREG_API_SERVER for the node")
    ap.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check even if wrk is installed")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/api_query*.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run as the load generator
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    warmup = 0.5 if args.quick else 1.0
    duration = 3.0 if args.quick else args.duration
    runs = 1 if args.quick else max(1, args.runs)
    if args.worker:
        _worker(
            args.worker,
            json.loads(Path(args.targets).read_text()),
            args.concurrency,
            args.duration,
            warmup,
            args.max_requests,
            args.rate,
        )
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from keyreg.cli.demo import spawn_node
    from keyreg.cli.init import init_data_dir
    from keyreg.config import load_config
    from keyreg.keys.keystore import Password

    os.environ["KEYREG_KDF_N"] = "1024"
    load_before = round(os.getloadavg()[0], 2)
    print(f"load average before the run: {load_before} on {os.cpu_count()} CPUs (other work skews the figures)")
    fixed: list[dict[str, Any]] = []
    closed: list[dict[str, Any]] = []
    wrk: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="keyreg-bench-") as tmp:
        data_dir = Path(tmp) / "node"
        init_data_dir(data_dir, Password("bench"))
        env = {"KEYREG_API_RATE_LIMIT_PER_S": "0", "KEYREG_LOG_LEVEL": "warning", "KEYREG_API_SERVER": args.server}
        t0 = time.perf_counter()
        with spawn_node(data_dir, env, args=("--no-keystore", "--log-level", "warning")) as node:
            print(f"node up at {node.api} in {time.perf_counter() - t0:.1f}s (SQLite, server: {args.server})")
            t1 = time.perf_counter()
            paths = _preload(node.api, args.subjects, load_config(data_dir).domain)
            print(f"pre-loaded {len(paths)} subjects in {time.perf_counter() - t1:.1f}s")
            targets = Path(tmp) / "targets.json"
            targets.write_text(json.dumps(paths))
            print(
                f"load: {args.concurrency} keep-alive HTTP/1.1 connections from a separate process, one request in "
                f"flight each; {duration:.0f}s phases after {warmup}s warm-up; {runs} run(s)"
            )
            for i in range(runs):
                for rate, bucket, label in ((args.rate, fixed, "fixed rate"), (0.0, closed, "closed loop")):
                    if rate == 0.0 and bucket is fixed:
                        continue
                    cpu_before = _cpu_seconds(node.proc.pid)
                    r = _run_worker(node.api, targets, args, duration, rate)
                    # node CPU over the phase (warm-up included) per measured request: an upper bound
                    r["node_cpu_ms_per_request"] = (
                        1000 * (_cpu_seconds(node.proc.pid) - cpu_before) / max(1, r["requests"])
                    )
                    r["load_avg"] = round(os.getloadavg()[0], 2)
                    bucket.append(r)
                    _show(f"run {i + 1} {label}" + (f" {rate:.0f}/s offered" if rate else ""), r)
            if not args.no_wrk:
                wrk = _wrk(node.api, paths, args.concurrency, duration, Path(tmp))
                if wrk is not None:
                    wrk["requests_per_s"] = wrk["requests"] / wrk["elapsed_s"]
                    _show("wrk closed loop (cross-check, 1 thread)", wrk)
                else:
                    print("wrk not installed: no cross-check (apt-get install wrk)")
    # Headline: the fixed-rate phase (latency at >= --rate requests/s), median run by p99; best run too.
    head_runs = fixed or closed
    by_p99 = sorted(head_runs, key=lambda r: r["p99_ms"])
    typical, best = by_p99[len(by_p99) // 2], by_p99[0]
    sat = max(closed, key=lambda r: r["requests_per_s"]) if closed else None
    meets = typical["p99_ms"] <= 20.0 and typical["requests_per_s"] >= 1000.0
    print(
        f"headline ({'fixed rate' if fixed else 'closed loop'}, median of {len(head_runs)} by p99): "
        f"p50 {typical['p50_ms']:.2f} ms, p99 {typical['p99_ms']:.2f} ms at {typical['requests_per_s']:.0f} "
        f"requests/s; best p99 {best['p99_ms']:.2f} ms; saturation {sat['requests_per_s'] if sat else 0:.0f} "
        f"requests/s; target p99 <= 20 ms at >= 1000 requests/s: {'met' if meets else 'NOT met'}"
    )
    result = {
        "p50_ms": round(typical["p50_ms"], 3),
        "p99_ms": round(typical["p99_ms"], 3),
        "requests_per_s": round(typical["requests_per_s"], 1),
        "best_p99_ms": round(best["p99_ms"], 3),
        "meets_target": meets,
        "mode": (
            f"fixed offered rate {args.rate:.0f}/s, latency from the scheduled send time"
            if fixed
            else "closed loop (saturation)"
        ),
        "generator": "python (selectors/epoll, separate process)",
        "saturation_requests_per_s": round(sat["requests_per_s"], 1) if sat else None,
        "saturation": _rounded(sat),
        "wrk": _rounded(wrk),
        "wrk_generator": "wrk -t1" if wrk is not None else "absent",
        "runs": [_rounded(r) for r in head_runs],
        "closed_loop_runs": [_rounded(r) for r in closed],
        "concurrency": args.concurrency,
        "duration_s": duration,
        "subjects": args.subjects,
        "endpoint": "GET /v1/subjects/{id}/keys/{kid}",
        "server": args.server,
        "how": (
            "real `keyreg node run` (SQLite; lean HTTP/1.1 path + hypercorn trio, or plain hypercorn) + "
            "separate-process keep-alive HTTP/1.1 client, 1 request in flight per connection, loopback"
        ),
        "cpus": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "quick": args.quick,
        "timestamp": int(time.time()),
    }
    if not args.no_save:
        out = Path(__file__).resolve().parent / "results" / ("api_query_quick.json" if args.quick else "api_query.json")
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
