"""The offline verifier: load a bundle, check it against a pinned checkpoint, answer key questions.

Trust: only cryptography and the block hash the caller pins. :meth:`Verifier.from_bundle` checks
everything once, in one pass (:mod:`keyreg.verify.loading`: checkpoint, account and storage proofs,
batch inclusion proofs, log replay, duplicity evidence, governance), and refuses the whole bundle
on the first fault with a specific :class:`~keyreg.verify.errors.BundleRefused`. Afterwards it
answers key questions from the verified views; checks of a subject whose anchored head is newer
than its log (the exporter hid it) raise :class:`~keyreg.verify.errors.StaleView`.

Every answer rests on an anchored head, which :meth:`Verifier.basis` names: the registry's own head
(a *direct* anchor, read from the contract's storage through the proofs) and any batch root shown.
Only the direct head proves that nothing newer exists: a batch root proves that an event existed,
and an exporter can leave a batch root out. So the log's events newer than the direct head are
*unproven* (an exporter could have hidden a revocation after them), and a verdict that rests on one
of them says so (:attr:`Basis.decisive`). Subjects that anchor every authority-reducing event
directly (the CLI's default) leave nothing unproven that could hide a revocation (ADR 0012).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.eip712 import event_digest
from ..core.keystate import Verdict, key_verdict, valid_keys
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.log import KeyRecord
from ..core.records import Domain, Revocation, SignedEvent, Update
from . import signatures
from .bundle import Bundle, SubjectEntry, decode_envelope
from .errors import BundleFormatError, BundleStale, DomainMismatch, StaleView
from .header import Header
from .loading import Anchor, SubjectView, check_checkpoint, cyclic_gc_paused, default_workers, verify_subjects

__all__ = [
    "Anchor",
    "Basis",
    "SignatureCheck",
    "SubjectView",
    "Verifier",
    "default_workers",
    "iter_views",
    "open_bundle",
]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of verifying a signature by a subject's key."""

    valid: bool
    verdict: Verdict  # the key's own verdict at the signing time
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"signatureValid": self.valid, "reason": self.reason, "verdict": self.verdict.to_dict()}


@dataclass(frozen=True, slots=True)
class Basis:
    """The anchored head an answer about one subject rests on, and what in its log is unproven.

    ``direct`` is the registry's head at the checkpoint (proven by the storage proof; None if the
    subject was never anchored directly); ``batch`` the batch-root leaf the bundle shows, if any.
    ``unproven`` are the seqs of the log's events newer than the direct head: they are validly signed
    but nothing proves the exporter did not hide later events after them (a batch root can be left
    out of a bundle). ``decisive`` are the unproven seqs the verdict for ``key_id`` depends on (the
    events that published, retired or revoked that key, or revoked the whole subject).
    ``operator_signed`` are the unproven seqs whose event the operators signed (protocol 2: an
    update within the operator limits, not the controllers' word).
    """

    subject: bytes
    log_seq: int
    direct: Anchor | None
    batch: Anchor | None
    unproven: tuple[int, ...]
    key_id: str | None = None
    decisive: tuple[int, ...] = ()
    operator_signed: tuple[int, ...] = ()

    @property
    def proven(self) -> bool:
        """True when the direct head is the log's head: nothing in the answer is unproven."""
        return not self.unproven

    def describe(self, verdict: bool = True) -> str:
        """One line for people: which head the answer rests on and what is unproven (``verdict``: and
        which unproven events the verdict depends on)."""
        if self.direct is not None:
            text = f"registry head seq {self.direct.seq} (0x{self.direct.digest.hex()[:16]}..., direct, storage proof)"
        else:
            text = "no direct anchor (the registry holds no head for this subject)"
        if self.batch is not None:
            text += f"; batch root 0x{(self.batch.root or b'').hex()[:16]}... holds seq {self.batch.seq}"
        if self.unproven:
            text += f"; log events seq {_seqs(self.unproven)} are newer than the direct head: unproven"
        if verdict and self.decisive:
            text += f"; this verdict depends on unproven event seq {_seqs(self.decisive)}"
            by_operators = tuple(seq for seq in self.decisive if seq in self.operator_signed)
            if by_operators:
                text += f" (operator-signed: seq {_seqs(by_operators)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``keyreg verify --json`` key ``basedOn``)."""
        return {
            "logSeq": self.log_seq,
            "direct": _anchor_dict(self.direct),
            "batch": _anchor_dict(self.batch),
            "unproven": list(self.unproven),
            "decisive": list(self.decisive),
            "verdictUnproven": bool(self.decisive),
            "operatorSigned": list(self.operator_signed),
        }


