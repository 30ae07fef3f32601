"""A compact sparse Merkle tree over subject heads, keyed by the 32-byte subject id.

One structure serves batch anchoring (the contract stores the root; inclusion proofs let a
verifier check a head offline) and peer sync (compare subtree hashes, descend where they differ).

Definition (docs/protocol.md section 8):
- leaf(subject, seq, head) = keccak256(0x00 || subject || uint256(seq) || head)
- the hash of a subtree is ZERO32 if it is empty, the leaf hash itself if it holds exactly one
  leaf (paths are compacted, so proofs have about log2(n) siblings), and otherwise
  keccak256(0x01 || hash(left) || hash(right)), where the left child holds keys whose next bit
  (most significant first) is 0.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass

from .hashing import keccak
from .records import ZERO32

DEPTH = 256


def leaf_hash(subject: bytes, seq: int, head: bytes) -> bytes:
    """The leaf of a subject head."""
    return keccak(b"\x00" + subject + seq.to_bytes(32, "big") + head)


def _node(left: bytes, right: bytes) -> bytes:
    return keccak(b"\x01" + left + right)


@dataclass(frozen=True, slots=True)
class Proof:
    """Inclusion proof: siblings from the root downward until the key's subtree holds only it."""

    siblings: tuple[bytes, ...]

    def to_hex(self) -> list[str]:
        return ["0x" + s.hex() for s in self.siblings]


def root_from_proof(key: bytes, leaf: bytes, proof: Proof) -> bytes:
    """The root implied by a leaf at ``key`` and its proof."""
    k = int.from_bytes(key, "big")
    node = leaf
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sib = proof.siblings[depth]
        node = _node(sib, node) if k >> DEPTH - 1 - depth & 1 else _node(node, sib)
    return node


def verify_proof(root: bytes, subject: bytes, seq: int, head: bytes, proof: Proof) -> bool:
    """True if (subject, seq, head) is in the tree with this root."""
    if len(proof.siblings) > DEPTH:
        return False
    return root_from_proof(subject, leaf_hash(subject, seq, head), proof) == root


