"""Explorer pages against a real `keyreg node run` (SQLite, p2p on, chain off).

    python bench/explorer.py [--quick] [--runs 200] [--rate 200] [--duration 10] [--no-save]

One subject with 1,000 events and 50 keys (a key rotation every 20 events, each with an overlap;
the other events change metadata) is posted to the node, then:

- subject page: ``GET /subjects/{id}`` (timeline of the 50 keys, the first page of the log) and
  its last log page (``?events=head``), sequentially over one keep-alive connection; each
  request's time as the client sees it on loopback (an upper bound of the server's time);
  The node's CPU time per request is recorded too (from /proc): it does not depend on what else
  the machine runs, unlike the latencies;
- page weight: the subject page's HTML plus every asset it loads (CSS, JS, icon), uncompressed,
  on a first load with an empty cache;
- key check: ``GET /keys?subject=&key=&at=`` offered at ``--rate`` requests/s (open loop: each
  request's latency runs from its scheduled send time, so a stall counts against every request
  it delays), from 8 keep-alive connections in threads of this process; then the JSON verdict route
  (``GET /v1/subjects/{id}/keys/{kid}``) at the same rate, as the reference for what the machine
  allows at that moment.

The node runs with its rate limit off (``KEYREG_API_RATE_LIMIT_PER_S=0``): this measures the
pages, not the limiter. JSON on the last line: ``subject_page_p95_ms``, ``page_weight_kb``,
``key_check_p99_ms`` and more. Targets (issue 17): subject page p95 <= 30 ms, page weight <= 150
KB, key check p99 <= 20 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _results import finish

from keyreg.config import Config
from keyreg.core import builder
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.records import PublishedKey
from keyreg.p2p.testing import KeyregNode, process_cpu_seconds

EVENTS, KEYS = 1000, 50


def build_subject(domain: Any, t0: int) -> tuple[str, list[bytes], list[str]]:
    """1,000 signed events: inception with key 0, then every 20th update rotates to the next key
    (published, the previous one retired one step later), the others set metadata."""
    secret = hashlib.sha256(b"keyreg-bench-explorer").digest()
    ctrl = builder.controller_set([secret])
    step = 60
    first = PublishedKey("svc-000", "Ed25519", hashlib.sha256(b"k0").digest(), ("sig",), t0, 0)
    inc = builder.inception(t0, ctrl, 1, keys=[first], metadata="bench subject")
    signed = [builder.sign_event(domain, inc, [secret])]
    sid = prev = event_digest(domain, inc)
    every = (EVENTS - 1) // (KEYS - 1)
    kids = ["svc-000"]
    for seq in range(1, EVENTS):
        t = t0 + seq * step
        if seq % every == 0 and len(kids) < KEYS:
            kid = f"svc-{len(kids):03d}"
            key = PublishedKey(kid, "Ed25519", hashlib.sha256(kid.encode()).digest(), ("sig",), t, 0)
            up = builder.update(sid, seq, prev, t, publish=[key], retire=[(kids[-1], t + 5 * step)])
            kids.append(kid)
        else:
            up = builder.update(sid, seq, prev, t, metadata=f"revision {seq}")
        signed.append(builder.sign_event(domain, up, [secret]))
        prev = event_digest(domain, up)
    return "0x" + sid.hex(), [encode_event(s) for s in signed], kids


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def timed_gets(client: httpx.Client, path: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return out


def page_weight(client: httpx.Client, path: str) -> tuple[int, list[str]]:
    html = client.get(path)
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html.text)
    total = len(html.content)
    for a in assets:
        r = client.get(a)
        assert r.status_code == 200, a
        total += len(r.content)
    return total, assets


def offered_load(api: str, paths: list[str], rate: float, duration: float, conns: int = 8) -> dict[str, Any]:
    """Send len = rate*duration requests at their scheduled times from ``conns`` threads; latency
    from the scheduled time."""
    n = int(rate * duration)
    start = time.perf_counter() + 0.2
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(w: int) -> None:
        with httpx.Client(base_url=api, timeout=30) as c:
            for i in range(w, n, conns):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing to the schedule, not waiting on a condition
                r = c.get(paths[i % len(paths)])
                ms = (time.perf_counter() - due) * 1000
                with lock:
                    lat.append(ms)
                    if r.status_code != 200:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "requests": len(lat),
        "errors": errors[0],
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "max_ms": max(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50 page runs, 3 s of key checks")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    runs, duration = (50, 3.0) if args.quick else (args.runs, args.duration)

    domain = Config().domain
    t0 = int(time.time()) - EVENTS * 60 - 3600
    t = time.perf_counter()
    sid, events, kids = build_subject(domain, t0)
    print(f"built {len(events)} events, {len(kids)} keys in {time.perf_counter() - t:.1f}s")

    os.environ["KEYREG_API_RATE_LIMIT_PER_S"] = "0"
    with tempfile.TemporaryDirectory(prefix="bench-explorer-") as tmp:
        node = KeyregNode(Path(tmp) / "node").start()
        try:
            with httpx.Client(base_url=node.api, timeout=60) as c:
                for i in range(0, len(events), 500):
                    body = b'{"events":[' + b",".join(events[i : i + 500]) + b"]}"
                    res = c.post("/v1/events", content=body).json()
                    assert res["accepted"] == len(events[i : i + 500]), res
                timed_gets(c, f"/subjects/{sid}", 5)  # warm up (templates compiled, caches filled)
                assert node.proc is not None
                cpu0 = process_cpu_seconds(node.proc.pid)
                first = timed_gets(c, f"/subjects/{sid}", runs)
                last = timed_gets(c, f"/subjects/{sid}?events=head", runs)
                cpu1 = process_cpu_seconds(node.proc.pid)
                api_json = timed_gets(c, f"/v1/subjects/{sid}", runs)
                cpu2 = process_cpu_seconds(node.proc.pid)
                weight, assets = page_weight(c, f"/subjects/{sid}")
            now = int(time.time())
            paths = [f"/keys?subject={sid}&key={kids[i % len(kids)]}&at={now - i * 97}" for i in range(64)]
            cpu3 = process_cpu_seconds(node.proc.pid)
            load = offered_load(node.api, paths, args.rate, duration)
            cpu4 = process_cpu_seconds(node.proc.pid)
            # The same offered load on the JSON verdict route: what the machine allows right now.
            json_paths = [f"/v1/subjects/{sid}/keys/{kids[i % len(kids)]}?at={now - i * 97}" for i in range(64)]
            ref = offered_load(node.api, json_paths, args.rate, duration)
        finally:
            node.stop()

    both = first + last
    # The node's CPU per request: what a page costs the server, whatever else the machine runs.
    page_cpu_ms = 1000 * (cpu1 - cpu0) / (2 * runs)
    json_cpu_ms = 1000 * (cpu2 - cpu1) / runs
    print(
        f"subject page (50 keys, log page 1 of 20): p50 {pct(first, 0.5):.1f} ms, p95 {pct(first, 0.95):.1f} ms; "
        f"last log page: p95 {pct(last, 0.95):.1f} ms; the JSON route: p95 {pct(api_json, 0.95):.1f} ms"
    )
    key_cpu_ms = 1000 * (cpu4 - cpu3) / max(1, load["requests"])
    print(f"node CPU per request: subject page {page_cpu_ms:.2f} ms, the JSON route {json_cpu_ms:.2f} ms")
    print(f"page weight, first load: {weight / 1024:.1f} KB (HTML + {', '.join(a.split('?')[0] for a in assets)})")
    print(
        f"key check at {args.rate:.0f}/s offered: {load['requests_per_s']:.0f}/s achieved, "
        f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, max {load['max_ms']:.1f} ms, "
        f"{load['errors']} non-200, node CPU {key_cpu_ms:.2f} ms/request; the JSON verdict route at the same rate: "
        f"p50 {ref['p50_ms']:.1f} ms, p99 {ref['p99_ms']:.1f} ms"
    )
    figures = {
        "subject_page_p95_ms": round(pct(both, 0.95), 2),
        "subject_page_p50_ms": round(pct(both, 0.5), 2),
        "subject_page_first_p95_ms": round(pct(first, 0.95), 2),
        "subject_page_last_p95_ms": round(pct(last, 0.95), 2),
        "subject_json_p95_ms": round(pct(api_json, 0.95), 2),
        "subject_page_node_cpu_ms": round(page_cpu_ms, 2),
        "subject_json_node_cpu_ms": round(json_cpu_ms, 2),
        "page_weight_kb": round(weight / 1024, 1),
        "key_check_p99_ms": round(load["p99_ms"], 2),
        "key_check_p50_ms": round(load["p50_ms"], 2),
        "key_check_node_cpu_ms": round(key_cpu_ms, 2),
        "key_json_p99_ms": round(ref["p99_ms"], 2),
        "key_json_p50_ms": round(ref["p50_ms"], 2),
        "key_check_rate_offered": args.rate,
        "key_check_rate_achieved": round(load["requests_per_s"], 1),
        "key_check_errors": load["errors"],
        "events": len(events),
        "keys": len(kids),
        "runs": runs,
        "quick": args.quick,
        "targets": {"subject_page_p95_ms": 30, "page_weight_kb": 150, "key_check_p99_ms": 20},
    }
    print(finish("explorer", figures, not args.no_save))


if __name__ == "__main__":
    main()
