"""Build and sign events: what controllers and operators (CLI, keystore, ceremonies, tests, the
vector generator) use.

Signing always goes through :func:`keyreg.core.eip712.event_digest`, so what we sign is exactly
what the validator and the contract check.

Protocol 2 in brief (docs/protocol.md, docs/adr/0028-protocol-v2-operators-and-custody.md):

- :func:`inception`, :func:`update`, :func:`rotation`, :func:`revocation` and :func:`delegation`
  build unsigned events; :func:`operator_set` builds the ``operators`` of an inception, a
  rotation or a delegation (default :data:`NO_OPERATORS`: none).
- A rotation restates the governor and the operator set: ``rotation(..., governor=,
  operators=)`` default to none, so pass the current ones (``state.governor``,
  ``state.operators``) to keep them.
- :func:`sign_event` signs with any secrets: controller secrets for every kind, or operator
  secrets for an update (which is then operator-signed, within the operator limits).
- ``next_update``, ``next_rotation`` (keeps the governor and operators unless told),
  ``next_revocation`` and ``next_delegation`` build the next event from a ``SubjectState``.
- A ceremony collects signatures elsewhere: :func:`keyreg.core.eip712.event_digest` (or
  :func:`keyreg.core.eip712.typed_data` for a wallet) is what each signer signs, and
  :func:`attach_signatures` orders the collected signatures as the rules require.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .eip712 import controller_commitment, event_digest
from .hashing import address_of_private_key, sign_digest
from .log import SubjectState
from .records import (
    NO_OPERATORS,
    ZERO20,
    ZERO32,
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

__all__ = [
    "NO_OPERATORS",
    "attach_signatures",
    "commitment_for",
    "controller_set",
    "delegation",
    "inception",
    "next_delegation",
    "next_revocation",
    "next_rotation",
    "next_update",
    "operator_set",
    "revocation",
    "rotation",
    "sign_event",
    "update",
]


def sign_event(domain: Domain, event: Event, secrets: Iterable[bytes]) -> SignedEvent:
    """Sign with each secret; signatures are ordered by ascending signer address as the rules require.

    The secrets are the controllers' (any kind) or, for an update, the operators' (an
    operator-signed update); never mix the two sets in one event (unauthorized_signer).
    """
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


def operator_set(
    operators: Sequence[bytes], threshold: int, purposes: Sequence[str], max_validity: int, max_keys: int
) -> OperatorSet:
    """An operator set from operator *addresses* (sorted here) and its limits: the purposes its
    keys may have, their longest validity from the update's timestamp (seconds), and how many
    live keys in those purposes it may leave. ``operator_set([], 0, [], 0, 0)`` is NO_OPERATORS."""
    return OperatorSet(tuple(sorted(operators)), threshold, tuple(purposes), max_validity, max_keys)


def inception(
    timestamp: int,
    controllers: Sequence[bytes],
    threshold: int,
    next_controllers: Sequence[bytes] | None = None,
    next_threshold: int | None = None,
    keys: Sequence[PublishedKey] = (),
    governor: bytes = ZERO20,
    metadata: str = "",
    operators: OperatorSet = NO_OPERATORS,
) -> Inception:
    """An inception from controller *addresses* and the next set's addresses (for pre-rotation),
    with an optional operator set."""
    ctrl = tuple(sorted(controllers))
    nxt = ZERO32
    if next_controllers is not None:
        nxt = controller_commitment(tuple(sorted(next_controllers)), next_threshold or threshold)
    return Inception(timestamp, ctrl, threshold, nxt, governor, tuple(keys), metadata, operators)


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
    governor: bytes = ZERO20,
    operators: OperatorSet = NO_OPERATORS,
) -> Rotation:
    """A rotation revealing ``controllers`` (addresses) and committing to ``next_controllers``.

    It sets the governor and the operator set in force: the defaults drop both, so pass the
    current ones (``state.governor``, ``state.operators``) to keep them.
    """
    nxt = ZERO32
    if next_controllers is not None:
        nxt = controller_commitment(tuple(sorted(next_controllers)), next_threshold or threshold)
    return Rotation(subject, seq, prev, timestamp, tuple(sorted(controllers)), threshold, nxt, governor, operators)


def delegation(subject: bytes, seq: int, prev: bytes, timestamp: int, operators: OperatorSet) -> Delegation:
    """A delegation replacing the operator set in force (NO_OPERATORS drops it); controller-signed."""
    return Delegation(subject, seq, prev, timestamp, operators)


def revocation(
    subject: bytes, seq: int, prev: bytes, timestamp: int, key_id: str, effective_at: int, reason: str = ""
) -> Revocation:
    """Revoke ``key_id`` (or the whole subject with key_id "") from ``effective_at``."""
    return Revocation(subject, seq, prev, timestamp, key_id, effective_at, reason)


# ---------------------------------------------------------------------------------------------
# The next event after a known state (what a proposal or a signing ceremony builds from the head):
# subject, seq and prev come from ``state``.


def next_update(
    state: SubjectState,
    timestamp: int,
    publish: Sequence[PublishedKey] = (),
    retire: Sequence[tuple[str, int]] = (),
    metadata: str | None = None,
) -> Update:
    """:func:`update` extending ``state``'s head."""
    return update(state.subject, state.seq + 1, state.head, timestamp, publish, retire, metadata)


def next_rotation(
    state: SubjectState,
    timestamp: int,
    controllers: Sequence[bytes],
    threshold: int,
    next_controllers: Sequence[bytes] | None,
    next_threshold: int | None = None,
    governor: bytes | None = None,
    operators: OperatorSet | None = None,
) -> Rotation:
    """:func:`rotation` extending ``state``'s head; ``governor``/``operators`` None keep the ones in
    force (pass ZERO20 / NO_OPERATORS to drop them)."""
    return rotation(
        state.subject,
        state.seq + 1,
        state.head,
        timestamp,
        controllers,
        threshold,
        next_controllers,
        next_threshold,
        state.governor if governor is None else governor,
        state.operators if operators is None else operators,
    )


def next_revocation(
    state: SubjectState, timestamp: int, key_id: str, effective_at: int, reason: str = ""
) -> Revocation:
    """:func:`revocation` extending ``state``'s head (key_id "" revokes the whole subject)."""
    return revocation(state.subject, state.seq + 1, state.head, timestamp, key_id, effective_at, reason)


def next_delegation(state: SubjectState, timestamp: int, operators: OperatorSet) -> Delegation:
    """:func:`delegation` extending ``state``'s head."""
    return delegation(state.subject, state.seq + 1, state.head, timestamp, operators)
