"""The README's main command, as a subprocess: `keyreg devnet demo --json`.

It starts its own devnet (anvil + registry + 3 nodes), runs the scenario and tears everything down;
the JSON on stdout must show the rotation gossiped to every node, the head anchored in a batch and
directly, and the DAO's revocation (one direct vote, one ballot relayed by another node) applied by
every node from its effective time, with earlier times still valid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyreg.chain.deploy import anvil_binary

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

DEMO_TIMEOUT_S = 240  # the demo takes ~30 s on a quiet box; generous for a loaded CI machine


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    keyreg = Path(sys.executable).with_name("keyreg")
    cmd = [str(keyreg)] if keyreg.exists() else [sys.executable, "-c", "from keyreg.cli import main; main()"]
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "TMPDIR": str(tmp)}  # the throwaway devnet goes here, so its removal is checkable
    proc = subprocess.run(
        [*cmd, "devnet", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        env=env,
        check=False,
    )
    report = f"exit {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}\nstdout:\n{proc.stdout[-2000:]}"
    assert proc.returncode == 0, report
    assert not list(tmp.glob("keyreg-devnet-*")), "the throwaway devnet directory was not removed"
    return dict(json.loads(proc.stdout))


def test_rotation_gossiped_to_every_node(summary: dict[str, Any]) -> None:
    assert summary["ok"] is True
    nodes = summary["nodes"]
    assert [n["node"] for n in nodes] == ["node1", "node2", "node3"]
    rotation = summary["rotation"]
    assert rotation["old_key"] != rotation["new_key"]
    assert rotation["overlap_s"] > 0
    heads = {n["head"] for n in nodes}
    assert len(heads) == 1, heads  # every node serves the same rotated head
    assert all(n["seq"] == 1 for n in nodes)


def test_head_anchored_in_a_batch_and_directly(summary: dict[str, Any]) -> None:
    for n in summary["nodes"]:
        assert n["status"] == "equal", n
        assert isinstance(n["batch_block"], int)
        assert isinstance(n["direct_block"], int)
        assert n["direct_block"] >= n["batch_block"]
    batch = summary["last_batch"]
    assert batch is not None
    assert batch["count"] >= 1
    assert batch["root"].startswith("0x")
    assert summary["direct"]["status"] in ("anchored", "already")


def test_governance_revocation_applied_on_every_node(summary: dict[str, Any]) -> None:
    g = summary["governance"]
    assert g["ok"] is True
    assert g["subject"] != summary["subject"]  # a second subject, which named the DAO at inception
    assert g["directVote"]["txHash"].startswith("0x")
    # the gasless ballot was relayed by another node than the one the subject was submitted to
    assert g["ballot"]["status"] == "relayed"
    assert g["ballotRelayedBy"] == "node2"
    assert g["ballot"]["relayer"].lower() != g["directVote"]["voter"].lower()
    assert isinstance(g["executeBlock"], int)
    views = g["nodeViews"]
    assert [v["node"] for v in views] == ["node1", "node2", "node3"]
    for v in views:
        assert v["proposalState"] == "Executed"
        assert v["votes"] == {"for": 2, "against": 0, "abstain": 0}
        assert v["voters"] == 2
        assert v["status"] == "revoked"
        assert v["revokedBy"] == "governance"
        assert v["revokedProposal"] == g["proposalId"]
        assert v["since"] == g["effectiveAt"]
        assert v["statusBefore"] == "valid"  # earlier times are still valid
