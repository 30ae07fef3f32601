"""Issue 13 findings 3, 18 and 19 against the real contracts on anvil.

3: propose accepts only canonical revokeByGovernance calldata: the overlapping-offset proposal
   that showed one key and revoked another is refused, honest proposals of any keyId pass and
   execute; a property test holds the contract to "accepted iff canonical" (Python oracle).
18: the governor and the timelock refuse ETH, ERC-721/1155 callbacks and a paid execute.
19: a membership's votes cannot be delegated (lent) to anyone else.
"""

from __future__ import annotations

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from gov_fixture import DEPLOYER, MEMBERS, OUTSIDER, RELAYER, VOTING_PERIOD, GovChain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.logs import DISCARD

from keyreg.chain.artifacts import load
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.gov.contracts import Governance, call, decode_revocation, deploy_dao, revocation_calldata, transact
from keyreg.gov.errors import GovernanceRefused

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

SELECTOR = keccak(b"revokeByGovernance(bytes32,string,uint64,bytes32,uint256)")[:4]
ARGS = ["bytes32", "bytes", "uint64", "bytes32", "uint256"]  # string and bytes share one ABI layout
IERC1155_RECEIVER = bytes.fromhex("4e2312e0")


def addr(key: bytes) -> str:
    return Web3.to_checksum_address(address_of_private_key(key))


def refused(fn, *args, **kwargs) -> GovernanceRefused:
    with pytest.raises(GovernanceRefused) as info:
        fn(*args, **kwargs)
    return info.value


def word(v: int) -> bytes:
    return v.to_bytes(32, "big")


def overlapping_calldata(subject: bytes) -> bytes:
    """The finding-3 proposal: keyId's offset points into the head (at reasonHash, which reads as
    length 2), so keyId's bytes are the first two of word 4, the proposalId the governor patches.
    Voters decode keyId "\\x00\\x00"; execution revokes the key named by the proposal id's bytes."""
    return SELECTOR + subject + word(0x60) + word(1000) + word(2) + word(0) + word(0)


def test_overlapping_offset_proposal_is_refused(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    data = overlapping_calldata(subject)
    # A lenient ABI decoder (the EVM's own, and most UIs) reads keyId as 2 bytes at word 4: "\x00\x00".
    assert data[4 + 3 * 32 : 4 + 4 * 32] == word(2)
    assert data[4 + 4 * 32 : 4 + 4 * 32 + 2] == b"\x00\x00"
    # eth_abi refuses the pointer (the DecodingError that crashed 287c9cc's indexer): not a revocation.
    assert decode_revocation(data) is None
    fn = gov.f.propose([gov_chain.registry.address], [0], [data], "revoke nothing (really)")
    err = refused(transact, gov_chain.w3, MEMBERS[0], fn, "propose")
    assert err.details["error"] == "NonCanonicalCalldata"


def test_other_non_canonical_layouts_are_refused(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    good = revocation_calldata(subject, "svc-1", 5, b"\x00" * 32)
    cases = {
        "dirty padding": good[:-1] + b"\x01",
        "trailing word": good + word(0),
        "dirty effectiveAt": good[:68] + word(2**64 + 5) + good[100:],
        "offset past the end": good[:36] + word(2**200) + good[68:],
        "length past the end": good[:164] + word(2**255) + good[196:],
        "truncated": good[:-32],
    }
    for what, data in cases.items():
        fn = gov.f.propose([gov_chain.registry.address], [0], [data], what)
        err = refused(transact, gov_chain.w3, MEMBERS[0], fn, "propose")
        assert err.details["error"] == "NonCanonicalCalldata", what


@pytest.mark.parametrize("key_id", ["", "k", "x" * 31, "y" * 32, "z" * 33, "clé-ünïcode", "a" * 100])
def test_honest_revocations_of_any_key_id_execute(gov_chain: GovChain, key_id: str) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor, key_id or "svc-1")
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, key_id, 4321, "honest")
    gov_chain.mine(2)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    receipt = gov.execute(RELAYER, pid)
    (event,) = gov_chain.registry.events.GovernanceRevoked().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["keyId"] == key_id
    assert event["args"]["proposalId"] == pid
    assert event["args"]["effectiveAt"] == 4321


