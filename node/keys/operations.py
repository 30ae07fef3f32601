"""Build and sign the events a subject's own node makes, with the keys its keystore holds.

Used by the CLI (``subject create``, ``keys add|retire|rotate|revoke``, ``subject
rotate-controllers``) and by the rotation scheduler, so both sign the same way.

Custody (docs/operations.md "Custody", ADR 0028 section 11): a node in ``operator`` mode (the
default) signs **only updates, with its operator key**, and only updates the operator set allows
(:func:`sign_update` runs the core's own rules on the update before signing, so the node never
signs what the network refuses). Anything that needs the controllers (inception, rotation, revocation,
delegation, metadata, keys outside the operator's scope) raises
:class:`~keyreg.keys.keystore.ControllersOffNode` naming the ceremony commands. A node in
``all-on-node`` mode signs everything with its controllers, as before protocol 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..core import builder
from ..core.eip712 import controller_commitment, event_digest
from ..core.errors import OperatorLimit
from ..core.log import SubjectState, apply_event
from ..core.records import (
    NO_OPERATORS,
    ZERO20,
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
from .keystore import CEREMONY_HINT, Keystore, KeystoreError, OperatorPolicy


class OperatorLimitError(KeystoreError):
    """The update breaks the operator set's limits: only the controllers may sign it."""

    code = "operator_limit"


@dataclass(frozen=True)
class Head:
    """Where a subject's log ends: the next event extends (seq, digest) and is not older than timestamp.

    ``governor`` and ``operators`` are those in force: a rotation restates them (protocol 2), so a
    controller rotation built from a head without them would drop them.
    """

    subject: bytes
    seq: int
    digest: bytes
    timestamp: int
    governor: bytes = ZERO20
    operators: OperatorSet = NO_OPERATORS

    def next_timestamp(self, now: int) -> int:
        return max(now, self.timestamp)


def operator_set_of(policy: OperatorPolicy) -> OperatorSet:
    """The protocol's operator set for a node's policy (1-of-1 over the node's operator address)."""
    return OperatorSet((policy.address,), 1, tuple(sorted(set(policy.purposes))), policy.max_validity, policy.max_keys)


def build_inception(
    timestamp: int,
    controllers: Sequence[bytes],
    threshold: int,
    next_commitment: bytes,
    keys: Sequence[PublishedKey] = (),
    governor: bytes = ZERO20,
    metadata: str = "",
    operators: OperatorSet = NO_OPERATORS,
) -> Inception:
    """An inception from controller addresses, the next set's commitment and an operator set."""
    event = builder.inception(timestamp, controllers, threshold, keys=keys, governor=governor, metadata=metadata)
    return replace(event, next_commitment=next_commitment, operators=operators)


def sign_inception(
    ks: Keystore,
    domain: Domain,
    timestamp: int,
    keys: Sequence[PublishedKey],
    metadata: str = "",
    governor: bytes = ZERO20,
) -> SignedEvent:
    """Inception with the keystore's current controllers, committing to the next generation.

    All-on-node only: in operator mode the controllers signed the inception at ``keyreg init``.
    """
    if not ks.holds_controllers:
        raise KeystoreError(
            "this node holds only its operator key: the inception was signed by the controllers at "
            "`keyreg init` (submit it with `keyreg subject create`); a new inception is a new `keyreg init`"
        )
    nxt = controller_commitment(ks.controller_addresses(ks.generation + 1), ks.threshold)
    event = build_inception(
        timestamp, ks.controller_addresses(ks.generation), ks.threshold, nxt, keys, governor, metadata
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
    state: SubjectState | None = None,
) -> SignedEvent:
    """Publish and/or retire service keys: operator-signed (operator mode) or controller-signed.

    In operator mode, with the subject's ``state`` (the head the update extends), the update goes
    through the protocol's rules with the operator as its signer before anything is signed; one
    beyond the operator limits raises :class:`OperatorLimitError`, with the core's reason and the
    ceremony commands. Without ``state`` the node that receives the event judges it by the same rules.
    """
    event = builder.update(head.subject, head.seq + 1, head.digest, head.next_timestamp(now), publish, retire, metadata)
    policy = ks.operator_policy
    if ks.holds_controllers or policy is None:
        return builder.sign_event(domain, event, ks.controller_secrets())
    if state is not None:
        unsigned = SignedEvent(event, (), domain)
        try:
            apply_event(state, unsigned, domain, precomputed=(event_digest(domain, event), (policy.address,)))
        except OperatorLimit as exc:
            raise OperatorLimitError(
                f"this update is beyond what the node's operator key may sign ({exc.message}): "
                "only the controllers can sign it; " + CEREMONY_HINT
            ) from None
    return builder.sign_event(domain, event, [ks.operator_secret()])


def sign_revocation(
    ks: Keystore, domain: Domain, head: Head, now: int, key_id: str, effective_at: int, reason: str = ""
) -> SignedEvent:
    """Revoke one key (or the whole subject with key_id "") from effective_at: controllers only."""
    ks.require_controllers("revoking a key" if key_id else "revoking the subject")
    event = builder.revocation(
        head.subject, head.seq + 1, head.digest, head.next_timestamp(now), key_id, effective_at, reason
    )
    return builder.sign_event(domain, event, ks.controller_secrets())


def sign_controller_rotation(ks: Keystore, domain: Domain, head: Head, now: int) -> SignedEvent:
    """Reveal the pre-committed next controllers and commit to a fresh set; signed by the next set.

    All-on-node only. Restates the head's governor and operator set. After the node accepts it,
    call ``ks.commit_controller_rotation()``.
    """
    ks.require_controllers("rotating the controllers")
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
    event = replace(event, governor=head.governor, operators=head.operators)
    return builder.sign_event(domain, event, next_secrets)


def reduces_authority(event: Event, not_after: Mapping[str, int]) -> bool:
    """True for an event that takes authority away, which must be anchored directly (ADR 0012).

    Revocations, controller rotations and delegations always do; an update does when it retires a
    key earlier than its current not-after (``not_after`` maps key id -> current not-after, 0 =
    none; a key missing from it counts as reduced). Publishing keys or metadata only adds.
    """
    if isinstance(event, Revocation | Rotation | Delegation):
        return True
    if isinstance(event, Update):
        for r in event.retire:
            current = not_after.get(r.key_id)
            if current is None or current == 0 or r.not_after < current:
                return True
    return False
