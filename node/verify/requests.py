"""Replay-protected signed HTTP requests: a client signs with a registry key, a service verifies.

Headers (names are case-insensitive)::

    Keyreg-Subject    0x<64 hex>          subject id of the signer
    Keyreg-Key-Id     <key id>            a published key of that subject
    Keyreg-Timestamp  <unix seconds>      decimal
    Keyreg-Nonce      <16-128 of [A-Za-z0-9_-]>   unique per request (the signer helper uses 128 random bits)
    Keyreg-Digest     sha-256=<64 hex>    SHA-256 of the exact body bytes (empty body included)
    Keyreg-Signature  <base64url>         signature of the string-to-sign by the key (see signatures.py)

String to sign: these nine lines joined by a single ``\\n`` (no trailing newline), UTF-8::

    keyreg-request-v1
    <METHOD, upper case>
    <authority: the Host the service expects, lower case>
    <path and query exactly as sent>
    <subject, 0x lowercase hex>
    <key id>
    <timestamp>
    <nonce>
    sha-256=<body digest hex>

A request is accepted when: every header is present and well-formed and no field holds a
newline; the timestamp is within ``window_s`` of the service's clock; the body matches the
digest; the (subject, key id, nonce) was not seen in the window; the key is valid at the later
of the timestamp and the service's clock (for the purpose, if one is required) and the signature
verifies. The client chooses its timestamp within the window: judging the key at that time alone
would let a backdated request dodge a revocation or expiry of the last ``window_s`` seconds. Nonces are
remembered only after a request verifies, so unsigned traffic cannot fill the cache; if the
bounded cache is full of live nonces the request is refused (fail closed), never forgotten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from coincurve import PrivateKey as Secp256k1PrivateKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..core.errors import RuleViolation
from .errors import StaleView
from .signatures import b64url
from .verifier import SignatureCheck

VERSION_LINE = "keyreg-request-v1"
H_SUBJECT, H_KEY_ID, H_TIMESTAMP = "keyreg-subject", "keyreg-key-id", "keyreg-timestamp"
H_NONCE, H_DIGEST, H_SIGNATURE = "keyreg-nonce", "keyreg-digest", "keyreg-signature"
HEADERS = (H_SUBJECT, H_KEY_ID, H_TIMESTAMP, H_NONCE, H_DIGEST, H_SIGNATURE)
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SUBJECT_RE = re.compile(r"0x[0-9a-f]{64}")
_DIGEST_RE = re.compile(r"sha-256=[0-9a-f]{64}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]{16,512}")
# ASCII digits only: str.isdigit() also accepts "²" and other scripts' digits, which int() refuses or misreads.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")


class RequestRejected(RuleViolation):
    """A signed request is refused; ``reason`` is one of REASONS."""

    code = "request_rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


REASONS = (
    "missing-header",
    "malformed-header",
    "expired",
    "future",
    "body-digest",
    "replay",
    "nonce-cache-full",
    "key-not-valid",
    "stale-view",
    "bad-signature",
)


def body_digest(body: bytes) -> str:
    """The Keyreg-Digest value of a body."""
    return "sha-256=" + hashlib.sha256(body).hexdigest()


def string_to_sign(
    method: str, authority: str, path: str, subject: str, key_id: str, timestamp: int, nonce: str, digest: str
) -> bytes:
    """The exact bytes a request signature covers (see the module docstring)."""
    fields = (VERSION_LINE, method.upper(), authority.lower(), path, subject, key_id, str(timestamp), nonce, digest)
    if any("\n" in f or "\r" in f for f in fields):
        raise RequestRejected("malformed-header", "a signed field contains a line break")
    try:
        return "\n".join(fields).encode()
    except UnicodeEncodeError:  # a lone surrogate in a header value: not a string any signer could sign
        raise RequestRejected("malformed-header", "a signed field is not valid UTF-8") from None


# ---------------------------------------------------------------------------------------------
# client side


def _sign_raw(alg: str, secret: bytes, message: bytes) -> bytes:
    if alg == "Ed25519":
        return Ed25519PrivateKey.from_private_bytes(secret).sign(message)
    if alg == "P-256":
        key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "secp256k1":
        r, s = decode_dss_signature(Secp256k1PrivateKey(secret).sign(message))  # SHA-256, low s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise ValueError(f"unsupported algorithm {alg!r}")


def public_key_of(alg: str, secret: bytes) -> bytes:
    """The public key to publish for a 32-byte secret (raw Ed25519, compressed SEC1 for the curves)."""
    if alg == "Ed25519":
        return (
            Ed25519PrivateKey.from_private_bytes(secret)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
    if alg == "P-256":
        key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
        return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    if alg == "secp256k1":
        pk: bytes = Secp256k1PrivateKey(secret).public_key.format(compressed=True)
        return pk
    raise ValueError(f"unsupported algorithm {alg!r}")


def sign_message(alg: str, secret: bytes, message: bytes) -> bytes:
    """Sign a message with a service key (Ed25519; ECDSA-SHA-256 as raw r||s for P-256/secp256k1)."""
    return _sign_raw(alg, secret, message)


@dataclass(frozen=True)
class RequestSigner:
    """Client helper: sign requests with one of a subject's published keys."""

    subject: bytes
    key_id: str
    alg: str
    secret: bytes = b""

    def __repr__(self) -> str:  # never show the secret
        return f"RequestSigner(subject=0x{self.subject.hex()}, key_id={self.key_id!r}, alg={self.alg!r})"

    def sign(
        self,
        method: str,
        authority: str,
        path: str,
        body: bytes = b"",
        now: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Headers to add to the request."""
        ts = int(time.time()) if now is None else now
        nonce = nonce or b64url(secrets.token_bytes(16))
        subject = "0x" + self.subject.hex()
        digest = body_digest(body)
        message = string_to_sign(method, authority, path, subject, self.key_id, ts, nonce, digest)
        return {
            "Keyreg-Subject": subject,
            "Keyreg-Key-Id": self.key_id,
            "Keyreg-Timestamp": str(ts),
            "Keyreg-Nonce": nonce,
            "Keyreg-Digest": digest,
            "Keyreg-Signature": b64url(_sign_raw(self.alg, self.secret, message)),
        }


# ---------------------------------------------------------------------------------------------
# service side


class KeyChecker(Protocol):
    """Anything that answers "did this subject's key sign this" (a :class:`Verifier`, a node client)."""

    def verify_signature(
        self,
        subject: bytes | str,
        key_id: str,
        message: bytes,
        signature: bytes,
        at: int | None = None,
        purpose: str | None = None,
    ) -> SignatureCheck: ...


class NonceCache:
    """Bounded set of recently seen nonces, each forgotten after ``ttl_s``.

    Invariant: entries are in insertion order and expiry = insertion time + ttl, so expiries are
    non-decreasing and purging pops from the front only.
    """

    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = threading.Lock()  # a service verifies requests from many threads

    def __len__(self) -> int:
        return len(self._entries)

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            key, expiry = next(iter(self._entries.items()))
            if expiry > now:
                break
            del self._entries[key]

    def seen(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            self._purge()
            return key in self._entries

    def add(self, key: tuple[str, str, str]) -> None:
        """Remember a new nonce, atomically: RequestRejected("replay") if it is already there,
        ("nonce-cache-full") if every slot holds a live nonce."""
        with self._lock:
            self._purge()
            if key in self._entries:
                raise RequestRejected("replay", "this nonce was already used: replayed request")
            if len(self._entries) >= self.capacity:
                raise RequestRejected(
                    "nonce-cache-full", "too many recent requests to remember their nonces; retry later"
                )
            self._entries[key] = self._clock() + self.ttl_s


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """Who signed an accepted request."""

    subject: bytes
    key_id: str
    timestamp: int
    nonce: str


class RequestVerifier:
    """Service side: verify signed requests, refusing replays, stale or future timestamps and tampering."""

    def __init__(
        self,
        keys: KeyChecker,
        authority: str,
        window_s: int = 300,
        max_nonces: int = 100_000,
        purpose: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.authority = authority.lower()
        self.window_s = window_s
        self.purpose = purpose
        self._clock = clock
        # A nonce must outlive every timestamp that can still pass the window check.
        self.nonces = NonceCache(max_nonces, 2 * window_s + 1, clock)

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> VerifiedRequest:
        """Accept the request or raise :class:`RequestRejected` with a specific reason."""
        h = {k.lower(): v for k, v in headers.items()}
        missing = [name for name in HEADERS if name not in h]
        if missing:
            raise RequestRejected("missing-header", f"missing header {missing[0]}")
        subject, key_id, nonce, digest = h[H_SUBJECT], h[H_KEY_ID], h[H_NONCE], h[H_DIGEST]
        if not _SUBJECT_RE.fullmatch(subject):
            raise RequestRejected("malformed-header", f"{H_SUBJECT} must be 0x and 64 lowercase hex digits")
        if not _TIMESTAMP_RE.fullmatch(h[H_TIMESTAMP]):
            raise RequestRejected("malformed-header", f"{H_TIMESTAMP} must be unix seconds")
        if not _NONCE_RE.fullmatch(nonce):
            raise RequestRejected("malformed-header", f"{H_NONCE} must be 16-128 characters of [A-Za-z0-9_-]")
        if not _DIGEST_RE.fullmatch(digest):
            raise RequestRejected("malformed-header", f"{H_DIGEST} must be sha-256=<64 lowercase hex>")
        sig = h[H_SIGNATURE]
        if not _B64URL_RE.fullmatch(sig):
            raise RequestRejected("malformed-header", f"{H_SIGNATURE} is not base64url")
        try:
            signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        except (binascii.Error, ValueError):
            raise RequestRejected("malformed-header", f"{H_SIGNATURE} is not base64url") from None
        ts = int(h[H_TIMESTAMP])
        now = self._clock()
        if ts < now - self.window_s:
            raise RequestRejected(
                "expired", f"request timestamp is {int(now - ts)}s old, the window is {self.window_s}s"
            )
        if ts > now + self.window_s:
            raise RequestRejected(
                "future", f"request timestamp is {int(ts - now)}s ahead, the window is {self.window_s}s"
            )
        if body_digest(body) != digest:
            raise RequestRejected("body-digest", "the body does not match Keyreg-Digest (tampered body)")
        cache_key = (subject, key_id, nonce)
        if self.nonces.seen(cache_key):  # fast path; add() below re-checks atomically
            raise RequestRejected("replay", "this nonce was already used: replayed request")
        message = string_to_sign(method, self.authority, path, subject, key_id, ts, nonce, digest)
        at = max(ts, int(now))  # never before now: a backdated timestamp must not revive a key
        try:
            check = self.keys.verify_signature(subject, key_id, message, signature, at=at, purpose=self.purpose)
        except StaleView as exc:
            raise RequestRejected("stale-view", exc.message) from None
        if not check.verdict.ok:
            raise RequestRejected("key-not-valid", f"key {key_id!r} is {check.verdict.status}: {check.verdict.reason}")
        if not check.valid:
            raise RequestRejected("bad-signature", "signature does not verify (tampered method, path, headers or key)")
        self.nonces.add(cache_key)
        return VerifiedRequest(bytes.fromhex(subject[2:]), key_id, ts, nonce)
