"""The node's side of membership by vote, on a real anvil: the indexer shows membership proposals
and follows each DAO's members from the token's logs; the relay pays for ballots on membership
proposals within its usual checks and budgets, for the new member after a replacement and never
for the removed one, nor for a proposal the governor refused."""

from __future__ import annotations

import pytest
from gov_fixture import MEMBERS, OUTSIDER, RELAYER, VOTING_DELAY, GovChain
from web3 import Web3

from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.gov import indexer as indexer_module
from keyreg.gov.ballots import sign_ballot
from keyreg.gov.contracts import Governance, add_member_calldata, transact
from keyreg.gov.errors import BallotRejected, GovernanceRefused
from keyreg.gov.indexer import GovernanceIndexer
from keyreg.gov.recognition import Recogniser
from keyreg.gov.relay import BallotRelay
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

NEWCOMER = bytes.fromhex("33" * 32)  # no ETH: votes by signed ballot only


def addr(key: bytes) -> str:
    return Web3.to_checksum_address(address_of_private_key(key))


def node_for(chain: GovChain, governor: str) -> tuple[GovernanceIndexer, bytes]:
    registry = Registry(chain.domain, MemoryStore())
    subject, signed = chain.subject(governor, "svc-m")
    registry.ingest([signed])
    indexer = GovernanceIndexer(chain.w3, registry, Recogniser(chain.w3, chain.registry.address))
    indexer.poll()
    return indexer, subject


def ballot(gov: Governance, key: bytes, pid: int, support: int = 1):
    return sign_ballot(key, 31337, bytes.fromhex(gov.address[2:]), gov.name(), pid, support, gov.nonce(addr(key)))


def test_indexer_and_relay_follow_a_replacement_by_vote(gov_chain: GovChain) -> None:
    w3 = gov_chain.w3
    gov = Governance(w3, gov_chain.dao.governor)
    indexer, subject = node_for(gov_chain, gov_chain.dao.governor)
    info = indexer.dao_info(gov_chain.dao.governor)
    assert info is not None
    assert info["token"] == gov_chain.dao.token
    founders = [{"address": a, "weight": 1} for a in sorted((addr(k) for k in MEMBERS), key=str.lower)]
    assert info["members"] == founders  # from the token's deployment logs
    assert indexer.dao_info(gov_chain.dao.executor) == info

    old, new = addr(MEMBERS[2]), addr(NEWCOMER)
    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(new, 1)], removes=[old], reason="lost key")
    gov_chain.mine(VOTING_DELAY + 1)
    indexer.poll()
    shown = indexer.get(pid)
    assert shown is not None
    assert shown["revocations"] == []
    assert shown["actions"] == 2
    assert shown["membershipChanges"] == [
        {"action": "remove", "member": old.lower()},
        {"action": "add", "member": new.lower(), "weight": 1},
    ]
    assert "membership" in shown["description"]

    # A ballot on the membership proposal: relayed like any other, within the same checks.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao)
    done = relay.relay_now(relay.accept(ballot(gov, MEMBERS[1], pid).encode(), "api", client="a"))
    assert done.status == "relayed", done.error
    gov.cast_vote(MEMBERS[0], pid, 1)
    while gov.state(pid) != "Succeeded":
        gov_chain.mine(1)
    receipt = gov.execute(RELAYER, pid)
    indexer.poll()
    shown = indexer.get(pid)
    assert shown is not None
    assert shown["state"] == "Executed"
    applied = [(c["action"], c["member"]) for c in shown["appliedMembership"]]
    assert applied == [("remove", old), ("add", new)]
    assert {c["txHash"] for c in shown["appliedMembership"]} == {receipt["transactionHash"].to_0x_hex()}
    info = indexer.dao_info(gov_chain.dao.governor)
    assert info is not None
    assert {m["address"] for m in info["members"]} == {addr(MEMBERS[0]), addr(MEMBERS[1]), new}
    assert indexer.status()["memberRecords"] == 3

    # A later revocation: the newcomer's ballot is relayed and counts; the removed member's is
    # refused before anything is paid.
    later, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-m", 1000, "after the change")
    gov_chain.mine(VOTING_DELAY + 1)
    ok = relay.relay_now(relay.accept(ballot(gov, NEWCOMER, later).encode(), "api", client="b"))
    assert ok.status == "relayed", ok.error
    assert gov.votes(later)["for"] == 1
    balance = w3.eth.get_balance(addr(RELAYER))
    gone = relay.relay_now(relay.accept(ballot(gov, MEMBERS[2], later).encode(), "api", client="c"))
    assert gone.status == "refused"
    assert gone.error is not None
    assert gone.error["error"] == "NotAMember"
    assert w3.eth.get_balance(addr(RELAYER)) == balance
    assert gov.votes(later)["for"] == 1


