"""What the explorer shows, read through the same calls and views as the public API's routes.

Each function here mirrors one route of node/api (named in its docstring) and returns that route's
JSON shape as a dict, so a page shows exactly what ``curl`` on the route would: the registry's
read methods, node.api.views and the governance indexer, never the store's tables directly.
The functions that read the store (anchors, a page of events, evidence) block: pages call them in a
worker thread, all of a page's reads in one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..api import views
from ..core.codec import decode_event
from ..core.eip712 import event_digest
from ..core.errors import KeyregError
from ..core.hashing import recover_address
from ..core.limits import Limits
from ..core.records import Domain, Inception, Revocation, Rotation, SignedEvent, Update

if TYPE_CHECKING:
    from ..api.app import ApiContext
    from ..gov.service import GovService


def health(ctx: ApiContext) -> dict[str, Any]:
    """GET /v1/health."""
    registry, config = ctx.registry, ctx.config
    services: dict[str, Any] = {}
    for name, provider in ctx.status.items():
        try:
            services[name] = provider()
        except Exception as exc:  # a broken status provider must not break the page
            services[name] = {"ok": False, "error": type(exc).__name__}
    return {
        "ok": True,
        "version": __version__,
        "network": {"chainId": config.network.chain_id, "registry": config.network.registry},
        "subjects": len(registry.states),
        "events": registry.event_count,
        "disputed": len(registry.disputed),
        "ingest": dict(registry.counters),
        "uptime_s": round(time.time() - ctx.started, 3),
        "services": services,
    }


def subject(ctx: ApiContext, sid: bytes, at: int | None = None) -> dict[str, Any] | None:
    """GET /v1/subjects/{subject}; None for an unknown subject. Blocking (store reads)."""
    registry = ctx.registry
    state = registry.state(sid)
    if state is None:
        return None
    when = int(registry.clock()) if at is None else at
    anchors = registry.store.anchors(sid)
    digest_at = None
    last = max(anchors, key=lambda a: (a.seq, a.position)) if anchors else None
    if last is not None:
        digest_at = state.head if last.seq == state.seq else registry.store.digest_at(sid, last.seq)
    anchor = views.anchor_status(state, anchors, digest_at)
    if last is not None:  # and the anchoring transaction (the route shows block and mode)
        anchor["tx"] = "0x" + last.tx_hash.hex() if last.tx_hash else None
    return views.subject_view(state, when, sid in registry.disputed, registry.governance(sid), anchor)


def duplicity(ctx: ApiContext, sid: bytes) -> list[dict[str, Any]]:
    """GET /v1/subjects/{subject}/duplicity: the evidence list. Blocking."""
    return [views.evidence_view(e) for e in ctx.registry.store.evidence(sid)]


def key_verdict(ctx: ApiContext, sid: bytes, kid: str, at: int | None, purpose: str | None) -> dict[str, Any]:
    """GET /v1/subjects/{subject}/keys/{kid} (arguments already checked by the caller)."""
    registry = ctx.registry
    out = registry.verdict(sid, kid, at, purpose).to_dict()
    out["basedOn"] = views.verdict_basis(registry.state(sid), registry.direct_head(sid), kid)
    return out


def _summary(ev: Any) -> str:
    """One line saying what an event does (plain text: the template escapes it)."""
    if isinstance(ev, Inception):
        keys = ", ".join(k.key_id for k in ev.keys) or "no keys"
        return f"inception: {ev.threshold}-of-{len(ev.controllers)} controllers, publishes {keys}"
    if isinstance(ev, Update):
        parts = [f"publish {k.key_id}" for k in ev.publish]
        parts += [f"retire {r.key_id} at {fmt_time(r.not_after)}" for r in ev.retire]
        if ev.set_metadata:
            parts.append("set metadata")
        return "update: " + ("; ".join(parts) or "nothing")
    if isinstance(ev, Rotation):
        return f"controller rotation: {ev.threshold}-of-{len(ev.controllers)}"
    if isinstance(ev, Revocation):
        what = f"key {ev.key_id}" if ev.key_id else "the whole subject"
        return f"revoke {what} from {fmt_time(ev.effective_at)}" + (f": {ev.reason}" if ev.reason else "")
    return type(ev).__name__


def fmt_time(t: int | None) -> str:
    """Unix seconds as 'YYYY-MM-DD HH:MM:SS UTC' ('-' for none)."""
    if t is None:
        return "-"
    if t >= 253402300800:  # past year 9999: strftime cannot show it
        return f"{t} (unix)"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


# Rows of stored events, keyed by a hash of their canonical bytes (and the domain): an event never
# changes, so its digest, signers and summary are computed once (a decode, an EIP-712 hash and a
# recovery per signature, ~0.1 ms an event). Bounded: the least recently shown go first.
MAX_CACHED_ROWS = 8192
_rows: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
_rows_lock = threading.Lock()


def _event_row(data: bytes, domain: Domain, limits: Limits) -> dict[str, Any]:
    key = hashlib.blake2b(data, digest_size=16, key=domain.verifying_contract + domain.chain_id.to_bytes(32)).digest()
    with _rows_lock:
        row = _rows.get(key)
        if row is not None:
            _rows.move_to_end(key)
            return row
    signed: SignedEvent = decode_event(data, limits)
    ev = signed.event
    digest = event_digest(domain, ev)
    signers = []
    for sig in signed.signatures:
        try:
            signers.append("0x" + recover_address(digest, sig).hex())
        except KeyregError:  # stored events were validated; say so rather than fail the page
            signers.append("(unrecoverable)")
    row = {
        "seq": 0 if isinstance(ev, Inception) else ev.seq,
        "kind": type(ev).__name__.lower(),
        "timestamp": ev.timestamp,
        "signers": signers,
        "digest": "0x" + digest.hex(),
        "summary": _summary(ev),
    }
    with _rows_lock:
        _rows[key] = row
        while len(_rows) > MAX_CACHED_ROWS:
            _rows.popitem(last=False)
    return row


def event_rows(ctx: ApiContext, raw: list[bytes], anchor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of the event log for a page of stored events: kind, seq, time, signers, digest, anchored."""
    limits, domain = ctx.config.limits, ctx.config.domain
    rows = []
    for data in raw:
        row = _event_row(data, domain, limits)
        seq = row["seq"]
        anchored = None
        if anchor and anchor.get("seq") is not None and seq <= anchor["seq"] and anchor["status"] != "conflict":
            direct = anchor.get("direct")
            if direct and seq <= direct["seq"]:
                anchored = f"direct, block {direct['block']}"
            else:
                anchored = f"{anchor.get('mode')}, block {anchor.get('block')}"
        rows.append({**row, "anchored": anchored})
    return rows


