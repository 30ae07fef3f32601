"""The registry's governance revocations, bounded (issue 13 review, M8).

Anyone can name their own EOA as the governor of a free subject and call ``revokeByGovernance``
as often as they pay for it (~35k gas), with any key id and ever earlier ``effectiveAt``: the
contract keeps, per key id, the earliest time. Kept as they come, such events would grow without
bound and make every verdict of that subject walk them.

The book keeps exactly what a verdict needs, in a dict per subject:
- one revocation per (subject, key id): the earliest effective, which is the contract's own rule
  and the only one ``keyreg.core.keystate.effective_revocation`` can pick;
- only revocations by a governor the subject named in its log (when the subject is known: the contract
  lets no one else revoke, so another governor comes only from a lying RPC endpoint);
- at most ``per_subject`` key ids per subject (the registry passes ``max_keys_per_subject + 1``:
  every key a subject can ever publish, plus "" for the whole subject). Past the cap, a
  revocation of a key id the subject has not published is dropped and counted: it can match no
  key the subject holds today; revocations of published keys and of the whole subject are always
  kept.
A verdict reads at most two entries (the key's and the whole subject's), whatever was sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .core.log import SubjectState
from .core.records import GovernanceRevocation


class GovernanceBook:
    """Governance revocations per subject and key id; not thread-safe (the registry's lock guards it)."""

    def __init__(self, per_subject: int) -> None:
        self.per_subject = max(1, per_subject)
        self._by_subject: dict[bytes, dict[str, GovernanceRevocation]] = {}
        self.dropped = 0  # revocations refused: another governor, or past the per-subject cap

    def _admits(
        self, g: GovernanceRevocation, state: SubjectState | None, current: GovernanceRevocation | None, count: int
    ) -> bool:
        if state is not None and g.governor not in state.governors:  # named by an establishment event (8.3)
            return False
        if current is not None:
            return g.effective_at < current.effective_at
        if count < self.per_subject or g.key_id == "":
            return True
        return state is not None and g.key_id in state.keys

    def select(
        self, items: Iterable[GovernanceRevocation], states: Mapping[bytes, SubjectState]
    ) -> list[GovernanceRevocation]:
        """The revocations of ``items`` that change what is held (a new key id or an earlier
        time), in order, each counted against the cap with those before it. O(1) per item."""
        batch: dict[bytes, dict[str, GovernanceRevocation]] = {}
        added: dict[bytes, int] = {}  # key ids new in this batch, per subject
        out: list[GovernanceRevocation] = []
        for g in items:
            pending = batch.setdefault(g.subject, {})
            held = self._by_subject.get(g.subject, {})
            current = pending.get(g.key_id) or held.get(g.key_id)
            if not self._admits(g, states.get(g.subject), current, len(held) + added.get(g.subject, 0)):
                if current is None:
                    self.dropped += 1
                continue
            if current is None:
                added[g.subject] = added.get(g.subject, 0) + 1
            pending[g.key_id] = g
            out.append(g)
        return out

    def put(self, g: GovernanceRevocation) -> None:
        """Hold ``g`` (committed): it replaces a later revocation of the same key id."""
        held = self._by_subject.setdefault(g.subject, {})
        current = held.get(g.key_id)
        if current is None or g.effective_at < current.effective_at:
            held[g.key_id] = g

    def load(self, items: Iterable[GovernanceRevocation], states: Mapping[bytes, SubjectState]) -> None:
        """Hold stored revocations (at start), with the same rules as :meth:`select`."""
        for g in self.select(items, states):
            self.put(g)

    def of(self, subject: bytes) -> list[GovernanceRevocation]:
        """Every revocation held for a subject (at most ``per_subject``)."""
        return list(self._by_subject.get(subject, {}).values())

    def relevant(self, subject: bytes, key_id: str) -> list[GovernanceRevocation]:
        """The revocations that can apply to ``key_id``: its own and the whole subject's."""
        held = self._by_subject.get(subject)
        if not held:
            return []
        return [g for g in (held.get(key_id), held.get("") if key_id else None) if g is not None]

    def __len__(self) -> int:
        return sum(len(h) for h in self._by_subject.values())
