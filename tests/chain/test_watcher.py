"""The chain watcher against a real anvil: confirmations, reorgs (evm_snapshot/evm_revert), the
persisted cursor, batch roots mapped to heads, and governance revocations."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from node_chain import RELAYER_KEY, Subject, deploy, domain_for, node_registry, private_anvil

from keyreg.chain.anchoring import direct_inputs
from keyreg.chain.batches import BatchTracker
from keyreg.chain.client import ChainClient
from keyreg.chain.deploy import AnvilProcess
from keyreg.chain.watcher import Watcher
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.registry import Registry

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with private_anvil() as a:
        yield a


class Rig:
    """A deployed contract, a node registry, a tracker and a watcher on one anvil."""

    def __init__(self, anvil: AnvilProcess, confirmations: int, state_path: Path | None = None) -> None:
        self.anvil = anvil
        self.address = deploy(anvil)
        self.registry: Registry = node_registry(self.address)
        self.client = ChainClient(anvil.url, self.address, relayer_key=RELAYER_KEY, timeout_s=5)
        self.tracker = BatchTracker(self.registry)
        self.tracker.attach()
        start = int(anvil.rpc("eth_blockNumber"), 16)
        self.watcher = Watcher(
            self.client,
            self.registry,
            self.tracker,
            confirmations=confirmations,
            start_block=start,
            state_path=state_path,
        )
        self.now = int(time.time())

    def subject(self, seed: int, governor: bytes | None = None) -> Subject:
        s = Subject(domain_for(self.address))
        if governor is None:
            s.incept(seed, self.now)
        else:
            s.incept(seed, self.now, governor=governor)
        return s

    async def relay(self, events: list, start: int = 0) -> None:  # type: ignore[type-arg]
        tx = await self.client.anchor_events(direct_inputs(events, start))
        await self.client.wait_receipt(tx, 0.02, 10)

    def mine(self, n: int = 1) -> None:
        self.anvil.rpc("anvil_mine", hex(n))

    def direct(self, subject: bytes) -> list[tuple[int, bytes]]:
        return [(a.seq, a.digest) for a in self.registry.store.anchors(subject) if a.mode == "direct"]


def test_confirmations_hold_back_fresh_anchors(anvil: AnvilProcess) -> None:
    rig = Rig(anvil, confirmations=2)
    s = rig.subject(10)

    async def main() -> None:
        await rig.relay(s.events)
        await rig.watcher.poll()
        assert rig.direct(s.id) == []  # 0 confirmations so far
        assert len(rig.watcher.pending) == 1
        rig.mine(2)
        await rig.watcher.poll()
        assert rig.direct(s.id) == [(0, s.id)]
        assert rig.watcher.pending == []
        assert rig.registry.anchored_position(s.id) is not None

    trio.run(main)


def test_reorg_drops_an_unconfirmed_anchor(anvil: AnvilProcess) -> None:
    rig = Rig(anvil, confirmations=2)
    kept, dropped = rig.subject(11), rig.subject(12)

    async def main() -> None:
        await rig.relay(kept.events)
        rig.mine(2)
        await rig.watcher.poll()
        assert rig.direct(kept.id) == [(0, kept.id)]
        snapshot = anvil.rpc("evm_snapshot")
        await rig.relay(dropped.events)  # block N: seen, not yet confirmed
        await rig.watcher.poll()
        assert [lg.args["subject"] for lg in rig.watcher.pending] == [dropped.id]
        # the chain reorganises: block N is replaced by a block without that anchor
        assert anvil.rpc("evm_revert", snapshot) is True
        rig.client.reset_nonce()  # the reverted chain forgot our transaction (the service does this itself)
        tx = await rig.client.anchor_batch(keccak(b"other branch"), 1)
        await rig.client.wait_receipt(tx, 0.02, 10)
        rig.mine(3)
        await rig.watcher.poll()
        assert rig.watcher.state.reorgs == 1
        assert rig.watcher.state.deep_reorgs == 0
        assert rig.direct(dropped.id) == []  # never fed
        assert rig.watcher.status()["batches_seen"] == 1  # the replacement branch is indexed
        assert rig.direct(kept.id) == [(0, kept.id)]

    trio.run(main)


def test_reorg_below_confirmations_is_reindexed_and_reported(anvil: AnvilProcess) -> None:
    rig = Rig(anvil, confirmations=0)
    first, second = rig.subject(13), rig.subject(14)

    async def main() -> None:
        snapshot = anvil.rpc("evm_snapshot")
        await rig.relay(first.events)
        await rig.watcher.poll()
        assert rig.direct(first.id) == [(0, first.id)]  # fed at once (0 confirmations)
        assert anvil.rpc("evm_revert", snapshot) is True
        rig.client.reset_nonce()
        await rig.relay(second.events)  # same height, another block
        await rig.watcher.poll()
        assert rig.watcher.state.reorgs == 1
        assert rig.watcher.state.deep_reorgs == 1
        assert rig.direct(second.id) == [(0, second.id)]

    trio.run(main)


def test_chain_shorter_than_scanned(anvil: AnvilProcess) -> None:
    """An RPC node restarted from an older state: the blocks we scanned are gone."""
    rig = Rig(anvil, confirmations=1)
    s = rig.subject(15)

    async def main() -> None:
        snapshot = anvil.rpc("evm_snapshot")
        rig.mine(5)
        await rig.watcher.poll()
        top = rig.watcher.state.scanned
        assert anvil.rpc("evm_revert", snapshot) is True
        rig.client.reset_nonce()
        await rig.watcher.poll()
        assert rig.watcher.state.scanned < top
        await rig.relay(s.events)
        rig.mine(1)
        await rig.watcher.poll()
        assert rig.direct(s.id) == [(0, s.id)]

    trio.run(main)


def test_cursor_persists_across_restarts(anvil: AnvilProcess, tmp_path: Path) -> None:
    path = tmp_path / "watcher.json"
    rig = Rig(anvil, confirmations=0, state_path=path)
    s = rig.subject(16)

    async def main() -> None:
        await rig.relay(s.events)
        await rig.watcher.poll()
        confirmed = rig.watcher.state.confirmed
        assert path.exists()
        again = Watcher(rig.client, rig.registry, rig.tracker, confirmations=0, state_path=path)
        assert again.state.confirmed == confirmed
        await again.poll()
        assert rig.direct(s.id) == [(0, s.id)]  # not fed twice

    trio.run(main)
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_batch_root_maps_to_heads_on_every_node_in_sync(anvil: AnvilProcess) -> None:
    """Node A anchors its tree root; node B holds the same heads, so B maps the root too."""
    rig = Rig(anvil, confirmations=0)
    s = rig.subject(17)
    s.update(rig.now, "k1")
    rig.registry.ingest(s.events)
    other = node_registry(rig.address)
    other_tracker = BatchTracker(other)
    other_tracker.attach()
    other_watcher = Watcher(rig.client, other, other_tracker, confirmations=0, start_block=rig.watcher.start_block)

    async def main() -> None:
        root, count = rig.tracker.latest()
        assert count == 1
        tx = await rig.client.anchor_batch(root, count)
        await rig.client.wait_receipt(tx, 0.02, 10)
        await rig.watcher.poll()
        mine = [(a.seq, a.digest, a.mode) for a in rig.registry.store.anchors(s.id)]
        assert mine == [(1, s.head, "batch")]
        # B did not have the events yet: the root stays unmatched, then matches once they arrive
        await other_watcher.poll()
        assert other.store.anchors(s.id) == []
        assert other_watcher.status()["batches_unmatched"] == 1
        other.ingest(s.events, source="gossip")
        await other_watcher.poll()
        assert [(a.seq, a.digest, a.mode) for a in other.store.anchors(s.id)] == [(1, s.head, "batch")]
        assert rig.tracker.pending() == 0

    trio.run(main)


def test_governance_revocation_reaches_the_registry(anvil: AnvilProcess) -> None:
    rig = Rig(anvil, confirmations=0)
    governor = address_of_private_key(RELAYER_KEY)  # an EOA stands in for the Governor contract
    s = rig.subject(18, governor=governor)
    rig.registry.ingest(s.events)

    async def main() -> None:
        await rig.relay(s.events)
        tx = await rig.client.send("revokeByGovernance", [s.id, "k0", rig.now + 60, keccak(b"abuse"), 42])
        await rig.client.wait_receipt(tx, 0.02, 10)
        await rig.watcher.poll()
        [g] = rig.registry.governance(s.id)
        assert (g.key_id, g.effective_at, g.proposal_id, g.governor) == ("k0", rig.now + 60, 42, governor)
        await rig.watcher.poll()
        assert len(rig.registry.governance(s.id)) == 1

    trio.run(main)
