"""Subjects, keys and simulated chain state for the offline verifier tests (and the bench)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from keyreg.core import builder
from keyreg.core.builder import sign_event
from keyreg.core.eip712 import event_digest
from keyreg.core.records import ZERO20, Domain, PublishedKey, SignedEvent
from keyreg.verify.requests import public_key_of

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
T0 = 1_700_000_000


def secret(label: str) -> bytes:
    """A deterministic 32-byte secret (valid for secp256k1, P-256 and Ed25519)."""
    return hashlib.sha256(label.encode()).digest()


def service_key(
    kid: str,
    alg: str = "Ed25519",
    purposes: Sequence[str] = ("sig",),
    not_before: int = T0,
    not_after: int = 0,
    label: str | None = None,
) -> tuple[PublishedKey, bytes]:
    """A published key and its secret."""
    s = secret(label or f"service:{kid}:{alg}")
    return PublishedKey(kid, alg, public_key_of(alg, s), tuple(purposes), not_before, not_after), s


@dataclass
class Actor:
    """One subject: its controller secrets and its signed log."""

    domain: Domain
    controllers: list[bytes]
    next_controllers: list[bytes]
    events: list[SignedEvent] = field(default_factory=list)
    secrets: dict[str, bytes] = field(default_factory=dict)

    @property
    def subject(self) -> bytes:
        return event_digest(self.domain, self.events[0].event)

    @property
    def head(self) -> tuple[int, bytes]:
        return self.events[-1].event.seq, event_digest(self.domain, self.events[-1].event)

    def _sign(self, event: object) -> SignedEvent:
        signed = sign_event(self.domain, event, self.controllers)  # type: ignore[arg-type]
        self.events.append(signed)
        return signed

    def update(
        self, ts: int, publish: Sequence[tuple[PublishedKey, bytes]] = (), retire: Sequence[tuple[str, int]] = ()
    ) -> SignedEvent:
        seq, head = self.head
        for k, s in publish:
            self.secrets[k.key_id] = s
        return self._sign(builder.update(self.subject, seq + 1, head, ts, [k for k, _ in publish], retire))

    def revoke(self, ts: int, key_id: str, effective_at: int, reason: str = "compromised") -> SignedEvent:
        seq, head = self.head
        return self._sign(builder.revocation(self.subject, seq + 1, head, ts, key_id, effective_at, reason))

    def unsigned_update(self, ts: int, publish: Sequence[tuple[PublishedKey, bytes]]) -> SignedEvent:
        """A validly signed update that is NOT appended (for forks and hidden heads)."""
        seq, head = self.head
        event = builder.update(self.subject, seq + 1, head, ts, [k for k, _ in publish])
        return sign_event(self.domain, event, self.controllers)


def make_actor(
    name: str,
    keys: Sequence[tuple[PublishedKey, bytes]] = (),
    governor: bytes = ZERO20,
    domain: Domain = DOMAIN,
    ts: int = T0,
) -> Actor:
    """A subject with one controller, a pre-committed next controller, and ``keys`` at inception."""
    ctrl = [secret(f"{name}:controller")]
    nxt = [secret(f"{name}:next")]
    actor = Actor(domain, ctrl, nxt)
    inc = builder.inception(
        ts,
        builder.controller_set(ctrl),
        1,
        builder.controller_set(nxt),
        1,
        keys=[k for k, _ in keys],
        governor=governor,
    )
    actor.events.append(sign_event(domain, inc, ctrl))
    for k, s in keys:
        actor.secrets[k.key_id] = s
    return actor
