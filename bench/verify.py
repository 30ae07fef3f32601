"""Offline verification benchmark: load + verify a bundle of N subjects, then single-check latency.

The bundle is built before timing on a simulated registry state (keyreg.verify.testing): every
subject has a log of a few events (inception with a key, an update publishing a second key, an
update retiring the first), all heads sit in one anchored batch (sparse Merkle inclusion proofs +
the storage proof of the root), every tenth subject is also anchored directly, and every
twentieth named a governor (one in five of those had a key revoked by it). Proofs are real trie
proofs against a header the verifier pins. Human-readable lines, last line JSON.

    .venv/bin/python bench/verify.py            # 10,000 subjects (target: load <= 5 s, check <= 50 us median)
    .venv/bin/python bench/verify.py --quick    # 1,000 subjects
    .venv/bin/python bench/verify.py --quick --no-save --profile   # + where the load's CPU goes
Figures are written to bench/results/verify.json (verify_quick.json for --quick) unless --no-save.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "verify"))

from coincurve import PrivateKey, PublicKey
from verify_helpers import DOMAIN, T0, make_actor, service_key

from keyreg.core.merkle import SparseMerkleTree
from keyreg.verify import Verifier, encode_bundle
from keyreg.verify.bundle import GovernanceEntry
from keyreg.verify.testing import SimulatedRegistry
from keyreg.verify.verifier import default_workers

RESULTS = Path(__file__).resolve().parent / "results"
GOVERNOR = bytes.fromhex("00000000000000000000000000000000000000aa")


def build(n: int) -> tuple[bytes, bytes, list[bytes]]:
    sim = SimulatedRegistry(DOMAIN, number=5000, timestamp=T0 + 10_000)
    tree = SparseMerkleTree()
    sids = []
    k1, s1 = service_key("k1")
    k2, s2 = service_key("k2", alg="P-256")
    for i in range(n):
        gov = GOVERNOR if i % 20 == 0 else b"\x00" * 20
        actor = make_actor(f"bench-{i}", [(k1, s1)], governor=gov)
        actor.update(T0 + 100, [(k2, s2)])
        actor.update(T0 + 200, retire=[("k1", T0 + 3600)])
        sid = sim.add_subject(actor.events)
        tree.set(sid, *actor.head)
        if i % 10 == 0:
            sim.anchor_direct(sid, *actor.head)
        if i % 100 == 0:
            entry = GovernanceEntry("k2", T0 + 5000, b"\x01" * 32, 1000 + i, GOVERNOR, 4000, b"\x02" * 32, 0)
            sim.revoke_by_governance(sid, entry)
        sids.append(sid)
    sim.anchor_batch(tree)
    bundle, block_hash = sim.export()
    return encode_bundle(bundle), block_hash, sids


def _recovery_reference_us(count: int = 3000) -> float:
    """Median-of-3 CPU microseconds of one bare coincurve key recovery (the floor per event)."""
    key = PrivateKey(b"\x07" * 32)
    digest = b"\x42" * 32
    sig = key.sign_recoverable(digest, hasher=None)
    times = []
    for _ in range(3):
        cpu = time.process_time()
        for _ in range(count):
            PublicKey.from_signature_and_message(sig, digest, hasher=None)
        times.append((time.process_time() - cpu) / count * 1e6)
    return statistics.median(times)


def _print_profile(data: bytes, block_hash: bytes, top: int = 30) -> None:
    """Where one single-threaded load spends its CPU (cProfile adds overhead to every Python call)."""
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    Verifier.from_bundle(data, block_hash, max_staleness=None, now=T0 + 20_000, workers=1)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(out.getvalue().replace(str(Path(__file__).resolve().parent.parent) + "/", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 subjects instead of 10,000")
    ap.add_argument("--subjects", type=int, default=None)
    ap.add_argument("--checks", type=int, default=20_000)
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/verify*.json")
    ap.add_argument("--runs", type=int, default=1, help="time the load N times and keep the best")
    ap.add_argument("--workers", type=int, default=None, help="verification threads (default: one per CPU, max 4)")
    ap.add_argument("--profile", action="store_true", help="also profile one single-threaded load (cProfile, untimed)")
    args = ap.parse_args()
    n = args.subjects or (1_000 if args.quick else 10_000)

    t = time.perf_counter()
    data, block_hash, sids = build(n)
    print(
        f"built a bundle of {n} subjects ({3 * n} events, {len(data) / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s"
    )

    workers = default_workers() if args.workers is None else args.workers
    best: tuple[float, float] | None = None
    for _ in range(args.runs):
        gc.collect()
        cpu, t = time.process_time(), time.perf_counter()
        verifier = Verifier.from_bundle(data, block_hash, max_staleness=None, now=T0 + 20_000, workers=workers)
        run = (time.perf_counter() - t, time.process_time() - cpu)
        best = run if best is None or run[0] < best[0] else best
    assert best is not None
    load_s, load_cpu_s = best
    print(
        f"load + verify: {load_s:.2f} s wall, {load_cpu_s:.2f} s CPU, {workers} thread(s), best of {args.runs} "
        f"({n / load_s:,.0f} subjects/s, {3 * n / load_s:,.0f} events/s)"
    )
    if args.profile:
        _print_profile(data, block_hash)
    recover_us = _recovery_reference_us()
    print(
        f"reference: bare secp256k1 recovery {recover_us:.0f} us in this run; the load used "
        f"{load_cpu_s * 1e6 / (3 * n):.0f} us CPU per event ({load_cpu_s * 1e6 / (3 * n) / recover_us:.1f} recoveries)"
    )
    try:
        load_avg = round(os.getloadavg()[0], 2)
    except OSError:
        load_avg = -1.0
    print(f"machine: {os.cpu_count()} CPUs, load average {load_avg} (other processes slow every figure)")

    rng = random.Random(7)
    queries = [
        (rng.choice(sids), rng.choice(("k1", "k2", "k3")), T0 + rng.randrange(0, 8000)) for _ in range(args.checks)
    ]
    samples = []
    statuses: dict[str, int] = {}
    for sid, kid, at in queries:
        t0 = time.perf_counter_ns()
        v = verifier.check(sid, kid, at=at, purpose="sig")
        samples.append(time.perf_counter_ns() - t0)
        statuses[v.status] = statuses.get(v.status, 0) + 1
    median_us = statistics.median(samples) / 1000
    p99_us = sorted(samples)[int(len(samples) * 0.99)] / 1000
    print(f"check latency: median {median_us:.1f} us, p99 {p99_us:.1f} us over {len(samples)} checks; {statuses}")
    ok_load = load_s <= 5.0 * n / 10_000
    ok_check = median_us <= 50
    met = {True: "met", False: "MISSED"}
    print(f"targets: load <= 5 s per 10,000 subjects: {met[ok_load]}; check median <= 50 us: {met[ok_check]}")
    result = {
        "bench": "verify",
        "subjects": n,
        "events": 3 * n,
        "bundle_bytes": len(data),
        "load_s": round(load_s, 3),
        "load_cpu_s": round(load_cpu_s, 3),
        "runs": args.runs,
        "recover_reference_us": round(recover_us, 1),
        "workers": workers,
        "cpus": os.cpu_count(),
        "load_average": load_avg,
        "check_median_us": round(median_us, 2),
        "check_p99_us": round(p99_us, 2),
        "checks": len(samples),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time": int(time.time()),
        "how": "bundle built in-process on keyreg.verify.testing.SimulatedRegistry (real MPT + SMT proofs, "
        "3 events per subject), then timed Verifier.from_bundle(bytes) and Verifier.check; "
        + ("--quick" if args.quick else "full"),
    }
    line = json.dumps(result)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        name = "verify_quick.json" if args.quick else "verify.json"
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
