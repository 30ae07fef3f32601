"""Benchmark: events/s ingested (validated and committed) through Registry.ingest into each store.

    python bench/node_ingest.py            # 20,000 events across 2,000 subjects
    python bench/node_ingest.py --quick    # 4,000 events across 400 subjects

The events (valid, signed, one controller, with rotations and revocations mixed in) are generated
before any timing and interleaved round-robin across subjects, so every batch touches many
subjects. Each store gets a fresh Registry and database; the events go through
``Registry.ingest`` in batches of the configured store batch size (one transaction per batch):
decode, full validation, one ``Store.commit``. Stores: MemoryStore (the reference: validation and
in-memory bookkeeping only), SQLite in a temp dir with ``synchronous=FULL`` (the default) and
``NORMAL``, SQLite FULL again in batches of sync's ``INGEST_BATCH`` (1,024: how the node ingests
backfill), and PostgreSQL in a throwaway cluster with its default, durable settings (fsync on).
Besides wall-clock rates it reports CPU per event of the process and of the ingesting thread.
The last stdout line is one JSON object (also written to bench/results/node_ingest.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the event stream and PostgreSQL helpers live under tests/

from keyreg.config import IngestConfig, StoreConfig  # noqa: E402
from keyreg.core.codec import encode_event  # noqa: E402
from keyreg.registry import Registry  # noqa: E402
from keyreg.runtime import tune_gc  # noqa: E402
from keyreg.store.memory import MemoryStore  # noqa: E402
from keyreg.store.sql import SqlStore  # noqa: E402
from tests.pg import create_database, missing_reason, postgres_server  # noqa: E402
from tests.store.streams import DOMAIN, interleaved  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_SQLITE = 4000


CPU_US: dict[str, float] = {}  # this process's and its signature workers' CPU time per event (not PostgreSQL's)
# CPU time per event of the ingesting thread (the signature workers excluded, but not the chunks
# the ingesting thread recovers itself rather than wait for a worker, see node.signature_workers):
# compare it between runs of the same code on a busy machine; across versions compare CPU_US.
MAIN_CPU_US: dict[str, float] = {}


WORKERS = [IngestConfig().signature_workers]  # --signature-workers: as a node is configured


def run(name: str, make_store: Callable[[], Any], wire: list[bytes], batch: int, bulk: bool = False) -> float:
    """Ingest everything into a fresh store; returns events/s (wall clock). ``bulk``: as sync
    ingests (on the signature workers, unless --signature-workers 0)."""
    store = make_store()
    reg = Registry(DOMAIN, store, signature_workers=WORKERS[0])
    gc.collect()
    tune_gc()  # as `keyreg node run` does once its read model is loaded (node/runtime.py)
    cpu = time.process_time() + reg.signature_workers.cpu_seconds()
    main_cpu = time.thread_time()
    start = time.perf_counter()
    accepted = 0
    for i in range(0, len(wire), batch):
        accepted += sum(r.status == "accepted" for r in reg.ingest(wire[i : i + batch], bulk=bulk))
    elapsed = time.perf_counter() - start
    MAIN_CPU_US[name] = round((time.thread_time() - main_cpu) / len(wire) * 1e6, 1)
    CPU_US[name] = round((time.process_time() + reg.signature_workers.cpu_seconds() - cpu) / len(wire) * 1e6, 1)
    reg.close()
    store.close()
    if accepted != len(wire):
        raise SystemExit(f"{name}: only {accepted} of {len(wire)} events accepted")
    rate = len(wire) / elapsed
    print(
        f"{name:>14}: {len(wire)} events in {elapsed:6.2f} s = {rate:7.0f} events/s "
        f"({1e6 / rate:5.0f} us/event wall, {CPU_US[name]:5.0f} us/event CPU in this process, "
        f"{MAIN_CPU_US[name]:5.0f} in the ingesting thread)"
    )
    return rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="4,000 events across 400 subjects")
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--per-subject", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=StoreConfig().batch_size)
    p.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/node_ingest.json")
    p.add_argument(
        "--signature-workers",
        type=int,
        default=WORKERS[0],
        help="[ingest] signature_workers, for the sync-batch run (the others recover in-line, as API batches do)",
    )
    args = p.parse_args()
    WORKERS[0] = args.signature_workers
    subjects = args.subjects or (400 if args.quick else 2000)

    t0 = time.perf_counter()
    stream = interleaved(20240601, subjects, args.per_subject)
    wire = [encode_event(e.signed) for e in stream]
    print(f"generated {len(wire)} signed events across {subjects} subjects in {time.perf_counter() - t0:.1f} s")
    print(f"batch size {args.batch_size} (one Store.commit per batch); python {platform.python_version()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine slows every figure alike)")

    tmp = Path(tempfile.mkdtemp(prefix="keyreg-bench-"))
    rates: dict[str, float | None] = {}
    rates["memory"] = run("memory", MemoryStore, wire, args.batch_size)
    rates["sqlite"] = run("sqlite FULL", lambda: SqlStore(f"sqlite:///{tmp / 'full.db'}"), wire, args.batch_size)
    rates["sqlite_normal"] = run(
        "sqlite NORMAL", lambda: SqlStore(f"sqlite:///{tmp / 'normal.db'}?synchronous=normal"), wire, args.batch_size
    )
    # The node's largest batches: sync/backfill ingests what a peer sends in INGEST_BATCH events.
    from keyreg.p2p.sync import INGEST_BATCH

    rates["sqlite_sync_batch"] = run(
        f"sqlite FULL {INGEST_BATCH}", lambda: SqlStore(f"sqlite:///{tmp / 'sync.db'}"), wire, INGEST_BATCH, True
    )
    postgres_note = "throwaway cluster, default durable settings (fsync=on, synchronous_commit=on)"
    if os.environ.get("KEYREG_TEST_PG_URL"):
        postgres_note = "KEYREG_TEST_PG_URL"
    rates["postgres"] = None
    if args.no_postgres:
        postgres_note = "skipped (--no-postgres)"
    else:
        try:
            with postgres_server(durable=True) as server:
                url = create_database(server, "keyreg_bench")
                rates["postgres"] = run("postgresql", lambda: SqlStore(url), wire, args.batch_size)
        except LookupError:
            postgres_note = f"skipped: {missing_reason()}"
            print(postgres_note)

    mem, lite = rates["memory"], rates["sqlite"]
    assert mem is not None
    assert lite is not None
    print(f"store cost per event (vs memory): sqlite FULL {1e6 / lite - 1e6 / mem:.0f} us", end="")
    if rates["postgres"]:
        print(f", postgresql {1e6 / rates['postgres'] - 1e6 / mem:.0f} us")
    else:
        print()
    verdict = "met" if lite >= TARGET_SQLITE else "NOT met"
    print(f"target: >= {TARGET_SQLITE} events/s into SQLite (FULL) with batching: {verdict}")

    def r(v: float | None) -> int | None:
        return None if v is None else round(v)

    result: dict[str, Any] = {
        "bench": "node_ingest",
        "sqlite_events_per_s": r(lite),
        "sqlite_normal_events_per_s": r(rates["sqlite_normal"]),
        "sqlite_sync_batch_events_per_s": r(rates["sqlite_sync_batch"]),
        "postgres_events_per_s": r(rates["postgres"]),
        "memory_events_per_s": r(mem),
        "sqlite_to_memory": round(lite / mem, 3),
        "postgres_to_memory": None if rates["postgres"] is None else round(rates["postgres"] / mem, 3),
        "sqlite_normal_to_full": round((rates["sqlite_normal"] or 0) / lite, 3),
        "cpu_us_per_event": CPU_US,
        "main_thread_cpu_us_per_event": MAIN_CPU_US,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "events": len(wire),
        "subjects": subjects,
        "batch_size": args.batch_size,
        "signature_workers": args.signature_workers,
        "sync_batch_size": INGEST_BATCH,
        "sqlite_synchronous": "FULL (sqlite_normal_*: NORMAL), WAL",
        "postgres": postgres_note,
        "quick": args.quick,
        "meets_target": lite >= TARGET_SQLITE,
        "command": "python bench/node_ingest.py" + (" --quick" if args.quick else ""),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "timestamp": int(time.time()),
    }
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / ("node_ingest_quick.json" if args.quick else "node_ingest.json")).write_text(
            json.dumps(result, indent=1) + "\n"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
