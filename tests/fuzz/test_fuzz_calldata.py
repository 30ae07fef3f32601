"""Fuzz what governors put on-chain: proposal calldata and governor logs (node/gov/decode.py).

A proposal's calldata and a governor's logs are chosen by any member of any DAO a subject names.
``decode_revocation`` returns the revocation or None and never raises; ``decode_governor_log``
returns a GovernorLog, None (a topic we do not index) or raises ``UndecodableLog`` (the indexer
skips and records that log), never anything else (issue 13, finding 2). Inputs: raw bytes, and
valid ABI encodings with their offsets, lengths and words mutated.
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st

from keyreg.gov.decode import (
    REVOKE_SELECTOR,
    TOPICS,
    GovernorLog,
    UndecodableLog,
    decode_governor_log,
    decode_revocation,
)

_ARGS = ["bytes32", "bytes", "uint64", "bytes32", "uint256"]
VALID = REVOKE_SELECTOR + abi_encode(_ARGS, [b"\x01" * 32, b"web-1", 1_700_000_000, b"\x02" * 32, 0])
_PROPOSAL = ["uint256", "address", "address[]", "uint256[]", "bytes[]", "bytes[]", "uint256", "uint256", "bytes"]
PROPOSAL_DATA = abi_encode(
    _PROPOSAL,
    [7, "0x" + "11" * 20, ["0x" + "22" * 20], [0], [b""], [VALID], 10, 20, b"revoke web-1"],
)
VOTE_DATA = abi_encode(["uint256", "uint8", "uint256", "bytes"], [7, 1, 1, b"because"])
TOPIC_OF = {name: topic for topic, name in TOPICS.items()}


@st.composite
def mutated_words(draw: st.DrawFn, seed: bytes, head: int = 0) -> bytes:
    """``seed`` (after ``head`` bytes kept as they are) with 32-byte words replaced or cut: bad
    offsets, huge lengths, overlapping dynamic parts."""
    data = bytearray(seed)
    words = max(1, (len(data) - head) // 32)
    for _ in range(draw(st.integers(1, 4))):
        i = head + 32 * draw(st.integers(0, words - 1))
        value = draw(
            st.sampled_from([0, 1, 31, 32, 64, 0xA0, 0xC0, 2**32, 2**64, 2**255, 2**256 - 1])
            | st.integers(0, 2**256 - 1)
        )
        op = draw(st.sampled_from(["word", "word", "byte", "cut", "grow"]))
        if op == "word":
            data[i : i + 32] = value.to_bytes(32, "big")
        elif op == "byte" and data:
            data[min(i + draw(st.integers(0, 31)), len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:]
        elif op == "grow":
            data += draw(st.binary(max_size=96))
    return bytes(data)


CALLDATA = (
    st.binary(max_size=400)
    | st.binary(max_size=400).map(lambda b: REVOKE_SELECTOR + b)
    | mutated_words(VALID, head=4)
    | st.just(VALID)
)


@examples(600)
@given(CALLDATA)
def test_decode_revocation_never_raises(calldata: bytes) -> None:
    out = decode_revocation(calldata)
    if out is not None:
        # What is shown is what executes: only canonical calldata decodes.
        subject = bytes.fromhex(out["subject"][2:])
        key_id = bytes.fromhex(out["keyIdHex"][2:]) if "keyIdHex" in out else out["keyId"].encode()
        again = REVOKE_SELECTOR + abi_encode(
            _ARGS, [subject, key_id, out["effectiveAt"], bytes.fromhex(out["reasonHash"][2:]), 0]
        )
        assert again == calldata


LOGS = st.one_of(
    st.tuples(st.just("ProposalCreated"), mutated_words(PROPOSAL_DATA) | st.binary(max_size=300)),
    st.tuples(st.just("VoteCast"), mutated_words(VOTE_DATA) | st.binary(max_size=200)),
    st.tuples(st.sampled_from(sorted(TOPIC_OF)), st.binary(max_size=200)),
)


@examples(600)
@given(LOGS, st.lists(st.binary(min_size=32, max_size=32), max_size=3))
def test_decode_governor_log_decodes_or_says_undecodable(log_: tuple[str, bytes], more_topics: list[bytes]) -> None:
    name, data = log_
    try:
        out: Any = decode_governor_log([TOPIC_OF[name], *more_topics], data)
    except UndecodableLog:
        return
    assert out is None or isinstance(out, GovernorLog)


def test_the_valid_seeds_decode() -> None:
    assert decode_revocation(VALID) == {
        "subject": "0x" + "01" * 32,
        "keyId": "web-1",
        "effectiveAt": 1_700_000_000,
        "reasonHash": "0x" + "02" * 32,
    }
    log_ = decode_governor_log([TOPIC_OF["ProposalCreated"]], PROPOSAL_DATA)
    assert log_ is not None
    assert log_.args["calldatas"] == [VALID]
