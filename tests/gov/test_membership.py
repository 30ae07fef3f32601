"""A keyreg DAO changes its own membership by its own vote (issue 16, item 5), on a real anvil.

- a member replaced by vote (removeMember(old) + addMember(new) in one proposal), then the new
  member's vote counts on a later revocation and the removed member's is refused;
- proposals already snapshotted when membership changes keep their snapshot (weights and quorum);
- only the DAO's executor can change membership; the governor proposes only canonical calldata
  for exactly its own token's addMember / removeMember (besides revocations);
- the token never loses its last member; a governor cannot be deployed over a foreign token;
- a timelocked DAO's membership changes go through its timelock.
"""

from __future__ import annotations

import pytest
from gov_fixture import DEPLOYER, MEMBERS, OUTSIDER, RELAYER, VOTING_DELAY, VOTING_PERIOD, GovChain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.logs import DISCARD

from keyreg.chain.artifacts import load
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.gov.contracts import (
    Governance,
    add_member_calldata,
    decode_membership_change,
    deploy_contract,
    deploy_dao,
    remove_member_calldata,
    revocation_calldata,
    transact,
)
from keyreg.gov.decode import ADD_MEMBER_SELECTOR, REMOVE_MEMBER_SELECTOR, decode_action
from keyreg.gov.errors import GovernanceRefused

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

NEWCOMER = bytes.fromhex("22" * 32)  # holds no ETH: votes only by signed ballot or a funded tx


def addr(key: bytes) -> str:
    return Web3.to_checksum_address(address_of_private_key(key))


def refused(fn, *args, **kwargs) -> GovernanceRefused:
    with pytest.raises(GovernanceRefused) as info:
        fn(*args, **kwargs)
    return info.value


def token_of(chain: GovChain, address: str):
    return chain.w3.eth.contract(address=address, abi=load("KeyregMembershipToken").abi)


def fund(chain: GovChain, key: bytes) -> None:
    chain.anvil.rpc("anvil_setBalance", addr(key), hex(10**18))


def pass_proposal(chain: GovChain, gov: Governance, pid: int, voters: list[bytes]) -> None:
    chain.mine(VOTING_DELAY + 1)
    for key in voters:
        gov.cast_vote(key, pid, 1)
    chain.mine(VOTING_PERIOD)
    assert gov.state(pid) == "Succeeded"


def test_member_replaced_by_vote_then_new_member_counts_and_old_does_not(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    token = token_of(gov_chain, gov_chain.dao.token)
    old, new = addr(MEMBERS[2]), addr(NEWCOMER)
    assert token.functions.executor().call() == gov_chain.dao.governor
    subject, _ = gov_chain.subject(gov_chain.dao.governor)

    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(new, 1)], removes=[old], reason="member 2 lost its key")
    gov_chain.mine(VOTING_DELAY + 1)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    # A revocation proposal opened while the replacement is being voted: its snapshot predates the
    # change and it is still open after the change executes.
    early, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-1", 500, "early")
    while gov.state(pid) != "Succeeded":
        gov_chain.mine(1)
    receipt = gov.execute(RELAYER, pid)
    assert gov.state(pid) == "Executed"
    assert gov.state(early) == "Active"
    removed = token.events.MemberRemoved().process_receipt(receipt, errors=DISCARD)
    added = token.events.MemberAdded().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["member"], e["args"]["weight"]) for e in removed] == [(old, 1)]
    assert [(e["args"]["member"], e["args"]["weight"]) for e in added] == [(new, 1)]
    assert token.functions.balanceOf(old).call() == 0
    assert token.functions.balanceOf(new).call() == 1
    assert token.functions.delegates(new).call() == new  # self-delegated by addMember: votes at once
    assert token.functions.totalSupply().call() == 3
    assert gov.members() == {addr(MEMBERS[0]): 1, addr(MEMBERS[1]): 1, new: 1}

    # The early proposal keeps its snapshot: the removed member still votes on it, the newcomer
    # does not (it held nothing at that snapshot). Already-open proposals are not re-weighted.
    fund(gov_chain, NEWCOMER)
    assert refused(gov.cast_vote, NEWCOMER, early, 1).details["error"] == "NotAMember"
    fund(gov_chain, MEMBERS[2])
    gov.cast_vote(MEMBERS[2], early, 0)
    assert gov.votes(early)["against"] == 1

    # A later revocation: the newcomer's vote counts, the removed member's is refused.
    later, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-1", 1000, "later")
    gov_chain.mine(VOTING_DELAY + 1)
    assert refused(gov.cast_vote, MEMBERS[2], later, 1).details["error"] == "NotAMember"
    gov.cast_vote(NEWCOMER, later, 1)
    gov.cast_vote(MEMBERS[0], later, 1)
    assert gov.votes(later) == {"for": 2, "against": 0, "abstain": 0}
    gov_chain.mine(VOTING_PERIOD)
    assert gov.summary(later)["quorum"] == 2
    receipt = gov.execute(RELAYER, later)
    (event,) = gov_chain.registry.events.GovernanceRevoked().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["proposalId"] == later
    # The removed member cannot propose either (threshold: 1 membership).
    fn = gov.f.propose([gov_chain.dao.token], [0], [remove_member_calldata(new)], "x")
    assert refused(transact, gov_chain.w3, MEMBERS[2], fn, "propose").details["error"] == (
        "GovernorInsufficientProposerVotes"
    )


