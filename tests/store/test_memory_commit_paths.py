"""MemoryStore.commit's inlined per-event loop against the straightforward version it replaced.

The reference below is the commit as it was (closures per event, fresh/stale sets on every commit);
random sequences of commits (new events, re-deliveries, an event twice in one commit, conflicts,
switches) must leave both stores in the same state with the same audit chain.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import pytest

from keyreg.core.codec import encode_event
from keyreg.core.hashing import keccak
from keyreg.core.log import Accepted, replay
from keyreg.store.audit import chain
from keyreg.store.base import AuditEntry, Changes, EventConflict
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, subject_events


class ReferenceStore(MemoryStore):
    def commit(self, changes: Changes) -> None:
        logs: dict[bytes, list[bytes]] = {}
        added: dict[tuple[bytes, int], bytes] = {}
        removed: set[tuple[bytes, int]] = set()

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
                assert digest is not None
                archived.append((subject, i, digest, raw))
                added.pop((subject, i), None)
                removed.add((subject, i))
            del log[seq:]
        known: set[tuple[bytes, int]] = set()
        for acc, raw in changes.appended:
            seq = acc.signed.event.seq
            key = (acc.subject, seq)
            digest = stored(key)
            if digest == acc.digest:
                known.add(key)
                continue
            if digest is not None:
                raise EventConflict(
                    f"a different event is already stored at subject 0x{acc.subject.hex()} seq {seq}",
                    subject="0x" + acc.subject.hex(),
                    seq=seq,
                )
            log = log_of(acc.subject)
            if seq != len(log):
                raise AssertionError("append out of order")
            log.append(raw)
            added[key] = acc.digest
        fresh = {a.subject for a, _ in changes.appended if (a.subject, a.signed.event.seq) not in known}
        fresh |= {s for s, _ in changes.switched}
        stale = {s for s, _ in known} - fresh
        audit = [a for a in changes.audit if not (a.action == "accept" and (a.subject, a.seq) in known)]
        records = chain(audit, *self._audit_head(), self._now_ms())
        self._events.update(logs)
        for key in removed:
            self._digests.pop(key, None)
        self._digests.update(added)
        self._archived.extend(archived)
        self._states.update((s, st) for s, st in changes.states.items() if s not in stale)
        self._disputed.update(changes.disputed)
        self._evidence.extend(e for e in changes.evidence if e not in self._evidence)
        self._governance.extend(g for g in changes.governance if g not in self._governance)
        self._anchors.extend(a for a in changes.anchors if a not in self._anchors)
        self.audit.extend(audit)
        self._audit_records.extend(records)


_LOGS = [replay([e.signed for e in subject_events(5, i, 6)], DOMAIN) for i in range(3)]
# Another branch of subject 0 from seq 3 on (the store checks digests and order, not signatures).
_OTHER = _LOGS[0][:3] + [dataclasses.replace(a, digest=keccak(a.digest)) for a in _LOGS[0][3:]]


def _state(store: MemoryStore) -> dict[str, Any]:
    return {k: copy.copy(v) for k, v in vars(store).items() if k != "clock"}


def _changes(accs: list[Accepted], switched: list[tuple[bytes, int]]) -> Changes:
    ch = Changes(switched=switched)
    for acc in accs:
        ch.appended.append((acc, encode_event(acc.signed)))
        ch.states[acc.subject] = acc.state
        ch.audit.append(AuditEntry("accept", acc.subject, acc.signed.event.seq, acc.digest, {"source": "t"}))
    ch.audit.append(AuditEntry("reject", None, None, None, {"source": "t", "n": len(accs)}))
    return ch


@pytest.mark.parametrize("seed", range(40))
def test_commit_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    fast, ref = MemoryStore(clock=lambda: 2.0), ReferenceStore(clock=lambda: 2.0)
    for _ in range(8):
        accs: list[Accepted] = []
        switched: list[tuple[bytes, int]] = []
        for log in _LOGS:
            if log is _LOGS[0] and fast.digest_at(log[0].subject, 3) == _OTHER[3].digest:
                log = _OTHER
            held = len(fast.events(log[0].subject))
            lo = rng.randrange(max(0, held - 2), held + 1)  # some known again, mostly the next ones
            accs += log[lo : lo + rng.randrange(4)]
        if rng.random() < 0.3 and accs:
            accs.append(rng.choice(accs))  # one event twice in the commit
        if rng.random() < 0.2:
            switched.append((_OTHER[0].subject, 3))
            accs += _OTHER[3 : 3 + rng.randrange(1, 4)]
        if rng.random() < 0.1:
            rng.shuffle(accs)  # out of order: both raise the same
        outcomes = []
        for store in (fast, ref):
            try:
                store.commit(_changes(accs, switched))
                outcomes.append(None)
            except (EventConflict, AssertionError) as exc:
                outcomes.append((type(exc), str(exc)))
        assert outcomes[0] == outcomes[1]
        assert _state(fast) == _state(ref)
