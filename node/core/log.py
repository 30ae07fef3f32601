"""The per-subject log state machine: (state, signed event) -> new state, or a specific error.

This is the single implementation of the validity rules (docs/protocol.md section 5). It is pure:
no I/O, no clock (the admission-time clock-skew check takes ``now`` as an argument).

Invariants of :class:`SubjectState`:
- ``head`` is the digest of the event at ``seq``; the state is what replaying events 0..seq gives.
- ``keys`` holds every key id ever published (ids are never reused), with its current not-after
  and revocation, so key state at any time T is a pure function of the state.
- once ``revoked_at`` is set (whole-subject revocation) no further event is valid.
- ``operators`` is the operator set in force (NO_OPERATORS: none); ``governors`` every non-zero
  governor an establishment event of the log named, in order of first naming (governance 8.3).
- ``last_establishment_seq`` is the seq of the last event that changed who may sign (inception,
  rotation or delegation).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .eip712 import controller_commitment, event_digest
from .errors import (
    BelowThreshold,
    ChainBroken,
    CommitmentMismatch,
    InvalidTransition,
    MalformedEvent,
    OperatorLimit,
    OversizedInput,
    StaleEvent,
    TimestampViolation,
    UnauthorizedSigner,
    UnknownSubject,
    WrongNetwork,
)
from .hashing import recover_address
from .limits import DEFAULT_LIMITS, Limits
from .points import is_curve_point
from .records import (
    ALGORITHMS,
    NO_OPERATORS,
    PUBLIC_KEY_LENGTHS,
    ZERO32,
    Authority,
    Delegation,
    Domain,
    Event,
    Inception,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)

_KEY_ID_RE = re.compile(r"[A-Za-z0-9._:\-]+")
_PURPOSE_RE = re.compile(r"[a-z0-9._:\-]+")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A published key as the log has left it."""

    key: PublishedKey
    published_seq: int
    published_at: int  # timestamp of the publishing event; validity never starts before it
    not_after: int  # current not-after (0 = none), after any retirement
    revoked_at: int | None = None  # effective time of a controller revocation
    revoked_seq: int | None = None
    revoked_reason: str = ""

    @property
    def valid_from(self) -> int:
        """max(not-before, publication time): a key is never valid before it was published."""
        return max(self.key.not_before, self.published_at)


@dataclass(frozen=True, slots=True)
class SubjectState:
    """A subject's state after its head event."""

    subject: bytes
    seq: int
    head: bytes
    timestamp: int
    controllers: tuple[bytes, ...]
    threshold: int
    next_commitment: bytes
    governor: bytes
    metadata: str
    keys: Mapping[str, KeyRecord]
    revoked_at: int | None = None
    revoked_seq: int | None = None
    revoked_reason: str = ""
    last_establishment_seq: int = 0
    operators: OperatorSet = NO_OPERATORS
    governors: tuple[bytes, ...] = ()
    head_authority: Authority = "controllers"  # who signed the head event


@dataclass(frozen=True, slots=True)
class Accepted:
    """A validated event: its digest, subject, the signers recovered, the resulting state, and
    its authority (``controllers``, or ``operators`` for an operator-signed update)."""

    signed: SignedEvent
    digest: bytes
    subject: bytes
    signers: tuple[bytes, ...]
    state: SubjectState = field(repr=False)
    authority: Authority = "controllers"


# ---------------------------------------------------------------------------------------------
# Shape rules: everything checkable from the event alone.


def _check_controllers(controllers: tuple[bytes, ...], threshold: int, limits: Limits) -> None:
    if not controllers:
        raise MalformedEvent("controller set is empty")
    if len(controllers) > limits.max_controllers:
        raise OversizedInput(f"{len(controllers)} controllers, limit {limits.max_controllers}")
    if any(a >= b for a, b in itertools.pairwise(controllers)):
        raise MalformedEvent("controllers must be distinct and sorted ascending")
    if not 1 <= threshold <= len(controllers):
        raise MalformedEvent(f"threshold {threshold} not in 1..{len(controllers)}")


