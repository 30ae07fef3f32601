"""Merkle-Patricia-trie proofs (Ethereum's state and storage tries), verified against a root.

Proofs come as a *pool* of trie nodes (the union of the nodes of every ``eth_getProof`` path a
bundle needs, each node once). A lookup walks from the root hash downward, fetching each child
by its keccak from the pool, so a tampered node is simply not found under the hash its parent
commits to. Both inclusion and exclusion (the key is absent: value 0) are proven by the walk.

Keys are "secure" (hashed): the path of an account is keccak(address), of a storage slot
keccak(slot as 32 bytes). :func:`build_trie` is the matching writer, shipped for tests and
benchmarks that need a state without a chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..core.hashing import keccak
from . import rlp
from .rlp import Item

EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))
EMPTY_CODE_HASH = keccak(b"")


class ProofError(ValueError):
    """A trie proof does not check out against its root (missing, malformed or inconsistent node)."""


_NIBBLE_TABLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))


def _nibbles(key: bytes) -> bytes:
    """One byte per 4-bit nibble, most significant first."""
    return key.hex().encode().translate(_NIBBLE_TABLE)


def _hex_prefix_decode(path: bytes) -> tuple[bytes, bool]:
    """Decode a compact (hex-prefix) path: (nibbles, is_leaf)."""
    if not path:
        raise ProofError("empty compact path in a trie node")
    flag = path[0] >> 4
    if flag > 3:
        raise ProofError(f"bad compact path flag {flag}")
    nib = _nibbles(path)
    if flag & 1:
        return nib[1:], flag >= 2
    if nib[1] != 0:
        raise ProofError("even compact path with a non-zero padding nibble")
    return nib[2:], flag >= 2


class NodePool:
    """Trie nodes by hash; records which ones were used so unused (stray) nodes can be refused."""

    def __init__(self, nodes: Iterable[bytes]) -> None:
        self._raw: dict[bytes, bytes] = {}
        for n in nodes:
            self._raw[keccak(n)] = n
        self._decoded: dict[bytes, list[Item]] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def node(self, ref: bytes) -> list[Item]:
        """The decoded node whose keccak is ``ref``."""
        hit = self._decoded.get(ref)
        if hit is not None:
            return hit
        raw = self._raw.get(ref)
        if raw is None:
            raise ProofError(f"proof node 0x{ref.hex()} is missing (tampered or incomplete proof)")
        try:
            item = rlp.decode(raw)
        except rlp.RLPError as exc:
            raise ProofError(f"proof node 0x{ref.hex()} is not canonical RLP: {exc}") from None
        if not isinstance(item, list) or len(item) not in (2, 17):
            raise ProofError(f"proof node 0x{ref.hex()} is neither a branch nor a leaf/extension")
        self._decoded[ref] = item
        return item

    def unused(self) -> list[bytes]:
        """Hashes of nodes no lookup has touched."""
        return [h for h in self._raw if h not in self._decoded]


def lookup(pool: NodePool, root: bytes, key: bytes) -> bytes | None:
    """The value stored under ``key`` (already hashed, 32 bytes) in the trie ``root``; None if absent."""
    if root == EMPTY_TRIE_ROOT:
        return None
    path = _nibbles(key)
    pos = 0
    ref: Item = root
    depth = 0
    while True:
        depth += 1
        if depth > 70:
            raise ProofError("trie path is deeper than any 32-byte key allows")
        if isinstance(ref, list):
            node = ref  # an embedded node (its RLP is under 32 bytes)
            if len(node) not in (2, 17):
                raise ProofError("embedded trie node is neither a branch nor a leaf/extension")
        elif len(ref) == 32:
            node = pool.node(ref)
        elif ref == b"":
            return None
        else:
            raise ProofError(f"child reference of {len(ref)} bytes is neither a hash nor an embedded node")
        if len(node) == 17:
            if pos == len(path):
                v = node[16]
                if not isinstance(v, bytes):
                    raise ProofError("branch value is not a byte string")
                return v or None
            ref = node[path[pos]]
            pos += 1
            continue
        compact = node[0]
        if not isinstance(compact, bytes):
            raise ProofError("leaf/extension path is not a byte string")
        sub, is_leaf = _hex_prefix_decode(compact)
        if is_leaf:
            if path[pos:] != sub:
                return None
            v = node[1]
            if not isinstance(v, bytes) or not v:
                raise ProofError("leaf value is not a non-empty byte string")
            return v
        if not sub:
            raise ProofError("extension node with an empty path")
        if path[pos : pos + len(sub)] != sub:
            return None
        pos += len(sub)
        ref = node[1]


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the state trie holds it."""

    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes


