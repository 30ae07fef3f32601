"""Issue 13 finding 2 on a real anvil: governor logs are decoded defensively, one at a time; a log
that does not decode is skipped and recorded, and indexing goes on.

287c9cc's indexer let eth_abi's DecodingError (a revocation calldata with a string offset into
the head) and UnicodeDecodeError (a description that is not UTF-8: any member of any DAO can
propose one) escape the poll, which cancelled the node and crashed it again on every rescan.
"""

from __future__ import annotations

import pytest
import trio
from eth_abi import encode as abi_encode
from gov_attacker import deploy_attacker, emit_log
from gov_fixture import MEMBERS, OUTSIDER, VOTING_DELAY, GovChain
from web3 import Web3

from keyreg.config import ChainConfig, Config, NetworkConfig
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.gov import indexer as indexer_module
from keyreg.gov.contracts import Governance, revocation_calldata
from keyreg.gov.indexer import GovernanceIndexer, IndexerLimits
from keyreg.gov.recognition import RecognisedDao, Recogniser
from keyreg.gov.service import GovService
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

_CREATED = ["uint256", "address", "address[]", "uint256[]", "string[]", "bytes[]", "uint256", "uint256", "string"]


def word(v: int) -> bytes:
    return v.to_bytes(32, "big")


class TrustingRecogniser(Recogniser):
    """Recognition is not under test here: this double also 'recognises' one hostile contract, so
    its logs reach the decoder (the real Recogniser keeps them out; test_relay_hardening.py)."""

    def __init__(self, w3: Web3, registry: str, trusted: str) -> None:
        super().__init__(w3, registry)
        self.trusted = trusted

    def recognise(self, named: str) -> RecognisedDao | None:
        if named.lower() == self.trusted.lower():
            return RecognisedDao(governor=self.trusted, executor=self.trusted, token=self.trusted, name="x")
        return super().recognise(named)


def indexer_for(chain: GovChain, recogniser: Recogniser, *governors: str) -> GovernanceIndexer:
    registry = Registry(chain.domain, MemoryStore())
    for i, governor in enumerate(governors):
        _, signed = chain.subject(governor, f"svc-{i}")
        registry.ingest([signed])
    return GovernanceIndexer(chain.w3, registry, recogniser)


def test_undecodable_logs_are_skipped_and_indexing_goes_on(gov_chain: GovChain) -> None:
    w3 = gov_chain.w3
    attacker = deploy_attacker(w3, OUTSIDER, gov_chain.registry.address)
    recogniser = TrustingRecogniser(w3, gov_chain.registry.address, attacker)
    indexer = indexer_for(gov_chain, recogniser, attacker, gov_chain.dao.governor)
    subject = b"\x42" * 32
    overlapping = revocation_calldata(subject, "k", 5, b"\x00" * 32)
    overlapping = overlapping[:36] + word(0x60) + overlapping[68:]  # keyId's offset points into the head
    registry = gov_chain.registry.address
    well_formed = abi_encode(_CREATED, [7, attacker, [registry], [0], [""], [overlapping], 1, 2, "looks fine"])
    broken = well_formed[: 8 * 32] + word(2**200) + well_formed[9 * 32 :]  # description offset past the end
    emit_log(w3, OUTSIDER, attacker, broken)
    emit_log(w3, OUTSIDER, attacker, well_formed)
    emit_log(w3, OUTSIDER, attacker, b"\x00" * 5)  # not even one word
    # ... and an honest proposal of a real DAO, after the hostile logs
    gov = Governance(w3, gov_chain.dao.governor)
    honest_subject, _ = gov_chain.subject(gov_chain.dao.governor, "svc-h")
    pid, _ = gov.propose_revocation(MEMBERS[0], honest_subject, "svc-h", 99, "honest")

    indexer.poll()  # 287c9cc: DecodingError out of poll (the service, then the node, stopped)
    status = indexer.status()
    assert status["skippedLogs"] == 2
    assert all(s["governor"].lower() == attacker.lower() and "UndecodableLog" in s["error"] for s in status["skipped"])
    shown = indexer.get(7, attacker)
    assert shown is not None
    assert shown["actions"] == 1
    assert shown["revocations"] == []
    honest = indexer.get(pid, gov.address)
    assert honest is not None
    assert honest["revocations"][0]["keyId"] == "svc-h"
    indexer.poll()  # later polls go on from where they were
    assert indexer.status()["skippedLogs"] == 2


def test_description_that_is_not_utf8_is_indexed(gov_chain: GovChain) -> None:
    """A real DAO, a real member, a real proposal whose description bytes are not UTF-8."""
    w3 = gov_chain.w3
    indexer = indexer_for(gov_chain, Recogniser(w3, gov_chain.registry.address), gov_chain.dao.governor)
    gov = Governance(w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor, "svc-u")
    calldata = revocation_calldata(subject, "svc-u", 77, b"\x00" * 32)
    description = b"revoke svc-u \xff\xfe" + b"x" * 20_000  # invalid UTF-8, and longer than shown
    selector = keccak(b"propose(address[],uint256[],bytes[],string)")[:4]
    args = abi_encode(["address[]", "uint256[]", "bytes[]", "bytes"],
                      [[gov_chain.registry.address], [0], [calldata], description])  # fmt: skip
    member = w3.eth.account.from_key(MEMBERS[0])
    tx = {"from": member.address, "to": gov.address, "data": selector + args, "gas": 2_000_000, "chainId": 31337,
          "nonce": w3.eth.get_transaction_count(member.address), "maxFeePerGas": 10**10,
          "maxPriorityFeePerGas": 10**9}  # fmt: skip
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(member.sign_transaction(tx).raw_transaction), timeout=10
    )
    assert receipt["status"] == 1
    gov_chain.mine(VOTING_DELAY + 1)

    indexer.poll()  # 287c9cc: UnicodeDecodeError out of poll
    (p,) = indexer.list()
    assert p["description"].startswith("revoke svc-u \ufffd")
    assert p["descriptionTruncated"] is True
    assert len(p["description"].encode()) <= 4 * 1024 + 8
    assert p["revocations"][0]["keyId"] == "svc-u"
    assert p["state"] == "Active"
    assert indexer.status()["skippedLogs"] == 0
    # The CLI's queue/execute still gets the exact description bytes (the proposal id hashes them).
    (actions,) = gov.proposals()
    assert actions.description == description
    assert actions.proposal_id == int(p["proposalId"])
    assert Web3.to_checksum_address(address_of_private_key(MEMBERS[0])) == actions.proposer


