"""Sync benchmark: a fresh node backfills N events from one peer over ``/keyreg/sync/1``.

    .venv/bin/python bench/sync.py [--quick] [--events 100000]

A source node (``python -m node.p2p.testnode``, in-memory store) is loaded with N pre-signed
events (subjects of 5 events each) through its control socket; then a fresh node starts with the
source as its bootstrap peer and runs its start-up backfill. events_per_s = events / the backfill
pull's duration (diff + streaming + ingest), as the fresh node reports it; the wall time from the
fresh node's process start is printed too. The last stdout line is JSON with events_per_s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from node.config import Config
from node.p2p.testing import NodeProcess, generate, wait_until


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 events")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--frame-bytes", type=int, default=1024 * 1024)
    ap.add_argument("--muxer", default="yamux", choices=["yamux", "mplex"])
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
            t_start = time.monotonic()
            fresh = NodeProcess(Path(tmp) / "fresh", [src.addr], settings).start()
            nodes.append(fresh)
            target = src.call("state")
            wait_until(lambda: fresh.call("state")["root"] == target["root"], 900, "backfill", interval=0.2)
            wait_until(lambda: fresh.call("status")["last_sync"] is not None, 60, "the backfill result")
            wall = time.monotonic() - t_start
            last = fresh.call("status")["last_sync"]
            assert last["kind"] == "backfill", last
            assert last["ok"], last
            eps = last["accepted"] / last["seconds"]
            print(
                f"backfill: {last['accepted']} events ({last['wants']} subjects, {last['rounds']} diff rounds) "
                f"in {last['seconds']:.2f}s = {eps:.0f} events/s; {wall:.1f}s from process start",
                flush=True,
            )
            out = {
                "events_per_s": round(eps, 1),
                "events": last["accepted"],
                "subjects": last["wants"],
                "seconds": round(last["seconds"], 3),
                "wall_s_from_process_start": round(wall, 2),
                "frame_bytes": args.frame_bytes,
                "quick": args.quick,
                "muxer": args.muxer,
            }
        finally:
            for n in nodes:
                n.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
