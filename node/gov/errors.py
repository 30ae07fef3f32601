"""Governance errors, placed in the keyreg error tree (keyreg.core.errors)::

KeyregError
├── RuleViolation
│   ├── GovernanceRefused     the governor, token, timelock or registry refused (a revert, or
│   │                         our pre-check of the same rule); ``details["error"]`` names it
│   └── BallotRejected        a ballot is malformed, badly signed, a duplicate or a replay
└── TransportError
    └── ChainError            (keyreg.chain.client.ChainUnavailable etc.: retrying may help)
"""

from __future__ import annotations

from ..core.errors import RuleViolation


class GovernanceRefused(RuleViolation):
    """A governance action the contracts refuse (or would refuse: checked before paying gas)."""

    code = "gov_refused"


class BallotRejected(RuleViolation):
    """A signed ballot that is malformed, not signed by its voter, already seen, or already used."""

    code = "ballot_rejected"