def _anchor_dict(a: Anchor | None) -> dict[str, Any] | None:
    if a is None:
        return None
    out: dict[str, Any] = {"seq": a.seq, "digest": "0x" + a.digest.hex(), "how": a.source}
    if a.root is not None:
        out["root"] = "0x" + a.root.hex()
    return out


def _seqs(seqs: tuple[int, ...]) -> str:
    return str(seqs[0]) if len(seqs) == 1 else ", ".join(str(s) for s in seqs)


def _touches(signed: SignedEvent, key_id: str) -> bool:
    """Does this event decide a verdict about ``key_id``: publish, retire or revoke it, or revoke the subject?"""
    event = signed.event
    if isinstance(event, Revocation):
        return event.key_id in ("", key_id)
    if isinstance(event, Update):
        return any(k.key_id == key_id for k in event.publish) or any(r.key_id == key_id for r in event.retire)
    return False


def _held_events(domain: Domain, entry: SubjectEntry, view: SubjectView, start: int) -> dict[int, SignedEvent]:
    """The held branch's events at seq >= ``start`` (fork choice may hold evidence events, not the listed log)."""
    if not entry.evidence:  # no fork choice ran: the listed log is the held branch
        return {s.event.seq: s for s in entry.events[start:]}
    wanted = {view.digests[seq]: seq for seq in range(start, len(view.digests))}
    out: dict[int, SignedEvent] = {}
    for signed in (*entry.events, *(s for ev in entry.evidence for s in (ev.first, ev.second))):
        if signed.event.seq >= start:
            seq = wanted.get(event_digest(domain, signed.event))
            if seq is not None:
                out[seq] = signed
    return out


def parse_hash(value: bytes | str, what: str = "block hash") -> bytes:
    """A 32-byte hash given as bytes or 0x-hex."""
    if isinstance(value, bytes):
        b = value
    else:
        try:
            b = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise ValueError(f"{what} {value[:80]!r} is not hex") from None
    if len(b) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(b)}")
    return b


def _subject_id(subject: bytes | str) -> bytes:
    return parse_hash(subject, "subject id")


def _load(source: bytes | str | Path) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise BundleFormatError(f"cannot read bundle {source}: {exc.strerror}", part="file") from None


