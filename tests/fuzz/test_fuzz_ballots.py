"""Fuzz ballot decoding (``POST /v1/gov/ballots`` and the ballot gossip topic).

Any bytes given to ``accept_ballot`` (decode, validate, dedup), as the API and the gossip
validator give them, are a ballot or a ``KeyregError`` (``BallotRejected``), never another
exception; a decoded ballot re-encodes to bytes that decode to itself. (Objects are fuzzed as
their JSON text: no caller hands decode_ballot an object that did not come from loads_strict.)
"""

from __future__ import annotations

import json

from fuzzing import JSON_VALUES, examples, mutated_bytes, mutated_object
from hypothesis import given
from hypothesis import strategies as st

from keyreg.core.errors import KeyregError
from keyreg.core.hashing import keccak
from keyreg.gov.ballots import MAX_BALLOT_BYTES, BallotBook, accept_ballot, decode_ballot, sign_ballot

VOTER = keccak(b"fuzz voter")
SEEDS = [
    sign_ballot(VOTER, 31337, b"\x0a" * 20, "keyreg DAO", 2**255 + 7, 1, 0),
    sign_ballot(VOTER, 1, b"\x0b" * 20, "\u00e9 DAO \U0001f600", 1, 0, 2**200),
]
SEED_BYTES = [b.encode() for b in SEEDS]
SEED_OBJECTS = [b.to_obj() for b in SEEDS]
INPUTS = (
    st.binary(max_size=MAX_BALLOT_BYTES + 8)
    | mutated_bytes(SEED_BYTES)
    | mutated_object(SEED_OBJECTS).map(lambda o: json.dumps(o).encode())
    | JSON_VALUES.map(lambda o: json.dumps(o).encode())
)


def _accept(data: bytes) -> None:
    try:
        ballot = accept_ballot(data, BallotBook(), 31337)
    except KeyregError:
        return
    assert decode_ballot(ballot.encode()) == ballot


@examples(500)
@given(INPUTS)
def test_any_ballot_input_is_a_ballot_or_refused(data: bytes) -> None:
    _accept(data)


def test_seeds_are_accepted() -> None:
    for data in SEED_BYTES:
        assert accept_ballot(data, BallotBook()) == decode_ballot(data)
