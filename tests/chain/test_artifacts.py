"""The committed artifacts load, and match what the pinned solc makes of contracts/src."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from keyreg.chain import artifacts

ROOT = Path(__file__).resolve().parents[2]


def test_committed_artifact_loads() -> None:
    art = artifacts.key_registry()
    assert art.name == "KeyRegistry"
    assert art.compiler.startswith("0.8.28+")
    assert art.bytecode.startswith("0x")
    assert len(art.deployed_bytecode) > 1000
    names = {item.get("name") for item in art.abi}
    assert {
        "anchorInception",
        "anchorUpdate",
        "anchorRotation",
        "recoverRotation",
        "anchorEvents",
        "anchorBatch",
        "revokeByGovernance",
        "headSlot",
        "HeadAnchored",
        "BatchAnchored",
        "GovernanceRevoked",
    } <= names


def test_artifacts_match_sources() -> None:
    """`node contracts/compile.js --check` (solcjs; about 10 s)."""
    solc_js = ROOT / "contracts" / "node_modules" / "solc"
    if shutil.which("node") is None or not solc_js.exists():
        reason = "node or contracts/node_modules/solc missing: run `npm ci --prefix contracts`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    proc = subprocess.run(
        ["node", str(ROOT / "contracts" / "compile.js"), "--check"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