def canonical(data: bytes) -> bool:
    """The Python oracle: calldata is the canonical encoding of its own decoding, proposalId 0."""
    if data[:4] != SELECTOR:
        return False
    try:
        args = abi_decode(ARGS, data[4:])
    except Exception:
        return False
    return args[4] == 0 and SELECTOR + abi_encode(ARGS, args) == data


_MUTATIONS = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 300), st.integers(0, 255)),
    st.tuples(st.just("word"), st.integers(0, 8), st.sampled_from([0, 1, 2, 0x20, 0x40, 0x60, 0xA0, 0xC0, 2**64])),
    st.tuples(st.just("cut"), st.integers(0, 64), st.just(0)),
    st.tuples(st.just("append"), st.integers(1, 64), st.just(0)),
    st.tuples(st.just("none"), st.just(0), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key_id=st.text(max_size=40), mutation=_MUTATIONS)
def test_propose_accepts_exactly_canonical_calldata(gov_chain: GovChain, key_id: str, mutation: tuple) -> None:
    """Property: for mutations of an honest revocation, propose (eth_call) succeeds iff canonical."""
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    subject = b"\x42" * 32
    data = bytearray(revocation_calldata(subject, key_id, 77, b"\x07" * 32))
    kind, a, b = mutation
    if kind == "set" and a < len(data):
        data[a] = b
    elif kind == "word" and 4 + 32 * (a + 1) <= len(data):
        data[4 + 32 * a : 4 + 32 * (a + 1)] = word(b)
    elif kind == "cut":
        del data[len(data) - a :]
    elif kind == "append":
        data += b"\x00" * a
    expected = canonical(bytes(data))
    call = gov.f.propose([gov_chain.registry.address], [0], [bytes(data)], f"p {key_id!r} {mutation}")
    try:
        call.call({"from": addr(MEMBERS[0])})
        accepted = True
    except Exception:  # any revert
        accepted = False
    assert accepted == expected, (bytes(data).hex(), mutation)


# ---------------------------------------------------------------------------------------------
# 18: nothing of value can enter a DAO


