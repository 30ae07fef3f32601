"""Build and sign the events a subject's own node makes, with the keys its keystore holds.

Used by the CLI (``subject create``, ``keys add|retire|rotate|revoke``, ``subject
rotate-controllers``) and by the rotation scheduler, so both sign the same way.

Custody (docs/operations.md "Custody", ADR 0028 section 11): a node in ``operator`` mode (the
default) signs **only updates, with its operator key**, and only updates the operator set allows
(:func:`operator_limit_problems` checks ADR 0028 section 5 before signing, so the node never signs
what the network refuses). Anything that needs the controllers (inception, rotation, revocation,
delegation, metadata, keys outside the operator's scope) raises
:class:`~keyreg.keys.keystore.ControllersOffNode` naming the ceremony commands. A node in
``all-on-node`` mode signs everything with its controllers, as before protocol 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..core import builder
from ..core.eip712 import controller_commitment
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


@dataclass(frozen=True)
class LiveKey:
    """What the maxKeys rule looks at for one published key (ADR 0028 section 5.4)."""

    key_id: str
    purposes: tuple[str, ...]
    not_after: int  # 0 = none
    revoked: bool


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


def live_in_scope(keys: Iterable[LiveKey], purposes: Iterable[str], at: int) -> set[str]:
    """Key ids in the operator scope (every purpose in ``purposes``) that are live at ``at``."""
    scope = frozenset(purposes)
    return {
        k.key_id
        for k in keys
        if not k.revoked and (k.not_after == 0 or k.not_after > at) and frozenset(k.purposes) <= scope
    }


def operator_limit_problems(
    policy: OperatorPolicy,
    event: Update,
    keys: Iterable[LiveKey] | None = None,
) -> list[str]:
    """Why the operator may not sign ``event`` (ADR 0028 section 5), empty if it may.

    ``keys``: the subject's keys before the update (for retired keys' purposes and maxKeys); None
    skips those two checks (the validator still makes them).
    """
    scope = frozenset(policy.purposes)
    out: list[str] = []
    if event.set_metadata:
        out.append("an operator may not set the metadata")
    for k in event.publish:
        outside = sorted(set(k.purposes) - scope)
        if outside:
            out.append(f"key {k.key_id!r}: purposes {outside} are outside the operator scope {sorted(scope)}")
        if k.not_after == 0:
            out.append(f"key {k.key_id!r} has no notAfter (an operator's keys must expire)")
        elif k.not_after > event.timestamp + policy.max_validity:
            out.append(
                f"key {k.key_id!r}: notAfter {k.not_after} is past the update's timestamp + maxValidity "
                f"({event.timestamp} + {policy.max_validity})"
            )
    if keys is None:
        return out
    before = {k.key_id: k for k in keys}
    for r in event.retire:
        known = before.get(r.key_id)
        if known is not None and not frozenset(known.purposes) <= scope:
            out.append(f"key {r.key_id!r}: its purposes {sorted(known.purposes)} are outside the operator scope")
    if event.publish:
        after = dict(before)
        for r in event.retire:
            if r.key_id in after:
                after[r.key_id] = replace(after[r.key_id], not_after=r.not_after)
        for k in event.publish:
            after[k.key_id] = LiveKey(k.key_id, tuple(k.purposes), k.not_after, False)
        live = live_in_scope(after.values(), scope, event.timestamp)
        if len(live) > policy.max_keys:
            out.append(f"{len(live)} live keys in the operator scope afterwards, more than maxKeys {policy.max_keys}")
    return out


def sign_update(
    ks: Keystore,
    domain: Domain,
    head: Head,
    now: int,
    publish: Sequence[PublishedKey] = (),
    retire: Sequence[tuple[str, int]] = (),
    metadata: str | None = None,
    keys: Iterable[LiveKey] | None = None,
) -> SignedEvent:
    """Publish and/or retire service keys: operator-signed (operator mode) or controller-signed.

    In operator mode the update must keep the operator limits (``keys``: the subject's keys, for the
    retirement-scope and maxKeys checks); otherwise :class:`OperatorLimitError` says why and that
    the controllers must sign it.
    """
    event = builder.update(head.subject, head.seq + 1, head.digest, head.next_timestamp(now), publish, retire, metadata)
    policy = ks.operator_policy
    if ks.holds_controllers or policy is None:
        return builder.sign_event(domain, event, ks.controller_secrets())
    problems = operator_limit_problems(policy, event, keys)
    if problems:
        raise OperatorLimitError(
            "this update is beyond what the node's operator key may sign (" + "; ".join(problems) + "): "
            "only the controllers can sign it; " + CEREMONY_HINT
        )
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