def test_named_addresses_come_from_new_inceptions_and_are_capped(gov_chain: GovChain) -> None:
    """Governors named by subjects that arrive later are picked up from the registry's listener (no walk
    of every subject per poll); beyond max_named, new names are counted, not tracked."""
    w3 = gov_chain.w3
    registry = Registry(gov_chain.domain, MemoryStore())
    indexer = GovernanceIndexer(
        w3, registry, Recogniser(w3, gov_chain.registry.address), limits=IndexerLimits(max_named=2)
    )
    indexer.poll()
    assert indexer.status()["named"] == 0
    for i, governor in enumerate((gov_chain.dao.governor, gov_chain.other_dao.governor, "0x" + "77" * 20)):
        _, signed = gov_chain.subject(governor, f"svc-n{i}")
        registry.ingest([signed])
    indexer.poll()
    status = indexer.status()
    assert status["named"] == 2
    assert status["namedDropped"] == 1
    assert {g.lower() for g in status["governors"]} == {gov_chain.dao.governor.lower(),
                                                        gov_chain.other_dao.governor.lower()}  # fmt: skip
    indexer.close()
    assert indexer._on_report not in registry.listeners


def test_a_fault_in_a_poll_is_caught_logged_and_retried(gov_chain: GovChain, caplog: pytest.LogCaptureFixture) -> None:
    """Rule 4: a poll failing with something other than a KeyregError (a bug, an odd answer) is
    logged with its cause, counted and shown in the status, and the next poll runs."""
    config = Config(
        network=NetworkConfig(registry=gov_chain.registry.address),
        chain=ChainConfig(rpc_url=gov_chain.anvil.url, poll_interval_s=0.01, retry_max_s=0.05),
    )
    service = GovService(Registry(gov_chain.domain, MemoryStore()), config, None)
    real_poll, calls = service.indexer.poll, []

    def faulty_poll() -> int:  # fault injection: the first poll hits a bug
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("injected")
        return real_poll()

    service.indexer.poll = faulty_poll  # type: ignore[method-assign]

    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(service.index_forever)
                while service.last_ok_at is None:
                    await trio.sleep(0.01)  # a condition with a deadline (fail_after)
                nursery.cancel_scope.cancel()

    trio.run(main)
    status = service.status()
    assert status["faults"] == 1
    assert status["ok"] is True  # recovered
    assert any("governance indexer fault" in r.message and r.exc_info for r in caplog.records)
    service.indexer.close()


def test_vote_rows_are_capped_and_tallies_stay_complete(gov_chain: GovChain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer_module, "MAX_VOTE_RECORDS", 1)
    w3 = gov_chain.w3
    indexer = indexer_for(gov_chain, Recogniser(w3, gov_chain.registry.address), gov_chain.dao.governor)
    gov = Governance(w3, gov_chain.dao.governor)
    subject, _ = gov_chain.subject(gov_chain.dao.governor, "svc-v")
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-v", 5, "x")
    gov_chain.mine(VOTING_DELAY + 1)
    gov.cast_vote(MEMBERS[0], pid, 1, "r" * 1000)
    gov.cast_vote(MEMBERS[1], pid, 0)
    indexer.poll()
    p = indexer.get(pid)
    assert p is not None
    assert p["votes"] == {"for": 1, "against": 1, "abstain": 0}  # from the governor's views
    (row,) = p["voters"]
    assert len(row["reason"]) == 256
    assert indexer.status()["votesNotListed"] == 1
    indexer.close()


def test_history_of_new_daos_is_read_within_a_block_budget(gov_chain: GovChain) -> None:
    """A newly recognised DAO's history is read at most catchup_blocks_per_poll blocks per poll;
    proposals show up once it has been read, and the DAO then moves on with the others."""
    w3 = gov_chain.w3
    gov = Governance(w3, gov_chain.dao.governor)
    subject, signed = gov_chain.subject(gov_chain.dao.governor, "svc-c")
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, "svc-c", 5, "x")
    head = w3.eth.block_number
    budget = head // 3 + 1
    registry = Registry(gov_chain.domain, MemoryStore())
    registry.ingest([signed])
    limits = IndexerLimits(catchup_blocks_per_poll=budget)
    indexer = GovernanceIndexer(w3, registry, Recogniser(w3, gov_chain.registry.address), limits=limits)
    polls = 0
    while indexer.get(pid) is None:
        assert indexer.poll() >= 0
        polls += 1
        assert polls <= 4, indexer.status()
    assert polls >= 2  # not all at once
    while indexer.status()["catchingUp"]:
        indexer.poll()
    gov_chain.mine(VOTING_DELAY + 1)
    gov.cast_vote(MEMBERS[1], pid, 1)
    indexer.poll()
    got = indexer.get(pid)
    assert got is not None
    assert [v["voter"] for v in got["voters"]] == [Web3.to_checksum_address(address_of_private_key(MEMBERS[1]))]
    indexer.close()
