"""Duplicity (two valid events at one (subject, seq)) and the fork-choice rule that resolves it.

Fork choice between two validly signed events A and B at the same (subject, seq), in order:

1. **The chain decides.** If either is anchored (its digest, or a descendant's, recorded by the
   registry contract with enough confirmations), the better-ranked anchor wins. The caller ranks
   anchors (``anchored`` maps digest -> rank, lower wins); the node's ranking
   (:func:`keyreg.registry.anchor_rank`) is: a recovery rotation that replaced the contract's head
   (``HeadReplaced``) first, then direct anchors earliest first, then batch roots earliest first.
   The contract never lets a recovery replace a whole-subject revocation (``recoverRotation``
   reverts ``SubjectIsRevoked``), so an anchored whole-subject revocation is never outranked by one.
2. **A whole-subject revocation is final** (ADR 0011). Otherwise, a Revocation with an empty key
   id wins against every unanchored competitor, a recovery rotation included: whoever holds the
   current keys may destroy the subject, never take it over. Between two of them the earlier
   effective time wins (fail closed), then the lower digest.
3. **Recovery rule.** Otherwise, if exactly one is a rotation (signed by the pre-committed next
   controllers), the rotation wins: an attacker holding only the current keys cannot keep a
   subject by racing the rightful owner.
4. **Authority rule** (protocol 2). Otherwise, if exactly one is controller-signed (any kind but
   an operator-signed update) and every other is operator-signed, the controller-signed one
   wins: operators cannot put a subject in dispute against its controllers, and the controllers
   can always take the head back from a rogue operator.
5. Otherwise the subject is **disputed** at that seq: verifiers fail closed until an anchor
   settles it. Both events are always kept as evidence. Meanwhile every node holds the same
   branch (the lowest digest among the rotations if any, else among the controller-signed
   events if any, else among all), so the Merkle roots of subject heads agree across nodes.

Rule 2 yields to rule 1 on purpose: anchored history is immutable. Were a revocation to beat an
anchored competitor, a controller key leaked long after it was rotated away could still sign a
whole-subject revocation at the seq after which it was last in force and destroy the subject
retroactively.

:class:`SubjectLog` is the in-memory log of one subject that applies these rules. The SQL store
uses the same class on its (rare) conflict path, so there is one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import StaleEvent
from .limits import DEFAULT_LIMITS, Limits
from .log import Accepted, SubjectState
from .records import Domain, Revocation, Rotation, SignedEvent
from .validator import Validator


@dataclass(frozen=True, slots=True)
class Duplicity:
    """Evidence: two validly signed events at one (subject, seq)."""

    subject: bytes
    seq: int
    first: SignedEvent
    first_digest: bytes
    second: SignedEvent
    second_digest: bytes


def is_final(acc: Accepted) -> bool:
    """True for a whole-subject revocation (a Revocation with an empty key id): nothing may follow it."""
    event = acc.signed.event
    return isinstance(event, Revocation) and event.key_id == ""


def _final_order(acc: Accepted) -> tuple[int, bytes]:
    """Order among whole-subject revocations at one seq: the earliest effective time (fail closed), then digest."""
    event = acc.signed.event
    assert isinstance(event, Revocation)
    return event.effective_at, acc.digest


def choose(a: Accepted, b: Accepted, anchored: Mapping[bytes, int]) -> Accepted | None:
    """Fork choice between two valid events at one seq; None means disputed.

    ``anchored`` maps an anchored digest to its on-chain position (lower = earlier).
    """
    pa, pb = anchored.get(a.digest), anchored.get(b.digest)
    if pa is not None or pb is not None:
        if pb is None or (pa is not None and pa <= pb):
            return a
        return b
    fa, fb = is_final(a), is_final(b)
    if fa and fb:
        return a if _final_order(a) <= _final_order(b) else b
    if fa != fb:
        return a if fa else b
    ra, rb = isinstance(a.signed.event, Rotation), isinstance(b.signed.event, Rotation)
    if ra != rb:
        return a if ra else b
    ca, cb = a.authority == "controllers", b.authority == "controllers"
    if ca != cb:
        return a if ca else b
    return None


def _pick(competitors: list[Accepted], anchored: Mapping[bytes, int]) -> Accepted | None:
    """Fork choice among any number of valid events at one seq (pairwise it equals :func:`choose`)."""
    ranked = [c for c in competitors if c.digest in anchored]
    if ranked:
        return min(ranked, key=lambda c: (anchored[c.digest], c.digest))
    finals = [c for c in competitors if is_final(c)]
    if finals:
        return min(finals, key=_final_order)
    rotations = [c for c in competitors if isinstance(c.signed.event, Rotation)]
    if rotations:
        return rotations[0] if len(rotations) == 1 else None
    by_controllers = [c for c in competitors if c.authority == "controllers"]
    return by_controllers[0] if len(by_controllers) == 1 else None


def _strongest(competitors: list[Accepted]) -> list[Accepted]:
    """The candidates a disputed seq holds one of: the rotations, else the controller-signed
    events, else all (the held one is the lowest digest among them, on every node alike)."""
    rotations = [c for c in competitors if isinstance(c.signed.event, Rotation)]
    if rotations:
        return rotations
    return [c for c in competitors if c.authority == "controllers"] or competitors


Status = Literal["accepted", "known", "duplicity"]


@dataclass
class AppendResult:
    """What appending one event did."""

    status: Status
    accepted: Accepted | None = None  # the event's own validation (also for a losing duplicate)
    evidence: Duplicity | None = None
    switched: bool = False  # the new event won fork choice and replaced the branch from its seq
    dropped: list[Accepted] = field(default_factory=list)  # events removed from the log by a switch


class SubjectLog:
    """One subject's accepted events, with duplicity handling and fork choice."""

    def __init__(self, domain: Domain, limits: Limits = DEFAULT_LIMITS) -> None:
        self.domain = domain
        self.limits = limits
        self.validator = Validator(domain, limits)
        self.events: list[Accepted] = []
        self.evidence: list[Duplicity] = []
        # seq -> the competing events there that fork choice could not order
        self._open: dict[int, list[Accepted]] = {}

    @property
    def state(self) -> SubjectState | None:
        return self.events[-1].state if self.events else None

    @property
    def disputed(self) -> bool:
        """True while an unresolved duplicity lies on the current branch."""
        return any(seq < len(self.events) for seq in self._open)

    def append(
        self, signed: SignedEvent, anchored: Mapping[bytes, int] | None = None, now: int | None = None
    ) -> AppendResult:
        """Validate and append; a valid conflicting event becomes evidence (and may win fork choice)."""
        anchored = anchored or {}
        try:
            acc = self.validator.apply(self.state, signed, now)
        except StaleEvent:
            return self._conflict(signed, anchored, now)
        self.events.append(acc)
        return AppendResult("accepted", acc)

    def _conflict(self, signed: SignedEvent, anchored: Mapping[bytes, int], now: int | None) -> AppendResult:
        seq = signed.event.seq
        if seq >= len(self.events):  # an inception replay of a log we do not hold
            raise StaleEvent("event conflicts with nothing held")
        existing = self.events[seq]
        before = self.events[seq - 1].state if seq > 0 else None
        if seq == 0:
            raise StaleEvent("inception already known")
        cand = self.validator.apply(before, signed, now)  # raises if invalid there
        if cand.digest == existing.digest:
            return AppendResult("known", existing)
        known = {existing.digest, *(a.digest for a in self._open.get(seq, []))}
        if cand.digest in known:
            return AppendResult("known", cand)
        evidence = Duplicity(cand.subject, seq, existing.signed, existing.digest, cand.signed, cand.digest)
        self.evidence.append(evidence)
        result = AppendResult("duplicity", cand, evidence)
        competitors = [*self._open.get(seq, [existing]), cand]
        self._settle(seq, competitors, anchored, result)
        return result

    def _settle(
        self, seq: int, competitors: list[Accepted], anchored: Mapping[bytes, int], result: AppendResult
    ) -> None:
        # An anchored descendant anchors its ancestors (each event's prev commits to the branch below
        # it), so the held branch's event at seq counts as anchored at its earliest anchored descendant.
        held = self.events[seq].digest
        positions = [anchored[a.digest] for a in self.events[seq:] if a.digest in anchored]
        if positions:
            anchored = {**anchored, held: min(positions)}
        winner = _pick(competitors, anchored)
        if winner is None:
            # Disputed: verdicts fail closed whichever branch is held, but every node holds the same
            # one (lowest digest among the strongest candidates), so Merkle roots of subject heads
            # still converge across nodes and anti-entropy sync does not re-pull the subject forever.
            self._open[seq] = competitors
            held_choice = min(_strongest(competitors), key=lambda c: c.digest)
            self._hold(seq, held_choice, result)
            return
        self._open.pop(seq, None)
        self._hold(seq, winner, result)

    def _hold(self, seq: int, chosen: Accepted, result: AppendResult) -> None:
        """Make ``chosen`` the held event at ``seq`` (dropping the old branch above it if it differs)."""
        if chosen.digest == self.events[seq].digest:
            return
        result.dropped = self.events[seq:]
        self.events = [*self.events[:seq], chosen]
        result.switched = True
        for s in [s for s in self._open if s > seq]:
            del self._open[s]

    def resolve(self, anchored: Mapping[bytes, int]) -> list[AppendResult]:
        """Re-run fork choice on open disputes with new anchor information."""
        out = []
        for seq in sorted(self._open):
            if seq in self._open:
                result = AppendResult("duplicity")
                self._settle(seq, self._open[seq], anchored, result)
                out.append(result)
        return out
