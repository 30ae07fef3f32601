"""The wire form of signed events: strict JSON, and its canonical encoding.

The wire form is never hashed (the digest is EIP-712, see ``eip712.py``), but it is still
canonical so that stored and gossiped bytes are stable: UTF-8 JSON, keys sorted, no whitespace,
hex lowercase with ``0x``. Decoding is strict: unknown, missing or duplicated fields, wrong types,
out-of-range integers and wrong hex lengths are rejected with :class:`MalformedEvent`.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from .errors import MalformedEvent, OversizedInput
from .limits import DEFAULT_LIMITS, Limits
from .records import (
    Domain,
    Event,
    Inception,
    KeyRetirement,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)

_U64_MAX = 2**64 - 1
_ENVELOPE = ("kind", "chainId", "verifyingContract", "signatures")
FIELDS: dict[str, frozenset[str]] = {
    "inception": frozenset(
        (*_ENVELOPE, "timestamp", "controllers", "threshold", "nextCommitment", "governor", "keys", "metadata")
    ),
    "update": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "publish", "retire", "setMetadata", "metadata")
    ),
    "rotation": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "controllers", "threshold", "nextCommitment")
    ),
    "revocation": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "keyId", "effectiveAt", "reason")
    ),
}
_WHAT = {kind: f"{kind} event" for kind in FIELDS}  # built once: error context for _check_fields
_KEY_FIELDS = frozenset(("keyId", "alg", "publicKey", "purposes", "notBefore", "notAfter"))
_RETIRE_FIELDS = frozenset(("keyId", "notAfter"))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise MalformedEvent(f"duplicate field {dup!r}")
    return d


# One decoder instance: json.loads(..., object_pairs_hook=...) would build a new JSONDecoder per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates)
# scan_once (the C scanner) is set in JSONDecoder.__init__ but missing from typeshed.
_scan_once = _DECODER.scan_once  # type: ignore[attr-defined]


def loads_strict(data: bytes | str) -> Any:
    """Parse UTF-8 JSON, rejecting duplicate keys; every failure is a MalformedEvent."""
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
        # Fast path: the C scanner directly, for a text that is exactly one JSON value (the canonical
        # form); surrounding whitespace and every error go through decode() for its exact message.
        try:
            obj, end = _scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            obj = _DECODER.decode(text)
        return obj
    except MalformedEvent:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedEvent(f"not valid JSON: {exc}") from None


def dumps_canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Field converters take the value itself (the decoder is the node's hottest path after recovery).


def _uint(v: Any, name: str, maximum: int = _U64_MAX) -> int:
    if type(v) is not int or v < 0 or v > maximum:
        raise MalformedEvent(f"field {name!r} must be an integer in [0, {maximum}]")
    return v


def _str(v: Any, name: str) -> str:
    if type(v) is not str:
        raise MalformedEvent(f"field {name!r} must be a string")
    return v


_fromhex = bytes.fromhex


def _hex(v: Any, name: str, length: int = -1) -> bytes:
    # Happy path first: this runs ~5 times per event. "0x" makes islower() true unless A-F appear.
    if type(v) is str and v[:2] == "0x" and v.islower():
        try:
            b = _fromhex(v[2:])
        except ValueError:
            raise MalformedEvent(f"field {name!r} is not valid hex") from None
        # fromhex tolerates whitespace; the wire form is exactly two lowercase digits per byte.
        if len(v) == 2 + 2 * len(b) and (length < 0 or len(b) == length):
            return b
    return _hex_error(v, name, length)


def _hex_error(v: Any, name: str, length: int) -> NoReturn:
    if type(v) is not str or v[:2] != "0x":
        raise MalformedEvent(f"field {name!r} must be a 0x-prefixed hex string")
    try:
        b = _fromhex(v[2:])
    except ValueError:
        raise MalformedEvent(f"field {name!r} is not valid hex") from None
    if len(v) != 2 + 2 * len(b) or not v.islower():
        raise MalformedEvent(f"field {name!r} must be lowercase hex without whitespace")
    raise MalformedEvent(f"field {name!r} must be {length} bytes, got {len(b)}")


def _list(v: Any, name: str, max_len: int) -> list[Any]:
    if type(v) is not list:
        raise MalformedEvent(f"field {name!r} must be a list")
    if len(v) > max_len:
        raise OversizedInput(f"field {name!r} has {len(v)} items, limit {max_len}")
    return v


def _check_fields(obj: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise MalformedEvent(f"{what} must be a JSON object")
    keys = obj.keys()
    if keys != allowed:
        unknown = sorted(set(keys) - allowed)
        if unknown:
            raise MalformedEvent(f"unknown field {unknown[0]!r} in {what}")
        raise MalformedEvent(f"missing field {sorted(allowed - set(keys))[0]!r} in {what}")
    return obj


def _addresses(v: Any, name: str, limits: Limits) -> tuple[bytes, ...]:
    return tuple([_hex(a, name, 20) for a in _list(v, name, limits.max_controllers)])


def _key(obj: Any, limits: Limits) -> PublishedKey:
    o = _check_fields(obj, _KEY_FIELDS, "published key")
    purposes = _list(o["purposes"], "purposes", limits.max_purposes)
    for p in purposes:
        if type(p) is not str:
            raise MalformedEvent("field 'purposes' must be a list of strings")
    return PublishedKey(
        _str(o["keyId"], "keyId"),
        _str(o["alg"], "alg"),
        _hex(o["publicKey"], "publicKey"),
        tuple(purposes),
        _uint(o["notBefore"], "notBefore"),
        _uint(o["notAfter"], "notAfter"),
    )


def _keys(v: Any, name: str, limits: Limits) -> tuple[PublishedKey, ...]:
    return tuple([_key(k, limits) for k in _list(v, name, limits.max_keys_per_event)])


_U256_MAX = 2**256 - 1
# (chainId, verifyingContract as sent) -> Domain: skips re-parsing the domain of every event and lets
# apply_event compare domains by identity.
_domains: dict[tuple[int, str], Domain] = {}


def event_from_obj(obj: Any, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Decode one signed event from its parsed JSON object."""
    if type(obj) is not dict:
        raise MalformedEvent("event must be a JSON object")
    kind = obj.get("kind")
    if type(kind) is not str or kind not in FIELDS:  # a list or object here is unhashable: check the type first
        raise MalformedEvent(f"unknown event kind {str(kind)[:40]!r}")
    o = _check_fields(obj, FIELDS[kind], _WHAT[kind])
    chain_id, contract = o["chainId"], o["verifyingContract"]
    domain = _domains.get((chain_id, contract)) if type(chain_id) is int and type(contract) is str else None
    if domain is None:
        domain = Domain(_uint(chain_id, "chainId", _U256_MAX), _hex(contract, "verifyingContract", 20))
        if len(_domains) < 64:  # a node sees one or two networks; the bound only stops cache abuse
            _domains[(chain_id, contract)] = domain
    sigs = tuple([_hex(s, "signatures", 65) for s in _list(o["signatures"], "signatures", limits.max_controllers)])
    event: Event
    if kind == "inception":
        event = Inception(
            _uint(o["timestamp"], "timestamp"),
            _addresses(o["controllers"], "controllers", limits),
            _uint(o["threshold"], "threshold", 255),
            _hex(o["nextCommitment"], "nextCommitment", 32),
            _hex(o["governor"], "governor", 20),
            _keys(o["keys"], "keys", limits),
            _str(o["metadata"], "metadata"),
        )
        return SignedEvent(event, sigs, domain)
    subject = _hex(o["subject"], "subject", 32)
    seq = _uint(o["seq"], "seq")
    prev = _hex(o["prev"], "prev", 32)
    timestamp = _uint(o["timestamp"], "timestamp")
    if kind == "update":
        retire = []
        for r in _list(o["retire"], "retire", limits.max_keys_per_event):
            ro = _check_fields(r, _RETIRE_FIELDS, "key retirement")
            retire.append(KeyRetirement(_str(ro["keyId"], "keyId"), _uint(ro["notAfter"], "notAfter")))
        set_metadata = o["setMetadata"]
        if type(set_metadata) is not bool:
            raise MalformedEvent("field 'setMetadata' must be a boolean")
        event = Update(
            subject,
            seq,
            prev,
            timestamp,
            _keys(o["publish"], "publish", limits),
            tuple(retire),
            set_metadata,
            _str(o["metadata"], "metadata"),
        )
    elif kind == "rotation":
        event = Rotation(
            subject,
            seq,
            prev,
            timestamp,
            _addresses(o["controllers"], "controllers", limits),
            _uint(o["threshold"], "threshold", 255),
            _hex(o["nextCommitment"], "nextCommitment", 32),
        )
    else:
        event = Revocation(
            subject,
            seq,
            prev,
            timestamp,
            _str(o["keyId"], "keyId"),
            _uint(o["effectiveAt"], "effectiveAt"),
            _str(o["reason"], "reason"),
        )
    return SignedEvent(event, sigs, domain)