def send_eth(chain: GovChain, to: str) -> str:
    """Try to send 1 ETH; returns the custom error the contract refused it with."""
    tx = {"to": to, "value": 10**18, "from": addr(DEPLOYER)}
    err = refused(call, chain.w3, "send ETH", lambda: chain.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
    assert chain.w3.eth.get_balance(to) == 0
    return str(err.details["error"])


def paid_execute_error(chain: GovChain, gov: Governance, pid: int) -> str:
    a = gov.actions(pid)
    fn = gov.f.execute(a.targets, a.values, a.calldatas, a.description_hash)
    err = refused(call, chain.w3, "execute", lambda: fn.estimate_gas({"from": addr(RELAYER), "value": 1}))
    return str(err.details["error"])


def test_governor_refuses_eth_tokens_and_paid_execute(gov_chain: GovChain) -> None:
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    assert send_eth(gov_chain, gov.address) == "GovernorDisabledDeposit"
    me = addr(DEPLOYER)
    for fn in (
        gov.contract.get_function_by_name("onERC721Received")(me, me, 1, b""),
        gov.contract.get_function_by_name("onERC1155Received")(me, me, 1, 1, b""),
        gov.contract.get_function_by_name("onERC1155BatchReceived")(me, me, [1], [1], b""),
    ):
        assert refused(transact, gov_chain.w3, DEPLOYER, fn, "token callback").details["error"] == (
            "GovernorDisabledDeposit"
        )
    assert gov.f.supportsInterface(IERC1155_RECEIVER).call() is False

    # A passed proposal executed with value: refused, the proposal stays executable without it.
    subject, _ = gov_chain.subject(gov_chain.dao.governor)
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-1", 9, "x")
    gov_chain.mine(2)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    assert paid_execute_error(gov_chain, gov, pid) == "GovernorDisabledDeposit"
    assert gov.state(pid) == "Succeeded"
    gov.execute(RELAYER, pid)
    assert gov.state(pid) == "Executed"
    assert gov_chain.w3.eth.get_balance(gov.address) == 0


def test_timelock_refuses_eth_tokens_and_paid_execute(gov_chain: GovChain) -> None:
    members = [(addr(k), 1) for k in MEMBERS]
    dao = deploy_dao(gov_chain.w3, DEPLOYER, gov_chain.registry.address, members, name="tl DAO",
                     voting_delay=1, voting_period=VOTING_PERIOD, timelock_delay=1)  # fmt: skip
    assert dao.timelock is not None
    timelock = gov_chain.w3.eth.contract(address=dao.timelock, abi=load("KeyregTimelock").abi)
    assert send_eth(gov_chain, dao.timelock) == "TimelockDisabledDeposit"
    assert send_eth(gov_chain, dao.governor) == "GovernorDisabledDeposit"
    me = addr(DEPLOYER)
    err = refused(transact, gov_chain.w3, DEPLOYER, timelock.functions.onERC721Received(me, me, 1, b""), "721")
    assert err.details["error"] == "TimelockDisabledDeposit"
    assert timelock.functions.supportsInterface(IERC1155_RECEIVER).call() is False

    gov_chain.mine(1)
    gov = Governance(gov_chain.w3, dao.governor)
    subject, _ = gov_chain.subject(dao.timelock)
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-1", 9, "x")
    gov_chain.mine(2)
    for key in MEMBERS[:2]:
        gov.cast_vote(key, pid, 1)
    gov_chain.mine(VOTING_PERIOD)
    gov.queue(RELAYER, pid)
    gov_chain.anvil.rpc("evm_increaseTime", 2)
    gov_chain.mine(1)
    assert paid_execute_error(gov_chain, gov, pid) == "GovernorDisabledDeposit"
    fn = timelock.functions.execute(gov_chain.registry.address, 0, b"", b"\x00" * 32, b"\x00" * 32)
    err = refused(call, gov_chain.w3, "timelock execute", lambda: fn.estimate_gas({"from": me, "value": 1}))
    assert err.details["error"] == "TimelockDisabledDeposit"  # paid directly: refused before anything else
    gov.execute(RELAYER, pid)
    assert gov.state(pid) == "Executed"
    assert gov_chain.w3.eth.get_balance(dao.timelock) == 0


# ---------------------------------------------------------------------------------------------
# 19: votes cannot be lent


def test_membership_votes_cannot_be_delegated_to_others(gov_chain: GovChain) -> None:
    token = gov_chain.w3.eth.contract(address=gov_chain.dao.token, abi=load("KeyregMembershipToken").abi)
    member, outsider = addr(MEMBERS[0]), addr(OUTSIDER)
    err = refused(transact, gov_chain.w3, MEMBERS[0], token.functions.delegate(outsider), "delegate")
    assert err.details["error"] == "MembershipNotDelegable"
    err = refused(transact, gov_chain.w3, MEMBERS[0], token.functions.delegate("0x" + "00" * 20), "delegate")
    assert err.details["error"] == "MembershipNotDelegable"
    transact(gov_chain.w3, MEMBERS[0], token.functions.delegate(member), "self-delegate")  # harmless, allowed
    gov_chain.mine(1)
    block = gov_chain.w3.eth.block_number - 1
    assert token.functions.getPastVotes(member, block).call() == 1
    assert token.functions.getPastVotes(outsider, block).call() == 0
    assert token.functions.delegates(member).call() == member
