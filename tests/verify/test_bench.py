"""bench/verify.py runs and ends with its JSON line (small size: the figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "verify.py"


@pytest.mark.slow
def test_bench_smoke() -> None:
    cmd = [sys.executable, str(BENCH), "--subjects", "120", "--checks", "500", "--no-save", "--profile"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["subjects"] == 120
    assert last["load_s"] > 0
    assert last["check_median_us"] > 0
    assert "apply_event" in result.stdout  # the --profile table
