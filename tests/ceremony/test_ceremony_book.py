"""The proposal book's bounds (node/ceremony/book.py) as a property: whatever is added, in any order,
with any clock, the caps hold, expiry drops exactly what is due, and a proposal holding a signature
is only ever lost to expiry (never to a newcomer)."""

from __future__ import annotations

import hashlib

import pytest
from ceremony_support import DOMAIN, NOW
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.ceremony.book import BookLimits, Entry, ProposalBook
from keyreg.ceremony.proposal import Authority, Proposal
from keyreg.core import builder
from keyreg.core.errors import OverCapacity

SUBJECTS = [hashlib.sha256(b"book-%d" % i).digest() for i in range(3)]
AUTHORITY = Authority("controllers", (b"\x01" * 20, b"\x02" * 20), 2)


def proposal(subject: int, n: int, backed: bool) -> Proposal:
    event = builder.update(SUBJECTS[subject], 1, SUBJECTS[subject], NOW, metadata=f"m{n}")
    digest = hashlib.sha256(b"proposal-%d" % n).digest()
    signatures = ((b"\x01" * 20, b"\x00" * 65),) if backed else ()
    return Proposal(DOMAIN, event, AUTHORITY, digest, signatures)


# An operation: ("add", subject, backed) or ("tick", seconds) or ("stale", subject): the subject's
# head moves on, so every proposal held for it is stale from then on.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("tick"), st.integers(0, 400)),
        st.tuples(st.just("stale"), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS, st.integers(1, 4), st.integers(1, 6))
def test_book_bounds_property(ops: list[tuple[object, ...]], per_subject: int, total: int) -> None:
    limits = BookLimits(max_pending=total, max_pending_per_subject=per_subject, ttl_s=1000)
    book = ProposalBook(limits)
    now = 0.0
    stale_before: dict[bytes, float] = {}  # subject -> proposals created before this time are stale
    model: dict[bytes, Entry] = {}  # what the book must hold at least: backed, live, not stale

    def stale(entry: Entry) -> bool:
        return entry.created < stale_before.get(entry.proposal.subject, -1.0)

    for n, op in enumerate(ops):
        if op[0] == "tick":
            now += float(op[1])  # type: ignore[arg-type]
        elif op[0] == "stale":
            stale_before[SUBJECTS[op[1]]] = now + 0.5  # type: ignore[index]
            now += 1.0
        else:
            p = proposal(op[1], n, bool(op[2]))  # type: ignore[arg-type]
            held_before = {e.id: e for e in book}
            try:
                entry, new = book.add(p, now, stale)
            except OverCapacity:
                book.expire(now)
                mine = [e for e in book if e.proposal.subject == p.subject]
                scope = mine if len(mine) >= per_subject else list(book)
                # refused only when nothing in the full scope could be dropped
                assert all(e.backed and not stale(e) and e.submitted is None for e in scope)
                continue
            assert new
            assert entry.expires == now + 1000
            if p.signatures:
                model[entry.id] = entry
            dropped = set(held_before) - {e.id for e in book}
            for pid in dropped:  # only stale, unsigned or expired entries make room
                e = held_before[pid]
                assert not e.backed or stale(e) or e.expires <= now
        book.expire(now)
        held = {e.id for e in book}
        for pid, e in list(model.items()):
            if e.expires <= now:
                assert pid not in held
                del model[pid]
            elif not stale(e):
                assert pid in held, "a signed, live, current proposal was dropped"
        assert len(book) <= total
        for subject in SUBJECTS:
            assert len(book.for_subject(subject, now)) <= per_subject
        assert all(e.expires > now for e in book)
        created = [e.created for e in book]
        assert created == sorted(created)


def test_the_same_proposal_twice_is_one_entry() -> None:
    book = ProposalBook(BookLimits(max_pending=2, max_pending_per_subject=2, ttl_s=10))
    p = proposal(0, 1, False)
    first, new = book.add(p, 0.0, lambda e: False)
    again, new_again = book.add(p, 5.0, lambda e: False)
    assert new
    assert not new_again
    assert again is first
    assert len(book) == 1
    assert book.get(p.digest, 10.0) is None  # expired at created + ttl_s
    assert book.status() == {"pending": 0, "subjects": 0, "dropped": 0, "expired": 1}
    full = ProposalBook(BookLimits(max_pending=1, max_pending_per_subject=1, ttl_s=10))
    full.add(proposal(0, 2, True), 0.0, lambda e: False)
    with pytest.raises(OverCapacity):  # the one held is signed: it is not dropped for a newcomer
        full.add(proposal(1, 3, False), 0.0, lambda e: False)