def decode_event(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Decode one signed event from wire bytes (size-capped, strict)."""
    if len(data) > limits.max_event_bytes:
        raise OversizedInput(f"event is {len(data)} bytes, limit {limits.max_event_bytes}")
    return event_from_obj(loads_strict(data), limits)


def _key_obj(k: PublishedKey) -> dict[str, Any]:
    return {
        "keyId": k.key_id,
        "alg": k.alg,
        "publicKey": "0x" + k.public_key.hex(),
        "purposes": list(k.purposes),
        "notBefore": k.not_before,
        "notAfter": k.not_after,
    }


def event_to_obj(signed: SignedEvent) -> dict[str, Any]:
    """The JSON object of a signed event (the inverse of :func:`event_from_obj`)."""
    e = signed.event
    obj: dict[str, Any] = {
        "kind": e.kind,
        "chainId": signed.domain.chain_id,
        "verifyingContract": "0x" + signed.domain.verifying_contract.hex(),
        "signatures": ["0x" + s.hex() for s in signed.signatures],
        "timestamp": e.timestamp,
    }
    if not isinstance(e, Inception):
        obj.update(subject="0x" + e.subject.hex(), seq=e.seq, prev="0x" + e.prev.hex())
    if isinstance(e, Inception):
        obj.update(
            controllers=["0x" + c.hex() for c in e.controllers],
            threshold=e.threshold,
            nextCommitment="0x" + e.next_commitment.hex(),
            governor="0x" + e.governor.hex(),
            keys=[_key_obj(k) for k in e.keys],
            metadata=e.metadata,
        )
    elif isinstance(e, Update):
        obj.update(
            publish=[_key_obj(k) for k in e.publish],
            retire=[{"keyId": r.key_id, "notAfter": r.not_after} for r in e.retire],
            setMetadata=e.set_metadata,
            metadata=e.metadata,
        )
    elif isinstance(e, Rotation):
        obj.update(
            controllers=["0x" + c.hex() for c in e.controllers],
            threshold=e.threshold,
            nextCommitment="0x" + e.next_commitment.hex(),
        )
    else:
        obj.update(keyId=e.key_id, effectiveAt=e.effective_at, reason=e.reason)
    return obj


def encode_event(signed: SignedEvent) -> bytes:
    """Canonical wire bytes of a signed event."""
    return dumps_canonical(event_to_obj(signed))