def test_relay_refuses_ballots_for_proposals_the_governor_refused(gov_chain: GovChain) -> None:
    """A proposal with any other calldata cannot exist on a recognised DAO (propose reverts), so a
    ballot naming its would-be id is refused on the governor's own answer, and nothing is paid."""
    w3 = gov_chain.w3
    gov = Governance(w3, gov_chain.dao.governor)
    indexer, _ = node_for(gov_chain, gov_chain.dao.governor)
    foreign = [gov_chain.other_dao.token], [0], [add_member_calldata(addr(OUTSIDER), 1)]
    with pytest.raises(GovernanceRefused) as info:
        transact(w3, MEMBERS[0], gov.f.propose(*foreign, "x"), "propose")
    assert info.value.details["error"] == "ActionNotAllowed"
    would_be = int(gov.f.getProposalId(*foreign, keccak(b"x")).call())
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao)
    balance = w3.eth.get_balance(addr(RELAYER))
    result = relay.relay_now(relay.accept(ballot(gov, MEMBERS[0], would_be).encode(), "api", client="a"))
    assert result.status == "refused"
    assert result.error is not None
    assert result.error["error"] == "GovernorNonexistentProposal"
    assert w3.eth.get_balance(addr(RELAYER)) == balance
    # The other DAO's governor (same code, its own token) is a DAO this node does not index: no subject named it.
    other = Governance(w3, gov_chain.other_dao.governor)
    with pytest.raises(BallotRejected) as rejected:
        relay.accept(ballot(other, MEMBERS[0], 1).encode(), "api", client="a")
    assert rejected.value.details["error"] == "UnknownGovernor"


def test_members_listed_are_capped(gov_chain: GovChain, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recognised DAO (any may be hostile) cannot make the node list members without bound:
    past the per-DAO cap they are counted, not held; removals free their place."""
    monkeypatch.setattr(indexer_module, "MAX_MEMBERS_LISTED", 2)
    indexer, _ = node_for(gov_chain, gov_chain.dao.governor)
    info = indexer.dao_info(gov_chain.dao.governor)
    assert info is not None
    assert len(info["members"]) == 2
    assert indexer.status()["membersNotListed"] == 1
    assert indexer.status()["memberRecords"] == 2
    listed = {m["address"] for m in info["members"]}
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    pid, _ = gov.propose_membership(MEMBERS[0], removes=[sorted(listed)[0]])
    gov_chain.mine(VOTING_DELAY + 1)
    for key in MEMBERS:
        if gov.voting_power(addr(key), gov.snapshot(pid)) and gov_chain.w3.eth.get_balance(addr(key)):
            gov.cast_vote(key, pid, 1)
    while gov.state(pid) != "Succeeded":
        gov_chain.mine(1)
    gov.execute(RELAYER, pid)
    indexer.poll()
    assert indexer.status()["memberRecords"] == 1
    info = indexer.dao_info(gov_chain.dao.governor)
    assert info is not None
    assert [m["address"] for m in info["members"]] == [sorted(listed)[1]]
    assert len(info["recentChanges"]) == 4  # 3 founders added, 1 removed: all changes are kept
