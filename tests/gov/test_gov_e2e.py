"""Done-when test of governance: anvil, 3 real `keyreg node run` processes (devnet), a 3-member DAO.

A proposal to revoke a key of a subject that named the DAO; one member votes directly, another
(with no ETH) signs a ballot that a different node relays; the voting period is mined through;
execute; every node reports the key revoked by governance from the effective time and valid just
before. Then the refusals a node gives: a replayed ballot (duplicate at the relay and through
gossip), a non-member's ballot, a ballot for a closed proposal. The contract-level refusals
(governor not named, no governor, missed quorum) are in test_governor_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gov_attacker import deploy_attacker

from keyreg.chain.deploy import anvil_binary, free_port
from keyreg.cli.devnet import anvil_account_key, devnet_down, devnet_up
from keyreg.core.records import Domain
from keyreg.gov.ballots import sign_ballot
from keyreg.gov.contracts import Governance, address_of, connect
from keyreg.gov.scenario import (
    create_governed_subject,
    run_governance_revocation,
    run_governor_move,
    run_membership_replacement,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

TIMEOUT = 45.0
DEPLOYER = anvil_account_key(9)
MEMBERS = [anvil_account_key(4), bytes.fromhex("22" * 32), anvil_account_key(5)]  # member 1 holds no ETH
OUTSIDER = anvil_account_key(7)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One devnet for the module: each test deploys its own DAO and subject."""
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    directory = tmp_path_factory.mktemp("gov") / "devnet"
    chain = {"confirmations": 1, "poll_interval_s": 0.3, "anchor_epoch_s": 2.0, "retry_max_s": 1.0}
    try:
        yield devnet_up(directory, nodes=3, port=free_port(), block_time=1.0, chain=chain, progress=False)
    finally:
        devnet_down(directory)


