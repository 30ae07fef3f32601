"""Signed ballots for gasless voting: the EIP-712 Ballot, its wire format, validation and dedup.

A member signs ``Ballot(uint256 proposalId,uint8 support,address voter,uint256 nonce)`` under the
governor's EIP-712 domain {name: the governor's name, version "1", chainId, verifyingContract: the
governor} (OpenZeppelin Governor 5.x ``castVoteBySig``). Anyone holding the signature can submit it;
the governor checks it and consumes the voter's nonce, so each signature counts at most once.

Wire format (UTF-8 JSON object, at most :data:`MAX_BALLOT_BYTES`, exactly these members; the same
bytes travel on the gossip topic and in ``POST /v1/gov/ballots``)::

    {"type": "keyreg.ballot", "v": 1, "chainId": 31337,
     "governor": "0x…20 bytes", "governorName": "keyreg DAO",
     "proposalId": "<decimal uint256>", "support": 0|1|2,
     "voter": "0x…20 bytes", "nonce": <int>, "signature": "0x…65 bytes r||s||v"}

``proposalId`` is a decimal string because it is a uint256 (JSON numbers lose precision past 2^53).
``governorName`` lets anyone check the signature offline; a wrong name only makes the signature
recover to someone else, so it is rejected, never trusted.

This module is pure (no web3, no I/O): the relay (relay.py) and the gossip topic (gossip.py) use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..core.canonical_json import canonical_json
from ..core.codec import loads_strict
from ..core.errors import BadSignature, MalformedEvent
from ..core.hashing import address_of_private_key, keccak, recover_address, sign_digest
from .errors import BallotRejected

BALLOT_TYPE = "keyreg.ballot"
BALLOT_VERSION = 1
MAX_BALLOT_BYTES = 1024
MAX_NAME_CHARS = 64

DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
BALLOT_TYPEHASH = keccak(b"Ballot(uint256 proposalId,uint8 support,address voter,uint256 nonce)")
_FIELDS = frozenset(
    {"type", "v", "chainId", "governor", "governorName", "proposalId", "support", "voter", "nonce", "signature"}
)
_UINT256_MAX = 2**256 - 1

BallotKey = tuple[int, bytes, int, bytes]  # (chainId, governor, proposalId, voter): one vote each


def _word(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _address_word(a: bytes) -> bytes:
    return b"\x00" * 12 + a


@dataclass(frozen=True, slots=True)
class Ballot:
    """One member's signed vote on one proposal."""

    chain_id: int
    governor: bytes  # 20 bytes
    governor_name: str
    proposal_id: int
    support: int  # 0 against, 1 for, 2 abstain
    voter: bytes  # 20 bytes
    nonce: int
    signature: bytes = b""  # 65 bytes r||s||v

    @property
    def key(self) -> BallotKey:
        """What deduplication is keyed on: a voter votes once per proposal."""
        return (self.chain_id, self.governor, self.proposal_id, self.voter)

    def digest(self) -> bytes:
        """The EIP-712 digest the voter signs (what the governor's castVoteBySig recomputes)."""
        domain = keccak(
            DOMAIN_TYPEHASH
            + keccak(self.governor_name.encode())
            + keccak(b"1")
            + _word(self.chain_id)
            + _address_word(self.governor)
        )
        struct = keccak(
            BALLOT_TYPEHASH
            + _word(self.proposal_id)
            + _word(self.support)
            + _address_word(self.voter)
            + _word(self.nonce)
        )
        return keccak(b"\x19\x01" + domain + struct)

    def to_obj(self) -> dict[str, Any]:
        return {
            "type": BALLOT_TYPE,
            "v": BALLOT_VERSION,
            "chainId": self.chain_id,
            "governor": "0x" + self.governor.hex(),
            "governorName": self.governor_name,
            "proposalId": str(self.proposal_id),
            "support": self.support,
            "voter": "0x" + self.voter.hex(),
            "nonce": self.nonce,
            "signature": "0x" + self.signature.hex(),
        }

    def encode(self) -> bytes:
        """Canonical wire bytes (node/core/canonical_json.py): equal ballots give equal bytes."""
        return canonical_json(self.to_obj())

    def describe(self) -> str:
        vote = {0: "against", 1: "for", 2: "abstain"}.get(self.support, str(self.support))
        return f"0x{self.voter.hex()} votes {vote} on proposal {self.proposal_id} of 0x{self.governor.hex()}"


def sign_ballot(
    voter_key: bytes, chain_id: int, governor: bytes, governor_name: str, proposal_id: int, support: int, nonce: int
) -> Ballot:
    """Sign a ballot offline with the member's key (no gas, no chain access needed)."""
    unsigned = Ballot(chain_id, governor, governor_name, proposal_id, support, address_of_private_key(voter_key), nonce)
    return Ballot(
        unsigned.chain_id,
        unsigned.governor,
        unsigned.governor_name,
        unsigned.proposal_id,
        unsigned.support,
        unsigned.voter,
        unsigned.nonce,
        sign_digest(voter_key, unsigned.digest()),
    )


