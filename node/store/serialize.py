"""Row and JSON forms of the derived state: the only place the store turns records into columns.

The subject state column holds :func:`state_to_json`: canonical JSON (node/core/canonical_json.py),
with the published keys as a *list in the state's own order* (publication order), so
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

from ..core.canonical_json import canonical_text
from ..core.log import KeyRecord, SubjectState
from ..core.records import GovernanceRevocation, OperatorSet, PublishedKey

I64_MAX = 2**63 - 1

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
        "keys": [_key_obj(rec) for rec in state.keys.values()],
        "revokedAt": state.revoked_at,
        "revokedSeq": state.revoked_seq,
        "revokedReason": state.revoked_reason,
        "lastEstablishmentSeq": state.last_establishment_seq,
        # protocol 2 (additive: a state stored without them reads as no operators, its one governor)
        "operators": {
            "operators": [_hex(a) for a in state.operators.operators],
            "threshold": state.operators.threshold,
            "purposes": list(state.operators.purposes),
            "maxValidity": state.operators.max_validity,
            "maxKeys": state.operators.max_keys,
        },
        "governors": [_hex(g) for g in state.governors],
        "headAuthority": state.head_authority,
    }


def state_from_obj(o: dict[str, Any]) -> SubjectState:
    """Rebuild a SubjectState from :func:`state_to_obj` output."""
    if o.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown subject state format {o.get('format')!r}")
    keys = {k["keyId"]: _key_rec(k) for k in o["keys"]}
    ops = o.get("operators")
    operators = OperatorSet(
        tuple(_unhex(a) for a in ops["operators"]), ops["threshold"], tuple(ops["purposes"]),
        ops["maxValidity"], ops["maxKeys"],
    ) if ops else OperatorSet()  # fmt: skip
    governor = _unhex(o["governor"])
    governors = o.get("governors")
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
        operators=operators,
        governors=tuple(_unhex(g) for g in governors) if governors is not None else (governor,) * any(governor),
        head_authority="operators" if o.get("headAuthority") == "operators" else "controllers",
    )


def state_to_json(state: SubjectState) -> str:
    """Deterministic JSON text of a subject state."""
    return canonical_text(state_to_obj(state))


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
        "purposes": canonical_text(k.purposes),
        "published_seq": rec.published_seq,
        "published_at": clamp64(rec.published_at),
        "valid_from": clamp64(rec.valid_from),
        "not_after": clamp64(rec.not_after) or None,  # 0 (no expiry) reads as NULL
        "revoked_at": clamp64(rec.revoked_at),
        "revoked_seq": rec.revoked_seq,
        "revoked_reason": rec.revoked_reason,
    }


def key_values(
    subject: bytes,
    rec: KeyRecord,
    blob: Callable[[bytes], Any] = bytes,
    null: Any = None,
) -> tuple[Any, ...]:
    """:func:`key_row`'s values in ``keys`` column order, blobs through ``blob`` and NULL as ``null``.

    The SQL store's hot path (a test holds it equal to key_row); ``blob``/``null`` are the driver's
    cheap forms (see ``keyreg.store.sql._Values``).
    """
    k = rec.key
    published_at, not_after, revoked_at = rec.published_at, rec.not_after, rec.revoked_at
    valid_from = k.not_before if k.not_before > published_at else published_at
    return (
        blob(subject),
        k.key_id,
        k.alg,
        blob(k.public_key),
        canonical_text(k.purposes),
        rec.published_seq,
        published_at if published_at <= I64_MAX else I64_MAX,
        valid_from if valid_from <= I64_MAX else I64_MAX,
        null if not not_after else (not_after if not_after <= I64_MAX else I64_MAX),  # 0 (no expiry): NULL
        null if revoked_at is None else (revoked_at if revoked_at <= I64_MAX else I64_MAX),
        null if rec.revoked_seq is None else rec.revoked_seq,
        rec.revoked_reason,
    )


def governance_to_json(g: GovernanceRevocation) -> str:
    """Exact canonical JSON of a governance revocation (its uint256/uint64 fields stay exact)."""
    return canonical_text(
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
    )


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
