"""In-memory store: the test double for the core's unit tests and a reference for the SQL store.

It honours the same contract as the SQL store (tests/store runs one suite over both): a commit is
atomic, a re-delivered event is a no-op, a different event at a stored (subject, seq) raises
:class:`EventConflict`, switched branches are archived, and audit records are hash-chained.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

from ..core.codec import decode_event
from ..core.fork import Duplicity
from ..core.log import SubjectState
from ..core.records import GovernanceRevocation, SignedEvent
from .audit import GENESIS, chain
from .base import AnchorRecord, AuditEntry, AuditRecord, Changes, EventConflict


class MemoryStore:
    """Holds everything in dicts; ``commit`` is atomic because it mutates only after building."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._events: dict[bytes, list[bytes]] = {}
        self._archived: list[tuple[bytes, int, bytes, bytes]] = []  # (subject, seq, digest, raw)
        self._states: dict[bytes, SubjectState] = {}
        self._disputed: dict[bytes, bool] = {}
        self._evidence: list[Duplicity] = []
        self._governance: list[GovernanceRevocation] = []
        self._anchors: list[AnchorRecord] = []
        self._digests: dict[tuple[bytes, int], bytes] = {}
        self.audit: list[AuditEntry] = []  # the entries as given (tests read these)
        self._audit_records: list[AuditRecord] = []

    def load_states(self) -> Iterator[tuple[SubjectState, bool]]:
        for subject, state in self._states.items():
            yield state, self._disputed.get(subject, False)

    def commit(self, changes: Changes) -> None:
        # Work on copies of what this commit touches only (the touched subjects' logs, an overlay of
        # digests): O(size of the change), not of the store.
        logs: dict[bytes, list[bytes]] = {}
        added: dict[tuple[bytes, int], bytes] = {}  # digests written by this commit
        removed: set[tuple[bytes, int]] = set()  # digests archived by this commit

        def log_of(subject: bytes) -> list[bytes]:
            log = logs.get(subject)
            if log is None:
                log = logs[subject] = list(self._events.get(subject, []))
            return log

        def stored(key: tuple[bytes, int]) -> bytes | None:
            if key in added:
                return added[key]
            return None if key in removed else self._digests.get(key)

        archived: list[tuple[bytes, int, bytes, bytes]] = []
        for subject, seq in changes.switched:
            log = log_of(subject)
            for i, raw in enumerate(log[seq:], start=seq):
                digest = stored((subject, i))
                assert digest is not None  # every stored event has its digest
                archived.append((subject, i, digest, raw))
                added.pop((subject, i), None)
                removed.add((subject, i))
            del log[seq:]
        known: set[tuple[bytes, int]] = set()
        # The per-event loop: stored() and log_of() inlined (one event each, ~every event of a batch).
        digests, events = self._digests, self._events
        for acc, raw in changes.appended:
            subject = acc.subject
            seq = acc.signed.event.seq
            key = (subject, seq)
            digest = added.get(key)  # stored(key)
            if digest is None and key not in removed:
                digest = digests.get(key)
            if digest == acc.digest:
                known.add(key)  # re-delivery: a no-op
                continue
            if digest is not None:
                raise EventConflict(
                    f"a different event is already stored at subject 0x{subject.hex()} seq {seq}",
                    subject="0x" + subject.hex(),
                    seq=seq,
                )
            held = logs.get(subject)  # log_of(subject)
            if held is None:
                held = logs[subject] = list(events.get(subject, ()))
            if seq != len(held):
                raise AssertionError("append out of order")  # a registry bug, never input-driven
            held.append(raw)
            added[key] = acc.digest
        stale: set[bytes] = set()
        audit = changes.audit  # only read
        if known:  # (the common case, nothing known already, keeps every state and audit entry)
            fresh = {a.subject for a, _ in changes.appended if (a.subject, a.signed.event.seq) not in known}
            fresh |= {s for s, _ in changes.switched}
            stale = {s for s, _ in known} - fresh  # every event of theirs was known: keep the stored head
            audit = [a for a in changes.audit if not (a.action == "accept" and (a.subject, a.seq) in known)]
        records = chain(audit, *self._audit_head(), self._now_ms())
        # Nothing above mutated self: from here on the commit cannot fail.
        self._events.update(logs)
        for key in removed:
            self._digests.pop(key, None)
        self._digests.update(added)
        self._archived.extend(archived)
        if stale:
            self._states.update((s, st) for s, st in changes.states.items() if s not in stale)
        else:
            self._states.update(changes.states)
        self._disputed.update(changes.disputed)
        self._evidence.extend(e for e in changes.evidence if e not in self._evidence)
        self._governance.extend(g for g in changes.governance if g not in self._governance)
        self._anchors.extend(a for a in changes.anchors if a not in self._anchors)
        self.audit.extend(audit)
        self._audit_records.extend(records)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _audit_head(self) -> tuple[int, bytes]:
        if not self._audit_records:
            return 0, GENESIS
        last = self._audit_records[-1]
        return last.index + 1, last.hash

    def append_audit(self, entries: list[AuditEntry]) -> list[AuditRecord]:
        """Chain and keep audit records of local operations (key ops...)."""
        records = chain(entries, *self._audit_head(), self._now_ms())
        self.audit.extend(entries)
        self._audit_records.extend(records)
        return records

    def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]:
        return self._audit_records[from_index : from_index + limit]

    def audit_head(self) -> tuple[int, bytes]:
        """(next index, hash of the last record)."""
        return self._audit_head()

    def events(self, subject: bytes, from_seq: int = 0, limit: int = 1000) -> list[bytes]:
        return self._events.get(subject, [])[from_seq : from_seq + limit]

    def log(self, subject: bytes) -> list[SignedEvent]:
        return [decode_event(raw) for raw in self._events.get(subject, [])]

    def evidence(self, subject: bytes | None = None) -> list[Duplicity]:
        return [d for d in self._evidence if subject is None or d.subject == subject]

    def evidence_page(self, subject: bytes, after: int = 0, limit: int = 100) -> list[tuple[int, Duplicity]]:
        page = ((i, d) for i, d in enumerate(self._evidence[after:], after + 1) if d.subject == subject)
        return list(itertools.islice(page, limit))

    def governance_revocations(self, subject: bytes | None = None) -> list[GovernanceRevocation]:
        return [g for g in self._governance if subject is None or g.subject == subject]

    def digest_at(self, subject: bytes, seq: int) -> bytes | None:
        return self._digests.get((subject, seq))

    def anchors(self, subject: bytes | None = None) -> list[AnchorRecord]:
        return sorted((a for a in self._anchors if subject is None or a.subject == subject), key=lambda a: a.position)

    def archived(self, subject: bytes | None = None) -> list[tuple[bytes, int, bytes, bytes]]:
        """Losing-branch events as (subject, seq, digest, raw), in archive order."""
        return [a for a in self._archived if subject is None or a[0] == subject]

    def close(self) -> None:
        pass
