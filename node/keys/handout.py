"""Which key the service signs with: the node's side of the service contract.

A key is handed to the service (``GET /local/v1/signing-key``, ``POST /local/v1/sign``, the key
file) only when:

- the node has accepted the event that published it (the key is in the node's registry; accepting
  it is what hands it to gossip) and the subject is not disputed;
- it is valid now by the log: active (not before its activation), not retired, not revoked;
- the keystore holds its private key.

Among those, the newest-activated key wins, so the service switches at the successor's activation
and never earlier. The scheduler publishes every successor at least ``publish_ahead`` before that
activation, so verifiers that refresh their JWKS on a timer already hold it. A key published by
hand to activate at once (``keyreg keys rotate`` without ``--activate-in``, or ``--now``) is
handed out at once too, marked ``"fresh": true`` (public for less than ``publish_ahead``): the
case where a service signs with a key some verifiers may not have fetched yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.log import KeyRecord
from .keystore import Keystore, KeystoreError, write_private_text
from .service_keys import ServiceKey

if TYPE_CHECKING:
    from ..registry import Registry


@dataclass(frozen=True)
class Handout:
    """The key for the service now, the public JWKs verifiers accept now, and what comes next."""

    key: ServiceKey
    record: KeyRecord
    accepted: list[dict[str, Any]]
    fresh: bool  # public for less than publish_ahead: some verifiers may not have fetched it yet
    next_change: int | None  # when the answer may change next (a successor activates or is ready)
    successor: KeyRecord | None = None

    def body(self) -> dict[str, Any]:
        """The JSON the admin API answers and the key file holds."""
        out: dict[str, Any] = {
            "keyId": self.key.key_id,
            "alg": self.key.jws_alg,
            "jwk": self.key.private_jwk(),
            "accepted": self.accepted,
            "activeFrom": self.record.valid_from,
            "notAfter": self.record.not_after or None,
            "fresh": self.fresh,
            "nextChange": self.next_change,
        }
        if self.successor is not None:
            out["next"] = {"keyId": self.successor.key.key_id, "activeFrom": self.successor.valid_from}
        return out


def choose(valid: Sequence[KeyRecord], held: Callable[[str], bool]) -> KeyRecord | None:
    """The record to hand out: the newest-activated valid key the keystore holds, or None."""
    mine = [r for r in valid if held(r.key.key_id)]
    if not mine:
        return None
    return max(mine, key=lambda r: (r.valid_from, r.published_seq, r.key.key_id))


def next_change(records: Sequence[KeyRecord], now: int) -> int | None:
    """The next instant after ``now`` at which :func:`choose` may answer differently."""
    times = []
    for r in records:
        for t in (r.valid_from, r.not_after or None, r.revoked_at):
            if t is not None and t > now:
                times.append(t)
    return min(times) if times else None


def current_handout(
    state_keys: Sequence[KeyRecord],
    valid: Sequence[KeyRecord],
    accepted: list[dict[str, Any]],
    ks: Keystore,
    now: int,
    publish_ahead: int,
) -> Handout:
    """The handout for a subject: ``state_keys`` all its published keys, ``valid`` those valid now."""
    record = choose(valid, ks.has_service_key)
    if record is None:
        raise KeystoreError(
            "no service key of this subject that this node holds is valid now: publish one with "
            "`keyreg keys add` (or enable [rotation])"
        )
    # Keys still to come or in force only (retired ones are most of a long-lived subject's keys),
    # checked against the keystore one file lookup each.
    live = [
        r
        for r in state_keys
        if (r.not_after == 0 or r.not_after > now) and (r.revoked_at is None or r.revoked_at > now)
    ]
    held = [r for r in live if ks.has_service_key(r.key.key_id)]
    pending = [r for r in held if r.valid_from > now and r.revoked_at is None]
    successor = min(pending, key=lambda r: r.valid_from) if pending else None
    return Handout(
        ks.service_key(record.key.key_id),
        record,
        accepted,
        record.published_at + publish_ahead > now,
        next_change(held, now),
        successor,
    )


def write_key_file(path: Path, handout: Handout) -> None:
    """Atomically replace the service's key file (0600): a reader sees the old or the new key."""
    write_private_text(path, json.dumps(handout.body(), indent=1) + "\n")


def handout_for(
    registry: Registry, ks: Keystore | None, publish_ahead: int, jwk: Callable[[KeyRecord], dict[str, Any]]
) -> Handout:
    """The node's handout for its own subject (``jwk`` renders the accepted public keys)."""
    if ks is None or not ks.unlocked:
        raise KeystoreError("the node runs without its keystore password; restart it with KEYREG_PASSWORD set")
    ks.reload()
    subject = ks.subject
    if subject is None:
        raise KeystoreError("this node's keystore has no subject yet: run `keyreg subject create`")
    state = registry.state(subject)
    if state is None or subject in registry.disputed:
        raise KeystoreError("this node's subject is unknown to it or disputed: no key is handed out")
    now = int(registry.clock())
    valid = registry.valid_keys(subject, now)
    return current_handout(list(state.keys.values()), valid, [jwk(r) for r in valid], ks, now, publish_ahead)
