"""Reads of the Merkle tree at coordinates chosen by an outsider (a sync peer) cost O(log n) and
leave the tree as it was: the hash cache holds only the nodes a root computation visits.

Issue 13 finding 5: 50 requests of 1,024 random (depth <= 256, prefix) nodes used to add 51,200
cache entries (+13.8 MB), and one depth-256 read made every later update walk 256 levels.
"""

from __future__ import annotations

import random
from typing import Any, SupportsIndex

from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.hashing import keccak
from keyreg.core.merkle import DEPTH, SparseMerkleTree
from keyreg.core.records import ZERO32


class CountingKeys(list[int]):
    """The tree's sorted key list, counting the keys read (a bisect step reads one; a slice, its length)."""

    visited = 0

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        got = super().__getitem__(index)
        self.visited += len(got) if isinstance(index, slice) else 1
        return got


def tree_of(subjects: list[bytes]) -> SparseMerkleTree:
    tree = SparseMerkleTree()
    for i, s in enumerate(subjects):
        tree.set(s, i % 7, keccak(s + bytes([i % 7])))
    return tree


def subjects(n: int, seed: int = 0) -> list[bytes]:
    return [keccak(b"hostile-%d-%d" % (seed, i)) for i in range(n)]


def hostile_nodes(rng: random.Random, keys: list[bytes], n: int) -> list[tuple[int, int]]:
    """Random nodes at every depth, half of them on the path of a real key (deep, one-key subtrees)."""
    out = []
    for _ in range(n):
        depth = rng.randrange(0, DEPTH + 1)
        if rng.random() < 0.5:
            out.append((depth, int.from_bytes(rng.choice(keys), "big") >> (DEPTH - depth)))
        else:
            out.append((depth, rng.getrandbits(depth) if depth else 0))
    return out


def test_hostile_node_reads_leave_the_cache_and_update_cost_unchanged() -> None:
    keys = subjects(5000)
    tree = tree_of(keys)
    root = tree.root
    cached, depth = tree.cached_nodes, tree.cached_depth
    assert depth < 40  # random ids: about log2(n) + a few
    rng = random.Random(5)
    for _ in range(50):  # the finding's 50 requests of 1,024 nodes
        for d, p in hostile_nodes(rng, keys, 1024):
            tree.lookup(d, p)
    for k in keys[:100]:  # depth-256 reads of real keys (the read that made updates 4.3x slower)
        assert tree.lookup(DEPTH, int.from_bytes(k, "big"))[1] == 1
    assert tree.cached_nodes == cached
    assert tree.cached_depth == depth
    assert tree.root == root


def test_reads_on_a_cold_cache_fill_only_what_a_root_computation_would() -> None:
    keys = subjects(3000, seed=1)
    tree = tree_of(keys)  # no root computed yet: nothing cached
    rng = random.Random(9)
    for d, p in hostile_nodes(rng, keys, 20_000):
        tree.lookup(d, p)
    reference = tree_of(keys)
    assert reference.root  # computes (and caches) the whole tree
    assert set(tree._cache) <= set(reference._cache)
    assert tree.cached_depth <= reference.cached_depth


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=6), min_size=0, max_size=40, unique=True),
    st.lists(st.tuples(st.integers(0, DEPTH), st.integers(0, 2**DEPTH - 1)), max_size=60),
    st.randoms(use_true_random=False),
)
def test_lookups_equal_a_fresh_tree_and_stay_within_its_shape(
    tails: list[bytes], reads: list[tuple[int, int]], rnd: random.Random
) -> None:
    # Ids sharing long prefixes (deep nodes of the tree's own shape), plus the extremes of the space.
    keys = [b"\xab" * 26 + t.rjust(6, b"\x00") for t in tails] + [b"\x00" * 32, b"\xff" * 32]
    tree = tree_of(keys)
    for i, (depth, prefix) in enumerate(reads):
        prefix >>= DEPTH - depth
        if i % 3 == 0 and keys:  # some reads along a real key's path
            prefix = int.from_bytes(rnd.choice(keys), "big") >> (DEPTH - depth)
        got = tree.lookup(depth, prefix)
        reference = tree_of(keys)
        assert got == (reference.node_hash(depth, prefix), reference.count(depth, prefix))
    full = tree_of(keys)
    assert full.root == tree.root  # computes (and caches) the whole tree
    assert set(tree._cache) <= set(full._cache)


def test_out_of_range_prefixes_are_empty() -> None:
    tree = tree_of(subjects(50))
    for depth, prefix in [(1, 2), (0, 1), (8, -5), (DEPTH, 1 << DEPTH)]:
        assert tree.lookup(depth, prefix) == (ZERO32, 0)


def disjoint_ranges(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """n sorted disjoint key ranges of random prefixes at depths 2..12."""
    out: list[tuple[int, int]] = []
    cursor = 0
    for _ in range(n):
        depth = rng.randrange(2, 13)
        span = 1 << (DEPTH - depth)
        start = -(-cursor // span) * span + span * rng.randrange(0, 3)
        if start + span > 1 << DEPTH:
            break
        out.append((start, start + span))
        cursor = start + span
    return out


def test_scan_matches_a_filter_of_all_keys() -> None:
    keys = subjects(4000, seed=2)
    tree = tree_of(keys)
    ints = sorted(int.from_bytes(k, "big") for k in keys)
    rng = random.Random(3)
    for _ in range(200):
        ranges = disjoint_ranges(rng, rng.randrange(1, 20))
        after = rng.choice([-1, rng.choice(ints), rng.getrandbits(DEPTH)])
        limit = rng.choice([1, 7, 100, 5000])
        expected = [k for k in ints if k > after and any(a <= k < b for a, b in ranges)]
        got, more = tree.scan(ranges, after, limit)
        assert [int.from_bytes(s, "big") for s, _, _ in got] == expected[:limit]
        assert more == (len(expected) > limit)
        for s, seq, head in got:
            assert tree.get(s) == (seq, head)


def test_scan_work_is_bisects_plus_the_page_whatever_after_skips() -> None:
    """256 prefixes over 50,000 subjects with ``after`` past them all: the old scan listed every
    subject of every prefix before filtering (4.39 s a request); this one reads bisect steps only."""
    tree = tree_of(subjects(50_000, seed=4))
    counting = CountingKeys(tree._keys)
    tree._keys = counting
    ranges = [(p << (DEPTH - 8), (p + 1) << (DEPTH - 8)) for p in range(256)]
    out, more = tree.scan(ranges, (1 << DEPTH) - 1, 4096)
    assert (out, more) == ([], False)
    assert counting.visited <= 256 * 2 * 17  # two bisects of <= log2(50,000) + 1 steps per range
    counting.visited = 0
    out, more = tree.scan(ranges, -1, 4096)
    assert len(out) == 4096
    assert more
    assert counting.visited <= 4096 + 256 * 2 * 17
