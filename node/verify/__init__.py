"""Offline verifier SDK: check keys of keyreg subjects from a bundle, trusting only a pinned checkpoint.

Depends on :mod:`keyreg.core` and the crypto libraries only: no network, no database, no event loop
(a test imports it in a fresh interpreter and checks ``sys.modules``).

    from . import Verifier
    v = Verifier.from_bundle("keys.bundle", checkpoint="0x...", max_staleness=3600)
    v.check(subject, "web-2025", purpose="sig").status      # "valid", "revoked", ...
    v.verify_signature(subject, "web-2025", message, sig)   # SignatureCheck
    v.jwks(subject)                                           # RFC 7517 JWK Set
"""

from __future__ import annotations

from .bundle import Bundle, decode_bundle, encode_bundle
from .errors import (
    AnchorMismatch,
    BundleFormatError,
    BundleRefused,
    BundleStale,
    CheckpointMismatch,
    DomainMismatch,
    EvidenceInvalid,
    GovernanceInvalid,
    LogInvalid,
    ProofInvalid,
    StaleView,
)
from .requests import RequestRejected, RequestSigner, RequestVerifier, VerifiedRequest
from .verifier import Anchor, SignatureCheck, SubjectView, Verifier

__all__ = [
    "Anchor",
    "AnchorMismatch",
    "Bundle",
    "BundleFormatError",
    "BundleRefused",
    "BundleStale",
    "CheckpointMismatch",
    "DomainMismatch",
    "EvidenceInvalid",
    "GovernanceInvalid",
    "LogInvalid",
    "ProofInvalid",
    "RequestRejected",
    "RequestSigner",
    "RequestVerifier",
    "SignatureCheck",
    "StaleView",
    "SubjectView",
    "VerifiedRequest",
    "Verifier",
    "decode_bundle",
    "encode_bundle",
]
