"""Crash-test worker: ingest a deterministic event stream into a SQLite store, acknowledging batches.

    python tests/store/crash_ingest.py DB_URL [--subjects N] [--per-subject M] [--batch B] [--commit-chunk C]
                                              [--die-in-commit K] [--die-after-commit K]

One JSON line per batch goes to stdout only AFTER ``Registry.ingest`` has returned (i.e. after the
store committed): ``{"acked": [[subject_hex, seq, digest_hex, status], ...]}``. That line is the
acknowledgement; the test kills this process at random points and checks that every acknowledged
event survived. On a restart the whole stream is ingested again: stored events come back as
"known", the rest are accepted, so ingest resumes where the last commit left it. The last line is
``{"done": true, ...}``.

``--die-in-commit K`` SIGKILLs this process inside the K-th store transaction, after its writes
and just before COMMIT; ``--die-after-commit K`` right after the K-th COMMIT, before the ack.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import event

from keyreg.core.codec import encode_event
from keyreg.registry import Registry
from keyreg.store.sql import SqlStore
from tests.store.streams import DOMAIN, interleaved

SEED = 77


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--subjects", type=int, default=40)
    p.add_argument("--per-subject", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--die-in-commit", type=int, default=0)
    p.add_argument("--die-after-commit", type=int, default=0)
    args = p.parse_args()

    stream = interleaved(SEED, args.subjects, args.per_subject)
    wire = [encode_event(e.signed) for e in stream]
    store = SqlStore(args.url)  # migrations (on a fresh file) commit before we start counting
    commits = {"n": 0}

    @event.listens_for(store.engine, "commit")
    def _before_commit(conn: Any) -> None:
        if conn.get_execution_options().get("keyreg_write"):
            commits["n"] += 1
            if commits["n"] == args.die_in_commit:
                _die()

    registry = Registry(DOMAIN, store)
    totals = {"accepted": 0, "known": 0}
    for i in range(0, len(wire), args.batch):
        results = registry.ingest(wire[i : i + args.batch])
        if args.die_after_commit and commits["n"] >= args.die_after_commit:
            _die()
        acked = []
        for r in results:
            if r.status not in totals:
                print(json.dumps({"error": r.to_dict()}), flush=True)
                return 1
            totals[r.status] += 1
            assert r.subject is not None
            assert r.digest is not None
            acked.append(["0x" + r.subject.hex(), r.seq, "0x" + r.digest.hex(), r.status])
        print(json.dumps({"acked": acked}), flush=True)
    print(json.dumps({"done": True, **totals, "events": len(wire)}), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
