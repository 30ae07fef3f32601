"""A sync pull admits at most ``p2p.sync_max_new_subjects_per_pull`` new subjects (review H3).

Before, one pull could bring ``p2p.sync_max_events_per_pull`` (1,000,000) valid events of free
subjects, all kept by the node for good. Past its budget of new subjects a pull stops (``stopped``
is "new_subjects") before handing the registry anything more (no recovery); the next pull, a new
budget, goes on from there. The frames are real sync frame bodies ingested by the real registry.
"""

from __future__ import annotations

import hashlib
from collections import deque

from keyreg.config import Config
from keyreg.core.codec import encode_event
from keyreg.core.log import signatures_recovered
from keyreg.p2p.sync_ingest import SyncResult, ingest_frames
from keyreg.p2p.testing import subject_log
from keyreg.p2p.wire import encode_batch
from keyreg.registry import PreparedBatch, Registry
from keyreg.store.memory import MemoryStore

DOMAIN = Config().domain
NOW = 1_700_000_000


def test_a_pull_stops_at_its_budget_of_new_subjects_and_the_next_pull_goes_on() -> None:
    logs = [subject_log(DOMAIN, hashlib.sha256(b"sync-new-%d" % i).digest(), 2, NOW) for i in range(10)]
    frames = [encode_batch([encode_event(e) for e in log]) for log in logs[:5]]
    frames.append(encode_batch([encode_event(e) for log in logs[5:] for e in log]))
    reg = Registry(DOMAIN, MemoryStore())

    def pull() -> SyncResult:
        result = SyncResult("peer", "periodic")
        pending: deque[PreparedBatch] = deque()
        ingest_frames(reg, frames, result, pending, True, max_new_subjects=4)
        return result

    before = signatures_recovered()
    first = pull()
    assert first.stopped == "new_subjects"
    assert first.new_subjects == 4
    assert len(reg.states) == 4
    assert first.accepted == 12  # four whole subjects
    assert signatures_recovered() - before == 12  # nothing past the budget was recovered
    second = pull()  # the next pull: the four it holds are known, four more are new
    assert second.stopped == "new_subjects"
    assert len(reg.states) == 8
    third = pull()
    assert third.stopped == ""
    assert len(reg.states) == 10
    assert {s.seq for s in reg.states.values()} == {2}
