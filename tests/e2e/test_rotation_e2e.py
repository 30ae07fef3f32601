"""Done-when test of issue 14: zero-downtime rotation, the way a service lives with it.

Real ``keyreg node run`` processes (SQLite, p2p gossip), a service signing a JWT every 0.25 s
through ``POST /local/v1/sign``, and PyJWT's ``PyJWKClient`` verifying each token against the
other node's JWKS, refreshing only on a timer (never on an unknown kid). node1 is restarted during
an overlap, node2 is restarted, and node1's scheduler clock is stepped past a publication: no token
is rejected, one key per interval, keys published == intervals elapsed (+1 at most), and the
scheduler's state is in /v1/health and the metrics. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyreg.keys.testing import run_twin_drill

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_rotation_soak_quick_rejects_no_token(tmp_path: Path) -> None:
    """`bench/rotation_soak.py --quick` (the drill, keyreg.keys.testing.run_drill) as CI runs it:
    5 rotations at 20 s, node1 restarted in an overlap, node2 restarted, node1's scheduler clock
    stepped past a publication."""
    env = {**os.environ, "KEYREG_KDF_N": "16", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rotation_soak.py"), "--quick", "--no-save"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bench"] == "rotation_soak_quick"
    assert report["tokens_rejected"] == 0, report["rejections"]
    assert report["tokens_signed"] > 150
    assert report["keys_used"] >= 5  # the service really switched at each rotation
    assert report["max_keys_per_interval"] == 1
    assert report["intervals_elapsed"] <= report["keys_published"] <= report["intervals_elapsed"] + 1, report
    assert report["clock_offset_s"] > 0
    assert report["duplicity_evidence"] == 0
    assert report["disputed"] is False
    scheduler = report["scheduler"]
    assert scheduler["lastError"] is None
    assert scheduler["keysInForce"] >= 1
    assert scheduler["nextRotation"] is not None
    metrics = report["metrics"]
    assert metrics["keyreg_rotation_keys_published_total"] >= 1  # since node1's last restart
    assert metrics["keyreg_rotation_no_successor_warning"] == 0
    assert metrics["keyreg_rotation_next_activation_timestamp_seconds"] == scheduler["nextRotation"]
    assert scheduler["overduePublished"] >= 1  # the clock step made node1 publish an overdue rotation


def test_twin_schedulers_cannot_equivocate_and_survive_a_failover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes holding one subject's keys, both schedulers on, several rotations and a SIGKILL of
    the node the service used: identical events (no duplicity evidence, not disputed), no token
    rejected, and the survivor keeps rotating on schedule."""
    monkeypatch.setenv("KEYREG_KDF_N", "16")
    report = run_twin_drill(tmp_path, interval=16, overlap=8, ahead=6, before_kill=2, after_kill=2)
    assert report["duplicity_evidence"] == 0
    assert report["disputed"] is False
    assert report["current_key_status"] == "valid"
    assert report["tokens_rejected"] == 0, report["rejections"]
    assert report["tokens_signed"] > 50
    assert report["max_keys_per_interval"] == 1
    # both schedulers published (the second copy of each event was `known`); node2 alone at the end
    assert report["node1_published"] >= 1
    assert report["node2_published"] >= 1
    assert report["node2_last_error"] is None
