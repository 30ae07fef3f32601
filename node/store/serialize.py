"""Row and JSON forms of the derived state: the only place the store turns records into columns.

The subject state column holds :func:`state_to_json`: canonical JSON (sorted object keys, no
whitespace), with the published keys as a *list in the state's own order* (publication order), so
``state_from_json(state_to_json(s)) == s`` holds exactly, key order included, and equal states
always give equal bytes.

SQL integer columns are signed 64-bit but protocol times are uint64: query columns of derived
tables hold ``min(value, I64_MAX)`` (:func:`clamp64`). The JSON column stays exact and is the
source of truth; ``db check`` compares both against a replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from ..core.codec import dumps_canonical
from ..core.log import KeyRecord, SubjectState
from ..core.records import GovernanceRevocation, PublishedKey

I64_MAX = 2**63 - 1

# ``dumps_canonical(obj).decode()`` without building a JSONEncoder per call (json.dumps does that
# whenever it gets options); the store encodes several small values per event.
canonical_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# The C string escaper canonical_text uses for str (ensure_ascii=False).
_quote = json.encoder.encode_basestring


def canonical_scalar(v: Any) -> str:
    """``canonical_text(v)`` for None, bool, int, str without the encoder's per-call set-up.

    ``JSONEncoder.encode`` builds a new C encoder for every non-str value; for the store's many
    small values (audit seq and details, key purposes) that set-up was most of the cost.
    """
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    t = type(v)
    if t is str:
        return _quote(v)
    if t is int:
        return int.__repr__(v)
    return canonical_text(v)


_SCALAR: dict[type, Callable[[Any], str]] = {
    str: _quote,
    int: int.__repr__,
    bool: lambda v: "true" if v else "false",
    type(None): lambda _v: "null",
}


def flat_json(obj: dict[str, Any]) -> str | None:
    """``canonical_text(obj)`` for a dict of str keys to exactly None/bool/int/str; None otherwise."""
    try:
        return "{" + ",".join([_quote(k) + ":" + _SCALAR[type(v)](v) for k, v in sorted(obj.items())]) + "}"
    except (KeyError, TypeError):
        return None


def canonical_flat(obj: Any) -> str:
    """``canonical_text(obj)``, fast for a flat dict (see :func:`flat_json`) or a list of str.

    Anything else (nested values, floats, subclasses) goes through canonical_text; a property
    test holds both equal.
    """
    t = type(obj)
    if t is dict:
        text = flat_json(obj)
        return canonical_text(obj) if text is None else text
    if (t is list or t is tuple) and all(type(v) is str for v in obj):
        return "[" + ",".join([_quote(v) for v in obj]) + "]"
    return canonical_scalar(obj)


STATE_FORMAT = 1  # bump (with a migration) if the JSON shape changes


def clamp64(value: int | None) -> int | None:
    """A uint64 as a signed-64 query column: values past I64_MAX read as 'never'."""
    return None if value is None else min(value, I64_MAX)


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:])


def _key_obj(rec: KeyRecord) -> dict[str, Any]:
    k = rec.key
    return {
        "keyId": k.key_id,
        "alg": k.alg,
        "publicKey": _hex(k.public_key),
        "purposes": list(k.purposes),
        "notBefore": k.not_before,
        "keyNotAfter": k.not_after,
        "publishedSeq": rec.published_seq,
        "publishedAt": rec.published_at,
        "notAfter": rec.not_after,
        "revokedAt": rec.revoked_at,
        "revokedSeq": rec.revoked_seq,
        "revokedReason": rec.revoked_reason,
    }


def _key_rec(o: dict[str, Any]) -> KeyRecord:
    key = PublishedKey(
        key_id=o["keyId"],
        alg=o["alg"],
        public_key=_unhex(o["publicKey"]),
        purposes=tuple(o["purposes"]),
        not_before=o["notBefore"],
        not_after=o["keyNotAfter"],
    )
    return KeyRecord(
        key=key,
        published_seq=o["publishedSeq"],
        published_at=o["publishedAt"],
        not_after=o["notAfter"],
        revoked_at=o["revokedAt"],
        revoked_seq=o["revokedSeq"],
        revoked_reason=o["revokedReason"],
    )


def state_to_obj(state: SubjectState) -> dict[str, Any]:
    """The JSON object of a subject state (the inverse of :func:`state_from_obj`)."""
    obj = state_to_obj_without_keys(state)
    obj["keys"] = [_key_obj(rec) for rec in state.keys.values()]
    return obj


def state_from_obj(o: dict[str, Any]) -> SubjectState:
    """Rebuild a SubjectState from :func:`state_to_obj` output."""
    if o.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown subject state format {o.get('format')!r}")
    keys = {k["keyId"]: _key_rec(k) for k in o["keys"]}
    return SubjectState(
        subject=_unhex(o["subject"]),
        seq=o["seq"],
        head=_unhex(o["head"]),
        timestamp=o["timestamp"],
        controllers=tuple(_unhex(c) for c in o["controllers"]),
        threshold=o["threshold"],
        next_commitment=_unhex(o["nextCommitment"]),
        governor=_unhex(o["governor"]),
        metadata=o["metadata"],
        keys=MappingProxyType(keys),
        revoked_at=o["revokedAt"],
        revoked_seq=o["revokedSeq"],
        revoked_reason=o["revokedReason"],
        last_establishment_seq=o["lastEstablishmentSeq"],
    )


def state_to_json(state: SubjectState) -> str:
    """Deterministic JSON text of a subject state."""
    return dumps_canonical(state_to_obj(state)).decode()


class StateEncoder:
    """:func:`state_to_json` with each key record's JSON cached: same bytes, a fraction of the work.

    Successive states of a subject share their unchanged KeyRecord objects, so only new or changed
    records are encoded. The cache holds a reference to each record, so an ``id`` is never reused
    while cached; it is cleared when it reaches ``max_entries``.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._cache: dict[int, tuple[KeyRecord, str]] = {}

    def _key_json(self, rec: KeyRecord) -> str:
        hit = self._cache.get(id(rec))
        if hit is not None and hit[0] is rec:
            return hit[1]
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        k = rec.key
        # _key_obj's members in sorted order (canonical JSON), as canonical_text would write them.
        text = (
            f'{{"alg":{_quote(k.alg)},"keyId":{_quote(k.key_id)},"keyNotAfter":{_int(k.not_after)},'
            f'"notAfter":{_int(rec.not_after)},"notBefore":{_int(k.not_before)},"publicKey":"0x{k.public_key.hex()}",'
            f'"publishedAt":{_int(rec.published_at)},"publishedSeq":{_int(rec.published_seq)},'
            f'"purposes":{canonical_flat(k.purposes)},"revokedAt":{_int(rec.revoked_at)},'
            f'"revokedReason":{_quote(rec.revoked_reason)},"revokedSeq":{_int(rec.revoked_seq)}}}'
        )
        self._cache[id(rec)] = (rec, text)
        return text

    def encode(self, state: SubjectState) -> str:
        """Exactly ``state_to_json(state)`` (a property test holds the two equal)."""
        keys = ",".join([self._key_json(rec) for rec in state.keys.values()])
        controllers = ",".join([f'"0x{c.hex()}"' for c in state.controllers])
        # Members in sorted order, as canonical JSON has them; strings through the JSON encoder.
        return (
            f'{{"controllers":[{controllers}],"format":{STATE_FORMAT},"governor":"0x{state.governor.hex()}",'
            f'"head":"0x{state.head.hex()}","keys":[{keys}],'
            f'"lastEstablishmentSeq":{_int(state.last_establishment_seq)},"metadata":{_str(state.metadata)},'
            f'"nextCommitment":"0x{state.next_commitment.hex()}","revokedAt":{_int(state.revoked_at)},'
            f'"revokedReason":{_str(state.revoked_reason)},"revokedSeq":{_int(state.revoked_seq)},'
            f'"seq":{_int(state.seq)},"subject":"0x{state.subject.hex()}","threshold":{_int(state.threshold)},'
            f'"timestamp":{_int(state.timestamp)}}}'
        )


