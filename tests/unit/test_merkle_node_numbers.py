"""The Merkle tree's node-numbered hash cache against the (depth, prefix)-keyed cache it replaced."""

from __future__ import annotations

import random
from bisect import bisect_left, insort

import pytest

from keyreg.core.hashing import keccak
from keyreg.core.merkle import DEPTH, SparseMerkleTree, _node, leaf_hash
from keyreg.core.records import ZERO32


class ReferenceTree:
    """The previous cache: one entry per (depth, prefix), invalidated depth by depth."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._leaves: dict[int, bytes] = {}
        self._cache: dict[tuple[int, int], bytes] = {}
        self._max_cached_depth = 0

    def set(self, subject: bytes, seq: int, head: bytes) -> None:
        k = int.from_bytes(subject, "big")
        if k not in self._leaves:
            insort(self._keys, k)
        self._leaves[k] = leaf_hash(subject, seq, head)
        for depth in range(self._max_cached_depth + 1):
            self._cache.pop((depth, k >> (DEPTH - depth)), None)

    def node_hash(self, depth: int, prefix: int) -> bytes:
        cached = self._cache.get((depth, prefix))
        if cached is not None:
            return cached
        shift = DEPTH - depth
        lo, hi = bisect_left(self._keys, prefix << shift), bisect_left(self._keys, (prefix + 1) << shift)
        if lo == hi:
            h = ZERO32
        elif hi - lo == 1:
            h = self._leaves[self._keys[lo]]
        else:
            h = _node(self.node_hash(depth + 1, prefix << 1), self.node_hash(depth + 1, (prefix << 1) | 1))
        self._cache[(depth, prefix)] = h
        self._max_cached_depth = max(self._max_cached_depth, depth)
        return h


@pytest.mark.parametrize("seed", range(6))
def test_hashes_equal_the_reference_under_interleaved_reads_and_updates(seed: int) -> None:
    rng = random.Random(seed)
    tree, ref = SparseMerkleTree(), ReferenceTree()
    # Random ids, plus ids sharing long prefixes (deep nodes), plus the extremes of the key space.
    subjects = [keccak(bytes([seed, i])) for i in range(60)]
    subjects += [b"\xab" * 20 + keccak(bytes([i]))[:12] for i in range(8)]
    subjects += [b"\x00" * 32, b"\xff" * 32, b"\x00" * 31 + b"\x01"]
    for step in range(400):
        subject = rng.choice(subjects)
        tree.set(subject, step, keccak(step.to_bytes(4, "big")))
        ref.set(subject, step, keccak(step.to_bytes(4, "big")))
        for _ in range(3):
            depth = rng.choice([0, 1, 2, rng.randrange(0, 40), rng.randrange(0, DEPTH + 1)])
            probe = int.from_bytes(rng.choice(subjects), "big") >> (DEPTH - depth)
            assert tree.node_hash(depth, probe) == ref.node_hash(depth, probe)
        if step % 40 == 0:
            assert tree.root == ref.node_hash(0, 0)


def test_prefixes_outside_the_tree_are_empty_and_never_cached() -> None:
    tree = SparseMerkleTree()
    for i in range(20):
        tree.set(keccak(bytes([i])), 1, keccak(bytes([i, 1])))
    root = tree.root
    # (1, 2) would be node number 0b10 | 0b10 = 2, which is (1, 0)'s: it must not read or write that slot.
    for depth, prefix in [(1, 2), (1, 3), (0, 1), (5, 1 << 5), (3, -1), (8, -5), (DEPTH, 1 << DEPTH)]:
        assert tree.node_hash(depth, prefix) == ZERO32
        assert tree.count(depth, prefix) == 0
    assert tree.node_hash(1, 0) == _reference_of(tree).node_hash(1, 0)
    assert tree.root == root
    with pytest.raises(ValueError, match="negative shift count"):
        tree.node_hash(DEPTH + 1, 0)


def _reference_of(tree: SparseMerkleTree) -> ReferenceTree:
    ref = ReferenceTree()
    for k in tree._keys:
        seq, head = tree._heads[k]
        ref.set(k.to_bytes(32, "big"), seq, head)
    return ref
