"""The Merkle tree's cached subtree hashes stay correct under interleaved reads and updates."""

from __future__ import annotations

import random

from keyreg.core.hashing import keccak
from keyreg.core.merkle import DEPTH, SparseMerkleTree


def fresh(heads: dict[bytes, tuple[int, bytes]]) -> SparseMerkleTree:
    tree = SparseMerkleTree()
    for subject, (seq, head) in heads.items():
        tree.set(subject, seq, head)
    return tree


def test_cached_nodes_at_any_depth_are_invalidated_by_updates() -> None:
    rng = random.Random(7)
    tree = SparseMerkleTree()
    heads: dict[bytes, tuple[int, bytes]] = {}
    subjects = [keccak(i.to_bytes(4, "big")) for i in range(300)]
    for step in range(600):
        subject = rng.choice(subjects)
        heads[subject] = (step, keccak(b"h" + step.to_bytes(4, "big")))
        tree.set(subject, *heads[subject])
        # Read nodes deep along some path (as sync does), caching them without their parents.
        probe = int.from_bytes(rng.choice(subjects), "big")
        depth = rng.randrange(0, 40)
        tree.node_hash(depth, probe >> (DEPTH - depth))
        if step % 50 == 0:
            reference = fresh(heads)
            assert tree.root == reference.root
            for d in (1, 5, 9, 20):
                prefix = probe >> (DEPTH - d)
                assert tree.node_hash(d, prefix) == reference.node_hash(d, prefix)
    assert tree.root == fresh(heads).root
