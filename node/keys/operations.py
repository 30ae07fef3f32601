"""Build and sign the events a subject's own node makes, with the keystore's controller keys.

Used by the CLI (``subject create``, ``keys add|retire|rotate|revoke``, ``subject
rotate-controllers``) and by the rotation scheduler, so both sign the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core import builder
from ..core.records import ZERO20, Domain, Event, PublishedKey, Revocation, Rotation, SignedEvent, Update
from .keystore import Keystore


@dataclass(frozen=True)
class Head:
    """Where a subject's log ends: the next event extends (seq, digest) and is not older than timestamp."""

    subject: bytes
    seq: int
    digest: bytes
    timestamp: int

    def next_timestamp(self, now: int) -> int:
        return max(now, self.timestamp)


def sign_inception(
    ks: Keystore,
    domain: Domain,
    timestamp: int,
    keys: Sequence[PublishedKey],
    metadata: str = "",
    governor: bytes = ZERO20,
) -> SignedEvent:
    """Inception with the current controllers, committing to the next generation (pre-rotation)."""
    event = builder.inception(
        timestamp,
        ks.controller_addresses(ks.generation),
        ks.threshold,
        ks.controller_addresses(ks.generation + 1),
        ks.threshold,
        keys=keys,
        governor=governor,
        metadata=metadata,
    )
    return builder.sign_event(domain, event, ks.controller_secrets())


def sign_update(
    ks: Keystore,
    domain: Domain,
    head: Head,
    now: int,
    publish: Sequence[PublishedKey] = (),
    retire: Sequence[tuple[str, int]] = (),
    metadata: str | None = None,
) -> SignedEvent:
    """Publish and/or retire service keys."""
    event = builder.update(head.subject, head.seq + 1, head.digest, head.next_timestamp(now), publish, retire, metadata)
    return builder.sign_event(domain, event, ks.controller_secrets())


def sign_revocation(
    ks: Keystore, domain: Domain, head: Head, now: int, key_id: str, effective_at: int, reason: str = ""
) -> SignedEvent:
    """Revoke one key (or the whole subject with key_id "") from effective_at."""
    event = builder.revocation(
        head.subject, head.seq + 1, head.digest, head.next_timestamp(now), key_id, effective_at, reason
    )
    return builder.sign_event(domain, event, ks.controller_secrets())


def sign_controller_rotation(ks: Keystore, domain: Domain, head: Head, now: int) -> SignedEvent:
    """Reveal the pre-committed next controllers and commit to a fresh set; signed by the next set.

    After the node accepts it, call ``ks.commit_controller_rotation()``.
    """
    next_secrets, after = ks.prepare_controller_rotation()
    event = builder.rotation(
        head.subject,
        head.seq + 1,
        head.digest,
        head.next_timestamp(now),
        builder.controller_set(next_secrets),
        ks.threshold,
        after,
        ks.threshold,
    )
    return builder.sign_event(domain, event, next_secrets)


def reduces_authority(event: Event, not_after: Mapping[str, int]) -> bool:
    """True for an event that takes authority away, which must be anchored directly (ADR 0012).

    Revocations and controller rotations always do; an update does when it retires a key earlier
    than its current not-after (``not_after`` maps key id -> current not-after, 0 = none; a key
    missing from it counts as reduced). Publishing keys or metadata only adds.
    """
    if isinstance(event, Revocation | Rotation):
        return True
    if isinstance(event, Update):
        for r in event.retire:
            current = not_after.get(r.key_id)
            if current is None or current == 0 or r.not_after < current:
                return True
    return False
