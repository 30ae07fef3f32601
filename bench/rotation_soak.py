"""Rotation soak: zero-downtime rotation the way a service lives with it, for a set duration.

Two real `keyreg node run` processes (SQLite, p2p gossip); node1 runs the scheduler with short
intervals; a service signs a JWT every 0.25 s through node1's `POST /local/v1/sign`; a verifier
checks each token at once with PyJWT's `PyJWKClient` against node2's JWKS, refreshing only on a
timer (never on an unknown kid). By default the run also restarts node1 during an overlap, restarts
node2, and steps node1's scheduler clock past a publication (`--no-disruptions` to skip). The
scenario is keyreg.keys.testing.run_drill, the same one tests/e2e/test_rotation_e2e.py runs.

    .venv/bin/python bench/rotation_soak.py                 # 15 rotations at 20 s (~5.5 min)
    .venv/bin/python bench/rotation_soak.py --quick         # 5 rotations (~2 min; CI)
    .venv/bin/python bench/rotation_soak.py --duration 900  # as many rotations as fit in 15 min

Human lines first, the JSON last: rotations, keys_published, intervals_elapsed (on the scheduler's
clock), tokens_signed, tokens_rejected (target 0), max_keys_per_interval (target 1), and how the
run went (restarts' unavailability, JWKS fetch failures, the scheduler's state). Saved to
bench/results/rotation_soak.json (rotation_soak_quick.json for --quick) unless --no-save.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import finish

from keyreg.keys.testing import run_drill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 rotations (CI)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of rotations (default 300; --quick 100)")
    ap.add_argument("--interval", type=int, default=20, help="rotation_interval_s")
    ap.add_argument("--overlap", type=int, default=10, help="overlap_s")
    ap.add_argument("--ahead", type=int, default=6, help="publish_ahead_s")
    ap.add_argument("--refresh", type=float, default=2.0, help="the verifier's JWKS refresh period, s")
    ap.add_argument("--period", type=float, default=0.25, help="seconds between two tokens")
    ap.add_argument("--no-disruptions", action="store_true", help="no restarts, no clock step")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    duration = args.duration if args.duration is not None else (100.0 if args.quick else 300.0)
    rotations = max(5 if not args.no_disruptions else 1, int(duration // args.interval))
    os.environ.setdefault("KEYREG_KDF_N", "16")  # throwaway keystores: fast KDF
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="keyreg-soak-") as tmp:
        report = run_drill(
            Path(tmp),
            interval=args.interval,
            overlap=args.overlap,
            ahead=args.ahead,
            rotations=rotations,
            refresh_s=args.refresh,
            period=args.period,
            disruptions=not args.no_disruptions,
            say=lambda line: print(line, flush=True),
        )
    print(
        f"{report['rotations']} rotations in {report['duration_s']} s: {report['keys_published']} keys published for "
        f"{report['intervals_elapsed']} intervals (max {report['max_keys_per_interval']} per interval); "
        f"{report['tokens_signed']} tokens signed, {report['tokens_rejected']} rejected "
        f"({report['sign_unavailable']} signing attempts while node1 restarted)"
    )
    figures = {
        **report,
        "interval_s": args.interval,
        "overlap_s": args.overlap,
        "publish_ahead_s": args.ahead,
        "verifier_refresh_s": args.refresh,
        "disruptions": not args.no_disruptions,
        "quick": args.quick,
        "wall_s": round(time.time() - started, 1),
        "meets_target": report["tokens_rejected"] == 0 and report["max_keys_per_interval"] == 1,
    }
    print(finish("rotation_soak_quick" if args.quick else "rotation_soak", figures, save=not args.no_save))


if __name__ == "__main__":
    main()