def _check_purpose(p: str, limits: Limits, what: str) -> None:
    if not 0 < len(p) <= limits.max_purpose_chars or not _PURPOSE_RE.fullmatch(p):
        raise MalformedEvent(f"{what}: purpose {p[:40]!r} must be 1-{limits.max_purpose_chars} of [a-z0-9._:-]")


def check_operator_set(o: OperatorSet, limits: Limits = DEFAULT_LIMITS) -> None:
    """Shape rules of an operator set (docs/protocol.md 5.7); raises MalformedEvent/OversizedInput."""
    if not o.operators:
        if o.threshold or o.purposes or o.max_validity or o.max_keys:
            raise MalformedEvent(
                "operator set: with no operators, threshold, maxValidity and maxKeys must be 0 and purposes empty"
            )
        return
    n = len(o.operators)
    if n > limits.max_operators:
        raise OversizedInput(f"{n} operators, limit {limits.max_operators}")
    if any(a >= b for a, b in itertools.pairwise(o.operators)):
        raise MalformedEvent("operators must be distinct and sorted ascending")
    if not 1 <= o.threshold <= n:
        raise MalformedEvent(f"operator threshold {o.threshold} not in 1..{n}")
    if not o.purposes:
        raise MalformedEvent("operator set: at least one purpose is required")
    if len(o.purposes) > limits.max_purposes:
        raise OversizedInput(f"operator set: {len(o.purposes)} purposes, limit {limits.max_purposes}")
    for p in o.purposes:
        _check_purpose(p, limits, "operator set")
    if len(set(o.purposes)) != len(o.purposes):
        raise MalformedEvent("operator set: duplicate purpose")
    if o.max_validity < 1:
        raise MalformedEvent("operator set: maxValidity must be at least 1 second")
    if not 1 <= o.max_keys <= limits.max_operator_keys:
        raise MalformedEvent(f"operator set: maxKeys {o.max_keys} not in 1..{limits.max_operator_keys}")


def _check_text(value: str, limit: int, name: str) -> None:
    try:
        encoded = value.encode()
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" JSON escape: not UTF-8, not hashable
        raise MalformedEvent(f"{name} is not valid UTF-8 text") from None
    if len(encoded) > limit:
        raise OversizedInput(f"{name} is over {limit} bytes")


def _check_key(k: PublishedKey, limits: Limits) -> None:
    if not 0 < len(k.key_id) <= limits.max_key_id_chars or not _KEY_ID_RE.fullmatch(k.key_id):
        raise MalformedEvent(f"key id {k.key_id[:80]!r} must be 1-{limits.max_key_id_chars} of [A-Za-z0-9._:-]")
    if k.alg not in ALGORITHMS:
        raise MalformedEvent(
            f"key {k.key_id!r}: unsupported algorithm {k.alg[:40]!r} (use one of {', '.join(ALGORITHMS)})"
        )
    want = PUBLIC_KEY_LENGTHS[k.alg]
    if len(k.public_key) != want:
        raise MalformedEvent(f"key {k.key_id!r}: {k.alg} public key must be {want} bytes, got {len(k.public_key)}")
    if k.alg != "Ed25519" and k.public_key[0] not in (2, 3):
        raise MalformedEvent(f"key {k.key_id!r}: {k.alg} public key must be SEC1 compressed (02/03 prefix)")
    if not is_curve_point(k.alg, k.public_key):
        raise MalformedEvent(f"key {k.key_id!r}: the {k.alg} public key is not a point of its curve")
    if not k.purposes:
        raise MalformedEvent(f"key {k.key_id!r}: at least one purpose is required")
    if len(k.purposes) > limits.max_purposes:
        raise OversizedInput(f"key {k.key_id!r}: {len(k.purposes)} purposes, limit {limits.max_purposes}")
    for p in k.purposes:
        _check_purpose(p, limits, f"key {k.key_id!r}")
    if len(set(k.purposes)) != len(k.purposes):
        raise MalformedEvent(f"key {k.key_id!r}: duplicate purpose")
    if k.not_after and k.not_after <= k.not_before:
        raise MalformedEvent(f"key {k.key_id!r}: notAfter must be 0 or later than notBefore")