def _hex(obj: dict[str, Any], name: str, size: int) -> bytes:
    value = obj[name]
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * size:
        raise BallotRejected(f"ballot {name} must be 0x followed by {2 * size} hex digits", field=name)
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise BallotRejected(f"ballot {name} is not hex", field=name) from None


def _int(obj: dict[str, Any], name: str, maximum: int) -> int:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise BallotRejected(f"ballot {name} must be an integer in [0, {maximum}]", field=name)
    return value


def decode_ballot(data: bytes | dict[str, Any]) -> Ballot:
    """Parse wire bytes (or an already parsed object) strictly: BallotRejected on anything off."""
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_BALLOT_BYTES:
            raise BallotRejected(f"a ballot is at most {MAX_BALLOT_BYTES} bytes (got {len(data)})")
        try:
            obj = loads_strict(data)  # nesting bounded before parsing; duplicate keys refused
        except MalformedEvent:
            raise BallotRejected("a ballot is a JSON object") from None
    else:
        obj = data
    if not isinstance(obj, dict):
        raise BallotRejected("a ballot is a JSON object")
    missing, unknown = _FIELDS - set(obj), set(obj) - _FIELDS
    if missing or unknown:
        raise BallotRejected(
            f"ballot fields: missing {sorted(missing)}, unknown {sorted(unknown)}",
            missing=sorted(missing),
            unknown=sorted(unknown),
        )
    if obj["type"] != BALLOT_TYPE or obj["v"] != BALLOT_VERSION:
        raise BallotRejected(f"not a {BALLOT_TYPE} v{BALLOT_VERSION} message")
    name = obj["governorName"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise BallotRejected(f"ballot governorName must be 1-{MAX_NAME_CHARS} characters", field="governorName")
    pid = obj["proposalId"]
    # isascii: str.isdigit() also takes other scripts' digits ("²"), which int() then refuses
    if not isinstance(pid, str) or not (pid.isascii() and pid.isdigit()) or len(pid) > 78 or int(pid) > _UINT256_MAX:
        raise BallotRejected("ballot proposalId must be a decimal uint256 string", field="proposalId")
    return Ballot(
        chain_id=_int(obj, "chainId", 2**64 - 1),
        governor=_hex(obj, "governor", 20),
        governor_name=name,
        proposal_id=int(pid),
        support=_int(obj, "support", 2),
        voter=_hex(obj, "voter", 20),
        nonce=_int(obj, "nonce", _UINT256_MAX),
        signature=_hex(obj, "signature", 65),
    )


def validate_ballot(ballot: Ballot, chain_id: int | None = None) -> None:
    """Check what needs no chain access: the network, and that the voter signed exactly this ballot.

    Raises BallotRejected. What needs the chain (membership at the snapshot, the proposal being
    active, the nonce being current, the governor's true name) the relay checks before paying.
    """
    if chain_id is not None and ballot.chain_id != chain_id:
        raise BallotRejected(f"ballot is for chain {ballot.chain_id}, this network is {chain_id}", error="WrongChain")
    try:
        signer = recover_address(ballot.digest(), ballot.signature)
    except BadSignature as exc:
        raise BallotRejected(f"ballot signature unusable: {exc.message}", error="BadSignature") from None
    if signer != ballot.voter:
        raise BallotRejected(
            "ballot signature is not the voter's for these fields (tampered, or signed for another governor)",
            error="BadSignature",
        )


class BallotBook:
    """Dedup of ballots by (chain, governor, proposal, voter): the first valid ballot wins.

    Invariant: at most ``capacity`` keys are remembered (oldest forgotten first); a forgotten key
    that comes back is harmless because the chain refuses a second vote (GovernorAlreadyCastVote)
    and the relay checks ``hasVoted`` before paying. Thread-safe.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[BallotKey, bytes] = OrderedDict()  # key -> the ballot's signature
        self._lock = threading.Lock()

    def admit(self, ballot: Ballot) -> bool:
        """True if this ballot is new; False if its key was seen (same ballot replayed or another one)."""
        with self._lock:
            if ballot.key in self._seen:
                return False
            self._seen[ballot.key] = ballot.signature
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, ballot: Ballot) -> None:
        """Drop a key (e.g. the relay refused the ballot for a reason that may pass later)."""
        with self._lock:
            if self._seen.get(ballot.key) == ballot.signature:
                del self._seen[ballot.key]

    def __contains__(self, ballot: Ballot) -> bool:
        return ballot.key in self._seen

    def __len__(self) -> int:
        return len(self._seen)


def accept_ballot(data: bytes | dict[str, Any], book: BallotBook, chain_id: int | None = None) -> Ballot:
    """Decode, validate and dedup in one step (what the API and the gossip validator call).

    Raises BallotRejected: malformed, badly signed, wrong network, or a duplicate (``error``
    ``"Duplicate"``: the same ballot replayed, or a second ballot of the same voter).
    """
    ballot = decode_ballot(data)
    validate_ballot(ballot, chain_id)
    if not book.admit(ballot):
        raise BallotRejected(f"duplicate ballot: {ballot.describe()} was already received", error="Duplicate")
    return ballot
