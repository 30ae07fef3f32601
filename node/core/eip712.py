"""EIP-712 typed data for key events: the one place that produces the bytes that are signed.

The event digest (what controllers sign, what ``prev`` chains and what the contract anchors) is
``keccak256(0x19 0x01 || domainSeparator || hashStruct(event))``. This module hashes structs with
type hashes computed once at import and can also export any event as standard
``eth_signTypedData_v4`` JSON, so a wallet signature over that JSON is a valid signature here.
Tests prove the hashing equal to eth-account's ``encode_typed_data`` on every vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import MalformedEvent
from .hashing import keccak
from .records import (
    ZERO20,
    Delegation,
    Domain,
    Event,
    Inception,
    KeyRetirement,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    Update,
)

# Field lists, in order. These ARE the protocol (docs/protocol.md section 3 mirrors them).
TYPES: dict[str, list[tuple[str, str]]] = {
    "EIP712Domain": [
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ],
    "PublishedKey": [
        ("keyId", "string"),
        ("alg", "string"),
        ("publicKey", "bytes"),
        ("purposes", "string[]"),
        ("notBefore", "uint64"),
        ("notAfter", "uint64"),
    ],
    "KeyRetirement": [("keyId", "string"), ("notAfter", "uint64")],
    "OperatorSet": [
        ("operators", "address[]"),
        ("threshold", "uint8"),
        ("purposes", "string[]"),
        ("maxValidity", "uint64"),
        ("maxKeys", "uint16"),
    ],
    "Inception": [
        ("timestamp", "uint64"),
        ("controllers", "address[]"),
        ("threshold", "uint8"),
        ("nextCommitment", "bytes32"),
        ("governor", "address"),
        ("operators", "OperatorSet"),
        ("keys", "PublishedKey[]"),
        ("metadata", "string"),
    ],
    "Update": [
        ("subject", "bytes32"),
        ("seq", "uint64"),
        ("prev", "bytes32"),
        ("timestamp", "uint64"),
        ("publish", "PublishedKey[]"),
        ("retire", "KeyRetirement[]"),
        ("setMetadata", "bool"),
        ("metadata", "string"),
    ],
    "Rotation": [
        ("subject", "bytes32"),
        ("seq", "uint64"),
        ("prev", "bytes32"),
        ("timestamp", "uint64"),
        ("controllers", "address[]"),
        ("threshold", "uint8"),
        ("nextCommitment", "bytes32"),
        ("governor", "address"),
        ("operators", "OperatorSet"),
    ],
    "Revocation": [
        ("subject", "bytes32"),
        ("seq", "uint64"),
        ("prev", "bytes32"),
        ("timestamp", "uint64"),
        ("keyId", "string"),
        ("effectiveAt", "uint64"),
        ("reason", "string"),
    ],
    "Delegation": [
        ("subject", "bytes32"),
        ("seq", "uint64"),
        ("prev", "bytes32"),
        ("timestamp", "uint64"),
        ("operators", "OperatorSet"),
    ],
}

PRIMARY_TYPE = {
    "inception": "Inception",
    "update": "Update",
    "rotation": "Rotation",
    "revocation": "Revocation",
    "delegation": "Delegation",
}
_REFERENCED = {
    "Inception": ["OperatorSet", "PublishedKey"],
    "Update": ["KeyRetirement", "PublishedKey"],
    "Rotation": ["OperatorSet"],
    "Revocation": [],
    "Delegation": ["OperatorSet"],
    "PublishedKey": [],
    "KeyRetirement": [],
    "OperatorSet": [],
    "EIP712Domain": [],
}


def _member_sig(name: str) -> str:
    return name + "(" + ",".join(f"{t} {n}" for n, t in TYPES[name]) + ")"


def encode_type(name: str) -> str:
    """EIP-712 encodeType: the primary type then referenced types sorted by name."""
    return _member_sig(name) + "".join(_member_sig(r) for r in sorted(_REFERENCED[name]))


TYPE_HASH = {name: keccak(encode_type(name).encode()) for name in TYPES}
_DOMAIN_TH = TYPE_HASH["EIP712Domain"]
_PK_TH = TYPE_HASH["PublishedKey"]
_KR_TH = TYPE_HASH["KeyRetirement"]
_INC_TH = TYPE_HASH["Inception"]
_UPD_TH = TYPE_HASH["Update"]
_ROT_TH = TYPE_HASH["Rotation"]
_REV_TH = TYPE_HASH["Revocation"]
_DEL_TH = TYPE_HASH["Delegation"]
_OPS_TH = TYPE_HASH["OperatorSet"]

_ZERO_WORD = b"\x00" * 32
_ONE_WORD = b"\x00" * 31 + b"\x01"
_PAD12 = b"\x00" * 12


def _hash_string(s: str) -> bytes:
    try:
        encoded = s.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 bytes to hash
        raise MalformedEvent("a text field is not valid UTF-8") from None
    return keccak(encoded)


def hash_strings(items: Sequence[str]) -> bytes:
    """EIP-712 encoding of a string[] member (keccak256 of "" for an empty array)."""
    return keccak(b"".join([_hash_string(p) for p in items]))


def _u(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _addr(a: bytes) -> bytes:
    return b"\x00" * 12 + a


def hash_address_array(addresses: tuple[bytes, ...]) -> bytes:
    """EIP-712 encoding of address[]: keccak of the 32-byte left-padded addresses."""
    return keccak(b"".join([_PAD12 + a for a in addresses]))


def controller_commitment(controllers: tuple[bytes, ...], threshold: int) -> bytes:
    """Pre-rotation commitment to a controller set: keccak256(abi.encodePacked(uint256(threshold), address[]))."""
    return keccak(_u(threshold) + b"".join([_PAD12 + a for a in controllers]))


def hash_published_key(k: PublishedKey) -> bytes:
    """hashStruct(PublishedKey)."""
    return keccak(
        b"".join(
            [
                _PK_TH,
                _hash_string(k.key_id),
                _hash_string(k.alg),
                keccak(k.public_key),
                hash_strings(k.purposes),
                _u(k.not_before),
                _u(k.not_after),
            ]
        )
    )


def hash_operator_set(o: OperatorSet) -> bytes:
    """hashStruct(OperatorSet)."""
    return keccak(
        _OPS_TH
        + hash_address_array(o.operators)
        + _u(o.threshold)
        + hash_strings(o.purposes)
        + _u(o.max_validity)
        + _u(o.max_keys)
    )


def operator_commitment(o: OperatorSet) -> bytes:
    """What the contract stores for an operator set: keccak256(abi.encodePacked(uint256(threshold),
    address[])), or 32 zero bytes when there is none (docs/protocol.md 11)."""
    if not o.operators:
        return b"\x00" * 32
    return controller_commitment(o.operators, o.threshold)


def _hash_retirement(r: KeyRetirement) -> bytes:
    return keccak(_KR_TH + _hash_string(r.key_id) + _u(r.not_after))


def _hash_array(items: list[bytes]) -> bytes:
    """EIP-712 encoding of an array of structs: keccak of their hashStructs, concatenated."""
    return keccak(b"".join(items))


def hash_struct(event: Event) -> bytes:
    """hashStruct(event) for any event kind."""
    if isinstance(event, Update):
        parts = [
            _UPD_TH,
            event.subject,
            _u(event.seq),
            event.prev,
            _u(event.timestamp),
            _hash_array([hash_published_key(k) for k in event.publish]),
            _hash_array([_hash_retirement(r) for r in event.retire]),
            _ONE_WORD if event.set_metadata else _ZERO_WORD,
            _hash_string(event.metadata),
        ]
    elif isinstance(event, Inception):
        parts = [
            _INC_TH,
            _u(event.timestamp),
            hash_address_array(event.controllers),
            _u(event.threshold),
            event.next_commitment,
            _addr(event.governor),
            hash_operator_set(event.operators),
            _hash_array([hash_published_key(k) for k in event.keys]),
            _hash_string(event.metadata),
        ]
    elif isinstance(event, Rotation):
        parts = [
            _ROT_TH,
            event.subject,
            _u(event.seq),
            event.prev,
            _u(event.timestamp),
            hash_address_array(event.controllers),
            _u(event.threshold),
            event.next_commitment,
            _addr(event.governor),
            hash_operator_set(event.operators),
        ]
    elif isinstance(event, Revocation):
        parts = [
            _REV_TH,
            event.subject,
            _u(event.seq),
            event.prev,
            _u(event.timestamp),
            _hash_string(event.key_id),
            _u(event.effective_at),
            _hash_string(event.reason),
        ]
    elif isinstance(event, Delegation):
        parts = [
            _DEL_TH,
            event.subject,
            _u(event.seq),
            event.prev,
            _u(event.timestamp),
            hash_operator_set(event.operators),
        ]
    else:
        raise TypeError(f"not an event: {type(event).__name__}")
    return keccak(b"".join(parts))


def domain_separator(domain: Domain) -> bytes:
    """hashStruct(EIP712Domain) for a domain."""
    return keccak(
        _DOMAIN_TH
        + keccak(domain.name.encode())
        + keccak(domain.version.encode())
        + _u(domain.chain_id)
        + _addr(domain.verifying_contract)
    )


def digest_prefix(domain: Domain) -> bytes:
    """What every event digest of ``domain`` starts with: ``0x19 0x01 || domainSeparator``."""
    return b"\x19\x01" + domain_separator(domain)


def event_digest(domain: Domain, event: Event) -> bytes:
    """The digest controllers sign; also the event's identity in the hash chain.

    A :class:`keyreg.core.validator.Validator` computes the same with its domain's prefix made once.
    """
    return keccak(digest_prefix(domain) + hash_struct(event))


# ---------------------------------------------------------------------------------------------
# eth_signTypedData_v4 JSON export (what a wallet signs)


def _checksum(a: bytes) -> str:
    hex_addr = a.hex()
    h = keccak(hex_addr.encode()).hex()
    return "0x" + "".join(c.upper() if int(h[i], 16) >= 8 else c for i, c in enumerate(hex_addr))


def _key_message(k: PublishedKey) -> dict[str, Any]:
    return {
        "keyId": k.key_id,
        "alg": k.alg,
        "publicKey": "0x" + k.public_key.hex(),
        "purposes": list(k.purposes),
        "notBefore": k.not_before,
        "notAfter": k.not_after,
    }


def _operators_message(o: OperatorSet) -> dict[str, Any]:
    return {
        "operators": [_checksum(a) for a in o.operators],
        "threshold": o.threshold,
        "purposes": list(o.purposes),
        "maxValidity": o.max_validity,
        "maxKeys": o.max_keys,
    }


def message_of(event: Event) -> dict[str, Any]:
    """The typed-data ``message`` object of an event."""
    if isinstance(event, Inception):
        return {
            "timestamp": event.timestamp,
            "controllers": [_checksum(c) for c in event.controllers],
            "threshold": event.threshold,
            "nextCommitment": "0x" + event.next_commitment.hex(),
            "governor": _checksum(event.governor if event.governor else ZERO20),
            "operators": _operators_message(event.operators),
            "keys": [_key_message(k) for k in event.keys],
            "metadata": event.metadata,
        }
    common = {
        "subject": "0x" + event.subject.hex(),
        "seq": event.seq,
        "prev": "0x" + event.prev.hex(),
        "timestamp": event.timestamp,
    }
    if isinstance(event, Update):
        return {
            **common,
            "publish": [_key_message(k) for k in event.publish],
            "retire": [{"keyId": r.key_id, "notAfter": r.not_after} for r in event.retire],
            "setMetadata": event.set_metadata,
            "metadata": event.metadata,
        }
    if isinstance(event, Rotation):
        return {
            **common,
            "controllers": [_checksum(c) for c in event.controllers],
            "threshold": event.threshold,
            "nextCommitment": "0x" + event.next_commitment.hex(),
            "governor": _checksum(event.governor if event.governor else ZERO20),
            "operators": _operators_message(event.operators),
        }
    if isinstance(event, Delegation):
        return {**common, "operators": _operators_message(event.operators)}
    return {**common, "keyId": event.key_id, "effectiveAt": event.effective_at, "reason": event.reason}


def typed_data(domain: Domain, event: Event) -> dict[str, Any]:
    """The complete ``eth_signTypedData_v4`` payload for an event."""
    primary = PRIMARY_TYPE[event.kind]
    names = ["EIP712Domain", primary, *_REFERENCED[primary]]
    return {
        "types": {n: [{"name": f, "type": t} for f, t in TYPES[n]] for n in names},
        "primaryType": primary,
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": _checksum(domain.verifying_contract),
        },
        "message": message_of(event),
    }
