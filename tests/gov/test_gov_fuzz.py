"""Fuzz the governance decoders (issue 13, "find the rest yourself"): ballots, proposal calldata and
governor logs come from strangers; each decoder answers with a value or its own error, never
anything else, and what it accepts round-trips.

Budget: a few hundred examples in CI; ``KEYREG_FUZZ_EXAMPLES=<N>`` runs N per fuzzer by hand (the
convention of tests/fuzz). A failure is a bug: keep its input as a regression test here.
"""

from __future__ import annotations

import contextlib
import json
import os

from eth_abi import encode as abi_encode
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keyreg.gov.ballots import MAX_BALLOT_BYTES, BallotBook, accept_ballot, decode_ballot, sign_ballot
from keyreg.gov.contracts import add_member_calldata, remove_member_calldata, revocation_calldata
from keyreg.gov.decode import (
    ADD_MEMBER_SELECTOR,
    MEMBER_TOPICS,
    REMOVE_MEMBER_SELECTOR,
    REVOKE_SELECTOR,
    TOPICS,
    UndecodableLog,
    decode_action,
    decode_governor_log,
    decode_membership_change,
    decode_revocation,
    decode_token_log,
)
from keyreg.gov.errors import BallotRejected


def budget(default: int) -> settings:
    n = int(os.environ.get("KEYREG_FUZZ_EXAMPLES", "0") or 0) or default
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))


KEY = bytes.fromhex("33" * 32)
GOOD = sign_ballot(KEY, 31337, b"\xab" * 20, "keyreg DAO", 2**255 + 7, 1, 3)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out[: len(out) - cut] if cut < len(out) else out)


@budget(150)
@given(st.binary(max_size=MAX_BALLOT_BYTES + 64))
@example(b"[" * 1000 + b"]" * 1000)  # nesting within the size cap
@example(b'{"type": "keyreg.ballot"' + b" " * 2000 + b"}")
def test_ballot_bytes(data: bytes) -> None:
    with contextlib.suppress(BallotRejected):
        decode_ballot(data)


@budget(150)
@given(st.sampled_from(sorted(GOOD.to_obj())), JSON_VALUES)
def test_ballot_fields(field: str, value: object) -> None:
    """Any value in any field: a ballot or BallotRejected; an accepted ballot re-encodes to itself."""
    obj = {**GOOD.to_obj(), field: value}
    try:
        ballot = decode_ballot(json.dumps(obj).encode())
    except BallotRejected:
        return
    assert decode_ballot(ballot.encode()) == ballot
    with contextlib.suppress(BallotRejected):
        accept_ballot(ballot.encode(), BallotBook(), 31337)


@budget(150)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4), st.integers(0, 300))
def test_ballot_mutations(edits: list[tuple[int, int]], cut: int) -> None:
    with contextlib.suppress(BallotRejected):
        decode_ballot(mutate(GOOD.encode(), edits, cut))


@budget(200)
@given(
    st.text(max_size=70),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    st.integers(0, 80),
    st.binary(max_size=64),
)
def test_revocation_calldata(key_id: str, edits: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    """decode_revocation never raises, and shows only calldata that is canonical (what propose accepts)."""
    base = revocation_calldata(b"\x01" * 32, key_id, 5, b"\x02" * 32)
    for data in (base, mutate(base, edits, cut), mutate(base, edits, cut) + tail, REVOKE_SELECTOR + tail):
        shown = decode_revocation(data)
        if shown is None:
            continue
        if "keyIdHex" not in shown:
            assert (
                revocation_calldata(
                    bytes.fromhex(shown["subject"][2:]),
                    shown["keyId"],
                    shown["effectiveAt"],
                    bytes.fromhex(shown["reasonHash"][2:]),
                )
                == data
            )


_CREATED = ["uint256", "address", "address[]", "uint256[]", "string[]", "bytes[]", "uint256", "uint256", "string"]
_VALID_CREATED = abi_encode(_CREATED, [7, "0x" + "11" * 20, ["0x" + "22" * 20], [0], [""], [b"\x01" * 40], 1, 2, "d"])


@budget(200)
@given(
    st.sampled_from(sorted(TOPICS)),
    st.lists(st.binary(min_size=32, max_size=32), max_size=3),
    st.one_of(
        st.binary(max_size=600),
        st.builds(
            mutate,
            st.just(_VALID_CREATED),
            st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), max_size=3),
            st.integers(0, 100),
        ),
    ),
)
def test_governor_logs(topic: bytes, more_topics: list[bytes], data: bytes) -> None:
    """decode_governor_log: a decoded log, None, or UndecodableLog; never anything else."""
    try:
        decoded = decode_governor_log([topic, *more_topics], data)
    except UndecodableLog:
        return
    assert decoded is not None
    assert decoded.name == TOPICS[topic]
    if decoded.name == "ProposalCreated":
        assert len(decoded.args["description"].encode()) <= 4 * 16 * 1024


@budget(200)
@given(
    st.sampled_from([ADD_MEMBER_SELECTOR, REMOVE_MEMBER_SELECTOR, REVOKE_SELECTOR, b"\x00" * 4]),
    st.binary(max_size=140),
    st.sampled_from(["registry", "token", "other"]),
)
@example(ADD_MEMBER_SELECTOR, bytes(12) + b"\x01" * 20 + (5).to_bytes(32, "big"), "token")
@example(REMOVE_MEMBER_SELECTOR, bytes(12) + b"\x01" * 20, "token")
@example(REMOVE_MEMBER_SELECTOR, b"\x01" + bytes(11) + b"\x01" * 20, "token")  # dirty address word
def test_membership_calldata(selector: bytes, rest: bytes, target: str) -> None:
    """decode_membership_change / decode_action: a value or None, never an exception; what they
    accept re-encodes to the same bytes (so what is shown is what executes)."""
    data = selector + rest
    change = decode_membership_change(data)
    if change is not None:
        again = (
            add_member_calldata(change["member"], change["weight"])
            if change["action"] == "add"
            else remove_member_calldata(change["member"])
        )
        assert again == data
    addresses = {"registry": "0x" + "aa" * 20, "token": "0x" + "bb" * 20, "other": "0x" + "cc" * 20}
    action = decode_action(addresses[target], data, addresses["registry"], addresses["token"])
    if target == "other":
        assert action is None
    elif action is not None:
        assert action["kind"] == ("membership" if target == "token" else "revocation")


@budget(200)
@given(
    st.sampled_from(sorted(MEMBER_TOPICS)) | st.binary(min_size=32, max_size=32),
    st.lists(st.binary(max_size=40), max_size=3),
    st.binary(max_size=80),
)
def test_token_logs(topic: bytes, more_topics: list[bytes], data: bytes) -> None:
    """decode_token_log: a GovernorLog, None (not a membership topic) or UndecodableLog, nothing else."""
    try:
        decoded = decode_token_log([topic, *more_topics], data)
    except UndecodableLog:
        return
    if decoded is None:
        assert topic not in MEMBER_TOPICS
        return
    assert decoded.name in ("MemberAdded", "MemberRemoved")
    assert decoded.args["member"] == "0x" + more_topics[0][-20:].hex()
    assert decoded.args["weight"] == int.from_bytes(data, "big")
