"""JSON views of registry state: subject state, JWKS (RFC 7517), DID documents, evidence.

Pure functions of core records: the API, the CLI and the demo render the same shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.codec import event_to_obj, operator_set_to_obj
from ..core.fork import Duplicity
from ..core.keystate import key_verdict
from ..core.log import KeyRecord, SubjectState
from ..core.purposes import DID_RELATIONSHIPS, did_relationships, jwk_usage
from ..core.records import GovernanceRevocation
from ..keys.service_keys import JWS_ALG, public_jwk
from ..store.base import AnchorRecord


def hex0x(b: bytes) -> str:
    return "0x" + b.hex()


def key_jwk(rec: KeyRecord) -> dict[str, Any]:
    """The public JWK of a published key: kid, alg, use or key_ops (node/core/purposes.py) and the
    key's purposes."""
    k = rec.key
    jwk = public_jwk(k.alg, k.public_key, k.key_id)
    jwk["alg"] = JWS_ALG[k.alg]
    jwk.update(jwk_usage(k.purposes))
    jwk["purposes"] = list(k.purposes)  # extension member: the registry's purposes, verbatim
    if rec.valid_from:
        jwk["nbf"] = rec.valid_from
    if rec.not_after:
        jwk["exp"] = rec.not_after
    return jwk


# Successors offered ahead of their activation (docs/adr/0013-jwks-successor-keys.md): the soonest
# few, so a subject that pre-published many keys cannot make every JWKS answer large.
MAX_UPCOMING = 4


def upcoming_keys(state: SubjectState, at: int, valid_at: Callable[[str, int], bool]) -> list[KeyRecord]:
    """Published keys not valid at ``at`` that will be from their activation (successors), soonest
    first, at most :data:`MAX_UPCOMING`. ``valid_at(kid, t)``: the key's verdict at t is valid."""
    later = sorted((r for r in state.keys.values() if r.valid_from > at), key=lambda r: (r.valid_from, r.key.key_id))
    out: list[KeyRecord] = []
    for r in later:
        if len(out) == MAX_UPCOMING:
            break
        if valid_at(r.key.key_id, r.valid_from):
            out.append(r)
    return out


def jwks(keys: Iterable[KeyRecord], upcoming: Sequence[KeyRecord] = ()) -> dict[str, Any]:
    """RFC 7517 JWK Set of the valid keys, then the published successors; every JWK with a window
    carries it as ``nbf``/``exp`` (NumericDate, non-standard members that JWKS clients ignore).

    Points are checked when a key is published (node/core/points.py), but a node may hold keys
    stored before that rule: a key whose bytes are no point of its curve has no JWK and is left
    out (nobody can use it), here and in the DID document, instead of failing the whole answer.
    """
    out: list[dict[str, Any]] = []
    for r in [*keys, *upcoming]:
        with contextlib.suppress(ValueError):  # not a curve point (see above)
            out.append(key_jwk(r))
    return {"keys": out}


def key_view(
    state: SubjectState, rec: KeyRecord, at: int, governance: Iterable[GovernanceRevocation]
) -> dict[str, Any]:
    v = key_verdict(state, state.subject, rec.key.key_id, at, None, governance)
    return {
        "keyId": rec.key.key_id,
        "alg": rec.key.alg,
        "publicKey": hex0x(rec.key.public_key),
        "purposes": list(rec.key.purposes),
        "notBefore": rec.key.not_before,
        "notAfter": rec.not_after,
        "validFrom": rec.valid_from,
        "publishedSeq": rec.published_seq,
        "revokedAt": rec.revoked_at,
        "status": v.status,
    }


def anchor_status(state: SubjectState, anchors: list[AnchorRecord], digest_at_seq: bytes | None) -> dict[str, Any]:
    """Where the chain's view of the subject stands relative to ours.

    ``equal``: the chain anchors our head; ``ahead``: we hold newer events than the last anchor;
    ``behind``: the chain anchors a seq we do not have (we are missing events); ``conflict``: the
    anchored digest at that seq is not ours; ``unanchored``: no anchor seen (or chain features off).
    ``digest_at_seq`` is our digest at the anchored seq.
    """
    if not anchors:
        return {"status": "unanchored", "seq": None, "digest": None, "direct": None}
    last = max(anchors, key=lambda a: (a.seq, a.position))
    out: dict[str, Any] = {"seq": last.seq, "digest": hex0x(last.digest), "block": last.block_number, "mode": last.mode}
    # The registry's own head (what offline verifiers read from storage): only it proves nothing newer
    # was omitted, so the CLI waits on it after authority-reducing events (ADR 0012).
    directs = [a for a in anchors if a.mode != "batch"]
    d = max(directs, key=lambda a: (a.seq, a.position)) if directs else None
    out["direct"] = None if d is None else {"seq": d.seq, "digest": hex0x(d.digest), "block": d.block_number}
    if last.seq > state.seq:
        out["status"] = "behind"
    elif digest_at_seq != last.digest:
        out["status"] = "conflict"
    else:
        out["status"] = "equal" if last.seq == state.seq else "ahead"
    return out