def ballots(api: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{api}/v1/gov/ballots", timeout=5).json()["ballots"])


def test_dao_revokes_a_key_on_every_node(devnet: dict[str, Any]) -> None:
    apis = [n["api"] for n in devnet["nodes"]]
    summary = run_governance_revocation(
        devnet["rpc"], devnet["registry"], apis, deployer_key=DEPLOYER, member_keys=MEMBERS,
        voting_period=10, relay_via=1, timeout=TIMEOUT,
    )  # fmt: skip
    assert summary["ok"], summary
    pid, key_id, effective_at = summary["proposalId"], summary["keyId"], summary["effectiveAt"]
    assert summary["ballotRelayedBy"] == apis[1]
    assert summary["ballot"]["relayer"].lower() == devnet["nodes"][1]["relayer"].lower()
    for node in summary["nodes"]:
        revoked = node["now"]["revoked"]
        assert revoked["by"] == "governance"
        assert revoked["proposalId"] == pid
        assert revoked["since"] == effective_at
        assert revoked["governor"].lower() == summary["dao"]["governor"].lower()
        assert node["justBefore"]["status"] == "valid"
        assert node["now"]["keyId"] == key_id

    # Every node indexed the proposal: executed, two votes for, the revocation applied.
    for api in apis:
        p = wait_for(
            lambda api=api: (
                items := httpx.get(f"{api}/v1/gov/proposals", params={"subject": summary["subject"]}, timeout=5)
                .json()["proposals"]
            ) and items[0]["state"] == "Executed" and items[0]["applied"] and items[0],
            TIMEOUT,
            f"{api} to index the executed proposal",
        )  # fmt: skip
        assert p["proposalId"] == pid
        assert p["votes"] == {"for": 2, "against": 0, "abstain": 0}
        assert len(p["voters"]) == 2
        assert p["applied"][0]["keyId"] == key_id
        assert p["applied"][0]["effectiveAt"] == effective_at

    # The ballot was gossiped: the other nodes know it and did not pay for it a second time.
    ballot_id = summary["ballot"]["id"]
    for api in (apis[0], apis[2]):
        mine = wait_for(
            lambda api=api: next((b for b in ballots(api) if b["id"] == ballot_id and b["status"] != "queued"), None),
            TIMEOUT,
            f"{api} to receive the ballot by gossip",
        )
        assert mine["source"] == "gossip"
        assert mine["status"] == "already_voted"

    # Replays of the same signed ballot are refused by every node (dedup), with a clear error.
    raw = httpx.get(f"{apis[1]}/v1/gov/ballots/{ballot_id}", timeout=5).json()["ballot"]
    for api in apis:
        resp = httpx.post(f"{api}/v1/gov/ballots", json=raw, timeout=5)
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "ballot_rejected"
        assert "duplicate ballot" in resp.json()["message"]


def test_nodes_refuse_bad_ballots(devnet: dict[str, Any]) -> None:
    apis = [n["api"] for n in devnet["nodes"]]
    summary = run_governance_revocation(
        devnet["rpc"], devnet["registry"], apis, deployer_key=DEPLOYER, member_keys=MEMBERS,
        voting_period=10, relay_via=2, timeout=TIMEOUT,
    )  # fmt: skip
    w3 = connect(devnet["rpc"])
    gov = Governance(w3, summary["dao"]["governor"])
    governor = bytes.fromhex(gov.address[2:])
    pid = int(summary["proposalId"])

    def relayed(api: str, ballot_id: str) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (
                    (r := httpx.get(f"{api}/v1/gov/ballots/{ballot_id}", timeout=5).json())["status"] != "queued" and r
                ),
                TIMEOUT,
                "the relay's verdict",
            )
        )

    # A ballot for a proposal that is no longer active: refused before paying, reason given.
    late = sign_ballot(MEMBERS[2], 31337, governor, gov.name(), pid, 1, gov.nonce(address_of(MEMBERS[2])))
    resp = httpx.post(f"{apis[0]}/v1/gov/ballots", content=late.encode(), timeout=5)
    assert resp.status_code == 202
    result = relayed(apis[0], resp.json()["id"])
    assert result["status"] == "refused"
    assert result["error"]["error"] == "GovernorUnexpectedProposalState"
    assert "Executed" in result["error"]["message"]

    # A non-member's ballot on an active proposal: refused (NotAMember), nothing paid.
    subject = bytes.fromhex(summary["subject"][2:])
    pid2, _ = gov.propose_revocation(MEMBERS[0], subject, summary["keyId"], summary["effectiveAt"] - 100, "again")
    w3.provider.make_request("anvil_mine", ["0x2"])  # type: ignore[arg-type]
    outsider = sign_ballot(OUTSIDER, 31337, governor, gov.name(), pid2, 1, 0)
    resp = httpx.post(f"{apis[0]}/v1/gov/ballots", content=outsider.encode(), timeout=5)
    assert resp.status_code == 202
    result = relayed(apis[0], resp.json()["id"])
    assert result["status"] == "refused"
    assert result["error"]["error"] == "NotAMember"
    assert not gov.has_voted(pid2, address_of(OUTSIDER))

    # A tampered ballot (support flipped after signing) is rejected outright.
    obj = sign_ballot(MEMBERS[2], 31337, governor, gov.name(), pid2, 0, gov.nonce(address_of(MEMBERS[2]))).to_obj()
    obj["support"] = 1
    resp = httpx.post(f"{apis[1]}/v1/gov/ballots", json=obj, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["code"] == "ballot_rejected"
    assert "not the voter's" in resp.json()["message"]


def test_node_never_pays_for_a_hostile_governor(devnet: dict[str, Any]) -> None:
    """Finding 1 end to end: a subject names a contract that answers like a DAO and burns 2.1M gas per
    castVoteBySig; a real node refuses its ballots at the API (nothing recovered, relayed or paid:
    the relay's counters do not move) and its indexer reports the address as not a DAO."""
    node = devnet["nodes"][1]
    api = node["api"]
    w3 = connect(devnet["rpc"])
    attacker = deploy_attacker(w3, OUTSIDER, devnet["registry"])
    domain = Domain(31337, bytes.fromhex(devnet["registry"][2:]))
    now = int(w3.eth.get_block("latest")["timestamp"])
    create_governed_subject(w3, domain, api, attacker, DEPLOYER, "svc-hostile", now - 60)

    def gov_health() -> dict[str, Any]:
        return dict(httpx.get(f"{api}/v1/health", timeout=5).json()["services"]["gov"])

    wait_for(lambda: attacker.lower() in gov_health()["indexer"]["unrecognisedSample"], TIMEOUT,
             "the indexer to check the named address")  # fmt: skip
    before = gov_health()["relay"]
    ballot = sign_ballot(MEMBERS[0], 31337, bytes.fromhex(attacker[2:]), "keyreg DAO", 5, 1, 1)
    for _ in range(3):
        resp = httpx.post(f"{api}/v1/gov/ballots", content=ballot.encode(), timeout=5)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "UnknownGovernor"
    after = gov_health()["relay"]
    for counter in ("accepted", "relayed", "gas_used", "wei_spent"):
        assert after[counter] == before[counter], counter
    assert all(b["ballot"]["governor"] != attacker.lower() for b in ballots(api))


def test_member_replaced_by_vote_on_every_node(devnet: dict[str, Any]) -> None:
    """Issue 16 item 5: a member replaced by the DAO's own vote (one ballot relayed by a node), every
    node indexes the new membership; on a later revocation the newcomer's ballot (no ETH) is relayed
    and counts, the removed member's is refused by the relay, and every node applies the revocation."""
    apis = [n["api"] for n in devnet["nodes"]]
    newcomer = bytes.fromhex("44" * 32)
    s = run_membership_replacement(
        devnet["rpc"], devnet["registry"], apis, deployer_key=DEPLOYER, member_keys=MEMBERS,
        newcomer_key=newcomer, voting_period=10, timeout=TIMEOUT,
    )  # fmt: skip
    for shown in s["nodesShowing"]:
        assert shown["membershipChanges"] == [
            {"action": "remove", "member": s["removed"].lower()},
            {"action": "add", "member": s["added"].lower(), "weight": 1},
        ]
        assert [c["action"] for c in shown["appliedMembership"]] == ["remove", "add"]
    assert s["newcomerBallot"]["status"] == "relayed", s["newcomerBallot"]
    assert s["removedBallot"]["status"] == "refused", s["removedBallot"]
    assert s["removedBallot"]["error"]["error"] == "NotAMember"
    assert s["votes"] == {"for": 2, "against": 0, "abstain": 0}
    assert s["revocationState"] == "Succeeded"
    for verdict in s["verdicts"]:
        assert verdict["revoked"]["by"] == "governance"
        assert verdict["revoked"]["proposalId"] == s["revocationProposal"]


def test_subject_moves_to_a_new_dao(devnet: dict[str, Any]) -> None:
    """Issue 16 item 5 / ADR 0028 section 8: the controllers name DAO B in a rotation anchored
    directly; DAO A's revocation then reverts on-chain (NotGovernor, and the client refuses it before
    paying), DAO B's executes with a ballot relayed by a node that learnt of DAO B from the rotation,
    and every node applies it from its effective time."""
    apis = [n["api"] for n in devnet["nodes"]]
    s = run_governor_move(
        devnet["rpc"], devnet["registry"], apis, deployer_key=DEPLOYER, member_keys=[MEMBERS[0], MEMBERS[2]],
        timeout=TIMEOUT,
    )  # fmt: skip
    assert s["earlyRefusalA"] == "NotGovernor"
    assert s["executeErrorA"] == "NotGovernor"
    assert not s["executedA"]
    assert s["ballotB"]["status"] == "relayed", s["ballotB"]
    for verdict, before in zip(s["verdicts"], s["justBefore"], strict=True):
        assert verdict["revoked"]["by"] == "governance"
        assert verdict["revoked"]["proposalId"] == s["proposalB"]
        assert verdict["revoked"]["governor"].lower() == s["daoB"]["governor"].lower()
        assert verdict["revoked"]["since"] == s["effectiveAt"]
        assert before["status"] == "valid"
    for api in apis:
        subject = httpx.get(f"{api}/v1/subjects/{s['subject']}", timeout=5).json()
        assert subject["governor"].lower() == s["daoB"]["executor"].lower(), subject