def test_weights_and_quorum_follow_membership_from_the_next_snapshot(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(addr(NEWCOMER), 3)])
    pass_proposal(gov_chain, gov, pid, MEMBERS[:2])
    gov.execute(RELAYER, pid)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    later, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-1", 1000, "x")
    gov_chain.mine(VOTING_DELAY + 1)
    # 6 memberships now: quorum 67% = 4; the three founders alone (3) no longer reach it.
    for key in MEMBERS[:2]:
        gov.cast_vote(key, later, 1)
    fund(gov_chain, MEMBERS[2])
    gov.cast_vote(MEMBERS[2], later, 1)
    gov_chain.mine(VOTING_PERIOD)
    summary = gov.summary(later)
    assert summary["quorum"] == 4
    assert summary["state"] == "Defeated"


def test_only_the_executor_changes_membership(gov_chain: GovChain) -> None:
    token = token_of(gov_chain, gov_chain.dao.token)
    other = Governance(gov_chain.w3, gov_chain.other_dao.governor)
    for key in (OUTSIDER, DEPLOYER, MEMBERS[0], RELAYER):
        for fn in (token.functions.addMember(addr(OUTSIDER), 5), token.functions.removeMember(addr(MEMBERS[1]))):
            err = refused(transact, gov_chain.w3, key, fn, "membership")
            assert err.details["error"] == "OnlyExecutor"
    # Another DAO's passed proposal cannot reach this token: its governor refuses the target.
    fn = other.f.propose([gov_chain.dao.token], [0], [add_member_calldata(addr(OUTSIDER), 1)], "x")
    assert refused(transact, gov_chain.w3, MEMBERS[0], fn, "propose").details["error"] == "ActionNotAllowed"
    assert token.functions.balanceOf(addr(OUTSIDER)).call() == 0
    assert token.functions.totalSupply().call() == 3


def test_propose_accepts_only_canonical_membership_calldata_on_its_own_token(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    token, other_token = gov_chain.dao.token, gov_chain.other_dao.token
    member = addr(OUTSIDER)
    good_add, good_remove = add_member_calldata(member, 1), remove_member_calldata(addr(MEMBERS[1]))
    dirty = ADD_MEMBER_SELECTOR + b"\x01" + good_add[5:]  # a dirty bit above the address
    transfer = bytes.fromhex(token_of(gov_chain, token).encode_abi("transfer", [member, 1])[2:])
    delegate = bytes.fromhex(token_of(gov_chain, token).encode_abi("delegate", [member])[2:])
    cases = [
        ([other_token], [0], [good_add], "ActionNotAllowed"),  # another DAO's token
        ([token], [1], [good_add], "ActionNotAllowed"),  # value
        ([token], [0], [transfer], "ActionNotAllowed"),  # another function of the token
        ([token], [0], [delegate], "ActionNotAllowed"),
        ([token], [0], [good_add + b"\x00" * 32], "NonCanonicalCalldata"),  # trailing bytes
        ([token], [0], [good_remove[:-1]], "NonCanonicalCalldata"),  # short
        ([token], [0], [dirty], "NonCanonicalCalldata"),
        ([token], [0], [add_member_calldata(member, 0)], "InvalidMembershipChange"),
        ([token], [0], [REMOVE_MEMBER_SELECTOR + b"\x00" * 32], "InvalidMembershipChange"),
        ([gov_chain.registry.address], [0], [good_add], "ActionNotAllowed"),  # membership call on the registry
        ([token], [0], [ADD_MEMBER_SELECTOR[:3]], "ActionNotAllowed"),
    ]
    for targets, values, calldatas, error in cases:
        err = refused(transact, gov_chain.w3, MEMBERS[0], gov.f.propose(targets, values, calldatas, "x"), "propose")
        assert err.details["error"] == error, (calldatas[0].hex(), error)
        if values[0] == 0:  # the node shows none of them as a membership change or revocation
            assert decode_action(targets[0], calldatas[0], gov_chain.registry.address, token) is None
    # Canonical ones pass, alone or mixed with a revocation.
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(member, 2)], removes=[addr(MEMBERS[1])])
    assert gov.state(pid) == "Pending"
    revoke = revocation_calldata(subject, "svc-1", 5, b"\x00" * 32)
    fn = gov.f.propose([gov_chain.registry.address, token], [0, 0], [revoke, good_remove], "both")
    transact(gov_chain.w3, MEMBERS[0], fn, "propose")
    assert decode_membership_change(good_add) == {"action": "add", "member": member.lower(), "weight": 1}


