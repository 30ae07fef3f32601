"""The DAO contracts on a real anvil: membership token, governor rules, vote by signature,
execution into KeyRegistry.revokeByGovernance, the timelock option, and every refusal."""

from __future__ import annotations

import pytest
from gov_fixture import DEPLOYER, MEMBERS, OUTSIDER, RELAYER, VOTING_DELAY, VOTING_PERIOD, GovChain
from web3 import Web3
from web3.logs import DISCARD

from keyreg.chain.artifacts import load
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.gov.ballots import sign_ballot
from keyreg.gov.contracts import Governance, deploy_dao, revocation_calldata, transact
from keyreg.gov.errors import GovernanceRefused

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def addr(key: bytes) -> str:
    return Web3.to_checksum_address(address_of_private_key(key))


def ballot_for(chain: GovChain, gov: Governance, key: bytes, proposal_id: int, support: int = 1):
    governor = bytes.fromhex(gov.address[2:])
    return sign_ballot(key, 31337, governor, gov.name(), proposal_id, support, gov.nonce(addr(key)))


def open_proposal(
    chain: GovChain,
    gov: Governance,
    subject: bytes,
    key_id: str = "svc-1",
    effective_at: int = 1000,
    check: bool = True,
) -> int:
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, key_id, effective_at, "compromised", check_subject=check)
    assert gov.state(pid) == "Pending"
    chain.mine(VOTING_DELAY + 1)
    assert gov.state(pid) == "Active"
    return pid


def refused(fn, *args, **kwargs) -> GovernanceRefused:
    with pytest.raises(GovernanceRefused) as info:
        fn(*args, **kwargs)
    return info.value


def test_membership_token_is_fixed_and_self_delegated(gov_chain: GovChain) -> None:
    token = gov_chain.w3.eth.contract(address=gov_chain.dao.token, abi=load("KeyregMembershipToken").abi)
    block = gov_chain.w3.eth.block_number - 1
    for key in MEMBERS:
        assert token.functions.balanceOf(addr(key)).call() == 1
        assert token.functions.getPastVotes(addr(key), block).call() == 1
    assert token.functions.getPastVotes(addr(OUTSIDER), block).call() == 0
    assert token.functions.decimals().call() == 0
    err = refused(transact, gov_chain.w3, MEMBERS[0], token.functions.transfer(addr(OUTSIDER), 1), "transfer")
    assert err.details["error"] == "MembershipNotTransferable"


