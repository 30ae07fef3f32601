"""SIGKILL during ingest: every acknowledged event survives, the database checks clean, ingest resumes."""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keyreg.store.check import check_database
from keyreg.store.sql import SqlStore
from tests.store.streams import DOMAIN

WORKER = Path(__file__).with_name("crash_ingest.py")
SUBJECTS, PER_SUBJECT, BATCH = 40, 8, 16
TOTAL = SUBJECTS * PER_SUBJECT
DEADLINE_S = 120


def _start(url: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKER), url, "--subjects", str(SUBJECTS), "--per-subject", str(PER_SUBJECT)]
    return subprocess.Popen(
        [*cmd, "--batch", str(BATCH), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_acks(proc: subprocess.Popen[str], stop_after: int | None) -> tuple[list[list[Any]], dict[str, Any] | None]:
    """Read ack lines until ``stop_after`` batches are acknowledged or the worker ends (deadline-bound)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    acked: list[list[Any]] = []
    batches = 0
    deadline = time.monotonic() + DEADLINE_S
    while stop_after is None or batches < stop_after:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            proc.kill()
            pytest.fail("crash worker produced no output before the deadline")
        line = proc.stdout.readline()
        if not line:
            return acked, None  # the worker ended (or died)
        if not line.endswith("\n"):
            break  # a torn last line is not an acknowledgement
        msg = json.loads(line)
        if "done" in msg:
            return acked, msg
        assert "acked" in msg, msg
        acked.extend(msg["acked"])
        batches += 1
    return acked, None


def _assert_durable(url: str, acked: dict[tuple[str, int], str]) -> None:
    store = SqlStore(url)
    try:
        for (subject, seq), digest in acked.items():
            got = store.digest_at(bytes.fromhex(subject[2:]), seq)
            assert got is not None, f"acknowledged event {subject} seq {seq} was lost"
            assert "0x" + got.hex() == digest
    finally:
        store.close()
    report = check_database(url, DOMAIN)
    assert report.ok, report.to_dict()


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_no_acknowledged_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    rng = random.Random(20240607)  # random points, reproducible runs
    acked: dict[tuple[str, int], str] = {}
    plans = [
        ("external", rng.randint(1, 4)),  # SIGKILL from outside after k acknowledgements
        ("in-commit", rng.randint(2, 5)),  # SIGKILL inside a transaction, before COMMIT
        ("after-commit", rng.randint(2, 5)),  # SIGKILL after COMMIT, before the acknowledgement
        ("external", rng.randint(1, 6)),
    ]
    for mode, k in plans:
        extra = {"in-commit": ["--die-in-commit", str(k)], "after-commit": ["--die-after-commit", str(k)]}.get(mode, [])
        proc = _start(url, *extra)
        got, done = _read_acks(proc, k if mode == "external" else None)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        assert done is None, f"{mode}: the worker finished before it was killed; lower k"
        assert proc.returncode == -signal.SIGKILL, f"{mode}: worker exited with {proc.returncode}"
        for subject, seq, digest, _status in got:
            acked[(subject, seq)] = digest
        _assert_durable(url, acked)

    # Restart and run to the end: ingest resumes, stored events are "known", nothing is lost or doubled.
    proc = _start(url)
    got, done = _read_acks(proc, None)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    assert done is not None
    assert done["accepted"] + done["known"] == TOTAL
    assert done["known"] >= len(acked)
    for subject, seq, digest, _status in got:
        assert acked.setdefault((subject, seq), digest) == digest
    assert len(acked) == TOTAL
    _assert_durable(url, acked)
    store = SqlStore(url)
    try:
        assert store.audit_head()[0] == TOTAL  # one "accept" record per event: none lost, none doubled
    finally:
        store.close()
