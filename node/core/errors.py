"""The keyreg error tree.

Every error keyreg raises on purpose derives from :class:`KeyregError`. The CLI and the HTTP API
catch the root once and print ``code`` plus the message. Rule violations (the input is wrong and
will stay wrong) sit apart from transport failures (the world is wrong right now; retrying may help)::

    KeyregError
    ├── RuleViolation                  input rejected by the protocol rules; never stored
    │   ├── MalformedEvent             not decodable / bad field / unknown field / over a size limit
    │   │   └── OversizedInput
    │   ├── WrongNetwork               signed for another chainId or registry contract
    │   ├── BadSignature               unparseable, high-s, or not recoverable
    │   ├── UnauthorizedSigner         a signer may not sign this event (not a controller in force,
    │   │                              nor an operator for an update), or duplicated
    │   ├── BelowThreshold             fewer distinct signatures than the controller (or operator) threshold
    │   ├── ChainBroken                seq or prev digest does not extend the subject's log
    │   │   └── StaleEvent             seq at or below the head with the same digest: a replay
    │   ├── UnknownSubject             a non-inception event for a subject we do not know
    │   ├── TimestampViolation         timestamp goes backwards, or too far in the future
    │   ├── CommitmentMismatch         rotation does not reveal the pre-committed controller set
    │   ├── InvalidTransition          e.g. republishing a key id, retiring an unknown key,
    │   │                              any event after the subject was revoked
    │   ├── OperatorLimit              an operator-signed update outside the limits its
    │   │                              operator set allows (purposes, validity, key count, metadata)
    │   └── DuplicityDetected          a second valid event at an occupied (subject, seq)
    ├── TransportError                 something outside the rules failed; retry may help
    │   ├── Throttled                  over a budget (e.g. conflicts per subject); retry later
    │   ├── OverCapacity               the node holds limits.max_subjects subjects: no new ones
    │   ├── StorageError
    │   ├── ChainError
    │   └── NetworkError
    └── ConfigError                    bad configuration or arguments

Each class has a stable machine-readable ``code`` (used in API responses, test vectors and CLI
``--json`` output). Messages never contain secrets.
"""

from __future__ import annotations

from typing import Any


class KeyregError(Exception):
    """Root of every error keyreg raises on purpose."""

    code = "keyreg_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form: {"code", "message", **details}."""
        return {"code": self.code, "message": self.message, **self.details}


class RuleViolation(KeyregError):
    """The input breaks a protocol rule; it is rejected and nothing is stored."""

    code = "rule_violation"


class MalformedEvent(RuleViolation):
    code = "malformed"


class OversizedInput(MalformedEvent):
    code = "oversized"


class WrongNetwork(RuleViolation):
    code = "wrong_network"


class BadSignature(RuleViolation):
    code = "bad_signature"


class UnauthorizedSigner(RuleViolation):
    code = "unauthorized_signer"


class BelowThreshold(RuleViolation):
    code = "below_threshold"


class ChainBroken(RuleViolation):
    code = "chain_broken"


class StaleEvent(ChainBroken):
    code = "stale"


class UnknownSubject(RuleViolation):
    code = "unknown_subject"


class TimestampViolation(RuleViolation):
    code = "timestamp"


class CommitmentMismatch(RuleViolation):
    code = "commitment_mismatch"


class InvalidTransition(RuleViolation):
    code = "invalid_transition"


class OperatorLimit(RuleViolation):
    """An operator-signed update breaks a limit of the operator set in force (docs/protocol.md 6.8)."""

    code = "operator_limit"


class DuplicityDetected(RuleViolation):
    """A second, validly signed event at an occupied (subject, seq).

    ``details`` carries ``subject``, ``seq``, ``existing`` and ``conflicting`` digests; callers
    keep both events as evidence.
    """

    code = "duplicity"


class TransportError(KeyregError):
    code = "transport"


class Throttled(TransportError):
    """Refused for now: the input is over a budget (retrying later may succeed)."""

    code = "throttled"


class OverCapacity(TransportError):
    """Refused: the node is at a configured capacity (``limits.max_subjects``): no new subject."""

    code = "capacity"


class StorageError(TransportError):
    code = "storage"


class ChainError(TransportError):
    code = "chain"


class NetworkError(TransportError):
    code = "network"


class ConfigError(KeyregError):
    code = "config"


ALL_RULE_CODES = sorted(
    {
        cls.code
        for cls in (
            MalformedEvent,
            OversizedInput,
            WrongNetwork,
            BadSignature,
            UnauthorizedSigner,
            BelowThreshold,
            ChainBroken,
            StaleEvent,
            UnknownSubject,
            TimestampViolation,
            CommitmentMismatch,
            InvalidTransition,
            OperatorLimit,
            DuplicityDetected,
        )
    }
)
