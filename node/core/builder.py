"""Build and sign events: what a controller (CLI, keystore, tests, vector generator) uses.

Signing always goes through :func:`node.core.eip712.event_digest`, so what we sign is exactly
what the validator and the contract check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .eip712 import controller_commitment, event_digest
from .hashing import address_of_private_key, sign_digest
from .records import ZERO20, ZERO32, Domain, Event, Inception, PublishedKey, Revocation, Rotation, SignedEvent, Update


def sign_event(domain: Domain, event: Event, secrets: Iterable[bytes]) -> SignedEvent:
    """Sign with each secret; signatures are ordered by ascending signer address as the rules require."""
    digest = event_digest(domain, event)
    pairs = sorted((address_of_private_key(s), sign_digest(s, digest)) for s in secrets)
    return SignedEvent(event=event, signatures=tuple(sig for _, sig in pairs), domain=domain)


def attach_signatures(domain: Domain, event: Event, signatures: Iterable[bytes]) -> SignedEvent:
    """Combine signatures collected elsewhere (wallets, co-signers), ordering them by signer."""
    from .hashing import recover_address

    digest = event_digest(domain, event)
    pairs = sorted((recover_address(digest, s), s) for s in signatures)
    return SignedEvent(event=event, signatures=tuple(sig for _, sig in pairs), domain=domain)


def controller_set(secrets: Sequence[bytes]) -> tuple[bytes, ...]:
    """Sorted addresses of a set of controller secrets."""
    return tuple(sorted(address_of_private_key(s) for s in secrets))


def commitment_for(secrets: Sequence[bytes], threshold: int) -> bytes:
    """Pre-rotation commitment to the controller set of these secrets."""
    return controller_commitment(controller_set(secrets), threshold)


def inception(
    timestamp: int,
    controllers: Sequence[bytes],
    threshold: int,
    next_controllers: Sequence[bytes] | None = None,
    next_threshold: int | None = None,
    keys: Sequence[PublishedKey] = (),
    governor: bytes = ZERO20,
    metadata: str = "",
) -> Inception:
    """An inception from controller *addresses* and the next set's addresses (for pre-rotation)."""
    ctrl = tuple(sorted(controllers))
    nxt = ZERO32
    if next_controllers is not None:
        nxt = controller_commitment(tuple(sorted(next_controllers)), next_threshold or threshold)
    return Inception(timestamp, ctrl, threshold, nxt, governor, tuple(keys), metadata)


def update(
    subject: bytes,
    seq: int,
    prev: bytes,
    timestamp: int,
    publish: Sequence[PublishedKey] = (),
    retire: Sequence[tuple[str, int]] = (),
    metadata: str | None = None,
) -> Update:
    """An update event; ``retire`` is (key id, not-after) pairs; metadata None leaves it unchanged."""
    from .records import KeyRetirement

    return Update(
        subject,
        seq,
        prev,
        timestamp,
        tuple(publish),
        tuple(KeyRetirement(k, t) for k, t in retire),
        metadata is not None,
        metadata or "",
    )


def rotation(
    subject: bytes,
    seq: int,
    prev: bytes,
    timestamp: int,
    controllers: Sequence[bytes],
    threshold: int,
    next_controllers: Sequence[bytes] | None,
    next_threshold: int | None = None,
) -> Rotation:
    """A rotation revealing ``controllers`` (addresses) and committing to ``next_controllers``."""
    nxt = ZERO32
    if next_controllers is not None:
        nxt = controller_commitment(tuple(sorted(next_controllers)), next_threshold or threshold)
    return Rotation(subject, seq, prev, timestamp, tuple(sorted(controllers)), threshold, nxt)


def revocation(
    subject: bytes, seq: int, prev: bytes, timestamp: int, key_id: str, effective_at: int, reason: str = ""
) -> Revocation:
    """Revoke ``key_id`` (or the whole subject with key_id "") from ``effective_at``."""
    return Revocation(subject, seq, prev, timestamp, key_id, effective_at, reason)
