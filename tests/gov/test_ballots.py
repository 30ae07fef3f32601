"""Ballots without a chain: the EIP-712 digest equals eth-account's, the wire format is strict,
tampering and replays are caught, dedup keys on (chain, governor, proposal, voter)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from keyreg.core.hashing import address_of_private_key
from keyreg.gov.ballots import MAX_BALLOT_BYTES, BallotBook, accept_ballot, decode_ballot, sign_ballot, validate_ballot
from keyreg.gov.errors import BallotRejected

KEY = bytes.fromhex("33" * 32)
GOVERNOR = bytes.fromhex("ab" * 20)
PID = 2**255 + 12345  # proposal ids are full uint256 values


def ballot(support: int = 1, nonce: int = 0, pid: int = PID, key: bytes = KEY):
    return sign_ballot(key, 31337, GOVERNOR, "keyreg DAO", pid, support, nonce)


def test_digest_and_signature_match_eth_account() -> None:
    b = ballot()
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Ballot": [
                {"name": "proposalId", "type": "uint256"},
                {"name": "support", "type": "uint8"},
                {"name": "voter", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ],
        },
        "primaryType": "Ballot",
        "domain": {"name": "keyreg DAO", "version": "1", "chainId": 31337, "verifyingContract": "0x" + GOVERNOR.hex()},
        "message": {"proposalId": PID, "support": 1, "voter": "0x" + b.voter.hex(), "nonce": 0},
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), KEY)
    assert bytes(signed.signature) == b.signature  # RFC 6979: same key, same digest, same signature
    assert b.voter == address_of_private_key(KEY)


def test_wire_format_round_trip_and_strictness() -> None:
    b = ballot()
    assert decode_ballot(b.encode()) == b
    assert json.loads(b.encode())["proposalId"] == str(PID)
    obj = b.to_obj()
    bad_cases = [
        {**obj, "extra": 1},
        {k: v for k, v in obj.items() if k != "nonce"},
        {**obj, "proposalId": PID},  # a JSON number: precision would be lost
        {**obj, "support": 3},
        {**obj, "support": True},
        {**obj, "voter": "0x1234"},
        {**obj, "signature": "0x" + "00" * 64},
        {**obj, "type": "other"},
        {**obj, "governorName": ""},
    ]
    for case in bad_cases:
        with pytest.raises(BallotRejected):
            decode_ballot(json.dumps(case).encode())
    with pytest.raises(BallotRejected, match="at most"):
        decode_ballot(b" " * (MAX_BALLOT_BYTES + 1))
    with pytest.raises(BallotRejected):
        decode_ballot(b"[1, 2]")


def test_tampered_or_misdirected_ballots_fail_validation() -> None:
    validate_ballot(ballot(), 31337)
    obj = ballot().to_obj()
    for change in ({"support": 0}, {"nonce": 1}, {"proposalId": str(PID + 1)}, {"governorName": "other"},
                   {"governor": "0x" + "cd" * 20}, {"voter": "0x" + "11" * 20}):  # fmt: skip
        with pytest.raises(BallotRejected, match="not the voter's"):
            validate_ballot(decode_ballot({**obj, **change}))
    with pytest.raises(BallotRejected, match="chain 31337"):
        validate_ballot(ballot(), 1)
    high_s = bytearray(ballot().signature)
    high_s[32:64] = (2**256 - 1).to_bytes(32, "big")
    with pytest.raises(BallotRejected, match="unusable"):
        validate_ballot(decode_ballot({**obj, "signature": "0x" + high_s.hex()}))


def test_dedup_by_voter_and_proposal() -> None:
    book = BallotBook(capacity=2)
    first = accept_ballot(ballot().encode(), book, 31337)
    with pytest.raises(BallotRejected, match="duplicate") as info:
        accept_ballot(ballot().encode(), book, 31337)  # the same bytes replayed
    assert info.value.details["error"] == "Duplicate"
    with pytest.raises(BallotRejected, match="duplicate"):
        accept_ballot(ballot(support=0, nonce=1).encode(), book, 31337)  # same voter, other ballot
    accept_ballot(ballot(pid=PID + 1).encode(), book, 31337)  # another proposal: fine
    book.forget(first)
    assert first not in book
    accept_ballot(ballot(key=bytes.fromhex("44" * 32)).encode(), book, 31337)
    assert len(book) == 2  # bounded