class SparseMerkleTree:
    """Mutable tree with cached subtree hashes; updates invalidate only their path.

    Reads take coordinates from outside (a sync peer names any (depth, prefix)), so the cache is
    bound to the tree's own shape, not to what was asked. Invariant: every cached node is the root,
    a node holding at least two keys, or a child of one: exactly the nodes a root computation
    visits. That set depends on the keys alone (it only grows, since keys are never removed), so
    no sequence of reads can add an entry a root computation would not, nor cache a node deeper
    than one level below the deepest node holding two keys.
    """

    def __init__(self) -> None:
        self._keys: list[int] = []  # sorted
        self._leaves: dict[int, bytes] = {}
        self._heads: dict[int, tuple[int, bytes]] = {}
        # Subtree hashes by node number: (1 << depth) | prefix, as in a binary heap, so a node's parent
        # is its number >> 1 and its children number << 1 and number << 1 | 1; an update walks up its
        # path with one small-int shift per level (a (depth, prefix) tuple key cost a shift of the
        # 256-bit key, a tuple and its hash per level: ~0.45 us a level, ~11 us an update).
        self._cache: dict[int, bytes] = {}
        # Invariant: no cache entry is deeper than this, so an update invalidates only depths
        # 0..max (about log2(n) + a few for random subject ids) instead of all 257 levels.
        self._max_cached_depth = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def cached_nodes(self) -> int:
        """How many subtree hashes are cached (bounded by the tree's shape; see the class docstring)."""
        return len(self._cache)

    @property
    def cached_depth(self) -> int:
        """The depth of the deepest cached node (updates invalidate that many levels + 1)."""
        return self._max_cached_depth

    def set(self, subject: bytes, seq: int, head: bytes) -> None:
        """Insert or update a subject's head."""
        k = int.from_bytes(subject, "big")
        if k not in self._leaves:
            insort(self._keys, k)
        self._leaves[k] = leaf_hash(subject, seq, head)
        self._heads[k] = (seq, head)
        pop = self._cache.pop
        deepest = self._max_cached_depth
        node = 1 << deepest | k >> (DEPTH - deepest)  # the key's node at the deepest cached depth
        while node:  # it, then each ancestor up to the root (node 1)
            pop(node, None)
            node >>= 1

    def get(self, subject: bytes) -> tuple[int, bytes] | None:
        """(seq, head) of a subject, or None."""
        return self._heads.get(int.from_bytes(subject, "big"))

    def _range(self, depth: int, prefix: int) -> tuple[int, int]:
        shift = DEPTH - depth
        lo = bisect_left(self._keys, prefix << shift)
        hi = bisect_left(self._keys, (prefix + 1) << shift)
        return lo, hi

    def _hash(self, node: int, depth: int, prefix: int) -> bytes:
        """Hash of a node of the tree's shape (the root, or a child of a node with two keys or
        more), cached. Only the root and this recursion call it: that is the cache invariant."""
        cached = self._cache.get(node)
        if cached is not None:
            return cached
        lo, hi = self._range(depth, prefix)
        if lo == hi:
            h = ZERO32
        elif hi - lo == 1:
            h = self._leaves[self._keys[lo]]
        else:
            node <<= 1
            prefix <<= 1
            h = _node(self._hash(node, depth + 1, prefix), self._hash(node | 1, depth + 1, prefix | 1))
            node >>= 1
        self._cache[node] = h
        if depth > self._max_cached_depth:
            self._max_cached_depth = depth
        return h

    def lookup(self, depth: int, prefix: int) -> tuple[bytes, int]:
        """(hash, subject count) of the subtree of keys whose top ``depth`` bits equal ``prefix``.

        Any coordinates, at O(log n) for a subtree of at most one key (never cached) and O(1) for a
        cached larger one; a larger one not cached yet is hashed and cached as a root computation
        would. A prefix outside the tree (negative, or of more than ``depth`` bits) is an empty
        subtree; a depth past DEPTH is a ValueError.
        """
        if depth == 0 and prefix == 0:
            return self._hash(1, 0, 0), len(self._keys)
        lo, hi = self._range(depth, prefix)
        if hi - lo >= 2:  # the range is not empty, so the prefix fits in depth bits: a node of the tree
            return self._hash(1 << depth | prefix, depth, prefix), hi - lo
        return (ZERO32 if lo == hi else self._leaves[self._keys[lo]]), hi - lo

    def node_hash(self, depth: int, prefix: int) -> bytes:
        """Hash of the subtree of keys whose top ``depth`` bits equal ``prefix`` (see :meth:`lookup`)."""
        return self.lookup(depth, prefix)[0]

    def count(self, depth: int, prefix: int) -> int:
        """Number of subjects under a prefix."""
        lo, hi = self._range(depth, prefix)
        return hi - lo

    def subjects_under(self, depth: int, prefix: int) -> list[bytes]:
        """Subject ids under a prefix, ascending."""
        lo, hi = self._range(depth, prefix)
        return [k.to_bytes(32, "big") for k in self._keys[lo:hi]]

    def scan(
        self, ranges: Sequence[tuple[int, int]], after: int, limit: int
    ) -> tuple[list[tuple[bytes, int, bytes]], bool]:
        """Up to ``limit`` (subject, seq, head) with keys greater than ``after``, ascending, from
        key ranges [start, end) that are sorted and disjoint; and whether more remain.

        Each range starts from a bisect, so the work is O(len(ranges) * log n + limit) whatever
        ``after`` skips (the caller checks the ranges: they are not checked here).
        """
        keys, heads = self._keys, self._heads
        out: list[tuple[bytes, int, bytes]] = []
        for start, end in ranges:
            if end <= after + 1:
                continue
            i = bisect_left(keys, max(start, after + 1))
            stop = bisect_left(keys, end, i)
            take = min(stop - i, limit - len(out))
            for k in keys[i : i + take]:
                seq, head = heads[k]
                out.append((k.to_bytes(32, "big"), seq, head))
            if take < stop - i:
                return out, True
        return out, False

    @property
    def root(self) -> bytes:
        return self._hash(1, 0, 0)

    def prove(self, subject: bytes) -> Proof:
        """Inclusion proof for a subject in the tree (KeyError if absent)."""
        k = int.from_bytes(subject, "big")
        if k not in self._leaves:
            raise KeyError(subject.hex())
        siblings: list[bytes] = []
        depth = 0
        while self.count(depth, k >> (DEPTH - depth)) > 1:  # a node with two keys: its children are cacheable
            sibling = k >> (DEPTH - depth - 1) ^ 1
            siblings.append(self._hash(1 << (depth + 1) | sibling, depth + 1, sibling))
            depth += 1
        return Proof(tuple(siblings))
