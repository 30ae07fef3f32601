"""The compact sparse Merkle tree over subject heads: proofs, tampering, order independence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.hashing import keccak
from keyreg.core.merkle import DEPTH, Proof, SparseMerkleTree, leaf_hash, root_from_proof, verify_proof
from keyreg.core.records import ZERO32


def _subject(i: int) -> bytes:
    return keccak(b"subject-%d" % i)


def _head(i: int, seq: int) -> bytes:
    return keccak(b"head-%d-%d" % (i, seq))


def _tree(n: int) -> SparseMerkleTree:
    t = SparseMerkleTree()
    for i in range(n):
        t.set(_subject(i), i % 5, _head(i, i % 5))
    return t


def test_empty_and_single_leaf_roots() -> None:
    t = SparseMerkleTree()
    assert t.root == ZERO32
    t.set(_subject(0), 3, _head(0, 3))
    assert t.root == leaf_hash(_subject(0), 3, _head(0, 3))
    assert t.prove(_subject(0)).siblings == ()


def test_leaf_definition() -> None:
    s, h = _subject(1), _head(1, 2)
    assert leaf_hash(s, 2, h) == keccak(b"\x00" + s + (2).to_bytes(32, "big") + h)


def test_two_leaves_split_on_the_first_differing_bit() -> None:
    a = b"\x00" * 32
    b = b"\x80" + b"\x00" * 31  # differs in the very first bit: a goes left, b right
    t = SparseMerkleTree()
    t.set(b, 1, _head(1, 1))
    t.set(a, 1, _head(0, 1))
    la, lb = leaf_hash(a, 1, _head(0, 1)), leaf_hash(b, 1, _head(1, 1))
    assert t.root == keccak(b"\x01" + la + lb)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 200])
def test_every_proof_verifies(n: int) -> None:
    t = _tree(n)
    for i in range(n):
        proof = t.prove(_subject(i))
        assert verify_proof(t.root, _subject(i), i % 5, _head(i, i % 5), proof)
        assert len(proof.siblings) <= 2 * max(1, n).bit_length() + 8  # compact: about log2(n)


def test_tampered_proofs_fail() -> None:
    t = _tree(50)
    s, seq, h = _subject(7), 7 % 5, _head(7, 7 % 5)
    proof = t.prove(s)
    assert verify_proof(t.root, s, seq, h, proof)
    assert not verify_proof(t.root, s, seq + 1, h, proof)  # another seq
    assert not verify_proof(t.root, s, seq, _head(99, 0), proof)  # another head
    assert not verify_proof(t.root, _subject(8), seq, h, proof)  # another subject
    for i in range(len(proof.siblings)):
        bad = list(proof.siblings)
        bad[i] = keccak(bad[i])
        assert not verify_proof(t.root, s, seq, h, Proof(tuple(bad)))
    assert not verify_proof(t.root, s, seq, h, Proof(proof.siblings[:-1]))
    assert not verify_proof(t.root, s, seq, h, Proof((*proof.siblings, ZERO32)))
    assert not verify_proof(t.root, s, seq, h, Proof((ZERO32,) * (DEPTH + 1)))
    assert not verify_proof(keccak(t.root), s, seq, h, proof)


def test_update_changes_root_and_old_proof_stops_verifying() -> None:
    t = _tree(20)
    s = _subject(3)
    old_root, old_proof = t.root, t.prove(s)
    t.set(s, 9, _head(3, 9))
    assert t.root != old_root
    assert t.get(s) == (9, _head(3, 9))
    assert not verify_proof(t.root, s, 3, _head(3, 3), old_proof)
    assert verify_proof(t.root, s, 9, _head(3, 9), t.prove(s))
    assert len(t) == 20


def test_absent_subject_has_no_proof() -> None:
    with pytest.raises(KeyError):
        _tree(3).prove(_subject(99))


def test_subtree_views_for_sync() -> None:
    t = _tree(64)
    assert t.count(0, 0) == 64
    assert t.count(1, 0) + t.count(1, 1) == 64
    assert t.subjects_under(0, 0) == sorted(_subject(i) for i in range(64))
    left = t.node_hash(1, 0)
    right = t.node_hash(1, 1)
    assert t.root == keccak(b"\x01" + left + right)
    assert root_from_proof(_subject(0), leaf_hash(_subject(0), 0, _head(0, 0)), t.prove(_subject(0))) == t.root


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1)), max_size=40), st.randoms())
def test_root_is_independent_of_insertion_order(entries: list[tuple[bytes, int]], rnd: random.Random) -> None:
    final = dict(entries)  # last write per subject wins
    a = SparseMerkleTree()
    for s, seq in entries:
        a.set(s, seq, keccak(s + seq.to_bytes(8, "big")))
    items = list(final.items())
    rnd.shuffle(items)
    b = SparseMerkleTree()
    for s, seq in items:
        b.set(s, seq, keccak(s + seq.to_bytes(8, "big")))
    assert a.root == b.root
    for s, seq in items:
        assert verify_proof(a.root, s, seq, keccak(s + seq.to_bytes(8, "big")), b.prove(s))