def test_membership_refusals_at_execution(gov_chain: GovChain) -> None:
    """Removing a non-member, adding a member twice, removing the last member: the proposal passes
    but its execution reverts as a whole (nothing half-applied)."""
    members = [(addr(MEMBERS[0]), 1)]
    dao = deploy_dao(gov_chain.w3, DEPLOYER, gov_chain.registry.address, members, name="solo", voting_period=5)
    gov_chain.mine(1)
    gov = Governance(gov_chain.w3, dao.governor)
    cases = [
        ({"removes": [addr(MEMBERS[0])]}, "LastMember"),
        ({"removes": [addr(OUTSIDER)]}, "NotAMember"),
        ({"adds": [(addr(MEMBERS[0]), 1)]}, "DuplicateMember"),
        ({"adds": [(addr(OUTSIDER), 1), (addr(OUTSIDER), 1)]}, "DuplicateMember"),
    ]
    for kwargs, error in cases:
        pid, _ = gov.propose_membership(MEMBERS[0], reason=error, **kwargs)
        gov_chain.mine(VOTING_DELAY + 1)
        gov.cast_vote(MEMBERS[0], pid, 1)
        gov_chain.mine(5)
        assert refused(gov.execute, RELAYER, pid).details["error"] == error
    assert gov.members() == {addr(MEMBERS[0]): 1}
    # Replacing the only member in one proposal (remove first would empty the DAO): add, then remove.
    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(addr(OUTSIDER), 1)], reason="hand over")
    gov_chain.mine(VOTING_DELAY + 1)
    gov.cast_vote(MEMBERS[0], pid, 1)
    gov_chain.mine(5)
    gov.execute(RELAYER, pid)
    assert gov.members() == {addr(MEMBERS[0]): 1, addr(OUTSIDER): 1}


def test_governor_refuses_a_foreign_token(gov_chain: GovChain) -> None:
    """A governor deployed over a token whose executor is someone else reverts: the DAO's
    membership can only be changed by the DAO's own votes."""
    w3 = gov_chain.w3
    foreign = deploy_contract(
        w3, DEPLOYER, load("KeyregMembershipToken"), "m", "M", addr(DEPLOYER), [addr(MEMBERS[0])], [1]
    )
    governor = w3.eth.contract(abi=load("KeyregGovernor").abi, bytecode=load("KeyregGovernor").bytecode)
    fn = governor.constructor("x", foreign.address, gov_chain.registry.address, 1, 5, 1, 67)
    err = refused(transact, w3, DEPLOYER, fn, "deploy")
    assert err.details["error"] == "ForeignMembershipToken"
    # And the token itself refuses a zero executor, which nobody could ever call from.
    token = w3.eth.contract(abi=load("KeyregMembershipToken").abi, bytecode=load("KeyregMembershipToken").bytecode)
    fn = token.constructor("m", "M", "0x" + "00" * 20, [addr(MEMBERS[0])], [1])
    assert refused(transact, w3, DEPLOYER, fn, "deploy").details["error"] == "NoExecutor"


