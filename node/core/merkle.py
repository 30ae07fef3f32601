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
    """Mutable tree with cached subtree hashes; updates invalidate only their path."""

    def __init__(self) -> None:
        self._keys: list[int] = []  # sorted
        self._leaves: dict[int, bytes] = {}
        self._heads: dict[int, tuple[int, bytes]] = {}
        # Subtree hashes by node number: (1 << depth) | prefix, as in a binary heap, so a node's parent
        # is its number >> 1 and an update walks up its path with one small-int shift per level
        # (a (depth, prefix) tuple key cost a shift of the 256-bit key, a tuple and its hash per level:
        # ~0.45 us a level, ~11 us an update with the whole tree cached).
        self._cache: dict[int, bytes] = {}
        # Invariant: no cache entry is deeper than this, so an update invalidates only depths
        # 0..max (about log2(n) + a few for random subject ids) instead of all 257 levels.
        self._max_cached_depth = 0

    def __len__(self) -> int:
        return len(self._keys)

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

    def node_hash(self, depth: int, prefix: int) -> bytes:
        """Hash of the subtree of keys whose top ``depth`` bits equal ``prefix``."""
        # Only a node of the tree (prefix of depth bits) has a number, and a cache slot. Anything
        # else (sync checks requests, so no peer gets here) is computed, never cached: an empty
        # range (ZERO32), or the ValueError of a depth past DEPTH, as before.
        node = 1 << depth | prefix if depth >= 0 and 0 <= prefix < 1 << depth else 0
        if node:
            cached = self._cache.get(node)
            if cached is not None:
                return cached
        lo, hi = self._range(depth, prefix)
        if lo == hi:
            h = ZERO32
        elif hi - lo == 1:
            h = self._leaves[self._keys[lo]]
        else:
            h = _node(self.node_hash(depth + 1, prefix << 1), self.node_hash(depth + 1, (prefix << 1) | 1))
        if node:
            self._cache[node] = h
            if depth > self._max_cached_depth:
                self._max_cached_depth = depth
        return h

    def count(self, depth: int, prefix: int) -> int:
        """Number of subjects under a prefix."""
        lo, hi = self._range(depth, prefix)
        return hi - lo

    def subjects_under(self, depth: int, prefix: int) -> list[bytes]:
        """Subject ids under a prefix, ascending."""
        lo, hi = self._range(depth, prefix)
        return [k.to_bytes(32, "big") for k in self._keys[lo:hi]]

    @property
    def root(self) -> bytes:
        return self.node_hash(0, 0)

    def prove(self, subject: bytes) -> Proof:
        """Inclusion proof for a subject in the tree (KeyError if absent)."""
        k = int.from_bytes(subject, "big")
        if k not in self._leaves:
            raise KeyError(subject.hex())
        siblings: list[bytes] = []
        depth = 0
        while self.count(depth, k >> (DEPTH - depth)) > 1:
            prefix = k >> (DEPTH - depth - 1)
            siblings.append(self.node_hash(depth + 1, prefix ^ 1))
            depth += 1
        return Proof(tuple(siblings))
