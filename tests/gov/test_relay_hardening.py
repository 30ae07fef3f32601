"""Issue 13 finding 1 on a real anvil: the relay pays only for recognised keyreg DAOs, within
budgets and under a gas cap.

The attacker is a contract (tests/gov/gov_attacker.py) that answers registry()/token()/name() and
every pre-check view like a real governor and burns ~2.1M gas in castVoteBySig; 287c9cc relayed
its ballots. Recognition (keyreg.gov.recognition) goes by deployed code instead.
"""

from __future__ import annotations

import pytest
from gov_attacker import deploy_attacker
from gov_fixture import DEPLOYER, MEMBERS, OUTSIDER, RELAYER, VOTING_DELAY, VOTING_PERIOD, GovChain
from web3 import Web3

from keyreg.chain.artifacts import load
from keyreg.chain.deploy import deploy_registry
from keyreg.core.hashing import address_of_private_key
from keyreg.gov.ballots import sign_ballot
from keyreg.gov.contracts import Governance, deploy_contract, deploy_dao
from keyreg.gov.errors import BallotRejected, GovernanceRefused
from keyreg.gov.indexer import GovernanceIndexer
from keyreg.gov.recognition import RecognisedDao, Recogniser
from keyreg.gov.relay import BallotRelay, RelayLimits
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def addr(key: bytes) -> str:
    return Web3.to_checksum_address(address_of_private_key(key))


def node_with_subjects(chain: GovChain, *governors: str) -> GovernanceIndexer:
    """A node's registry holding one subject per named governor, and its indexer, polled once."""
    registry = Registry(chain.domain, MemoryStore())
    for i, governor in enumerate(governors):
        _, signed = chain.subject(governor, f"svc-{i}")
        registry.ingest([signed])
    indexer = GovernanceIndexer(chain.w3, registry, Recogniser(chain.w3, chain.registry.address))
    indexer.poll()
    return indexer


def open_proposal(chain: GovChain, gov: Governance, subject_governor: str) -> int:
    subject, _ = chain.subject(subject_governor, "svc-p")
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-p", 1000, "x")
    chain.mine(VOTING_DELAY + 1)
    return pid


def test_attacker_governor_is_never_relayed(gov_chain: GovChain) -> None:
    w3 = gov_chain.w3
    attacker = deploy_attacker(w3, OUTSIDER, gov_chain.registry.address)
    indexer = node_with_subjects(gov_chain, attacker, gov_chain.dao.governor)
    assert indexer.dao(attacker) is None
    assert indexer.status()["unrecognised"] == 1
    assert indexer.dao(gov_chain.dao.governor) is not None
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao)
    balance = w3.eth.get_balance(addr(RELAYER))
    # nonce 1: what the attacker answers for nonces(), so 287c9cc's pre-checks all passed
    ballot = sign_ballot(MEMBERS[0], 31337, bytes.fromhex(attacker[2:]), "keyreg DAO", 5, 1, 1)
    with pytest.raises(BallotRejected) as info:
        relay.accept(ballot.encode(), "api", client="203.0.113.9")
    assert info.value.details["error"] == "UnknownGovernor"
    assert relay.counters["accepted"] == 0
    assert w3.eth.get_balance(addr(RELAYER)) == balance

    # Defence in depth: were recognition fooled, the gas cap still refuses before paying.
    fooled = RecognisedDao(governor=attacker, executor=attacker, token=attacker, name="keyreg DAO")
    relay = BallotRelay(w3, 31337, RELAYER, daos=lambda g: fooled if g == bytes.fromhex(attacker[2:]) else None)
    result = relay.relay_now(relay.accept(ballot.encode(), "api", client="203.0.113.9"))
    assert result.status == "refused"
    assert result.error is not None
    assert result.error["error"] == "GasCapExceeded"
    assert relay.counters["wei_spent"] == 0
    assert w3.eth.get_balance(addr(RELAYER)) == balance


def test_recognition_goes_by_code_registry_and_token(gov_chain: GovChain) -> None:
    w3, registry = gov_chain.w3, gov_chain.registry.address
    recogniser = Recogniser(w3, registry)
    plain = recogniser.recognise(gov_chain.dao.governor)
    assert plain is not None
    assert (plain.governor, plain.executor, plain.token) == (gov_chain.dao.governor,) * 2 + (gov_chain.dao.token,)
    members = [(addr(k), 1) for k in MEMBERS]
    timelocked = deploy_dao(w3, DEPLOYER, registry, members, name="tl", voting_period=VOTING_PERIOD, timelock_delay=5)
    assert timelocked.timelock is not None
    found = recogniser.recognise(timelocked.timelock)
    assert found is not None
    assert (found.governor, found.executor, found.name) == (timelocked.governor, timelocked.timelock, "tl")
    assert recogniser.recognise(timelocked.governor) is None  # named directly it could never execute

    attacker = deploy_attacker(w3, OUTSIDER, registry)
    assert recogniser.recognise(attacker) is None
    assert recogniser.recognise(addr(OUTSIDER)) is None  # no code at all
    # Our governor code, but for another registry, or counting a token that is not ours.
    other_registry = deploy_registry(w3).address
    elsewhere = deploy_dao(w3, DEPLOYER, other_registry, members, name="elsewhere", voting_period=VOTING_PERIOD)
    assert recogniser.recognise(elsewhere.governor) is None
    # Our governor over a token that is not ours (or not its own) cannot even be deployed.
    with pytest.raises(GovernanceRefused) as info:
        deploy_contract(w3, DEPLOYER, load("KeyregGovernor"), "fake", attacker, registry, 1, 10, 1, 67)
    assert info.value.details["error"] == "ForeignMembershipToken"


