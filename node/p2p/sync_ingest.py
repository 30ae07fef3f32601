"""Sync's ingest window: how the events frames of a pull become registry batches.

The puller (node/p2p/sync.py) hands received frame bodies to :func:`ingest_frames` in a worker
thread; what it did is counted in the pull's :class:`SyncResult`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.codec import CanonicalEvent
from ..core.eip712 import event_digest
from ..core.errors import RuleViolation
from ..core.records import Inception, SignedEvent
from ..registry import PreparedBatch, Registry
from .gossip import is_gap
from .wire import canonical_batch, event_items, parse_message

# Sync ingests received events in batches of INGEST_BATCH, each prepared (decoded, hashed, its
# signatures handed to the signature workers) up to PREPARED_AHEAD events before it is ingested,
# so the workers have chunks to recover while this thread decodes the next frame (docs/adr/0010).
INGEST_BATCH = 1024
PREPARED_AHEAD = 4096


@dataclass
class SyncResult:
    """What one pull did (also the ``last_sync`` entry of the health status)."""

    peer: str
    kind: str
    ok: bool = False
    wants: int = 0
    events: int = 0
    accepted: int = 0
    invalid: int = 0
    rounds: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process (all threads) and its signature workers while the pull ran
    at: float = field(default_factory=time.time)
    error: str = ""
    stopped: str = ""  # the pull budget it reached ("wants", "nodes", "leaves", "frames", "events", "new_subjects")
    received: int = 0  # events decoded from the server's frames (counted per frame)
    known: int = 0  # events we held already
    new_subjects: int = 0  # inceptions handed to the registry (at most p2p.sync_max_new_subjects_per_pull)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ingest_frames(
    registry: Registry,
    bodies: list[bytes],
    result: SyncResult,
    pending: deque[PreparedBatch],
    last: bool = False,
    max_new_subjects: int = 100_000,
) -> None:
    """Decode frames and ingest their events, behind a window of prepared batches.

    Each batch of INGEST_BATCH events is prepared (decoded, hashed, its signatures handed to
    the signature workers) up to PREPARED_AHEAD events before it is ingested, so the workers
    keep recovering while this thread decodes the next frames (it does not wait for the frame
    after the batch it is ingesting). Batches still in the window stay in ``pending`` for the
    next call; ``last`` ingests them all.

    A pull hands the registry at most ``max_new_subjects`` inceptions
    (docs/adr/0027-subject-admission.md): at the one past it, the pull stops (``stopped`` is
    "new_subjects") and ingests nothing more; the next pull goes on from there.
    """
    limits = registry.limits
    ahead = sum(len(b.items) for b in pending)
    for body in bodies:
        fast = canonical_batch(body, limits)
        events: Sequence[SignedEvent | CanonicalEvent] = (
            fast if fast is not None else _strict_frame(registry, body, result)
        )
        result.received += len(events)
        if result.stopped == "new_subjects":
            continue
        events = _within_new_subjects(registry, events, result, max_new_subjects)
        for i in range(0, len(events), INGEST_BATCH):
            batch = registry.prepare(events[i : i + INGEST_BATCH], bulk=True)
            pending.append(batch)
            ahead += len(batch.items)
            while ahead > PREPARED_AHEAD:
                done = pending.popleft()
                ahead -= len(done.items)
                _ingest_batch(registry, done, result)
    while last and pending:
        _ingest_batch(registry, pending.popleft(), result)


def _within_new_subjects(
    registry: Registry, events: Sequence[SignedEvent | CanonicalEvent], result: SyncResult, max_new_subjects: int
) -> Sequence[SignedEvent | CanonicalEvent]:
    """``events`` up to the first new subject's inception past the pull's budget (all if none).

    A subject is new unless the registry holds it (an inception is hashed here for that: ~10 us,
    and only inceptions are).
    """
    for i, item in enumerate(events):
        signed = item.signed if isinstance(item, CanonicalEvent) else item
        if isinstance(signed.event, Inception) and not _held(registry, signed):
            if result.new_subjects >= max_new_subjects:
                result.stopped = "new_subjects"
                return events[:i]
            result.new_subjects += 1
    return events


def _held(registry: Registry, signed: SignedEvent) -> bool:
    try:
        return event_digest(registry.domain, signed.event) in registry.states
    except RuleViolation:  # cannot be hashed: the registry names the rule it breaks
        return False


def _strict_frame(registry: Registry, body: bytes, result: SyncResult) -> list[SignedEvent | CanonicalEvent]:
    """A frame that is not in canonical form, decoded by the strict parser (its bad events counted)."""
    try:
        obj = parse_message(body)
    except RuleViolation:
        result.invalid += 1
        return []
    if type(obj) is not dict or obj.get("type") != "events" or not isinstance(obj.get("events"), list):
        result.invalid += 1
        return []
    items, bad = event_items(obj["events"], registry.limits)
    result.invalid += bad
    return items


def _ingest_batch(registry: Registry, batch: PreparedBatch, result: SyncResult) -> None:
    results = registry.ingest_prepared(batch, "sync", False)
    result.events += len(results)
    for r in results:
        if r.status == "accepted":
            result.accepted += 1
        elif r.status == "known":
            result.known += 1
        elif r.status == "rejected" and not is_gap(r):
            result.invalid += 1
