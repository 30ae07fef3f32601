"""Validate a batch of wire events in stages: the same rules as one at a time, in less time.

Every way events reach a node hands them over in batches (a gossip message, a sync frame, an API
POST). Validating a batch stage by stage (decode every event, hash every event, recover every
signature, then run the state rules in order) does exactly the work of calling
``decode_event`` + ``apply_event`` per event, but keeps each stage's code and data hot in the CPU
caches: libsecp256k1's recovery and the interpreter evict each other when they alternate per
event (about 8-12 µs per event here, measured in bench/core_validate.py, which reports both).

The result of each event is what the one-at-a-time path gives, error for error: a decode error is
that event's result; a digest or recovery that fails is not reported early but recomputed by
``apply_event`` (``precomputed=None``), which raises it in rule order. Events apply in order, each
on the state its predecessors in the batch left (so a batch may hold a subject's inception and
its updates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .codec import decode_event
from .eip712 import event_digest
from .errors import RuleViolation
from .limits import DEFAULT_LIMITS, Limits
from .log import Accepted, SubjectState, apply_event, recover_signers
from .records import Domain, Inception, SignedEvent


def validate_batch(
    wire: Sequence[bytes],
    states: Mapping[bytes, SubjectState],
    domain: Domain,
    limits: Limits = DEFAULT_LIMITS,
    now: int | None = None,
) -> tuple[list[Accepted | RuleViolation], dict[bytes, SubjectState]]:
    """Validate ``wire`` in order against ``states`` (read only).

    Returns one result per event (its Accepted, or the RuleViolation it was refused with) and the
    states the batch changed (subject -> new state), for the caller to merge.
    """
    # Stage 1: decode.
    decoded: list[SignedEvent | RuleViolation] = []
    for data in wire:
        try:
            decoded.append(decode_event(data, limits))
        except RuleViolation as exc:
            decoded.append(exc)
    # Stage 2: digests (only for this network; apply_event names a wrong network itself).
    digests: list[bytes | None] = []
    for signed in decoded:
        digest = None
        if type(signed) is SignedEvent and ((sd := signed.domain) is domain or sd == domain):
            try:
                digest = event_digest(domain, signed.event)
            except Exception:  # a shape violation: apply_event reports it, in rule order
                digest = None
        digests.append(digest)
    # Stage 3: signers.
    signers: list[tuple[bytes, ...] | None] = []
    for signed, digest in zip(decoded, digests, strict=True):
        found = None
        if digest is not None:
            try:
                found = recover_signers(signed, digest)  # type: ignore[arg-type]
            except Exception:  # apply_event recomputes and raises the exact error
                found = None
        signers.append(found)
    # Stage 4: the state rules, in order, on the batch's own overlay of states.
    results: list[Accepted | RuleViolation] = []
    changed: dict[bytes, SubjectState] = {}
    for signed, digest, found in zip(decoded, digests, signers, strict=True):
        if type(signed) is not SignedEvent:
            results.append(signed)  # type: ignore[arg-type]
            continue
        event = signed.event
        # An inception's subject is its digest: a known one makes apply_event refuse it as stale.
        subject = (digest or b"") if isinstance(event, Inception) else event.subject
        state = changed.get(subject) or states.get(subject)
        try:
            acc = apply_event(
                state,
                signed,
                domain,
                limits,
                now,
                precomputed=None if found is None or digest is None else (digest, found),
            )
        except RuleViolation as exc:
            results.append(exc)
            continue
        changed[acc.subject] = acc.state
        results.append(acc)
    return results, changed
