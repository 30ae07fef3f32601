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


class _SubjectText:
    """What :class:`StateEncoder` keeps per subject: the text of the parts that rarely change."""

    __slots__ = (
        "controllers",
        "governor",
        "head_prefix",
        "metadata",
        "middle",
        "next_commitment",
        "records",
        "subject_part",
        "texts",
    )  # fmt: skip

    def __init__(self, state: SubjectState) -> None:
        self.controllers = state.controllers
        self.governor = state.governor
        self.next_commitment = state.next_commitment
        self.metadata = state.metadata
        controllers = ",".join([f'"0x{c.hex()}"' for c in state.controllers])
        # Members in sorted order, as canonical JSON has them; strings through the JSON encoder.
        self.head_prefix = (
            f'{{"controllers":[{controllers}],"format":{STATE_FORMAT},"governor":"0x{state.governor.hex()}","head":"0x'
        )
        self.middle = (
            f',"metadata":{_str(state.metadata)},"nextCommitment":"0x{state.next_commitment.hex()}","revokedAt":'
        )
        self.subject_part = f',"subject":"0x{state.subject.hex()}","threshold":'
        # The key records last encoded, in the state's order, and their JSON texts.
        self.records: list[KeyRecord] = []
        self.texts: list[str] = []


class StateEncoder:
    """:func:`state_to_json`, remembering per subject what it encoded last: same bytes, less work.

    Successive states of a subject share their unchanged objects (controllers, metadata, KeyRecords:
    the core only replaces what an event changes), so for a subject seen before only the changed
    key records and the scalar members are encoded. The cache compares by identity and holds a
    reference to everything it compares, so a reused ``id`` cannot fool it; equal-but-new objects
    are merely re-encoded. At most ``max_subjects`` subjects are kept (cleared when full).
    """

    def __init__(self, max_subjects: int = 20_000) -> None:
        self.max_subjects = max_subjects
        self._subjects: dict[bytes, _SubjectText] = {}

    def encode(self, state: SubjectState) -> str:
        """Exactly ``state_to_json(state)`` (a property test holds the two equal)."""
        c = self._subjects.get(state.subject)
        if (
            c is None
            or c.controllers is not state.controllers
            or c.governor is not state.governor
            or c.next_commitment is not state.next_commitment
            or c.metadata is not state.metadata
        ):
            old = c
            c = _SubjectText(state)
            if old is not None:
                c.records, c.texts = old.records, old.texts
            elif len(self._subjects) >= self.max_subjects:
                self._subjects.clear()
            self._subjects[state.subject] = c
        records, texts = c.records, c.texts
        cached = len(records)
        i = 0
        for rec in state.keys.values():
            if i >= cached:
                texts.append(key_json(rec))
                records.append(rec)
            elif records[i] is not rec:
                texts[i] = key_json(rec)
                records[i] = rec
            i += 1
        if i < cached:
            del records[i:], texts[i:]
        return (
            f'{c.head_prefix}{state.head.hex()}","keys":[{",".join(texts)}],'
            f'"lastEstablishmentSeq":{state.last_establishment_seq}{c.middle}{_int(state.revoked_at)},'
            f'"revokedReason":{_str(state.revoked_reason)},"revokedSeq":{_int(state.revoked_seq)},'
            f'"seq":{state.seq}{c.subject_part}{state.threshold},"timestamp":{state.timestamp}}}'
        )


def key_json(rec: KeyRecord) -> str:
    """Canonical JSON of one key record as :func:`state_to_json` writes it (``_key_obj``'s members)."""
    k = rec.key
    purposes = _PURPOSES.get(k.purposes)
    if purposes is None:
        purposes = canonical_flat(k.purposes)
        if len(_PURPOSES) < 1024:  # a handful of distinct purpose lists in practice
            _PURPOSES[k.purposes] = purposes
    # Members in sorted order, as canonical_text would write them. Non-optional ints are ints (the
    # core's records), which an f-string writes as canonical JSON does.
    return (
        f'{{"alg":{_quote(k.alg)},"keyId":{_quote(k.key_id)},"keyNotAfter":{k.not_after},'
        f'"notAfter":{rec.not_after},"notBefore":{k.not_before},"publicKey":"0x{k.public_key.hex()}",'
        f'"publishedAt":{rec.published_at},"publishedSeq":{rec.published_seq},'
        f'"purposes":{purposes},"revokedAt":{_int(rec.revoked_at)},'
        f'"revokedReason":{_quote(rec.revoked_reason)},"revokedSeq":{_int(rec.revoked_seq)}}}'
    )


_PURPOSES: dict[tuple[str, ...], str] = {}  # purpose tuple -> its JSON list (key_json)


def _int(v: int | None) -> str:
    return "null" if v is None else str(int(v))


def _str(v: str) -> str:
    return _quote(v) if type(v) is str else canonical_text(v)


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


def key_values(
    subject: bytes,
    rec: KeyRecord,
    blob: Callable[[bytes], Any] = bytes,
    null: Any = None,
) -> tuple[Any, ...]:
    """:func:`key_row`'s values in ``keys`` column order, blobs through ``blob`` and NULL as ``null``.

    The SQL store's hot path (a test holds it equal to key_row); ``blob``/``null`` are the driver's
    cheap forms (see ``node.store.sql._Values``).
    """
    k = rec.key
    published_at, not_after, revoked_at = rec.published_at, rec.not_after, rec.revoked_at
    valid_from = k.not_before if k.not_before > published_at else published_at
    purposes = _PURPOSES.get(k.purposes) or canonical_flat(k.purposes)
    return (
        blob(subject),
        k.key_id,
        k.alg,
        blob(k.public_key),
        purposes,
        rec.published_seq,
        published_at if published_at <= I64_MAX else I64_MAX,
        valid_from if valid_from <= I64_MAX else I64_MAX,
        null if not not_after else (not_after if not_after <= I64_MAX else I64_MAX),  # 0 (no expiry): NULL
        null if revoked_at is None else (revoked_at if revoked_at <= I64_MAX else I64_MAX),
        null if rec.revoked_seq is None else rec.revoked_seq,
        rec.revoked_reason,
    )


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
