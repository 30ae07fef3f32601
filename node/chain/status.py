"""Per-subject anchor status: where the chain's view of a subject stands relative to the local log.

A pure function of the registry's recorded anchors (``Registry.store.anchors``) and the local
log; it reads the store, so async callers run it in a worker thread.

Status values:
- ``unanchored``: no anchor recorded (or chain features are off);
- ``equal``: the latest anchor is our head;
- ``ahead``: we hold newer events than the latest anchor, and the anchored one is ours;
- ``behind``: the chain anchors a seq we do not hold yet (we are missing events: sync will fetch);
- ``conflict``: the digest anchored at that seq is not our event at that seq (fork choice follows
  the chain, so the local branch will be replaced once the anchored event arrives).
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from ..store.base import AnchorRecord


def _view(a: AnchorRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": a.seq,
        "digest": "0x" + a.digest.hex(),
        "block": a.block_number,
        "tx": "0x" + a.tx_hash.hex(),
    }
    if a.root is not None:
        out["root"] = "0x" + a.root.hex()
    return out


def anchor_status(registry: Registry, subject: bytes) -> dict[str, Any]:
    """{"status", "seq", "digest", "mode", "block", "direct": {...}|None, "batch": {...}|None}."""
    state = registry.state(subject)
    anchors = registry.store.anchors(subject)
    latest: dict[str, AnchorRecord] = {}
    for a in anchors:
        best = latest.get(a.mode)
        if best is None or (a.seq, -a.position) > (best.seq, -best.position):
            latest[a.mode] = a  # per mode: the highest seq, first anchored
    out: dict[str, Any] = {
        "status": "unanchored",
        "seq": None,
        "digest": None,
        "mode": None,
        "block": None,
        "direct": _view(latest["direct"]) if "direct" in latest else None,
        "batch": _view(latest["batch"]) if "batch" in latest else None,
    }
    if not latest or state is None:
        return out
    top = max(latest.values(), key=lambda a: (a.seq, a.position))
    out.update(seq=top.seq, digest="0x" + top.digest.hex(), mode=top.mode, block=top.block_number)
    if top.seq > state.seq:
        out["status"] = "behind"
        return out
    ours = state.head if top.seq == state.seq else registry.store.digest_at(subject, top.seq)
    if ours != top.digest:
        out["status"] = "conflict"
    else:
        out["status"] = "equal" if top.seq == state.seq else "ahead"
    return out