def _int(v: int | None) -> str:
    return "null" if v is None else str(int(v))


def _str(v: str) -> str:
    return canonical_text(v)


def state_to_obj_without_keys(state: SubjectState) -> dict[str, Any]:
    """:func:`state_to_obj` minus the ``keys`` member."""
    return {
        "format": STATE_FORMAT,
        "subject": _hex(state.subject),
        "seq": state.seq,
        "head": _hex(state.head),
        "timestamp": state.timestamp,
        "controllers": [_hex(c) for c in state.controllers],
        "threshold": state.threshold,
        "nextCommitment": _hex(state.next_commitment),
        "governor": _hex(state.governor),
        "metadata": state.metadata,
        "revokedAt": state.revoked_at,
        "revokedSeq": state.revoked_seq,
        "revokedReason": state.revoked_reason,
        "lastEstablishmentSeq": state.last_establishment_seq,
    }


def state_from_json(text: str) -> SubjectState:
    """Inverse of :func:`state_to_json`."""
    return state_from_obj(json.loads(text))


def key_row(subject: bytes, rec: KeyRecord) -> dict[str, Any]:
    """The ``keys`` table row of one key record (query columns; see the clamp note above)."""
    k = rec.key
    return {
        "subject": subject,
        "key_id": k.key_id,
        "alg": k.alg,
        "public_key": k.public_key,
        "purposes": canonical_flat(k.purposes),
        "published_seq": rec.published_seq,
        "published_at": clamp64(rec.published_at),
        "valid_from": clamp64(rec.valid_from),
        "not_after": clamp64(rec.not_after) or None,  # 0 (no expiry) reads as NULL
        "revoked_at": clamp64(rec.revoked_at),
        "revoked_seq": rec.revoked_seq,
        "revoked_reason": rec.revoked_reason,
    }


def subject_row(state: SubjectState, encoder: StateEncoder | None = None) -> dict[str, Any]:
    """The ``subjects`` table row of a head state (``disputed`` is written separately)."""
    return {
        "subject": state.subject,
        "seq": state.seq,
        "head": state.head,
        "revoked_at": clamp64(state.revoked_at),
        "state": encoder.encode(state) if encoder else state_to_json(state),
    }


def governance_to_json(g: GovernanceRevocation) -> str:
    """Exact canonical JSON of a governance revocation (its uint256/uint64 fields stay exact)."""
    return dumps_canonical(
        {
            "subject": _hex(g.subject),
            "keyId": g.key_id,
            "effectiveAt": g.effective_at,
            "reasonHash": _hex(g.reason_hash),
            "proposalId": str(g.proposal_id),
            "governor": _hex(g.governor),
            "blockNumber": g.block_number,
            "txHash": _hex(g.tx_hash),
        }
    ).decode()


def governance_from_json(text: str) -> GovernanceRevocation:
    """Inverse of :func:`governance_to_json`."""
    o = json.loads(text)
    return GovernanceRevocation(
        subject=_unhex(o["subject"]),
        key_id=o["keyId"],
        effective_at=o["effectiveAt"],
        reason_hash=_unhex(o["reasonHash"]),
        proposal_id=int(o["proposalId"]),
        governor=_unhex(o["governor"]),
        block_number=o["blockNumber"],
        tx_hash=_unhex(o["txHash"]),
    )
