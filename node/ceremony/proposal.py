"""The proposal model: an unsigned event for a subject's head, and the signatures collected for it.

Pure (no I/O, no clock): the CLI, the API's proposal book and the tests share it.

Invariants of :class:`Proposal`:
- ``event`` extends the state it was proposed from (seq = head seq + 1, prev = head digest) and
  passed every rule of the core with ``authority`` signing it (a dry run of ``apply_event``), so a
  complete proposal is an event the registry accepts unless the head has moved on since;
- ``signatures`` are (signer, signature) pairs, signers distinct members of ``authority.signers``,
  ascending by signer (the order the protocol requires of a signed event), each signature a valid
  65-byte low-s signature over ``digest`` (docs/protocol.md 2.4);
- at most ``authority.threshold`` signatures: attaching past the threshold is refused, so a
  proposal never costs more recoveries than it needs.

The JSON form (:meth:`Proposal.to_obj` / :meth:`Proposal.from_obj`) is what ``keyreg event propose``
writes and the API answers; reading one re-checks every signature, so a file is trusted for nothing
but the signer set it names (which the node checks again when the event is submitted).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..core.codec import event_from_obj, event_to_obj
from ..core.eip712 import controller_commitment, event_digest
from ..core.errors import (
    BadSignature,
    ChainBroken,
    CommitmentMismatch,
    MalformedEvent,
    RuleViolation,
    UnauthorizedSigner,
    UnknownSubject,
)
from ..core.hashing import recover_address
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.log import SubjectState, apply_event
from ..core.records import ZERO32, Domain, Event, Inception, Rotation, SignedEvent, Update, subject_of

# Which signer set a proposal collects for (docs/adr/0028 section 4): the controllers (for a
# rotation, the revealed pre-committed set; for an inception, its own), or, for an update only,
# the operators in force.
AUTHORITIES = ("controllers", "operators")
FORMAT = "keyreg-proposal"
FORMAT_VERSION = 1
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
_REQUIRED = frozenset(("type", "version", "event", "authority", "signatures"))
# Derived from the rest; written for people and tools, checked against the rest when read.
_DERIVED = frozenset(("id", "subject", "kind", "seq", "signers", "complete", "missing"))
_AUTHORITY_FIELDS = frozenset(("name", "signers", "threshold"))


class ProposalError(RuleViolation):
    """A proposal or a signature for it breaks a ceremony rule."""

    code = "proposal"


class StaleProposal(ProposalError):
    """The subject's head moved on: the proposal's event can never be accepted."""

    code = "stale_proposal"


class DuplicateSignature(ProposalError):
    """This signer has already signed the proposal."""

    code = "duplicate_signature"


class ProposalComplete(ProposalError):
    """The proposal already holds its threshold of signatures."""

    code = "proposal_complete"


class IncompleteProposal(ProposalError):
    """Fewer signatures than the threshold: the event cannot be submitted yet."""

    code = "incomplete_proposal"


@dataclass(frozen=True, slots=True)
class Authority:
    """The signer set a proposal collects for: its name, its members (ascending) and threshold."""

    name: str
    signers: tuple[bytes, ...]
    threshold: int

    def to_obj(self) -> dict[str, Any]:
        return {"name": self.name, "signers": ["0x" + s.hex() for s in self.signers], "threshold": self.threshold}


def _hex0x(b: bytes) -> str:
    return "0x" + b.hex()


def check_extends(state: SubjectState | None, event: Event) -> None:
    """Raise unless ``event`` is the next event after ``state`` (StaleProposal if the head moved on)."""
    if isinstance(event, Inception):
        if state is not None:
            raise StaleProposal(f"subject 0x{state.subject.hex()} already exists: its inception is done")
        return
    if state is None:
        raise UnknownSubject(f"unknown subject 0x{event.subject.hex()}: its inception must come first")
    if event.subject != state.subject:
        raise ChainBroken(f"the event names subject 0x{event.subject.hex()}, not 0x{state.subject.hex()}")
    if event.seq == state.seq + 1 and event.prev == state.head:
        return
    if event.seq > state.seq + 1:
        raise ChainBroken(
            f"the proposal is for seq {event.seq} but the head known here is seq {state.seq}: this view is behind"
        )
    raise StaleProposal(
        f"the proposal extends seq {event.seq - 1} (0x{event.prev.hex()[:16]}…) but the subject's head is now "
        f"seq {state.seq} (0x{state.head.hex()[:16]}…): build a new proposal from the current head"
    )


def authority_for(state: SubjectState | None, event: Event, name: str | None = None) -> Authority:
    """The signer set ``event`` must be signed by in ``state`` (docs/adr/0028 section 4).

    ``name`` picks the set for an update ("controllers", the default, or "operators"); every other
    kind has exactly one: an inception its own controllers, a rotation the revealed pre-committed
    controllers, a revocation or a delegation the controllers in force.
    """
    name = name or "controllers"
    if name not in AUTHORITIES:
        raise ProposalError(f"authority must be one of {', '.join(AUTHORITIES)}, got {name[:40]!r}")
    if name == "operators" and not isinstance(event, Update):
        raise ProposalError(f"only an update may be signed by the operators; a {event.kind} needs the controllers")
    if isinstance(event, Inception):
        return Authority("controllers", event.controllers, event.threshold)
    if state is None:
        raise UnknownSubject(f"unknown subject 0x{event.subject.hex()}: its inception must come first")
    if isinstance(event, Rotation):
        if state.next_commitment == ZERO32:
            raise CommitmentMismatch("the subject committed to no next controller set; it cannot rotate")
        if controller_commitment(event.controllers, event.threshold) != state.next_commitment:
            raise CommitmentMismatch(
                "the rotation does not reveal the pre-committed controller set (addresses and threshold)"
            )
        return Authority("controllers", event.controllers, event.threshold)
    if name == "operators":
        operators = state.operators
        if not operators:
            raise ProposalError("the subject has no operator set in force; use the controllers")
        return Authority("operators", operators.operators, operators.threshold)
    return Authority("controllers", state.controllers, state.threshold)


def propose(
    state: SubjectState | None,
    event: Event,
    domain: Domain,
    authority: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    now: int | None = None,
) -> Proposal:
    """A proposal for ``event`` after ``state``, with no signature yet.

    Every rule of the core is run on the event as if ``authority`` had signed it (``apply_event``
    with the set's first ``threshold`` members as the signers: no recovery), so what the signers
    are asked to sign is an event the registry accepts. ``now`` adds the clock-skew rule.
    """
    check_extends(state, event)
    auth = authority_for(state, event, authority)
    digest = event_digest(domain, event)
    apply_event(
        state,
        SignedEvent(event, (), domain),
        domain,
        limits,
        now,
        precomputed=(digest, auth.signers[: auth.threshold]),
    )
    return Proposal(domain, event, auth, digest)


def check_signature_form(signature: bytes) -> None:
    """The cheap checks of a signature (length, v, s in the lower half), before any recovery."""
    if len(signature) != 65:
        raise BadSignature(f"a signature is 65 bytes (r||s||v), got {len(signature)}")
    if signature[64] not in (27, 28):
        raise BadSignature(f"signature v must be 27 or 28, got {signature[64]}")
    s = int.from_bytes(signature[32:64], "big")
    if s == 0 or s > _SECP256K1_HALF_N:
        raise BadSignature("signature s is zero or in the upper half of the curve order (EIP-2): not low-s")


@dataclass(frozen=True, slots=True)
class Proposal:
    """An unsigned event for a head, the signer set it collects for, and the signatures so far."""

    domain: Domain
    event: Event
    authority: Authority
    digest: bytes
    signatures: tuple[tuple[bytes, bytes], ...] = ()  # (signer, signature), ascending by signer

    @property
    def subject(self) -> bytes:
        return subject_of(self.event, self.digest)

    @property
    def signers(self) -> tuple[bytes, ...]:
        return tuple(signer for signer, _ in self.signatures)

    @property
    def complete(self) -> bool:
        return len(self.signatures) >= self.authority.threshold

    @property
    def missing(self) -> int:
        return max(0, self.authority.threshold - len(self.signatures))

    def require_open(self) -> None:
        """Raise ProposalComplete once the threshold is met: no signature is recovered past it."""
        if self.complete:
            raise ProposalComplete(
                f"the proposal already holds {len(self.signatures)} of {self.authority.threshold} signatures: submit it"
            )

    def recover(self, signature: bytes) -> bytes:
        """The signer of ``signature`` if it may be attached now; raises the rule it breaks."""
        self.require_open()
        check_signature_form(signature)
        signer = recover_address(self.digest, signature)
        if signer not in self.authority.signers:
            raise UnauthorizedSigner(
                f"signer 0x{signer.hex()} is not one of the {self.authority.name} this proposal collects for "
                f"({', '.join(_hex0x(s) for s in self.authority.signers)}); was the right key or typed data used?"
            )
        if signer in self.signers:
            raise DuplicateSignature(f"0x{signer.hex()} has already signed this proposal")
        return signer

    def attach(self, signature: bytes) -> Proposal:
        """This proposal with ``signature`` added (checked as :meth:`recover` says), kept ascending by signer."""
        signer = self.recover(signature)
        pairs = tuple(sorted((*self.signatures, (signer, bytes(signature)))))
        return replace(self, signatures=pairs)

    def attach_all(self, signatures: Iterable[bytes]) -> Proposal:
        out = self
        for sig in signatures:
            out = out.attach(sig)
        return out

    def check_current(self, state: SubjectState | None) -> None:
        """Raise StaleProposal (or the rule broken) unless the event still extends ``state``'s head."""
        check_extends(state, self.event)

    def signed_event(self) -> SignedEvent:
        """The signed event, once the threshold is met."""
        if not self.complete:
            raise IncompleteProposal(
                f"{len(self.signatures)} of {self.authority.threshold} signatures: "
                f"{self.missing} more needed from the {self.authority.name}"
            )
        return SignedEvent(self.event, tuple(sig for _, sig in self.signatures), self.domain)

    # ------------------------------------------------------------------------- JSON form

    def to_obj(self) -> dict[str, Any]:
        """The JSON object of the proposal (its event in the wire form, without signatures)."""
        return {
            "type": FORMAT,
            "version": FORMAT_VERSION,
            "id": _hex0x(self.digest),
            "subject": _hex0x(self.subject),
            "kind": self.event.kind,
            "seq": self.event.seq,
            "event": event_to_obj(SignedEvent(self.event, (), self.domain)),
            "authority": self.authority.to_obj(),
            "signatures": [_hex0x(sig) for _, sig in self.signatures],
            "signers": [_hex0x(s) for s in self.signers],
            "complete": self.complete,
            "missing": self.missing,
        }

    @classmethod
    def from_obj(cls, obj: Any, limits: Limits = DEFAULT_LIMITS, domain: Domain | None = None) -> Proposal:
        """Read a proposal's JSON object strictly, re-checking every signature (one recovery each)."""
        if type(obj) is not dict:
            raise MalformedEvent("a proposal is a JSON object")
        keys = set(obj)
        if not keys >= _REQUIRED:
            raise MalformedEvent(f"not a proposal: missing field {sorted(_REQUIRED - keys)[0]!r}")
        unknown = keys - _REQUIRED - _DERIVED
        if unknown:
            raise MalformedEvent(f"unknown field {sorted(unknown)[0]!r} in the proposal")
        if obj["type"] != FORMAT or obj["version"] != FORMAT_VERSION:
            raise MalformedEvent(f"not a {FORMAT} version {FORMAT_VERSION} document")
        signed = event_from_obj(obj["event"], limits, domain)
        if signed.signatures:
            raise MalformedEvent("a proposal's event has no signatures: they are listed under 'signatures'")
        authority = _authority_from_obj(obj["authority"], limits)
        if authority.name == "operators" and not isinstance(signed.event, Update):
            raise MalformedEvent("only an update may collect operator signatures")
        sigs = obj["signatures"]
        if type(sigs) is not list or len(sigs) > authority.threshold:
            raise MalformedEvent(f"'signatures' must be a list of at most {authority.threshold} signatures")
        out = cls(signed.domain, signed.event, authority, event_digest(signed.domain, signed.event))
        out = out.attach_all(_signature(s) for s in sigs)
        derived = out.to_obj()
        for name in _DERIVED & keys:
            if obj[name] != derived[name]:
                raise MalformedEvent(f"field {name!r} does not match the proposal (expected {derived[name]!r})")
        return out


def _signature(value: Any) -> bytes:
    if type(value) is not str or value[:2] != "0x":
        raise BadSignature("a signature is 0x + 130 hex digits")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise BadSignature("a signature is 0x + 130 hex digits") from None
    check_signature_form(raw)
    return raw


def parse_signature(value: str) -> bytes:
    """A signature given as text (0x + 130 hex digits, any case), with its cheap checks."""
    return _signature(value.strip().lower() if isinstance(value, str) else value)


def _authority_from_obj(obj: Any, limits: Limits) -> Authority:
    if type(obj) is not dict or set(obj) != _AUTHORITY_FIELDS:
        raise MalformedEvent('"authority" is {"name", "signers", "threshold"}')
    name, signers, threshold = obj["name"], obj["signers"], obj["threshold"]
    if name not in AUTHORITIES:
        raise MalformedEvent(f"authority name must be one of {', '.join(AUTHORITIES)}")
    cap = max(limits.max_controllers, limits.max_operators)
    if type(signers) is not list or not 1 <= len(signers) <= cap:
        raise MalformedEvent(f"authority signers must be 1-{cap} addresses")
    addresses: list[bytes] = []
    for a in signers:
        if type(a) is not str or len(a) != 42 or a[:2] != "0x" or a[2:] != a[2:].lower():
            raise MalformedEvent("authority signers are 0x + 40 lowercase hex digits")
        try:
            addresses.append(bytes.fromhex(a[2:]))
        except ValueError:
            raise MalformedEvent("authority signers are 0x + 40 lowercase hex digits") from None
    if any(x >= y for x, y in itertools.pairwise(addresses)):
        raise MalformedEvent("authority signers must be distinct and ascending")
    if type(threshold) is not int or not 1 <= threshold <= len(addresses):
        raise MalformedEvent(f"authority threshold must be in 1..{len(addresses)}")
    return Authority(name, tuple(addresses), threshold)