def test_timelocked_dao_changes_membership_through_its_timelock(gov_chain: GovChain) -> None:
    members = [(addr(k), 1) for k in MEMBERS]
    dao = deploy_dao(
        gov_chain.w3, DEPLOYER, gov_chain.registry.address, members, name="slow DAO",
        voting_period=VOTING_PERIOD, timelock_delay=60,
    )  # fmt: skip
    token = token_of(gov_chain, dao.token)
    assert token.functions.executor().call() == dao.timelock
    gov_chain.mine(1)
    gov = Governance(gov_chain.w3, dao.governor)
    pid, _ = gov.propose_membership(MEMBERS[0], adds=[(addr(NEWCOMER), 1)], removes=[addr(MEMBERS[2])])
    pass_proposal(gov_chain, gov, pid, MEMBERS[:2])
    gov.queue(RELAYER, pid)
    assert token.functions.balanceOf(addr(NEWCOMER)).call() == 0  # waits like a revocation
    gov_chain.anvil.rpc("evm_increaseTime", 61)
    gov_chain.mine(1)
    gov.execute(RELAYER, pid)
    assert gov.members() == {addr(MEMBERS[0]): 1, addr(MEMBERS[1]): 1, addr(NEWCOMER): 1}
    # The governor itself is not the executor of a timelocked DAO's token.
    fn = token.functions.addMember(addr(OUTSIDER), 1)
    assert refused(transact, gov_chain.w3, DEPLOYER, fn, "x").details["error"] == "OnlyExecutor"


def test_membership_token_keeps_its_invariants(gov_chain: GovChain) -> None:
    """Removed members cannot be given votes back by delegation, and transfers stay refused."""
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    token = token_of(gov_chain, gov_chain.dao.token)
    pid, _ = gov.propose_membership(MEMBERS[0], removes=[addr(MEMBERS[1])])
    pass_proposal(gov_chain, gov, pid, MEMBERS[:2])
    gov.execute(RELAYER, pid)
    err = refused(transact, gov_chain.w3, MEMBERS[0], token.functions.delegate(addr(MEMBERS[1])), "delegate")
    assert err.details["error"] == "MembershipNotDelegable"
    transact(gov_chain.w3, MEMBERS[1], token.functions.delegate(addr(MEMBERS[1])), "delegate self")  # harmless
    gov_chain.mine(1)
    block = gov_chain.w3.eth.block_number - 1
    assert token.functions.getPastVotes(addr(MEMBERS[1]), block).call() == 0
    err = refused(transact, gov_chain.w3, MEMBERS[0], token.functions.transfer(addr(MEMBERS[1]), 1), "transfer")
    assert err.details["error"] == "MembershipNotTransferable"
    assert not token.functions.isMember(addr(MEMBERS[1])).call()
    assert token.functions.isMember(addr(MEMBERS[0])).call()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    selector=st.sampled_from([ADD_MEMBER_SELECTOR, REMOVE_MEMBER_SELECTOR, keccak(b"transfer(address,uint256)")[:4]]),
    words=st.lists(st.integers(min_value=0, max_value=2**256 - 1) | st.sampled_from([0, 1, 2**160 - 1, 2**160]),
                   min_size=0, max_size=3),
    tail=st.binary(max_size=3),
)  # fmt: skip
def test_decode_membership_change_is_the_governor_rule(
    gov_chain: GovChain, selector: bytes, words: list[int], tail: bytes
) -> None:
    """The node's decoder (node/gov/decode.py), the rule stated here, and the governor's propose
    (an eth_call on anvil) agree on which membership calldata is accepted."""
    data = selector + b"".join(w.to_bytes(32, "big") for w in words) + tail
    decoded = decode_membership_change(data)
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    try:
        gov.f.propose([gov_chain.dao.token], [0], [data], "oracle").call({"from": addr(MEMBERS[0])})
        accepted = True
    except Exception:
        accepted = False
    assert accepted == (decoded is not None), data.hex()
    expected_len = {ADD_MEMBER_SELECTOR: 2, REMOVE_MEMBER_SELECTOR: 1}.get(selector)
    canonical = (
        expected_len is not None
        and not tail
        and len(words) == expected_len
        and 0 < words[0] < 2**160
        and (selector == REMOVE_MEMBER_SELECTOR or words[1] > 0)
    )
    assert (decoded is not None) == canonical
    if canonical:
        assert decoded is not None
        assert int(decoded["member"], 16) == words[0]
        again = (
            add_member_calldata(decoded["member"], decoded["weight"])
            if selector == ADD_MEMBER_SELECTOR
            else remove_member_calldata(decoded["member"])
        )
        assert again == data
