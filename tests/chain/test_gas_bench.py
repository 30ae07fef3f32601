"""bench/gas.py --quick runs in CI: its JSON line has the product figures and they meet the targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[2]


def test_gas_bench_quick(anvil: str) -> None:  # the fixture skips (or fails in CI) without anvil
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gas.py"), "--quick", "--no-save"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert "operation" in proc.stdout  # the human-readable table comes first
    result = json.loads(lines[-1])
    for key in (
        "direct_update_gas",
        "direct_update_2of3_gas",
        "direct_inception_gas",
        "rotation_gas",
        "batch_gas_per_event_1",
        "batch_gas_per_event_100",
        "batch_gas_per_event_1000",
        "erc1056_change_owner_gas",
        "erc1056_add_delegate_gas",
        "erc1056_set_attribute_gas",
        "direct_update_vs_erc1056_add_delegate",
        "operator_update_gas",
        "operator_update_2of3_gas",
        "delegation_gas",
        "supersede_gas",
        "inception_with_operators_gas",
        "run",
    ):
        assert key in result, key
    assert 21_000 < result["direct_update_gas"] <= 60_000
    assert 21_000 < result["operator_update_gas"] <= 60_000  # issue 16's target for an operator update
    assert result["batch_gas_per_event_1000"] <= 300
    assert result["erc1056_add_delegate_gas"] > 21_000
    assert result["targets_met"] is True
    assert result["run"]["samples_per_figure"] == 1