class Verifier:
    """A verified bundle, ready to answer key questions offline. Build with :meth:`from_bundle`."""

    def __init__(
        self,
        bundle: Bundle,
        header: Header,
        views: dict[bytes, SubjectView],
        clock: Callable[[], float],
    ) -> None:
        self.bundle = bundle
        self.header = header
        self.domain = bundle.domain
        self._views = views
        self._clock = clock
        self._entries = {e.subject: e for e in bundle.subjects}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_bundle(
        cls,
        source: bytes | str | Path,
        checkpoint: bytes | str,
        max_staleness: float | None = None,
        now: float | Callable[[], float] | None = None,
        domain: Domain | None = None,
        limits: Limits = DEFAULT_LIMITS,
        workers: int | None = None,
    ) -> Verifier:
        """Load and fully verify a bundle against the pinned ``checkpoint`` block hash.

        ``max_staleness`` (seconds) refuses a checkpoint older than that; ``now`` is a fixed unix
        time or a clock (default: the system clock); ``domain`` pins the network expected;
        ``workers`` threads verify subjects of a large bundle (default: up to 4, one per CPU).
        """
        clock: Callable[[], float]
        if now is None:
            clock = time.time
        elif callable(now):
            clock = now
        else:
            fixed = float(now)
            clock = lambda: fixed  # noqa: E731
        pinned = parse_hash(checkpoint, "checkpoint")
        with cyclic_gc_paused():
            return cls._load_verified(_load(source), pinned, clock, max_staleness, domain, limits, workers)

    @classmethod
    def _load_verified(
        cls,
        data: bytes,
        pinned: bytes,
        clock: Callable[[], float],
        max_staleness: float | None,
        domain: Domain | None,
        limits: Limits,
        workers: int | None,
    ) -> Verifier:
        bundle, raw_subjects = decode_envelope(data)
        header = check_checkpoint(bundle, pinned)
        age = clock() - header.timestamp
        if max_staleness is not None and age > max_staleness:
            raise BundleStale(
                f"checkpoint block {header.number} is {int(age)}s old, the policy allows {int(max_staleness)}s",
                part="checkpoint",
                age=int(age),
                max_staleness=int(max_staleness),
            )
        if domain is not None and domain != bundle.domain:
            raise DomainMismatch(
                f"bundle is for chainId {bundle.domain.chain_id} registry 0x{bundle.domain.verifying_contract.hex()}, "
                f"expected chainId {domain.chain_id} registry 0x{domain.verifying_contract.hex()}",
                part="domain",
            )
        threads = default_workers() if workers is None else workers
        entries, views = verify_subjects(bundle, raw_subjects, header, limits, threads)
        return cls(replace(bundle, subjects=entries), header, views, clock)

    # ------------------------------------------------------------------ views

    @property
    def checkpoint(self) -> Header:
        """The pinned block (number, timestamp, state root)."""
        return self.header

    @property
    def staleness(self) -> float:
        """Seconds between the checkpoint block's timestamp and now: how old this view is."""
        return self._clock() - self.header.timestamp

    @property
    def subjects(self) -> list[bytes]:
        """Subject ids in the bundle."""
        return sorted(self._views)

    def view(self, subject: bytes | str) -> SubjectView | None:
        """Everything verified about one subject, or None if the bundle does not hold it."""
        return self._views.get(_subject_id(subject))

    def basis(self, subject: bytes | str, key_id: str | None = None) -> Basis | None:
        """The anchored head answers about ``subject`` rest on (None if the bundle does not hold it).

        With ``key_id``, :attr:`Basis.decisive` lists the unproven events the verdict on that key
        depends on.
        """
        sid = _subject_id(subject)
        view = self._views.get(sid)
        if view is None:
            return None
        direct = next((a for a in view.anchors if a.source == "direct"), None)
        batch = next((a for a in view.anchors if a.source == "batch"), None)
        start = 0 if direct is None else direct.seq + 1
        unproven = tuple(range(start, view.state.seq + 1))
        decisive: tuple[int, ...] = ()
        if key_id is not None and unproven:
            entry = self._entries.get(sid)
            held = _held_events(self.domain, entry, view, start) if entry is not None else {}
            decisive = tuple(seq for seq in unproven if seq in held and _touches(held[seq], key_id))
        by_operators = tuple(
            seq for seq in unproven if seq < len(view.authorities) and view.authorities[seq] == "operators"
        )
        return Basis(sid, view.state.seq, direct, batch, unproven, key_id, decisive, by_operators)

    # ------------------------------------------------------------------ questions

    def check(self, subject: bytes | str, key_id: str, at: int | None = None, purpose: str | None = None) -> Verdict:
        """Is ``key_id`` of ``subject`` valid at ``at`` (default now) for ``purpose``?

        Raises :class:`StaleView` if the chain anchors a newer head than the bundle holds.
        """
        sid = _subject_id(subject)
        when = int(self._clock()) if at is None else at
        view = self._views.get(sid)
        if view is None:
            return key_verdict(None, sid, key_id, when, purpose)
        if view.hidden_head is not None:
            raise _stale_view(view)
        verdict = key_verdict(view.state, sid, key_id, when, purpose, view.governance, view.disputed)
        if verdict.status == "disputed" and view.disputed_reason:
            verdict = replace(verdict, reason=view.disputed_reason)
        return verdict

    def verify_signature(
        self,
        subject: bytes | str,
        key_id: str,
        message: bytes,
        signature: bytes,
        at: int | None = None,
        purpose: str | None = None,
    ) -> SignatureCheck:
        """Check that ``key_id`` of ``subject`` was valid at ``at`` and made ``signature`` over ``message``."""
        verdict = self.check(subject, key_id, at, purpose)
        if not verdict.ok:
            return SignatureCheck(False, verdict, f"key is {verdict.status}: {verdict.reason}")
        assert verdict.key is not None
        key = verdict.key.key
        if signatures.verify(key.alg, key.public_key, message, signature):
            return SignatureCheck(True, verdict, f"valid {key.alg} signature by {key_id}")
        return SignatureCheck(False, verdict, f"{key.alg} signature does not verify with key {key_id}")

    def valid_keys(self, subject: bytes | str, at: int | None = None, purpose: str | None = None) -> list[KeyRecord]:
        """Keys of ``subject`` valid at ``at`` (empty if unknown or disputed; StaleView if hidden head)."""
        view = self._views.get(_subject_id(subject))
        if view is None:
            return []
        if view.hidden_head is not None:
            raise _stale_view(view)
        if view.disputed:
            return []
        when = int(self._clock()) if at is None else at
        return valid_keys(view.state, when, purpose, view.governance)

    def jwks(self, subject: bytes | str, at: int | None = None, purpose: str | None = None) -> dict[str, Any]:
        """RFC 7517 JWK Set of the keys valid at ``at``: hand it to any JWT library."""
        return {
            "keys": [
                signatures.jwk(r.key.key_id, r.key.alg, r.key.public_key, r.key.purposes)
                for r in self.valid_keys(subject, at, purpose)
            ]
        }

    def summary(self) -> dict[str, Any]:
        """Machine-readable description of the verified view."""
        return {
            "chainId": self.domain.chain_id,
            "registry": "0x" + self.domain.verifying_contract.hex(),
            "checkpoint": {
                "number": self.header.number,
                "hash": "0x" + self.header.hash.hex(),
                "timestamp": self.header.timestamp,
            },
            "staleness": int(self.staleness),
            "subjects": len(self._views),
        }


def _stale_view(view: SubjectView) -> StaleView:
    hidden = view.hidden_head
    assert hidden is not None
    return StaleView(
        f"the registry anchors seq {hidden.seq} (0x{hidden.digest.hex()[:16]}..., {hidden.source}) of subject "
        f"0x{view.subject.hex()} but the bundle's log ends at seq {view.state.seq}: a newer head is hidden; "
        "get a fresh bundle",
        part="subjects",
        subject="0x" + view.subject.hex(),
        anchored_seq=hidden.seq,
        log_seq=view.state.seq,
    )


def open_bundle(
    source: bytes | str | Path, checkpoint: bytes | str, max_staleness: float | None = None, **kw: Any
) -> Verifier:
    """Shorthand for :meth:`Verifier.from_bundle`."""
    return Verifier.from_bundle(source, checkpoint, max_staleness, **kw)


def iter_views(verifier: Verifier) -> Iterable[SubjectView]:
    """Every subject view of a verifier, by subject id."""
    for sid in verifier.subjects:
        view = verifier.view(sid)
        assert view is not None
        yield view