def account_at(pool: NodePool, state_root: bytes, address: bytes) -> Account | None:
    """The proven account at ``address`` in the state ``state_root`` (None: the account does not exist)."""
    raw = lookup(pool, state_root, keccak(address))
    if raw is None:
        return None
    try:
        item = rlp.decode(raw)
        if not isinstance(item, list) or len(item) != 4:
            raise ProofError("account is not a 4-item list")
        nonce, balance, storage_root, code_hash = item
        if not (isinstance(storage_root, bytes) and len(storage_root) == 32):
            raise ProofError("account storage root is not 32 bytes")
        if not (isinstance(code_hash, bytes) and len(code_hash) == 32):
            raise ProofError("account code hash is not 32 bytes")
        return Account(rlp.decode_uint(nonce), rlp.decode_uint(balance), storage_root, code_hash)
    except rlp.RLPError as exc:
        raise ProofError(f"account record is not canonical RLP: {exc}") from None


def storage_at(pool: NodePool, storage_root: bytes, slot: int) -> int:
    """The proven value of a storage slot (0 when absent)."""
    raw = lookup(pool, storage_root, keccak(slot.to_bytes(32, "big")))
    if raw is None:
        return 0
    try:
        value = rlp.decode_uint(rlp.decode(raw), "storage value")
    except rlp.RLPError as exc:
        raise ProofError(f"storage value is not canonical RLP: {exc}") from None
    if value == 0:
        raise ProofError("a zero storage value is never stored in the trie")
    return value


# ---------------------------------------------------------------------------------------------
# The writer: build a secure trie and its nodes (tests, benchmarks, simulated chains).


def _hex_prefix(nib: bytes, leaf: bool) -> bytes:
    flag = 2 if leaf else 0
    nib = bytes((flag + 1,)) + nib if len(nib) % 2 else bytes((flag, 0)) + nib
    return bytes(nib[i] << 4 | nib[i + 1] for i in range(0, len(nib), 2))


def _build(pairs: list[tuple[bytes, bytes]], depth: int, nodes: dict[bytes, bytes]) -> Item:
    if len(pairs) == 1:
        nib, value = pairs[0]
        return [_hex_prefix(nib[depth:], True), value]
    # longest common prefix from depth
    first, last = pairs[0][0], pairs[-1][0]  # pairs are sorted, so these bound the prefix
    common = 0
    while depth + common < len(first) and first[depth + common] == last[depth + common]:
        common += 1
    if common:
        child = _build(pairs, depth + common, nodes)
        return [_hex_prefix(first[depth : depth + common], False), _ref(child, nodes)]
    branch: list[Item] = [b""] * 17
    for n in range(16):
        group = [p for p in pairs if p[0][depth] == n]
        if group:
            branch[n] = _ref(_build(group, depth + 1, nodes), nodes)
    return branch


def _ref(node: Item, nodes: dict[bytes, bytes]) -> Item:
    enc = rlp.encode(node)
    if len(enc) < 32:
        return node
    h = keccak(enc)
    nodes[h] = enc
    return h


def build_trie(items: Mapping[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Build a trie of {hashed key: value}; returns (root, every hashed node by hash)."""
    nodes: dict[bytes, bytes] = {}
    if not items:
        return EMPTY_TRIE_ROOT, nodes
    pairs = sorted((_nibbles(k), v) for k, v in items.items())
    enc = rlp.encode(_build(pairs, 0, nodes))
    root = keccak(enc)
    nodes[root] = enc
    return root, nodes


def proof_nodes(nodes: Mapping[bytes, bytes], root: bytes, key: bytes, pool: NodePool | None = None) -> list[bytes]:
    """The hashed nodes on the path of ``key`` from ``root`` (what eth_getProof would return).

    Pass a ``pool`` of the same nodes when proving many keys, so the nodes are hashed once.
    """
    out: list[bytes] = []
    pool = pool or NodePool(nodes.values())
    path = _nibbles(key)
    pos = 0
    ref: Item = root
    while isinstance(ref, list) or len(ref) == 32:
        if isinstance(ref, list):
            node = ref
        else:
            if ref not in nodes:
                break
            out.append(nodes[ref])
            node = pool.node(ref)
        if len(node) == 17:
            if pos == len(path):
                break
            ref = node[path[pos]]
            pos += 1
            continue
        assert isinstance(node[0], bytes)
        sub, is_leaf = _hex_prefix_decode(node[0])
        if is_leaf or path[pos : pos + len(sub)] != sub:
            break
        pos += len(sub)
        ref = node[1]
    return out


def storage_items(values: Mapping[int, int]) -> dict[bytes, bytes]:
    """Trie items of a contract's storage {slot: value} (zero values are absent)."""
    return {keccak(s.to_bytes(32, "big")): rlp.encode(rlp.encode_uint(v)) for s, v in values.items() if v}


def account_item(address: bytes, account: Account) -> tuple[bytes, bytes]:
    """Trie item of one account."""
    value = rlp.encode(
        [rlp.encode_uint(account.nonce), rlp.encode_uint(account.balance), account.storage_root, account.code_hash]
    )
    return keccak(address), value