def test_relay_budgets_queue_and_gas_cap(gov_chain: GovChain) -> None:
    w3 = gov_chain.w3
    indexer = node_with_subjects(gov_chain, gov_chain.dao.governor)
    gov = Governance(w3, gov_chain.dao.governor)
    pid = open_proposal(gov_chain, gov, gov_chain.dao.governor)
    governor = bytes.fromhex(gov.address[2:])

    def ballot(key: bytes, proposal: int = pid):
        return sign_ballot(key, 31337, governor, "keyreg DAO", proposal, 1, gov.nonce(addr(key)))

    # Per client: two ballots an hour; the third from the same address is refused before recovery.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao, limits=RelayLimits(ballots_per_client_per_hour=2))
    relay.accept(ballot(MEMBERS[0]).encode(), "api", client="198.51.100.1")
    relay.accept(ballot(MEMBERS[1]).encode(), "api", client="198.51.100.1")
    with pytest.raises(BallotRejected) as info:
        relay.accept(ballot(MEMBERS[2]).encode(), "api", client="198.51.100.1")
    assert info.value.details["error"] == "OverBudget"
    relay.accept(ballot(MEMBERS[2]).encode(), "api", client="198.51.100.2")  # another client is fine

    # Per voter: one ballot an hour, whatever the proposal and the client.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao, limits=RelayLimits(ballots_per_voter_per_hour=1))
    relay.accept(ballot(MEMBERS[0]).encode(), "api", client="a")
    with pytest.raises(BallotRejected) as info:
        relay.accept(ballot(MEMBERS[0], pid + 1).encode(), "api", client="b")
    assert info.value.details["error"] == "OverBudget"

    # The queue: at most max_pending ballots wait.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao, limits=RelayLimits(max_pending=1))
    first = relay.accept(ballot(MEMBERS[0]).encode(), "api", client="a")
    with pytest.raises(BallotRejected) as info:
        relay.accept(ballot(MEMBERS[1]).encode(), "api", client="a")
    assert info.value.details["error"] == "Busy"

    # The gas cap: under what castVoteBySig needs, nothing is sent or paid.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao, limits=RelayLimits(gas_limit=30_000))
    balance = w3.eth.get_balance(addr(RELAYER))
    capped = relay.relay_now(relay.accept(ballot(MEMBERS[1]).encode(), "api", client="a"))
    assert capped.status == "refused"
    assert capped.error is not None
    assert capped.error["error"] == "GasCapExceeded"
    assert w3.eth.get_balance(addr(RELAYER)) == balance

    # Within the cap and the budgets: relayed, its cost counted.
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao)
    done = relay.relay_now(relay.accept(first.ballot.encode(), "api", client="a"))
    assert done.status == "relayed", done.error
    assert 21_000 < relay.counters["gas_used"] <= RelayLimits().gas_limit
    assert relay.counters["wei_spent"] == balance - w3.eth.get_balance(addr(RELAYER))
    assert gov.has_voted(pid, addr(MEMBERS[0]))

    # The governor's hourly relay budget: spent, the ballot is deferred (and may come again).
    relay = BallotRelay(w3, 31337, RELAYER, daos=indexer.dao, limits=RelayLimits(relays_per_governor_per_hour=0))
    deferred = relay.relay_now(relay.accept(ballot(MEMBERS[1]).encode(), "api", client="a"))
    assert deferred.status == "deferred"
    assert deferred.ballot not in relay.book
    assert not gov.has_voted(pid, addr(MEMBERS[1]))


def test_a_fault_in_one_ballot_is_that_ballots_failure(gov_chain: GovChain) -> None:
    """relay_now never raises: a fault (here a lookup that breaks after intake) is the ballot's
    'failed', with its cause; dedup forgets it so it can come again."""
    indexer = node_with_subjects(gov_chain, gov_chain.dao.governor)
    calls: list[bytes] = []

    def flaky(governor: bytes) -> RecognisedDao | None:
        calls.append(governor)
        if len(calls) > 1:
            raise RuntimeError("injected fault")
        return indexer.dao(governor)

    relay = BallotRelay(gov_chain.w3, 31337, RELAYER, daos=flaky)
    gov = Governance(gov_chain.w3, gov_chain.dao.governor)
    ballot = sign_ballot(MEMBERS[0], 31337, bytes.fromhex(gov.address[2:]), "keyreg DAO", 1, 1, 0)
    result = relay.relay_now(relay.accept(ballot.encode(), "api", client="a"))
    assert result.status == "failed"
    assert result.error == {"code": "internal", "message": "RuntimeError: injected fault"}
    assert ballot not in relay.book
    assert relay.status()["pending"] == 0
