"""Errors of the offline verifier, under the keyreg error tree (``keyreg.core.errors``)::

    RuleViolation
    ├── BundleRefused            the bundle as a whole is not accepted; nothing from it is used
    │   ├── BundleFormatError    not a bundle: bad JSON/gzip, wrong version, unknown or missing field
    │   ├── CheckpointMismatch   header does not hash to the pinned block hash, or disagrees with the
    │   │                        checkpoint fields the bundle states
    │   ├── DomainMismatch       the bundle's network is not the one the verifier expects
    │   ├── ProofInvalid         a trie or Merkle proof does not check out against the checkpoint
    │   ├── AnchorMismatch       an anchor the bundle claims is not what the proof shows
    │   ├── LogInvalid           a subject's log does not replay (details carry the core rule code)
    │   ├── EvidenceInvalid      duplicity evidence is not two valid events at one seq
    │   ├── GovernanceInvalid    governance records differ from what the registry's storage proves
    │   └── BundleStale          the checkpoint is older than the freshness policy allows
    └── StaleView                one subject's view is behind the chain (a newer head is anchored but
                                 missing from the bundle): checks of that subject are refused

Every class has a stable ``code``; ``details["part"]`` names the part of the bundle at fault.
"""

from __future__ import annotations

from ..core.errors import RuleViolation


class BundleRefused(RuleViolation):
    """The bundle is refused as a whole."""

    code = "bundle_refused"


class BundleFormatError(BundleRefused):
    code = "bundle_format"


class CheckpointMismatch(BundleRefused):
    code = "bundle_checkpoint"


class DomainMismatch(BundleRefused):
    code = "bundle_domain"


class ProofInvalid(BundleRefused):
    code = "bundle_proof"


class AnchorMismatch(BundleRefused):
    code = "bundle_anchor"


class LogInvalid(BundleRefused):
    code = "bundle_log"


class EvidenceInvalid(BundleRefused):
    code = "bundle_evidence"


class GovernanceInvalid(BundleRefused):
    code = "bundle_governance"


class BundleStale(BundleRefused):
    code = "bundle_stale"


class StaleView(RuleViolation):
    """The chain anchors a newer head of this subject than the bundle's log holds (omission)."""

    code = "stale_view"
