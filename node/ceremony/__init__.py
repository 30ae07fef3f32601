"""Signing ceremonies: unsigned proposals that k-of-n signers complete one signature at a time.

A controller action (a rotation, a revocation, a delegation, an update signed by the controllers
or by the operators) becomes a :class:`~keyreg.ceremony.proposal.Proposal`: the unsigned event for
the subject's current head, the signer set it collects for, and the signatures attached so far.
Each signer signs the event's EIP-712 digest with whatever holds their key (a V3 keyfile, Foundry
``cast wallet sign --data``, a hardware or browser wallet); each signature is checked as it comes
(docs/adr/0028 section 10, docs/ceremonies.md).

- :mod:`keyreg.ceremony.proposal`: the pure model and its JSON form (files and the API);
- :mod:`keyreg.ceremony.book`: a node's bounded, expiring set of pending proposals (``/v1/proposals``).

Proposals are node-local and never gossiped: until complete they are unauthenticated, so
forwarding them would hand any outsider an amplifier; the completed event travels as any event.
"""

from .proposal import (
    AUTHORITIES,
    Authority,
    DuplicateSignature,
    IncompleteProposal,
    Proposal,
    ProposalComplete,
    ProposalError,
    StaleProposal,
    authority_for,
    propose,
)

__all__ = [
    "AUTHORITIES",
    "Authority",
    "DuplicateSignature",
    "IncompleteProposal",
    "Proposal",
    "ProposalComplete",
    "ProposalError",
    "StaleProposal",
    "authority_for",
    "propose",
]
