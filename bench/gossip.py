"""Gossip benchmark: N node processes on loopback, latency and sustained throughput to all nodes.

    .venv/bin/python bench/gossip.py [--quick] [--nodes 5] [--events 20000]

Nodes are ``python -m keyreg.p2p.testnode`` processes (Registry + in-memory store + run_p2p) that
record when each event was applied; every node bootstraps from all earlier ones (full mesh).
Events are signed before timing (cached under the temp dir).

- latency: single events submitted one at a time (round-robin over nodes, paced 150 ms apart so
  batches do not merge); latency = last node's applied time - submission time; p50/p95.
- throughput: ``--events`` events (subjects of 5) submitted in batches of 500 (whole subjects),
  round-robin to all nodes as fast as they accept them;
  events_per_s = events / (last applied on all nodes - first submission).

The last stdout line is JSON with p50_ms, p95_ms, events_per_s.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import finish

from keyreg.config import Config
from keyreg.p2p.testing import NodeProcess, digest_hex, generate, wait_until


def start_profilers(nodes: list[NodeProcess], directory: str, attach_s: float = 1.0) -> list[subprocess.Popen[bytes]]:
    """py-spy (collapsed stacks, all threads) on every node process; nothing if no directory."""
    if not directory:
        return []
    Path(directory).mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = []
    for i, n in enumerate(nodes):
        assert n.proc is not None
        cmd = [spy, "record", "--pid", str(n.proc.pid), "--format", "raw", "--rate", "50", "--threads", "--gil",
               "--nonblocking", "-o", str(Path(directory) / f"n{i}.txt")]  # fmt: skip
        out.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(attach_s)  # py-spy attaches
    return out


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for p in spies:
        p.send_signal(signal.SIGINT)
    for p in spies:
        p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3,000 events, 30 latency samples")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/gossip.json")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--publish-interval", type=float, default=0.05)
    ap.add_argument("--max-events-per-message", type=int, default=2048)
    ap.add_argument("--muxer", default="yamux", choices=["yamux", "mplex"])
    ap.add_argument("--profile", default="", help="directory: py-spy samples each node during the throughput run")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "keyreg-bench-cache"))
    args = ap.parse_args()
    if args.quick:
        args.events, args.samples = 3000, 30
    domain = Config().domain
    per_subject = 5
    t0 = time.monotonic()
    events = generate(domain, args.samples + args.events // per_subject + 1, per_subject - 1, Path(args.cache_dir))
    # Latency: the inceptions of the first ``samples`` subjects. Throughput: whole subjects after
    # them, in log order, so each submitted batch applies on its own (a batch never depends on
    # another node's batch that might not have arrived yet).
    lat_events = [events[k * per_subject] for k in range(args.samples)]
    thr_events = events[args.samples * per_subject : args.samples * per_subject + args.events]
    print(f"events ready: {len(events)} in {time.monotonic() - t0:.1f}s", flush=True)

    settings: dict[str, object] = {
        "muxer": args.muxer,
        "publish_interval_s": args.publish_interval,
        "max_events_per_message": args.max_events_per_message,
        "sync_interval_s": 30,
    }
    with tempfile.TemporaryDirectory() as tmp:
        nodes: list[NodeProcess] = []
        try:
            first = NodeProcess(Path(tmp) / "n0", settings=settings, record_times=True).start()
            nodes.append(first)
            for i in range(1, args.nodes):
                boot = [n.addr for n in nodes]
                nodes.append(NodeProcess(Path(tmp) / f"n{i}", boot, settings, record_times=True).start())
            wait_until(lambda: all(n.call("status")["peers"] >= args.nodes - 1 for n in nodes), 60, "full mesh")
            wait_until(lambda: all(len(n.call("status")["peer_scores"]) >= args.nodes - 1 for n in nodes), 30, "meshes")
            mesh = min(args.nodes - 1, 3)  # D_low: a mesh this full is not grafted further
            wait_until(lambda: all(n.call("status")["mesh_peers"] >= mesh for n in nodes), 30, "meshes grafted")
            print(f"{args.nodes} nodes up", flush=True)

            # -------- latency
            submitted: list[tuple[str, float]] = []
            for i, raw in enumerate(lat_events):
                node = nodes[i % len(nodes)]
                t = time.time()
                res = node.submit([raw])
                assert res[0]["status"] == "accepted", res
                submitted.append((digest_hex(domain, raw), t))
                time.sleep(0.15)
            digests = [d for d, _ in submitted]
            wait_until(lambda: all(all(x is not None for x in n.call("times", digests=digests)) for n in nodes), 60,
                       "latency events everywhere")  # fmt: skip
            applied = [n.call("times", digests=digests) for n in nodes]
            lats = [max(a[k] for a in applied) - t for k, (_, t) in enumerate(submitted)]
            lats_ms = sorted(x * 1000 for x in lats)
            p50 = statistics.median(lats_ms)
            p95 = lats_ms[min(len(lats_ms) - 1, round(0.95 * (len(lats_ms) - 1)))]
            print(f"latency to all {args.nodes} nodes: p50 {p50:.1f} ms, p95 {p95:.1f} ms (n={len(lats)})", flush=True)

            # -------- throughput
            batches = [thr_events[i : i + 500] for i in range(0, len(thr_events), 500)]
            thr_digests = [digest_hex(domain, raw) for raw in thr_events]
            for n in nodes:
                n.call("watch", digests=thr_digests)
            before = [n.call("status") for n in nodes]
            spies = start_profilers(nodes, args.profile)
            t_start = time.time()
            cpu_start = [n.cpu_seconds() for n in nodes]

            rejected = [0] * len(nodes)

            def feed(k: int) -> None:
                for j in range(k, len(batches), len(nodes)):
                    rejected[k] += sum(r["status"] != "accepted" for r in nodes[k].submit(batches[j]))

            with ThreadPoolExecutor(len(nodes)) as pool:
                list(pool.map(feed, range(len(nodes))))
            t_fed = time.time()
            assert not any(rejected), f"submissions rejected: {rejected}"
            wait_until(lambda: all(n.call("watched")["pending"] == 0 for n in nodes), 600,
                       "all events on all nodes", interval=0.2)  # fmt: skip
            last = max(n.call("watched")["last"] for n in nodes)
            stop_profilers(spies)
            cpu = [n.cpu_seconds() - c for n, c in zip(nodes, cpu_start, strict=True)]
            cpu_us = sum(cpu) / len(nodes) / len(thr_events) * 1e6
            print(f"node CPU: {' '.join(f'{c:.1f}' for c in cpu)} s = {cpu_us:.0f} us per event per node", flush=True)
            elapsed = last - t_start
            eps = len(thr_events) / elapsed
            print(
                f"throughput: {len(thr_events)} events applied on all {args.nodes} nodes in {elapsed:.2f}s "
                f"= {eps:.0f} events/s (submission took {t_fed - t_start:.2f}s)",
                flush=True,
            )
            stats = [n.call("status") for n in nodes]

            def delta(key: str) -> int:  # throughput phase only
                return sum(s["gossip"][key] - b["gossip"][key] for s, b in zip(stats, before, strict=True))

            out = {
                "p50_ms": round(p50, 1),
                "p95_ms": round(p95, 1),
                "events_per_s": round(eps, 1),
                "cpu_us_per_event_per_node": round(cpu_us, 1),
                "nodes": args.nodes,
                "events": len(thr_events),
                "latency_samples": len(lats),
                "messages_out": delta("messages_out"),
                "messages_in": delta("messages_in"),
                "dropped": delta("dropped"),
                "duplicates_dropped": delta("duplicates_dropped"),
                "unwanted_skipped": delta("unwanted_skipped"),
                "publish_interval_s": args.publish_interval,
                "max_events_per_message": args.max_events_per_message,
                "quick": args.quick,
                "muxer": args.muxer,
            }
        finally:
            for n in nodes:
                n.stop()
    print(finish("gossip", out, save=not args.no_save))


if __name__ == "__main__":
    main()