def events_page(ctx: ApiContext, sid: bytes, start: int, limit: int) -> tuple[list[bytes], bool]:
    """GET /v1/subjects/{subject}/events?from=&limit=: the stored bytes, and whether more follow. Blocking."""
    raw = ctx.registry.events(sid, start, limit + 1)
    return raw[:limit], len(raw) > limit


def gov(ctx: ApiContext) -> GovService | None:
    """The governance service behind /v1/gov/* (None: the node runs without a chain)."""
    return ctx.gov


def proposals(ctx: ApiContext, governor: str | None = None, subject: str | None = None) -> list[dict[str, Any]] | None:
    """GET /v1/gov/proposals?governor=&subject=; None when governance is off."""
    svc = gov(ctx)
    return None if svc is None else svc.indexer.list(governor, subject, None)


def proposal(ctx: ApiContext, pid: int, governor: str | None = None) -> dict[str, Any] | None:
    """GET /v1/gov/proposals/{pid}?governor=."""
    svc = gov(ctx)
    return None if svc is None else svc.indexer.get(pid, governor)


def ballots(ctx: ApiContext, limit: int = 20) -> list[dict[str, Any]]:
    """GET /v1/gov/ballots?limit=: this node's relay records, newest first."""
    svc = gov(ctx)
    if svc is None:
        return []
    return [r.to_dict() for r in list(reversed(svc.relay.results.values()))[:limit]]
