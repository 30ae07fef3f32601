"""The shared-work inclusion checker answers exactly like keyreg.core.merkle.verify_proof."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.hashing import keccak
from keyreg.core.merkle import Proof, SparseMerkleTree, verify_proof
from keyreg.verify.inclusion import InclusionChecker


def _subject(i: int) -> bytes:
    return keccak(b"subject-%d" % i)


def _head(i: int) -> bytes:
    return keccak(b"head-%d" % i)


def _tree(n: int, salt: int = 0) -> SparseMerkleTree:
    t = SparseMerkleTree()
    for i in range(n):
        t.set(_subject(i), i % 3 + salt, _head(i))
    return t


def test_every_valid_proof_verifies_and_shares_work() -> None:
    tree = _tree(300)
    checker = InclusionChecker()
    for i in range(300):
        assert checker.verify(tree.root, _subject(i), i % 3, _head(i), tree.prove(_subject(i)).siblings)
    assert not checker.verify(tree.root, _subject(0), 1, _head(0), tree.prove(_subject(0)).siblings)


def test_single_leaf_tree() -> None:
    tree = _tree(1)
    assert InclusionChecker().verify(tree.root, _subject(0), 0, _head(0), ())
    assert not InclusionChecker().verify(tree.root, _subject(0), 1, _head(0), ())


# A claim: which subject (index into the tree, or a stranger), and how its proof is tampered with.
_TAMPER = st.sampled_from(["none", "none", "none", "flip", "drop-top", "drop-bottom", "extend", "seq", "swap", "root"])
_CLAIM = st.tuples(st.integers(0, 70), _TAMPER, st.integers(0, 300))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.lists(_CLAIM, min_size=1, max_size=40))
def test_same_answers_as_the_core(n: int, claims: list[tuple[int, str, int]]) -> None:
    trees = [_tree(n), _tree(n, salt=1)]  # two roots in one checker, sharing no work
    checker = InclusionChecker()
    for index, tamper, r in claims:
        tree = trees[r % 2]
        i = index % (n + 2)  # n and n + 1: subjects not in the tree, proved with a neighbour's proof
        seq = i % 3 + r % 2
        subject, head = _subject(i), _head(i)
        siblings = list(tree.prove(_subject(min(i, n - 1))).siblings)
        root = tree.root
        if tamper == "flip" and siblings:
            at = r % len(siblings)
            siblings[at] = bytes([siblings[at][0] ^ 1]) + siblings[at][1:]
        elif tamper == "drop-top" and siblings:
            siblings.pop(0)
        elif tamper == "drop-bottom" and siblings:
            siblings.pop()
        elif tamper == "extend":
            siblings.append(keccak(b"%d" % r))
        elif tamper == "seq":
            seq += 1
        elif tamper == "swap" and len(siblings) > 1:
            a, b = r % len(siblings), (r + 1) % len(siblings)
            siblings[a], siblings[b] = siblings[b], siblings[a]
        elif tamper == "root":
            root = trees[(r + 1) % 2].root
        expected = verify_proof(root, subject, seq, head, Proof(tuple(siblings)))
        assert checker.verify(root, subject, seq, head, tuple(siblings)) == expected, (i, tamper, r)
