"""In-memory store: the test double for the core's unit tests and a reference for the SQL store."""

from __future__ import annotations

from collections.abc import Iterator

from ..core.codec import decode_event
from ..core.fork import Duplicity
from ..core.log import SubjectState
from ..core.records import GovernanceRevocation, SignedEvent
from .base import AnchorRecord, AuditEntry, Changes


class MemoryStore:
    """Holds everything in dicts; ``commit`` is atomic because it mutates only after building."""

    def __init__(self) -> None:
        self._events: dict[bytes, list[bytes]] = {}
        self._archived: list[tuple[bytes, int, bytes]] = []
        self._states: dict[bytes, SubjectState] = {}
        self._disputed: dict[bytes, bool] = {}
        self._evidence: list[Duplicity] = []
        self._governance: list[GovernanceRevocation] = []
        self._anchors: list[AnchorRecord] = []
        self._digests: dict[tuple[bytes, int], bytes] = {}
        self.audit: list[AuditEntry] = []

    def load_states(self) -> Iterator[tuple[SubjectState, bool]]:
        for subject, state in self._states.items():
            yield state, self._disputed.get(subject, False)

    def commit(self, changes: Changes) -> None:
        events = {s: list(v) for s, v in self._events.items() if s in changes.states}
        for subject, seq in changes.switched:
            log = events.setdefault(subject, list(self._events.get(subject, [])))
            self._archived.extend((subject, i, raw) for i, raw in enumerate(log[seq:], start=seq))
            del log[seq:]
        for acc, raw in changes.appended:
            log = events.setdefault(acc.subject, list(self._events.get(acc.subject, [])))
            if acc.signed.event.seq != len(log):
                raise AssertionError("append out of order")  # a registry bug, never input-driven
            log.append(raw)
        for acc, _ in changes.appended:
            self._digests[(acc.subject, acc.signed.event.seq)] = acc.digest
        for subject, seq in changes.switched:
            for key in [k for k in self._digests if k[0] == subject and k[1] >= seq]:
                if key not in {(a.subject, a.signed.event.seq) for a, _ in changes.appended}:
                    del self._digests[key]
        self._anchors.extend(changes.anchors)
        self._events.update(events)
        self._states.update(changes.states)
        self._disputed.update(changes.disputed)
        self._evidence.extend(changes.evidence)
        self._governance.extend(changes.governance)
        self.audit.extend(changes.audit)

    def events(self, subject: bytes, from_seq: int = 0, limit: int = 1000) -> list[bytes]:
        return self._events.get(subject, [])[from_seq : from_seq + limit]

    def log(self, subject: bytes) -> list[SignedEvent]:
        return [decode_event(raw) for raw in self._events.get(subject, [])]

    def evidence(self, subject: bytes | None = None) -> list[Duplicity]:
        return [d for d in self._evidence if subject is None or d.subject == subject]

    def governance_revocations(self, subject: bytes | None = None) -> list[GovernanceRevocation]:
        return [g for g in self._governance if subject is None or g.subject == subject]

    def digest_at(self, subject: bytes, seq: int) -> bytes | None:
        return self._digests.get((subject, seq))

    def anchors(self, subject: bytes | None = None) -> list[AnchorRecord]:
        return sorted((a for a in self._anchors if subject is None or a.subject == subject), key=lambda a: a.position)

    def close(self) -> None:
        pass
