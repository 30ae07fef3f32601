"""The offline verifier: load a bundle, check it against a pinned checkpoint, answer key questions.

Trust: only cryptography and the block hash the caller pins. :meth:`Verifier.from_bundle` checks
everything once, in one pass (:mod:`node.verify.loading`: checkpoint, account and storage proofs,
batch inclusion proofs, log replay, duplicity evidence, governance), and refuses the whole bundle
on the first fault with a specific :class:`~node.verify.errors.BundleRefused`. Afterwards it
answers key questions from the verified views; checks of a subject whose anchored head is newer
than its log (the exporter hid it) raise :class:`~node.verify.errors.StaleView`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.core.keystate import Verdict, key_verdict, valid_keys
from node.core.limits import DEFAULT_LIMITS, Limits
from node.core.log import KeyRecord
from node.core.records import Domain

from . import signatures
from .bundle import Bundle, decode_envelope
from .errors import BundleFormatError, BundleStale, DomainMismatch, StaleView
from .header import Header
from .loading import Anchor, SubjectView, check_checkpoint, cyclic_gc_paused, default_workers, verify_subjects

__all__ = ["Anchor", "SignatureCheck", "SubjectView", "Verifier", "default_workers", "iter_views", "open_bundle"]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of verifying a signature by a subject's key."""

    valid: bool
    verdict: Verdict  # the key's own verdict at the signing time
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"signatureValid": self.valid, "reason": self.reason, "verdict": self.verdict.to_dict()}


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
                signatures.jwk(r.key.key_id, r.key.alg, r.key.public_key) for r in self.valid_keys(subject, at, purpose)
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
