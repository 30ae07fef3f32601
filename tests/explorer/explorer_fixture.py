"""Events the explorer tests post: a rotated subject, a revoked one, and one full of hostile text
(a unique module name: several test directories put a conftest.py on sys.path)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from keyreg.core import builder
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import ZERO20, Domain, PublishedKey, SignedEvent

# Text an attacker controls (metadata, revocation reasons): each would run script if a page
# inserted it as HTML or as SVG markup.
HOSTILE = (
    '<script>alert("meta")</script><img src=x onerror="alert(1)" id="pwn-img">'
    '"><svg onload="alert(2)" id="pwn-svg"></svg>&lt;b&gt;'
)
TIMEOUT = 60.0  # seconds: each wait of the browser tests (gossip, relay, indexer, chain watcher)
HOSTILE_REASON = '</title><script>alert("reason")</script><a id="pwn-a" href="javascript:alert(3)">x</a>'


@dataclass
class Subject:
    """A subject built in the test: its id, its controller and its events (wire bytes, in order)."""

    domain: Domain
    controller: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    events: list[bytes] = field(default_factory=list)
    signed: list[SignedEvent] = field(default_factory=list)
    sid: bytes = b""

    @property
    def hex(self) -> str:
        return "0x" + self.sid.hex()

    @property
    def address(self) -> bytes:
        return address_of_private_key(self.controller)

    def _add(self, event: object) -> SignedEvent:
        signed = builder.sign_event(self.domain, event, [self.controller])  # type: ignore[arg-type]
        self.signed.append(signed)
        self.events.append(encode_event(signed))
        return signed

    def head(self) -> bytes:
        return event_digest(self.domain, self.signed[-1].event)

    def incept(self, t0: int, key_id: str, metadata: str = "", governor: bytes = ZERO20) -> Subject:
        key = PublishedKey(key_id, "Ed25519", secrets.token_bytes(32), ("sig",), t0, 0)
        ev = builder.inception(t0, [self.address], 1, keys=[key], governor=governor, metadata=metadata)
        signed = self._add(ev)
        self.sid = event_digest(self.domain, signed.event)
        return self

    def rotate_key(self, t: int, old: str, new: str, overlap_s: int) -> Subject:
        """Publish ``new`` from t and retire ``old`` at t + overlap_s: both valid in between."""
        key = PublishedKey(new, "Ed25519", secrets.token_bytes(32), ("sig",), t, 0)
        seq = len(self.signed)
        self._add(builder.update(self.sid, seq, self.head(), t, publish=[key], retire=[(old, t + overlap_s)]))
        return self

    def publish(self, t: int, key_id: str, metadata: str | None = None) -> Subject:
        key = PublishedKey(key_id, "Ed25519", secrets.token_bytes(32), ("sig",), t, 0)
        seq = len(self.signed)
        self._add(builder.update(self.sid, seq, self.head(), t, publish=[key], metadata=metadata))
        return self

    def revoke(self, t: int, key_id: str, effective_at: int, reason: str) -> Subject:
        seq = len(self.signed)
        self._add(builder.revocation(self.sid, seq, self.head(), t, key_id, effective_at, reason))
        return self


@dataclass
class Net:
    """A running devnet (devnet.json's content) with the test subjects on every node."""

    info: dict[str, Any]
    apis: list[str]
    domain: Domain
    rotated: Subject
    hostile: Subject
    overlap_s: int
