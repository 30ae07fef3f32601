"""One network's validation pipeline: decode, hash, recover signers, apply the rules.

Every way events reach a node hands them over in batches (a gossip message, a sync frame, an API
POST), and every consumer runs the same four stages from here: :meth:`Validator.prepare` decodes
an item and hashes it for this network (stages 1 and 2), :func:`recover_ahead` recovers its
signers (stage 3, which the registry may run on other cores), and :meth:`Validator.apply` runs the
state rules of ``keyreg.core.log.apply_event`` (stage 4). :meth:`Validator.validate` chains them
over a batch on one thread; the registry (``node/registry.py``) runs the same stages with storage,
conflicts and audit around stage 4, the offline verifier replays bundles through
:meth:`Validator.apply`, and ``bench/core_validate.py`` measures :meth:`Validator.validate`.

A Validator is built once per network and holds everything derived from its domain (the digest
prefix); nothing else in the core keeps state between calls. It never changes after construction,
so any number of threads may share one.

Results are the rules' results error for error: a digest or recovery that fails in stages 2-3 is
not reported there but left as None, and :func:`keyreg.core.log.apply_event` recomputes it and
raises the error in rule order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .codec import CanonicalEvent, decode_event
from .eip712 import digest_prefix, hash_struct
from .errors import RuleViolation
from .hashing import keccak
from .limits import DEFAULT_LIMITS, Limits
from .log import Accepted, SubjectState, apply_event, recover_signers
from .records import Domain, Event, Inception, SignedEvent

Item = bytes | SignedEvent | CanonicalEvent
# (the decoded event or its decode error, its digest for this network or None)
Prepared = tuple[SignedEvent | RuleViolation, bytes | None]


def recover_ahead(prepared: Prepared) -> tuple[bytes, ...] | None:
    """Stage 3 for one prepared event: its signers, or None where there is nothing to recover
    (no digest) or recovery failed (apply_event then recovers again and raises in rule order)."""
    signed, digest = prepared
    if digest is None or isinstance(signed, RuleViolation):
        return None
    try:
        return recover_signers(signed, digest)
    except RuleViolation:
        return None


class Validator:
    """The validation pipeline of one network (``domain``) under ``limits``."""

    def __init__(self, domain: Domain, limits: Limits = DEFAULT_LIMITS) -> None:
        self.domain = domain
        self.limits = limits
        self._prefix = digest_prefix(domain)  # 0x19 0x01 || domainSeparator

    def decode(self, data: bytes) -> SignedEvent:
        """Decode wire bytes; an event of this network shares this Validator's Domain object."""
        return decode_event(data, self.limits, self.domain)

    def digest(self, event: Event) -> bytes:
        """``event_digest(self.domain, event)``."""
        return keccak(self._prefix + hash_struct(event))

    def is_ours(self, signed: SignedEvent) -> bool:
        """Whether ``signed`` was signed for this network."""
        return signed.domain is self.domain or signed.domain == self.domain

    def subject(self, signed: SignedEvent, digest: bytes | None) -> bytes:
        """The subject ``signed`` belongs to: an inception's is its digest (b"" when unknown)."""
        event = signed.event
        if isinstance(event, Inception):
            return digest or b""
        return event.subject

    def prepare(self, item: Item) -> Prepared:
        """Stages 1 and 2: decode ``item`` (unless decoded already) and hash it for this network.

        The digest is None for another network's event or one that cannot be hashed (a shape
        violation); :meth:`apply` then reports the rule it breaks.
        """
        if isinstance(item, CanonicalEvent):
            signed = item.signed
        elif isinstance(item, SignedEvent):
            signed = item
        else:
            try:
                signed = self.decode(item)
            except RuleViolation as exc:
                return exc, None
        if not self.is_ours(signed):
            return signed, None
        try:
            return signed, self.digest(signed.event)
        except RuleViolation:  # e.g. text with no UTF-8 form: the shape rules name it
            return signed, None

    def apply(
        self,
        state: SubjectState | None,
        signed: SignedEvent,
        now: int | None = None,
        digest: bytes | None = None,
        signers: tuple[bytes, ...] | None = None,
    ) -> Accepted:
        """Stage 4: :func:`apply_event` on this network, with the digest and signers of stages 2-3
        where the caller has them (``digest`` None: hashed here)."""
        if digest is None:
            digest = self.prepare(signed)[1]
        precomputed = None if digest is None else (digest, signers)
        return apply_event(state, signed, self.domain, self.limits, now, precomputed=precomputed)

    def validate(
        self, items: Sequence[Item], states: Mapping[bytes, SubjectState], now: int | None = None
    ) -> tuple[list[Accepted | RuleViolation], dict[bytes, SubjectState]]:
        """Validate ``items`` in order against ``states`` (read only), stage by stage.

        Returns one result per item (its Accepted, or the RuleViolation it was refused with) and
        the states the batch changed (subject -> new state), for the caller to merge. Each event
        applies on the state its predecessors in the batch left (a batch may hold a subject's
        inception and its updates). Stages run over the whole batch in turn, which keeps each
        stage's code and data hot in the CPU caches.
        """
        prepared = [self.prepare(item) for item in items]
        recovered = [recover_ahead(p) for p in prepared]
        results: list[Accepted | RuleViolation] = []
        changed: dict[bytes, SubjectState] = {}
        for (signed, digest), signers in zip(prepared, recovered, strict=True):
            if isinstance(signed, RuleViolation):
                results.append(signed)
                continue
            subject = self.subject(signed, digest)
            state = changed.get(subject) or states.get(subject)
            try:
                acc = self.apply(state, signed, now, digest, signers)
            except RuleViolation as exc:
                results.append(exc)
                continue
            changed[acc.subject] = acc.state
            results.append(acc)
        return results, changed