def verdict_basis(state: SubjectState | None, direct: AnchorRecord | None, key_id: str) -> dict[str, Any] | None:
    """What an online verdict rests on (ADR 0012): the registry head the node confirmed, and what is newer.

    ``unprovenFrom``: the first seq of the node's log that no direct anchor covers (null if none): a
    node could withhold events after it. ``verdictUnproven``: the key's publication or revocation, or
    the subject's revocation, is one of those events. ``behind``: the registry holds a newer head than
    this node (it misses events: do not trust its answer). O(1): no store access on the hot route
    (a direct head below the log's head is taken to be on the held branch; GET /v1/subjects/{id}
    compares the digests).
    """
    if state is None:
        return None
    if direct is None:
        start = 0
    elif direct.seq == state.seq and direct.digest != state.head:
        start = direct.seq  # the registry holds another event at our head's seq: ours is unproven
    else:
        start = min(direct.seq, state.seq) + 1
    rec = state.keys.get(key_id)
    decisive = [state.revoked_seq]
    if rec is not None:
        decisive += [rec.published_seq, rec.revoked_seq]
    return {
        "logSeq": state.seq,
        "direct": None
        if direct is None
        else {"seq": direct.seq, "digest": hex0x(direct.digest), "block": direct.block_number, "how": "direct"},
        "behind": direct is not None and direct.seq > state.seq,
        "unprovenFrom": start if start <= state.seq else None,
        "verdictUnproven": any(seq is not None and seq >= start for seq in decisive),
    }


def subject_view(
    state: SubjectState,
    at: int,
    disputed: bool,
    governance: list[GovernanceRevocation],
    anchor: dict[str, Any],
) -> dict[str, Any]:
    """GET /v1/subjects/{id}: the head state."""
    keys = sorted(state.keys.values(), key=lambda r: (r.published_seq, r.key.key_id))
    return {
        "subject": hex0x(state.subject),
        "seq": state.seq,
        "head": hex0x(state.head),
        "timestamp": state.timestamp,
        "controllers": [hex0x(c) for c in state.controllers],
        "threshold": state.threshold,
        "nextCommitment": hex0x(state.next_commitment),
        "governor": hex0x(state.governor) if any(state.governor) else None,
        # protocol 2: every governor the log named (8.3), the operator set in force, who signed the head
        "governors": [hex0x(g) for g in state.governors],
        "operators": operator_set_to_obj(state.operators) if state.operators.operators else None,
        "headAuthority": state.head_authority,
        "metadata": state.metadata,
        "disputed": disputed,
        "revoked": (
            {"at": state.revoked_at, "seq": state.revoked_seq, "reason": state.revoked_reason}
            if state.revoked_at is not None
            else None
        ),
        "governanceRevocations": [
            {"keyId": g.key_id, "effectiveAt": g.effective_at, "proposalId": str(g.proposal_id)} for g in governance
        ],
        "keys": [key_view(state, r, at, governance) for r in keys],
        "anchor": anchor,
        "at": at,
    }


def did_of(chain_id: int, subject: bytes) -> str:
    """did:keyreg:<chainId>:0x<subject hex>."""
    return f"did:keyreg:{chain_id}:{hex0x(subject)}"


def did_document(
    chain_id: int, state: SubjectState, valid: list[KeyRecord], upcoming: Sequence[KeyRecord] = ()
) -> dict[str, Any]:
    """A W3C DID document: one JsonWebKey2020 verification method per key valid now, then one per
    published successor (as in the JWKS), each with its window as ``validFrom``/``validUntil``
    (Unix seconds; extension members, docs/adr/0013-jwks-successor-keys.md).

    Each method is referenced from the verification relationships its purposes grant
    (node/core/purposes.py, the same table as the JWKS ``use``).
    """
    did = did_of(chain_id, state.subject)
    methods: list[dict[str, Any]] = []
    related: dict[str, list[str]] = {r: [] for r in DID_RELATIONSHIPS}
    for rec in [*valid, *upcoming]:
        vm_id = f"{did}#{rec.key.key_id}"
        try:
            jwk = public_jwk(rec.key.alg, rec.key.public_key)
        except ValueError:  # not a curve point: left out, as in the JWKS
            continue
        vm: dict[str, Any] = {"id": vm_id, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk}
        if rec.valid_from:
            vm["validFrom"] = rec.valid_from
        if rec.not_after:
            vm["validUntil"] = rec.not_after
        methods.append(vm)
        for relationship in did_relationships(rec.key.purposes):
            related[relationship].append(vm_id)
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
        "id": did,
        "controller": did,
        "verificationMethod": methods,
        **related,
    }
    if state.revoked_at is not None:
        doc["deactivated"] = True
    return doc


def evidence_view(ev: Duplicity) -> dict[str, Any]:
    return {
        "subject": hex0x(ev.subject),
        "seq": ev.seq,
        "first": {"digest": hex0x(ev.first_digest), "event": event_to_obj(ev.first)},
        "second": {"digest": hex0x(ev.second_digest), "event": event_to_obj(ev.second)},
    }
