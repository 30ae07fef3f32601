"""Sync's ingest window (``SyncProtocol._ingest_frames``): batches are prepared ahead and ingested
in order, across thread hops, with the same outcome as ingesting every event in one call.

Small INGEST_BATCH / PREPARED_AHEAD make a few hundred events cross the window many times; frames
in canonical form take the fast decoder, one frame with garbage takes the strict path.
"""

from __future__ import annotations

from collections import deque

import pytest

import keyreg.p2p.sync_ingest as sync_mod
from keyreg.config import P2PConfig
from keyreg.p2p.sync import SyncProtocol, SyncResult
from keyreg.p2p.wire import encode_batch
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, interleaved, mixed_items

CLOCK = lambda: 1_800_000_000  # noqa: E731


@pytest.mark.parametrize("workers", [2, 0])
def test_frames_ingested_through_the_window_match_one_ingest(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.setattr(sync_mod, "INGEST_BATCH", 70)
    monkeypatch.setattr(sync_mod, "PREPARED_AHEAD", 150)
    from keyreg.core.codec import encode_event

    good = [encode_event(e.signed) for e in interleaved(31, 60, 6)]
    # Forgeries and replays of another stream, in a frame with a space: not canonical, so the strict path.
    bad = [b for b in mixed_items(32, 12, 4) if b != b"{not json"]
    frames = [encode_batch(good[i : i + 90]) for i in range(0, len(good), 90)]
    frames.insert(2, b'{"events": [' + b",".join(bad) + b'],"type":"events"}')

    registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK, signature_workers=workers)
    try:
        proto = SyncProtocol(None, registry, P2PConfig())  # type: ignore[arg-type]  # no network here
        result = SyncResult("peer", "full")
        pending: deque = deque()
        hops = [frames[:1], frames[1:3], [], frames[3:]]
        for hop in hops:
            proto._ingest_frames(hop, result, pending)
            assert sum(len(b.items) for b in pending) <= sync_mod.PREPARED_AHEAD
        assert pending  # the window holds the last batches until the end of the pull
        proto._ingest_frames([], result, pending, True)
        assert not pending
    finally:
        registry.close()

    reference = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    ref_results = reference.ingest(good[:180] + bad + good[180:], "sync", False)
    assert result.accepted == sum(r.status == "accepted" for r in ref_results) > len(good) // 2
    assert result.events == len(ref_results)
    assert result.invalid > 0
    assert registry.tree.root == reference.tree.root
    assert [(a.action, a.subject, a.seq, a.digest) for a in registry.store.audit] == [
        (a.action, a.subject, a.seq, a.digest) for a in reference.store.audit
    ]