def test_revocation_by_vote_and_signed_ballot(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    assert gov.registry() == gov_chain.registry.address
    assert gov.timelock() is None
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    pid = open_proposal(gov_chain, gov, subject, "svc-1", 1234)
    gov.cast_vote(MEMBERS[0], pid, 1)
    # Member 2 holds no ETH at all: it signs offline, the relayer pays.
    assert gov_chain.w3.eth.get_balance(addr(MEMBERS[2])) == 0
    ballot = ballot_for(gov_chain, gov, MEMBERS[2], pid)
    gov.cast_vote_by_sig(RELAYER, pid, 1, addr(MEMBERS[2]), ballot.signature)
    assert gov.votes(pid) == {"for": 2, "against": 0, "abstain": 0}
    assert gov.has_voted(pid, addr(MEMBERS[2]))
    assert not gov.has_voted(pid, addr(MEMBERS[1]))
    gov_chain.mine(VOTING_PERIOD)
    assert gov.state(pid) == "Succeeded"
    receipt = gov.execute(RELAYER, pid)
    assert gov.state(pid) == "Executed"
    (event,) = gov_chain.registry.events.GovernanceRevoked().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    # The governor bound its own proposal id into the revocation it executed.
    assert args["proposalId"] == pid
    assert args["governor"] == gov.address
    assert bytes(args["subject"]) == subject
    assert args["keyId"] == "svc-1"
    assert args["effectiveAt"] == 1234
    assert bytes(args["reasonHash"]) == keccak(b"compromised")
    assert gov_chain.registry.functions.governanceRevokedAt(subject, keccak(b"svc-1")).call() == 1234


def test_only_revocations_in_its_registry_can_be_proposed(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    registry = gov_chain.registry.address
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    good = revocation_calldata(subject, "svc-1", 5, b"\x00" * 32)
    set_period = gov.contract.encode_abi("setVotingPeriod", [1])
    cases = [
        ([gov.address], [0], [bytes.fromhex(set_period[2:])], "ActionNotAllowed"),  # its own settings
        ([registry], [1], [good], "ActionNotAllowed"),  # value
        (
            [registry],
            [0],
            [bytes.fromhex(gov_chain.registry.encode_abi("anchorBatch", [b"\x01" * 32, 1])[2:])],
            "ActionNotAllowed",
        ),
        ([gov_chain.other_dao.governor], [0], [good], "ActionNotAllowed"),  # another target
        ([registry], [0], [good[:132] + (7).to_bytes(32, "big") + good[164:]], "ProposalIdNotZero"),
    ]
    for targets, values, calldatas, error in cases:
        err = refused(transact, gov_chain.w3, MEMBERS[0], gov.f.propose(targets, values, calldatas, "x"), "propose")
        assert err.details["error"] == error, (targets, error)
    # A non-member cannot propose (threshold 1 membership).
    err = refused(transact, gov_chain.w3, OUTSIDER, gov.f.propose([registry], [0], [good], "x"), "propose")
    assert err.details["error"] == "GovernorInsufficientProposerVotes"


def test_non_member_vote_is_refused(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    pid = open_proposal(gov_chain, gov, subject)
    err = refused(gov.cast_vote, OUTSIDER, pid, 1)
    assert err.details["error"] == "NotAMember"
    assert "not a member" in err.message
    ballot = ballot_for(gov_chain, gov, OUTSIDER, pid)
    err = refused(gov.cast_vote_by_sig, RELAYER, pid, 1, addr(OUTSIDER), ballot.signature)
    assert err.details["error"] == "NotAMember"


def test_replayed_ballot_signature_is_refused(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    s1, _ = gov_chain.subject(gov_chain.dao.governor, "svc-1")
    pid = open_proposal(gov_chain, gov, s1)
    ballot = ballot_for(gov_chain, gov, MEMBERS[1], pid, support=0)
    gov.cast_vote_by_sig(RELAYER, pid, 0, addr(MEMBERS[1]), ballot.signature)
    # The same signature again: the nonce it signed is used up, so it no longer verifies.
    err = refused(gov.cast_vote_by_sig, RELAYER, pid, 0, addr(MEMBERS[1]), ballot.signature)
    assert err.details["error"] == "GovernorInvalidSignature"
    # Replayed onto another proposal (or with another support): not what the member signed.
    pid2, _ = gov.propose_revocation(MEMBERS[0], s1, "svc-1", 999, "other")
    gov_chain.mine(VOTING_DELAY + 1)
    err = refused(gov.cast_vote_by_sig, RELAYER, pid2, 0, addr(MEMBERS[1]), ballot.signature)
    assert err.details["error"] == "GovernorInvalidSignature"
    assert gov.votes(pid)["against"] == 1
    assert gov.votes(pid2)["against"] == 0


def test_governor_the_subject_did_not_name_cannot_revoke(gov_chain: GovChain) -> None:
    other = Governance(gov_chain.w3, gov_chain.other_dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    err = refused(other.propose_revocation, MEMBERS[0], subject, "svc-1", 10, "x")
    assert err.details["error"] == "NotGovernor"  # refused before paying for a doomed proposal
    pid = open_proposal(gov_chain, other, subject, check=False)
    for key in MEMBERS[:2]:
        other.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    assert other.state(pid) == "Succeeded"
    err = refused(other.execute, RELAYER, pid)
    assert err.details["error"] == "NotGovernor"
    assert "named another governor" in err.message
    assert other.state(pid) == "Succeeded"  # the whole execution reverted


def test_subject_without_governor_cannot_be_revoked(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(None)
    err = refused(gov.propose_revocation, MEMBERS[0], subject, "svc-1", 10, "x")
    assert err.details["error"] == "NoGovernor"
    pid = open_proposal(gov_chain, gov, subject, check=False)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    err = refused(gov.execute, RELAYER, pid)
    assert err.details["error"] == "NoGovernor"
    # And nobody can call the registry directly for it either.
    fn = gov_chain.registry.functions.revokeByGovernance(subject, "svc-1", 10, b"\x00" * 32, 0)
    assert refused(transact, gov_chain.w3, DEPLOYER, fn, "revoke").details["error"] == "NoGovernor"


def test_proposal_missing_quorum_is_defeated(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    pid = open_proposal(gov_chain, gov, subject)
    gov.cast_vote(MEMBERS[0], pid, 1)  # 1 of 3 memberships; quorum is 67% = 2
    gov_chain.mine(VOTING_PERIOD)
    summary = gov.summary(pid)
    assert summary["state"] == "Defeated"
    assert summary["quorum"] == 2
    assert summary["votes"]["for"] == 1
    err = refused(gov.execute, RELAYER, pid)
    assert err.details["error"] == "GovernorUnexpectedProposalState"
    assert "Defeated" in err.message


def test_timelocked_dao(gov_chain: GovChain) -> None:
    members = [(addr(k), 1) for k in MEMBERS]
    dao = deploy_dao(
        gov_chain.w3,
        DEPLOYER,
        gov_chain.registry.address,
        members,
        name="slow DAO",
        voting_delay=1,
        voting_period=VOTING_PERIOD,
        timelock_delay=60,
    )
    assert dao.timelock is not None
    assert dao.executor == dao.timelock
    timelock = gov_chain.w3.eth.contract(address=dao.timelock, abi=load("KeyregTimelock").abi)
    admin_role = timelock.functions.DEFAULT_ADMIN_ROLE().call()
    assert not timelock.functions.hasRole(admin_role, addr(DEPLOYER)).call()  # nobody can bypass votes
    gov_chain.mine(1)
    gov = Governance(gov_chain.w3, dao.governor)
    assert gov.executor() == dao.timelock
    subject, _ = gov_chain.subject(dao.timelock)
    pid = open_proposal(gov_chain, gov, subject, "svc-1", 777)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    assert gov.state(pid) == "Succeeded"
    gov.queue(RELAYER, pid)
    assert gov.state(pid) == "Queued"
    err = refused(gov.execute, RELAYER, pid)  # before the delay
    assert err.details["error"] in ("TimelockUnexpectedOperationState", "GovernorUnexpectedProposalState")
    gov_chain.anvil.rpc("evm_increaseTime", 61)
    gov_chain.mine(1)
    receipt = gov.execute(RELAYER, pid)
    (event,) = gov_chain.registry.events.GovernanceRevoked().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["governor"] == dao.timelock
    assert event["args"]["proposalId"] == pid
