"""Key state at time T: the verdict a verifier returns for (subject, key id, time, purpose).

A pure function of the subject's state (the log), the governance revocations executed for it,
and whether the subject is disputed. Verdicts and their precedence (docs/protocol.md section 7):

    unknown-subject > disputed > unknown-key > revoked > not-yet-valid > expired > wrong-purpose > valid

Revocation wins over time checks because it is the most important fact a verifier can learn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .log import KeyRecord, SubjectState
from .records import GovernanceRevocation

Status = Literal[
    "valid", "not-yet-valid", "expired", "revoked", "wrong-purpose", "unknown-key", "unknown-subject", "disputed"
]
STATUSES: tuple[Status, ...] = (
    "valid",
    "not-yet-valid",
    "expired",
    "revoked",
    "wrong-purpose",
    "unknown-key",
    "unknown-subject",
    "disputed",
)


@dataclass(frozen=True, slots=True)
class Revoked:
    """Who revoked a key and since when."""

    by: Literal["controller", "governance"]
    since: int
    reason: str
    seq: int | None = None  # controller revocation: the revoking event's seq
    proposal_id: int | None = None  # governance: the proposal that executed it
    governor: bytes | None = None
    whole_subject: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "is key K of subject S valid for purpose P at time T"."""

    status: Status
    reason: str
    subject: bytes
    key_id: str
    at: int
    purpose: str | None = None
    revoked: Revoked | None = None
    key: KeyRecord | None = None

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form used by the API, the CLI and the SDK."""
        out: dict[str, Any] = {
            "status": self.status,
            "valid": self.ok,
            "reason": self.reason,
            "subject": "0x" + self.subject.hex(),
            "keyId": self.key_id,
            "at": self.at,
            "purpose": self.purpose,
        }
        if self.revoked is not None:
            r = self.revoked
            out["revoked"] = {
                "by": r.by,
                "since": r.since,
                "reason": r.reason,
                "seq": r.seq,
                "proposalId": str(r.proposal_id) if r.proposal_id is not None else None,
                "governor": "0x" + r.governor.hex() if r.governor else None,
                "wholeSubject": r.whole_subject,
            }
        if self.key is not None:
            k = self.key
            out["key"] = {
                "alg": k.key.alg,
                "publicKey": "0x" + k.key.public_key.hex(),
                "purposes": list(k.key.purposes),
                "validFrom": k.valid_from,
                "notAfter": k.not_after,
            }
        return out


def effective_revocation(
    state: SubjectState, key_id: str, governance: Iterable[GovernanceRevocation] = ()
) -> Revoked | None:
    """The earliest-effective revocation that applies to key_id (or the whole subject)."""
    found: list[Revoked] = []
    if state.revoked_at is not None:
        found.append(
            Revoked("controller", state.revoked_at, state.revoked_reason, seq=state.revoked_seq, whole_subject=True)
        )
    rec = state.keys.get(key_id)
    if rec is not None and rec.revoked_at is not None:
        found.append(Revoked("controller", rec.revoked_at, rec.revoked_reason, seq=rec.revoked_seq))
    for g in governance:
        # Only a governor an establishment event of the log named counts, whatever the source
        # claims (docs/protocol.md 8.3): the old DAO's revocations stay after a move, so that
        # changing the governor never un-revokes a key. ``governors`` holds no zero address.
        if g.subject != state.subject or g.governor not in state.governors:
            continue
        if g.key_id in ("", key_id):
            found.append(
                Revoked(
                    "governance",
                    g.effective_at,
                    "0x" + g.reason_hash.hex(),
                    proposal_id=g.proposal_id,
                    governor=g.governor,
                    whole_subject=g.key_id == "",
                )
            )
    return min(found, key=lambda r: r.since) if found else None


def key_verdict(
    state: SubjectState | None,
    subject: bytes,
    key_id: str,
    at: int,
    purpose: str | None = None,
    governance: Iterable[GovernanceRevocation] = (),
    disputed: bool = False,
) -> Verdict:
    """The verdict for key_id of subject at time ``at`` (unix seconds), optionally for a purpose."""

    def v(status: Status, reason: str, **kw: Any) -> Verdict:
        return Verdict(status, reason, subject, key_id, at, purpose, **kw)

    if state is None:
        return v("unknown-subject", "no inception is known for this subject")
    if disputed:
        return v("disputed", "two valid events exist at one seq and no anchor resolves them; failing closed")
    rec = state.keys.get(key_id)
    if rec is None:
        return v("unknown-key", f"subject has no key {key_id!r}")
    revoked = effective_revocation(state, key_id, governance)
    if revoked is not None and revoked.since <= at:
        who = "controllers" if revoked.by == "controller" else f"governance (proposal {revoked.proposal_id})"
        scope = "subject" if revoked.whole_subject else "key"
        return v("revoked", f"{scope} revoked by {who} since {revoked.since}", revoked=revoked, key=rec)
    if at < rec.valid_from:
        return v("not-yet-valid", f"key is valid from {rec.valid_from}", key=rec)
    if rec.not_after and at >= rec.not_after:
        return v("expired", f"key expired at {rec.not_after}", key=rec)
    if purpose is not None and purpose not in rec.key.purposes:
        return v("wrong-purpose", f"key purposes are {', '.join(rec.key.purposes)}", key=rec)
    return v("valid", "key is valid" + (f" for {purpose}" if purpose else ""), key=rec)


def valid_keys(
    state: SubjectState,
    at: int,
    purpose: str | None = None,
    governance: Iterable[GovernanceRevocation] = (),
) -> list[KeyRecord]:
    """Every key of the subject valid at ``at`` (the JWKS view), ordered by publication."""
    gov = list(governance)
    out = [rec for kid, rec in state.keys.items() if key_verdict(state, state.subject, kid, at, purpose, gov).ok]
    return sorted(out, key=lambda r: (r.published_seq, r.key.key_id))
