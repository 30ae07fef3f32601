"""Issue 13 review C1 and M2: registry logs are decoded one at a time and bounded; a log that cannot
be decoded, or holds a value out of range, is skipped and recorded; the watcher goes on.

C1 (critical) at 43df08f: the registry takes any bytes as ``string keyId`` in revokeByGovernance,
and web3's ``process_log`` raised UnicodeDecodeError on a keyId that is not UTF-8. That failed the
whole eth_getLogs range, and the watcher retried the same range forever: one ~54k-gas transaction
(a subject naming the attacker's own EOA as governor) stopped every node's watcher for good.
M2: an RPC endpoint's ``HeadAnchored.seq = 2**64 - 1`` reached SQLite (OverflowError), forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_abi import encode as abi_encode
from node_chain import OTHER_KEY, RELAYER_KEY, Subject, deploy, domain_for, private_anvil
from rpc_servers import LogsEndpoint, block_hash
from web3 import Web3

from keyreg.chain.anchoring import direct_inputs
from keyreg.chain.batches import BatchTracker
from keyreg.chain.client import ChainClient
from keyreg.chain.deploy import AnvilProcess, connect
from keyreg.chain.watcher import MAX_BLOCK_FAILURES, Watcher
from keyreg.core.errors import ChainError
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from keyreg.store.sql import SqlStore

REVOKE = keccak(b"revokeByGovernance(bytes32,string,uint64,bytes32,uint256)")[:4]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with private_anvil() as a:
        yield a


def revoke_raw(w3: Web3, sender: str, registry: str, subject: bytes, key_id: bytes, effective_at: int, pid: int) -> Any:
    """revokeByGovernance with raw bytes as keyId (the ABI encoder of web3 only takes text)."""
    data = REVOKE + abi_encode(
        ["bytes32", "bytes", "uint64", "bytes32", "uint256"], [subject, key_id, effective_at, keccak(b"why"), pid]
    )
    tx = w3.eth.send_transaction({"from": sender, "to": registry, "data": "0x" + data.hex(), "gas": 200_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    assert receipt["status"] == 1
    return receipt


@pytest.mark.anvil
@pytest.mark.slow
def test_a_key_id_that_is_not_utf8_is_skipped_and_the_watcher_goes_on(
    anvil: AnvilProcess, caplog: pytest.LogCaptureFixture
) -> None:
    address = deploy(anvil)
    registry = Registry(domain_for(address), MemoryStore())
    client = ChainClient(anvil.url, address, relayer_key=RELAYER_KEY, timeout_s=5)
    start = int(anvil.rpc("eth_blockNumber"), 16)
    watcher = Watcher(client, registry, BatchTracker(registry), confirmations=0, start_block=start)
    w3 = connect(anvil.url)
    attacker = Web3.to_checksum_address(address_of_private_key(OTHER_KEY))  # anvil's account 1: unlocked
    now = int(time.time())
    own = Subject(domain_for(address))
    own.incept(41, now, governor=address_of_private_key(OTHER_KEY))  # a free subject naming the attacker's EOA
    honest = Subject(domain_for(address))
    honest.incept(42, now)
    registry.ingest(own.events + honest.events)

    async def main() -> None:
        tx = await client.anchor_events(direct_inputs(own.events, 0))
        await client.wait_receipt(tx, 0.02, 10)
        # the attack, exactly as the review ran it: keyId 0xfffe, ~54k gas
        attack = revoke_raw(w3, attacker, address, own.id, b"\xff\xfe", 1, 0)
        assert attack["gasUsed"] < 100_000
        # a well-formed revocation by the same governor, and an honest anchor, in later blocks
        revoke_raw(w3, attacker, address, own.id, b"k0", now + 60, 7)
        tx = await client.anchor_events(direct_inputs(honest.events, 0))
        receipt = await client.wait_receipt(tx, 0.02, 10)

        with caplog.at_level(logging.WARNING, logger="keyreg.chain.watcher"):
            await watcher.poll()  # 43df08f: ChainError(UnicodeDecodeError) here, on every poll
        status = watcher.status()
        assert status["confirmed"] >= receipt["blockNumber"]
        assert [(a.seq, a.digest) for a in registry.store.anchors(honest.id) if a.mode == "direct"] == [
            (0, honest.head)
        ]
        [g] = registry.governance(own.id)
        assert (g.key_id, g.effective_at, g.proposal_id) == ("k0", now + 60, 7)
        assert status["skipped_logs"] == 1
        [skip] = status["skipped"]
        assert skip["transactionHash"] == "0x" + bytes(attack["transactionHash"]).hex()
        assert "not a protocol key id" in skip["error"]
        assert any("skipped" in r.getMessage() and "key id" in r.getMessage() for r in caplog.records)
        await watcher.poll()  # later polls go on from where they were
        assert watcher.status()["skipped_logs"] == 1

    trio.run(main)


# ---------------------------------------------------------------------------------------------
# M2: values out of range from the RPC endpoint, into a real SQLite store

REGISTRY = "0x" + "22" * 20
SUBJECT = bytes.fromhex("ab" * 32)
HEAD_ANCHORED = "0x" + keccak(b"HeadAnchored(bytes32,uint64,bytes32,uint8)").hex()
BATCH_ANCHORED = "0x" + keccak(b"BatchAnchored(uint256,bytes32,uint32,address)").hex()
GOV_REVOKED = "0x" + keccak(b"GovernanceRevoked(bytes32,bytes32,string,uint64,bytes32,uint256,address)").hex()


def raw_log(topics: list[str], data: bytes, block: int | str, index: int | str = 0, **extra: Any) -> dict[str, Any]:
    return {
        "address": REGISTRY,
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockNumber": block if isinstance(block, str) else hex(block),
        "blockHash": "0x" + block_hash(block if isinstance(block, int) and block < 100 else 1).hex(),
        "transactionHash": "0x" + keccak(b"tx %r %r" % (block, index)).hex(),
        "transactionIndex": "0x0",
        "logIndex": index if isinstance(index, str) else hex(index),
        "removed": False,
        **extra,
    }


def anchored(seq: int, block: int | str = 1, index: int | str = 0, subject: bytes = SUBJECT) -> dict[str, Any]:
    data = abi_encode(["uint64", "bytes32", "uint8"], [seq, keccak(b"head %d" % seq), 0])
    return raw_log([HEAD_ANCHORED, "0x" + subject.hex()], data, block, index)


def revoked(key_id: bytes, effective_at: int = 5, key_hash: bytes | None = None, block: int = 2) -> dict[str, Any]:
    topics = [GOV_REVOKED, "0x" + SUBJECT.hex(), "0x" + (key_hash or keccak(key_id)).hex(), "0x" + "00" * 31 + "01"]
    data = abi_encode(["bytes", "uint64", "bytes32", "address"], [key_id, effective_at, keccak(b"r"), "0x" + "11" * 20])
    return raw_log(topics, data, block, 1)


HOSTILE = [
    anchored(2**64 - 1, block=1, index=0),  # the review's M2: a valid uint64 no SQL column holds
    anchored(2**63, block=1, index=1),  # one past the store's range
    anchored(3, block=hex(2**50), index=2),  # a block number no chain reaches
    anchored(4, block=2, index=hex(2**32)),  # a log index that breaks position = block * 10**6 + index
    anchored(5, block="0x", index=3),  # not a quantity
    anchored(6, block=2, index=4) | {"address": "0x" + "33" * 20},  # another contract
    anchored(7, block=2, index=5) | {"data": "0x" + "00" * 31},  # data cut short
    anchored(8, block=2, index=6) | {"topics": [HEAD_ANCHORED]},  # the indexed subject missing
    raw_log(  # well-formed: a root this node's tree never had (kept as unmatched, not skipped)
        [BATCH_ANCHORED, "0x" + "00" * 31 + "01", "0x" + "cd" * 32],
        abi_encode(["uint32", "address"], [1, "0x" + "11" * 20]),
        3,
        7,
    ),
    revoked(b"k1", key_hash=keccak(b"another")),  # keyIdHash that does not match keyId
    revoked(b"k" * 300),  # longer than any key id
    revoked(b"\xff\xfe"),  # the review's C1
]
GOOD = [
    anchored(0, block=4, index=0, subject=SUBJECT),
    revoked(b"k1", effective_at=2**64 - 1, block=4),  # in range (uint64), clamped by the store
]


def test_values_out_of_range_are_skipped_before_the_store(tmp_path: Path) -> None:
    endpoint = LogsEndpoint(HOSTILE + GOOD, head=6)
    try:
        store = SqlStore(f"sqlite:///{tmp_path / 'node.db'}")
        registry = Registry(domain_for(REGISTRY), store)
        client = ChainClient(endpoint.url, REGISTRY, timeout_s=5)
        watcher = Watcher(client, registry, BatchTracker(registry), confirmations=1, start_block=1, max_range=2)

        async def main() -> None:
            await watcher.poll()  # 43df08f: OverflowError from SQLite on every poll

        trio.run(main)
        status = watcher.status()
        assert status["confirmed"] == 5
        assert status["skipped_logs"] == len(HOSTILE) - 1  # the BatchAnchored is well-formed (an unknown root)
        assert status["batches_unmatched"] == 1
        errors = " | ".join(s["error"] for s in status["skipped"])
        for cause in ("seq", "blockNumber", "logIndex", "another address", "keyIdHash", "not a protocol key id"):
            assert cause in errors, cause
        assert [(a.seq, a.mode) for a in store.anchors(SUBJECT)] == [(0, "direct")]
        [g] = registry.governance(SUBJECT)
        assert g.effective_at == 2**64 - 1  # exact in memory; the store clamps only its index column
        reopened = Registry(domain_for(REGISTRY), SqlStore(f"sqlite:///{tmp_path / 'node.db'}"))
        assert [x.key_id for x in reopened.governance(SUBJECT)] == ["k1"]
    finally:
        endpoint.close()


def test_a_range_that_keeps_failing_is_split_then_skipped() -> None:
    """eth_getLogs failing for a reason other than an unreachable endpoint (here an error answer for
    any range holding block 3) is retried in halves down to one block, which is skipped and recorded
    after MAX_BLOCK_FAILURES tries: the same range is never retried forever."""

    class Failing(LogsEndpoint):
        def answer(self, method: str, params: list[Any]) -> Any:
            if method == "eth_getLogs" and int(params[0]["fromBlock"], 16) <= 3 <= int(params[0]["toBlock"], 16):
                raise LookupError(method)
            return super().answer(method, params)

    endpoint = Failing([anchored(0, block=5)], head=8)
    try:
        registry = Registry(domain_for(REGISTRY), MemoryStore())
        client = ChainClient(endpoint.url, REGISTRY, timeout_s=5)
        watcher = Watcher(client, registry, BatchTracker(registry), confirmations=0, start_block=1, max_range=8)

        failures: list[str] = []

        async def main() -> int:
            polls = 0
            while watcher.state.confirmed < 8:
                polls += 1
                assert polls <= 10 + MAX_BLOCK_FAILURES, watcher.status()
                try:
                    await watcher.poll()
                except ChainError as exc:  # what the chain service catches and backs off on
                    failures.append(exc.message)
            return polls

        trio.run(main)
        assert failures
        assert all("RPC error" in f for f in failures)
        status = watcher.status()
        assert status["skipped_blocks"] == 1
        assert status["skipped"][-1]["block"] == 3
        assert [a.seq for a in registry.store.anchors(SUBJECT)] == [0]  # block 5, after the skipped one
    finally:
        endpoint.close()
