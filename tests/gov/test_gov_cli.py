"""`keyreg gov` against anvil: deploy, propose-revocation, vote (direct and --by-sig), status,
execute, with --json output and clear errors (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gov_fixture import MEMBERS, OUTSIDER, RELAYER, GovChain
from typer.testing import CliRunner
from web3 import Web3

from keyreg.cli import _register, app
from keyreg.core.hashing import address_of_private_key
from keyreg.gov.ballots import decode_ballot, validate_ballot
from keyreg.gov.contracts import Governance

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def run(tmp_path: Path, key: bytes, *args: str, ok: bool = True) -> Any:
    _register()
    key_file = tmp_path / f"key-{key.hex()[:8]}"
    key_file.write_text("0x" + key.hex() + "\n")
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "data")] + (
        ["--key-file", str(key_file)] if args[1] not in ("status", "members") else []))  # fmt: skip
    if not ok:
        assert result.exit_code == 2, result.output
        return result.output
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_cli_flow(gov_chain: GovChain, tmp_path: Path) -> None:
    rpc = gov_chain.anvil.url
    registry = gov_chain.registry.address
    members = [f"--member=0x{address_of_private_key(k).hex()}" for k in MEMBERS]
    dao_file = tmp_path / "dao.json"
    d = run(tmp_path, RELAYER, "gov", "deploy", *members, "--rpc", rpc, "--registry", registry,
            "--voting-period", "5", "--out", str(dao_file), "--json")  # fmt: skip
    assert d["executor"] == d["governor"]
    assert len(d["members"]) == 3
    assert dao_file.exists()
    gov_chain.mine(1)
    subject, _ = gov_chain.subject(d["executor"])
    common = ["--rpc", rpc, "--dao", str(dao_file)]
    p = run(tmp_path, MEMBERS[0], "gov", "propose-revocation", "--subject", "0x" + subject.hex(),
            "--key-id", "svc-1", "--effective-at", "1700000000", "--reason", "leaked", *common, "--json")  # fmt: skip
    pid = p["proposalId"]
    assert p["state"] == "Pending"
    gov_chain.mine(2)
    v = run(tmp_path, MEMBERS[0], "gov", "vote", pid, "--support", "for", *common, "--json")
    assert v["votes"]["for"] == 1
    ballot_file = tmp_path / "ballot.json"
    out = run(tmp_path, MEMBERS[2], "gov", "vote", pid, "--by-sig", "--out", str(ballot_file), *common)
    assert "signed ballot" in out
    ballot = decode_ballot(ballot_file.read_bytes())
    validate_ballot(ballot, 31337)
    gov = Governance(gov_chain.w3, d["governor"])
    gov.cast_vote_by_sig(RELAYER, int(pid), ballot.support, Web3.to_checksum_address(ballot.voter), ballot.signature)
    err = run(tmp_path, OUTSIDER, "gov", "vote", pid, *common, ok=False)
    assert "gov_refused" in err
    assert "not a member" in err
    gov_chain.mine(6)
    s = run(tmp_path, RELAYER, "gov", "status", pid, *common, "--json")
    assert s["state"] == "Succeeded"
    assert s["votes"]["for"] == 2
    e = run(tmp_path, RELAYER, "gov", "execute", pid, *common, "--json")
    assert e["state"] == "Executed"
    listing = run(tmp_path, RELAYER, "gov", "status", *common)
    assert f"proposal {pid}: Executed" in " ".join(listing.split())  # rich wraps long ids
    again = run(tmp_path, RELAYER, "gov", "execute", pid, *common, ok=False)
    assert "Executed" in again


def test_cli_membership_flow(gov_chain: GovChain, tmp_path: Path) -> None:
    """`gov propose-membership --remove OLD --add NEW`, voted, executed; `gov members` shows the change."""
    rpc = gov_chain.anvil.url
    common = ["--rpc", rpc, "--governor", gov_chain.dao.governor]
    old = Web3.to_checksum_address(address_of_private_key(MEMBERS[2]))
    new = Web3.to_checksum_address(address_of_private_key(OUTSIDER))
    p = run(tmp_path, MEMBERS[0], "gov", "propose-membership", "--remove", old, "--add", f"{new}:2",
            "--reason", "lost key", *common, "--json")  # fmt: skip
    assert p["changes"] == [{"action": "remove", "member": old}, {"action": "add", "member": new, "weight": 2}]
    pid = p["proposalId"]
    gov_chain.mine(2)
    for key in MEMBERS[:2]:
        run(tmp_path, key, "gov", "vote", pid, "--support", "for", *common, "--json")
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    while gov.state(int(pid)) != "Succeeded":
        gov_chain.mine(1)
    run(tmp_path, RELAYER, "gov", "execute", pid, *common, "--json")
    m = run(tmp_path, RELAYER, "gov", "members", *common, "--json")
    assert {x["address"]: x["weight"] for x in m["members"]} == {
        Web3.to_checksum_address(address_of_private_key(MEMBERS[0])): 1,
        Web3.to_checksum_address(address_of_private_key(MEMBERS[1])): 1,
        new: 2,
    }
    err = run(tmp_path, MEMBERS[0], "gov", "propose-membership", *common, ok=False)
    assert "--add" in err
    # A membership change the governor refuses (the zero weight) fails before anything is paid.
    err = run(tmp_path, MEMBERS[0], "gov", "propose-membership", "--add", f"{old}:0", *common, ok=False)
    assert "weight 0" in " ".join(err.split())
