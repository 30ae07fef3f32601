"""Sync benchmark: a fresh node backfills N events from one peer over ``/keyreg/sync/1``.

    .venv/bin/python bench/sync.py [--quick] [--events 100000]

A source node (``python -m keyreg.p2p.testnode``, in-memory store) is loaded with N pre-signed
events (subjects of 5 events each) through its control socket; then a fresh node starts with the
source as its bootstrap peer and runs its start-up backfill. events_per_s = events / the backfill
pull's duration (diff + streaming + ingest), as the fresh node reports it; the wall time from the
fresh node's process start is printed too. The last stdout line is JSON with events_per_s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _results import finish

from keyreg.config import Config
from keyreg.p2p.testing import NodeProcess, generate, wait_until

sys.path.insert(0, str(Path(__file__).parent))
from gossip import start_profilers, stop_profilers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 events")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/sync.json")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--frame-bytes", type=int, default=1024 * 1024)
    ap.add_argument("--muxer", default="yamux", choices=["yamux", "mplex"])
    ap.add_argument("--profile", default="", help="directory: py-spy samples both nodes during the backfill")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "keyreg-bench-cache"))
    args = ap.parse_args()
    if args.quick:
        args.events = 10_000
    domain = Config().domain
    t0 = time.monotonic()
    events = generate(domain, args.events // 5, 4, Path(args.cache_dir))
    print(f"events ready: {len(events)} in {time.monotonic() - t0:.1f}s", flush=True)
    settings: dict[str, object] = {"muxer": args.muxer, "sync_interval_s": 3600, "sync_frame_bytes": args.frame_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        nodes: list[NodeProcess] = []
        try:
            src = NodeProcess(Path(tmp) / "src", settings=settings).start()
            nodes.append(src)
            t1 = time.monotonic()
            for i in range(0, len(events), 5000):
                res = src.submit(events[i : i + 5000])
                assert all(r["status"] == "accepted" for r in res), res[:3]
            print(f"source loaded with {len(events)} events in {time.monotonic() - t1:.1f}s", flush=True)
            spies = start_profilers([src], args.profile and str(Path(args.profile) / "src"))
            src_cpu = src.cpu_seconds()
            t_start = time.monotonic()
            fresh = NodeProcess(Path(tmp) / "fresh", [src.addr], settings).start()
            nodes.append(fresh)
            spies += start_profilers([fresh], args.profile and str(Path(args.profile) / "fresh"), attach_s=0)
            target = src.call("state")
            # Poll the cheap status (root refreshed by the node when idle), not "state", which
            # would rehash the top of the tree under the ingest lock five times a second.
            wait_until(lambda: fresh.call("status")["root"] == target["root"], 900, "backfill", interval=0.2)
            wait_until(lambda: fresh.call("status")["last_sync"] is not None, 60, "the backfill result")
            assert fresh.call("state")["root"] == target["root"]
            wall = time.monotonic() - t_start
            stop_profilers(spies)
            src_cpu = src.cpu_seconds() - src_cpu
            last = fresh.call("status")["last_sync"]
            assert last["kind"] == "backfill", last
            assert last["ok"], last
            eps = last["accepted"] / last["seconds"]
            print(
                f"backfill: {last['accepted']} events ({last['wants']} subjects, {last['rounds']} diff rounds) "
                f"in {last['seconds']:.2f}s = {eps:.0f} events/s; {wall:.1f}s from process start",
                flush=True,
            )
            fresh_us = last["cpu_seconds"] / max(1, last["accepted"]) * 1e6
            src_us = src_cpu / max(1, last["accepted"]) * 1e6
            print(f"CPU per event: fresh node {fresh_us:.0f} us (during the pull), source {src_us:.0f} us", flush=True)
            out = {
                "events_per_s": round(eps, 1),
                "events": last["accepted"],
                "subjects": last["wants"],
                "seconds": round(last["seconds"], 3),
                "fresh_cpu_us_per_event": round(fresh_us, 1),
                "source_cpu_us_per_event": round(src_us, 1),
                "wall_s_from_process_start": round(wall, 2),
                "frame_bytes": args.frame_bytes,
                "quick": args.quick,
                "muxer": args.muxer,
            }
        finally:
            for n in nodes:
                n.stop()
    print(finish("sync", out, save=not args.no_save))


if __name__ == "__main__":
    main()