def _check_keys(keys: tuple[PublishedKey, ...], limits: Limits) -> None:
    if len(keys) > limits.max_keys_per_event:
        raise OversizedInput(f"{len(keys)} keys in one event, limit {limits.max_keys_per_event}")
    for k in keys:
        _check_key(k, limits)
    if len({k.key_id for k in keys}) != len(keys):
        raise MalformedEvent("duplicate key id within one event")


def check_shape(event: Event, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise MalformedEvent/OversizedInput for anything wrong with the event on its own."""
    if isinstance(event, Inception):
        _check_controllers(event.controllers, event.threshold, limits)
        check_operator_set(event.operators, limits)
        _check_keys(event.keys, limits)
        _check_text(event.metadata, limits.max_metadata_bytes, "metadata")
        return
    if event.seq == 0:
        raise MalformedEvent("only an inception may have seq 0")
    if isinstance(event, Update):
        _check_keys(event.publish, limits)
        if len(event.retire) > limits.max_keys_per_event:
            raise OversizedInput(f"{len(event.retire)} retirements, limit {limits.max_keys_per_event}")
        if len({r.key_id for r in event.retire}) != len(event.retire):
            raise MalformedEvent("duplicate key id in retire")
        if not event.set_metadata and event.metadata:
            raise MalformedEvent("metadata must be empty when setMetadata is false")
        if not (event.publish or event.retire or event.set_metadata):
            raise MalformedEvent("an update must publish, retire or set metadata")
        _check_text(event.metadata, limits.max_metadata_bytes, "metadata")
    elif isinstance(event, Rotation):
        _check_controllers(event.controllers, event.threshold, limits)
        check_operator_set(event.operators, limits)
    elif isinstance(event, Delegation):
        check_operator_set(event.operators, limits)
    elif isinstance(event, Revocation):
        _check_text(event.reason, limits.max_reason_bytes, "reason")
        if event.key_id and not _KEY_ID_RE.fullmatch(event.key_id):
            raise MalformedEvent("revocation keyId must be a key id, or empty to revoke the subject")


# ---------------------------------------------------------------------------------------------
# Signatures


# Signatures this process has tried to recover (every recovery goes through signers_of): what an
# input costs in its most expensive step, read by tests and benchmarks through signatures_recovered.
# A plain counter: two recovery threads incrementing at the same instant may lose one count (it
# only ever understates, rarely); on one thread it is exact. Helper processes count their own.
_recovered = [0]


def signatures_recovered() -> int:
    """How many signatures this process has tried to recover so far (see ``_recovered``)."""
    return _recovered[0]


def recover_signers(signed: SignedEvent, digest: bytes) -> tuple[bytes, ...]:
    """Recover every signer; they must be strictly ascending (so none repeats)."""
    return signers_of(digest, signed.signatures)


def signers_of(digest: bytes, sigs: Sequence[bytes]) -> tuple[bytes, ...]:
    """:func:`recover_signers` from the digest and the signatures alone (all that a signature
    worker, node.signature_workers, gets)."""
    _recovered[0] += len(sigs)
    if len(sigs) == 1:  # the common case: one controller
        return (recover_address(digest, sigs[0]),)
    signers = tuple([recover_address(digest, s) for s in sigs])
    for i in range(1, len(signers)):
        if signers[i - 1] >= signers[i]:
            raise UnauthorizedSigner("signatures must be ordered by ascending signer address, each signer once")
    return signers


def _require_threshold(signers: tuple[bytes, ...], controllers: tuple[bytes, ...], threshold: int) -> None:
    for s in signers:
        if s not in controllers:  # at most max_controllers (16) entries: a tuple scan beats building a set
            raise UnauthorizedSigner(f"signer 0x{s.hex()} is not a controller in force")
    if len(signers) < threshold:
        raise BelowThreshold(f"{len(signers)} of {threshold} required controller signatures")


def update_authority(
    signers: tuple[bytes, ...], controllers: tuple[bytes, ...], threshold: int, operators: OperatorSet
) -> Authority:
    """Who signed an update (docs/protocol.md 6.2, the update signature rule), or the error.

    Controller-signed if every signer is a controller in force and they meet the threshold; else
    operator-signed if an operator set is in force, every signer is an operator and they meet its
    threshold; else BelowThreshold if every signer is a controller, or every signer is an operator
    (of a set in force); else UnauthorizedSigner. The first test is the common case's whole cost.
    """
    for outsider in signers:
        if outsider not in controllers:
            break
    else:
        if len(signers) >= threshold:
            return "controllers"
        ops = operators.operators
        if ops and len(signers) >= operators.threshold and all(s in ops for s in signers):
            return "operators"  # signers that are both controllers and operators (discouraged)
        raise BelowThreshold(f"{len(signers)} of {threshold} required controller signatures")
    ops = operators.operators
    if not ops:
        raise UnauthorizedSigner(f"signer 0x{outsider.hex()} is not a controller in force")
    for s in signers:
        if s not in ops:
            raise UnauthorizedSigner(
                f"signer 0x{s.hex()} is not an operator in force, and not every signer is a controller"
            )
    if len(signers) < operators.threshold:
        raise BelowThreshold(f"{len(signers)} of {operators.threshold} required operator signatures")
    return "operators"


def _check_operator_limits(state: SubjectState, event: Update, keys: Mapping[str, KeyRecord]) -> None:
    """The operator limits (docs/protocol.md 6.8) of an operator-signed ``event`` applied on
    ``state``, leaving ``keys``; the update rules of 6.3 have passed already."""
    ops = state.operators
    scope = ops.purposes
    if event.set_metadata:
        raise OperatorLimit("operators may not set metadata")
    horizon = event.timestamp + ops.max_validity
    for k in event.publish:
        for p in k.purposes:
            if p not in scope:
                raise OperatorLimit(f"key {k.key_id!r}: purpose {p!r} is outside the operators' purposes")
        if not k.not_after:
            raise OperatorLimit(f"key {k.key_id!r}: operators may not publish a key without expiry")
        if k.not_after > horizon:
            raise OperatorLimit(f"key {k.key_id!r}: notAfter {k.not_after} is past timestamp + maxValidity ({horizon})")
    for r in event.retire:
        for p in state.keys[r.key_id].key.purposes:  # the update rules made sure it exists
            if p not in scope:
                raise OperatorLimit(f"key {r.key_id!r} has purpose {p!r}, outside the operators' purposes")
    if event.publish:
        t = event.timestamp
        live = sum(
            1
            for rec in keys.values()
            if rec.revoked_at is None
            and (not rec.not_after or rec.not_after > t)
            and all(p in scope for p in rec.key.purposes)
        )
        if live > ops.max_keys:
            raise OperatorLimit(f"{live} live keys in the operators' purposes, maxKeys {ops.max_keys}")


def check_competitor(
    signed: SignedEvent,
    digest: bytes,
    prev: bytes | None,
    signer_set: Callable[[], tuple[tuple[bytes, ...], int, bytes, OperatorSet]],
) -> tuple[tuple[bytes, ...], Authority]:
    """The cheap half of validating an event at an occupied seq, before any log is replayed.

    ``prev`` is the digest held at ``seq - 1``; ``signer_set()`` gives the (controllers,
    threshold, next commitment, operator set) in force after that event, asked only once the
    prev matched.
    Raises unless the event extends that event and is signed by the set it must be signed by
    (the pre-committed next set for a rotation); returns its signers and its authority
    (``operators`` for an operator-signed update). Everything but the
    recovery is checked first, and the recovery is one per signature, so junk costs no recovery
    unless it names the right prev and carries no more signatures than there are signers who
    could have made them. What needs the whole state at ``seq - 1`` (timestamps, key
    transitions) is left to :func:`apply_event`.
    """
    event = signed.event
    if event.prev != prev:
        raise ChainBroken(f"prev 0x{event.prev.hex()} is not the digest of seq {event.seq - 1}")
    controllers, threshold, next_commitment, operators = signer_set()
    if isinstance(event, Rotation):
        if next_commitment == ZERO32:
            raise CommitmentMismatch("the subject committed to no next controller set; it cannot rotate")
        if controller_commitment(event.controllers, event.threshold) != next_commitment:
            raise CommitmentMismatch("rotation does not reveal the pre-committed controller set")
        controllers, threshold = event.controllers, event.threshold
    n = len(signed.signatures)
    if isinstance(event, Update) and operators.operators:
        # Either set may have signed: the counts must fit one of them.
        if n < threshold and n < operators.threshold:
            raise BelowThreshold(f"{n} of {min(threshold, operators.threshold)} required signatures")
        if n > len(controllers) and n > len(operators.operators):
            raise UnauthorizedSigner(f"{n} signatures for {len(controllers)} controllers and operators in force")
        signers = recover_signers(signed, digest)
        return signers, update_authority(signers, controllers, threshold, operators)
    if n < threshold:
        raise BelowThreshold(f"{n} of {threshold} required controller signatures")
    if n > len(controllers):  # signers are distinct controllers: more signatures cannot all be
        raise UnauthorizedSigner(f"{n} signatures for {len(controllers)} controllers in force")
    signers = recover_signers(signed, digest)
    _require_threshold(signers, controllers, threshold)
    return signers, "controllers"


# ---------------------------------------------------------------------------------------------
# Transitions


def _incept(event: Inception, digest: bytes) -> SubjectState:
    ts = event.timestamp
    keys = {k.key_id: KeyRecord(k, 0, ts, k.not_after) for k in event.keys}
    governors = (event.governor,) if any(event.governor) else ()
    return SubjectState(
        digest, 0, digest, ts, event.controllers, event.threshold, event.next_commitment, event.governor,
        event.metadata, MappingProxyType(keys), None, None, "", 0, event.operators, governors,
    )  # fmt: skip


# The transitions build SubjectState positionally (dataclasses.replace() costs several times as much
# per event). Field order: subject, seq, head, timestamp, controllers, threshold, next_commitment,
# governor, metadata, keys, revoked_at, revoked_seq, revoked_reason, last_establishment_seq,
# operators, governors, head_authority.


def _update(
    state: SubjectState, event: Update, digest: bytes, limits: Limits, authority: Authority = "controllers"
) -> SubjectState:
    if not event.publish and not event.retire:  # metadata only: share the unchanged read-only key view
        if len(state.keys) > limits.max_keys_per_subject:
            raise OversizedInput(f"subject would hold {len(state.keys)} keys, limit {limits.max_keys_per_subject}")
        if authority == "operators":
            _check_operator_limits(state, event, state.keys)
        s = state
        return SubjectState(
            s.subject, event.seq, digest, event.timestamp, s.controllers, s.threshold, s.next_commitment, s.governor,
            event.metadata if event.set_metadata else s.metadata, s.keys,
            s.revoked_at, s.revoked_seq, s.revoked_reason, s.last_establishment_seq, s.operators, s.governors,
            authority,
        )  # fmt: skip
    # MappingProxyType.copy() copies the dict behind it in C; dict(proxy) goes item by item.
    keys = state.keys.copy() if type(state.keys) is MappingProxyType else dict(state.keys)
    for k in event.publish:
        if k.key_id in keys:
            raise InvalidTransition(f"key id {k.key_id!r} was already published; key ids are never reused")
        keys[k.key_id] = KeyRecord(k, event.seq, event.timestamp, k.not_after)
    if len(keys) > limits.max_keys_per_subject:
        raise OversizedInput(f"subject would hold {len(keys)} keys, limit {limits.max_keys_per_subject}")
    for r in event.retire:
        rec = keys.get(r.key_id)
        if rec is None:
            raise InvalidTransition(f"cannot retire unknown key {r.key_id!r}")
        if r.not_after < event.timestamp:
            raise InvalidTransition(f"retirement of {r.key_id!r} is retroactive; use a revocation")
        if rec.not_after and r.not_after > rec.not_after:
            raise InvalidTransition(f"retirement of {r.key_id!r} would extend its validity")
        keys[r.key_id] = KeyRecord(
            rec.key, rec.published_seq, rec.published_at, r.not_after, rec.revoked_at, rec.revoked_seq,
            rec.revoked_reason,
        )  # fmt: skip
    s = state
    if authority == "operators":
        _check_operator_limits(state, event, keys)
    return SubjectState(
        s.subject, event.seq, digest, event.timestamp, s.controllers, s.threshold, s.next_commitment, s.governor,
        event.metadata if event.set_metadata else s.metadata, MappingProxyType(keys),
        s.revoked_at, s.revoked_seq, s.revoked_reason, s.last_establishment_seq, s.operators, s.governors, authority,
    )  # fmt: skip


def _rotate(state: SubjectState, event: Rotation, digest: bytes) -> SubjectState:
    s = state
    governors = s.governors
    if any(event.governor) and event.governor not in governors:
        governors = (*governors, event.governor)
    return SubjectState(
        s.subject, event.seq, digest, event.timestamp, event.controllers, event.threshold, event.next_commitment,
        event.governor, s.metadata, s.keys, s.revoked_at, s.revoked_seq, s.revoked_reason, event.seq,
        event.operators, governors,
    )  # fmt: skip


def _delegate(state: SubjectState, event: Delegation, digest: bytes) -> SubjectState:
    s = state
    return SubjectState(
        s.subject, event.seq, digest, event.timestamp, s.controllers, s.threshold, s.next_commitment, s.governor,
        s.metadata, s.keys, s.revoked_at, s.revoked_seq, s.revoked_reason, event.seq, event.operators, s.governors,
    )  # fmt: skip


def _revoke(state: SubjectState, event: Revocation, digest: bytes) -> SubjectState:
    s = state
    if not event.key_id:
        return SubjectState(
            s.subject, event.seq, digest, event.timestamp, s.controllers, s.threshold, s.next_commitment, s.governor,
            s.metadata, s.keys, event.effective_at, event.seq, event.reason, s.last_establishment_seq,
            s.operators, s.governors,
        )  # fmt: skip
    rec = state.keys.get(event.key_id)
    if rec is None:
        raise InvalidTransition(f"cannot revoke unknown key {event.key_id!r}")
    if rec.revoked_at is not None:
        raise InvalidTransition(f"key {event.key_id!r} is already revoked")
    keys = state.keys.copy() if type(state.keys) is MappingProxyType else dict(state.keys)
    keys[event.key_id] = KeyRecord(
        rec.key, rec.published_seq, rec.published_at, rec.not_after, event.effective_at, event.seq, event.reason
    )
    return SubjectState(
        s.subject, event.seq, digest, event.timestamp, s.controllers, s.threshold, s.next_commitment, s.governor,
        s.metadata, MappingProxyType(keys), s.revoked_at, s.revoked_seq, s.revoked_reason, s.last_establishment_seq,
        s.operators, s.governors,
    )  # fmt: skip


def apply_event(
    state: SubjectState | None,
    signed: SignedEvent,
    domain: Domain,
    limits: Limits = DEFAULT_LIMITS,
    now: int | None = None,
    *,
    precomputed: tuple[bytes, tuple[bytes, ...] | None] | None = None,
) -> Accepted:
    """Validate ``signed`` as the next event after ``state`` (None: no event known for it yet).

    ``now`` enables the admission-time clock-skew rule; offline replays pass None.
    Raises a RuleViolation subclass naming the broken rule.

    ``precomputed`` = ``(event_digest(domain, signed.event), signers)``, computed by the caller
    ahead of time (:class:`keyreg.core.validator.Validator` hashes with its domain's prefix made once;
    the registry may recover signatures on other cores). ``signers`` is
    ``recover_signers(signed, digest)``, or None where it was not computed or failed: then it is
    recovered here, so its error is raised in rule order, exactly as without precomputation.
    """
    sd = signed.domain
    if sd is not domain and sd != domain:
        raise WrongNetwork(
            f"event is for chainId {sd.chain_id} contract 0x{sd.verifying_contract.hex()}, "
            f"this registry is chainId {domain.chain_id} contract 0x{domain.verifying_contract.hex()}"
        )
    event = signed.event
    check_shape(event, limits)
    if now is not None and event.timestamp > now + limits.max_clock_skew_s:
        raise TimestampViolation(
            f"timestamp {event.timestamp} is more than {limits.max_clock_skew_s}s ahead of local time {now}"
        )
    digest, signers = (event_digest(domain, event), None) if precomputed is None else precomputed
    if isinstance(event, Inception):
        if state is not None:
            raise StaleEvent("inception already known", subject="0x" + digest.hex())
        if signers is None:
            signers = recover_signers(signed, digest)
        _require_threshold(signers, event.controllers, event.threshold)
        new_state = _incept(event, digest)
        return Accepted(signed, digest, digest, signers, new_state)

    if state is None:
        raise UnknownSubject(f"unknown subject 0x{event.subject.hex()}: its inception must come first")
    if event.subject != state.subject:
        raise ChainBroken(f"event names subject 0x{event.subject.hex()} but extends subject 0x{state.subject.hex()}")
    if event.seq <= state.seq:
        if event.seq == state.seq and digest == state.head:
            raise StaleEvent(f"event seq {event.seq} is already the head (a replay)")
        raise StaleEvent(f"event seq {event.seq} is at or below the head seq {state.seq}")
    if event.seq != state.seq + 1:
        raise ChainBroken(f"gap: expected seq {state.seq + 1}, got {event.seq}")
    if event.prev != state.head:
        raise ChainBroken(f"prev 0x{event.prev.hex()} is not the digest of seq {state.seq}")
    if state.revoked_seq is not None:
        raise InvalidTransition("the subject was revoked; no further events are accepted")
    if event.timestamp < state.timestamp:
        raise TimestampViolation(f"timestamp {event.timestamp} is before the previous event's {state.timestamp}")

    if signers is None:
        signers = recover_signers(signed, digest)
    if isinstance(event, Rotation):
        if state.next_commitment == ZERO32:
            raise CommitmentMismatch("the subject committed to no next controller set; it cannot rotate")
        if controller_commitment(event.controllers, event.threshold) != state.next_commitment:
            raise CommitmentMismatch("rotation does not reveal the pre-committed controller set")
        _require_threshold(signers, event.controllers, event.threshold)
        new_state = _rotate(state, event, digest)
    elif isinstance(event, Update):
        authority = update_authority(signers, state.controllers, state.threshold, state.operators)
        new_state = _update(state, event, digest, limits, authority)
        return Accepted(signed, digest, event.subject, signers, new_state, authority)
    elif isinstance(event, Revocation):
        _require_threshold(signers, state.controllers, state.threshold)
        new_state = _revoke(state, event, digest)
    else:  # a delegation: the controllers in force only
        _require_threshold(signers, state.controllers, state.threshold)
        new_state = _delegate(state, event, digest)
    return Accepted(signed, digest, event.subject, signers, new_state)


def replay(events: list[SignedEvent], domain: Domain, limits: Limits = DEFAULT_LIMITS) -> list[Accepted]:
    """Validate a whole log from its inception; returns one Accepted per event."""
    out: list[Accepted] = []
    state: SubjectState | None = None
    for signed in events:
        acc = apply_event(state, signed, domain, limits)
        out.append(acc)
        state = acc.state
    return out
