"""What the explorer shows, read through the same calls and views as the public API's routes.

Each function here mirrors one route of node/api (named in its docstring) and returns that route's
JSON shape as a dict, so a page shows exactly what ``curl`` on the route would: the registry's
read methods, keyreg.api.views and the governance indexer, never the store's tables directly.
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
from ..core.codec import decode_event, event_from_obj
from ..core.eip712 import event_digest, typed_data
from ..core.errors import KeyregError
from ..core.hashing import recover_address
from ..core.limits import Limits
from ..core.records import Delegation, Domain, Inception, OperatorSet, Revocation, Rotation, SignedEvent, Update

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
    if isinstance(ev, Delegation):
        ops = ev.operators
        if not ops.operators:
            return "delegation: no operators from now on"
        return f"delegation: {ops.threshold}-of-{len(ops.operators)} operators for {', '.join(ops.purposes)}"
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


# ------------------------------------------------------------------ signing ceremonies (page 6)


def ceremonies(
    ctx: ApiContext, subject: bytes | None = None, skip: int = 0, limit: int | None = None
) -> tuple[list[dict[str, Any]], int] | None:
    """GET /v1/proposals?subject=: the pending proposals of a subject, each as the route shows it;
    with no subject, those of every subject this node holds. Newest first, ``skip`` and ``limit``
    select a page (only its entries are viewed), with the total. None when ceremonies are off.
    Runs on the event loop, like the routes (the book is not shared with worker threads)."""
    if ctx.proposals is None or not ctx.config.proposals.enabled:
        return None
    book, view = ctx.proposals
    now = ctx.registry.clock()
    if subject is not None:
        entries = book.for_subject(subject, now)
    else:
        book.expire(now)
        entries = list(book)
    entries.reverse()
    end = None if limit is None else skip + limit
    return [view(e) for e in entries[skip:end]], len(entries)


def ceremony(ctx: ApiContext, pid: bytes) -> dict[str, Any] | None:
    """GET /v1/proposals/{id}: one pending proposal; None if unknown, expired or ceremonies are off."""
    if ctx.proposals is None or not ctx.config.proposals.enabled:
        return None
    book, view = ctx.proposals
    entry = book.get(pid, ctx.registry.clock())
    return None if entry is None else view(entry)


# Integers above this lose precision in a browser's JSON.parse (and so in a JavaScript wallet).
MAX_SAFE_INTEGER = 2**53 - 1


def _safe_numbers(value: Any) -> Any:
    """``value`` with every integer beyond JavaScript's safe range as a decimal string (EIP-712
    wallets take a uint as a number or a decimal string; a rounded number would sign another event)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, dict):
        return {k: _safe_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_numbers(v) for v in value]
    return value


def ceremony_typed_data(ctx: ApiContext, view: dict[str, Any]) -> dict[str, Any]:
    """The ``eth_signTypedData_v4`` payload of a proposal's event (what ``keyreg event typed-data``
    prints for its file), integers beyond 2**53 as decimal strings."""
    signed = decode_event_obj(ctx, view)
    return _safe_numbers(typed_data(signed.domain, signed.event))  # type: ignore[no-any-return]


def decode_event_obj(ctx: ApiContext, view: dict[str, Any]) -> SignedEvent:
    """The proposal's unsigned event (its wire form, checked when the node took it)."""
    return event_from_obj(view["event"], ctx.config.limits, ctx.config.domain)


def _addr(b: bytes) -> str:
    return "0x" + b.hex()


def _operators(o: OperatorSet) -> dict[str, Any] | None:
    if not o.operators:
        return None
    return {
        "operators": [_addr(a) for a in o.operators],
        "threshold": o.threshold,
        "purposes": list(o.purposes),
        "maxValidity": o.max_validity,
        "maxValidityText": fmt_duration(o.max_validity),
        "maxKeys": o.max_keys,
    }


def fmt_duration(seconds: int) -> str:
    """A length of time for people: '32 days', '6 hours', '90 seconds'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def describe(ctx: ApiContext, view: dict[str, Any]) -> dict[str, Any]:
    """What a proposal's event would do, in parts a template shows as plain words (every string
    is text for autoescaping: key ids, metadata and reasons are whatever the proposer wrote).

    ``changes``: the before/after of controllers, threshold, governor and operator set against
    the subject's state now, for the kinds that set them (inception, rotation, delegation).
    """
    ev = decode_event_obj(ctx, view).event
    state = None if isinstance(ev, Inception) else ctx.registry.state(ev.subject)
    out: dict[str, Any] = {"kind": ev.kind, "timestamp": ev.timestamp, "publish": [], "retire": []}
    keys = ev.keys if isinstance(ev, Inception) else ev.publish if isinstance(ev, Update) else ()
    for k in keys:
        out["publish"].append(
            {
                "keyId": k.key_id,
                "alg": k.alg,
                "purposes": list(k.purposes),
                "validFrom": max(k.not_before, ev.timestamp),
                "notAfter": k.not_after or None,
            }
        )
    if isinstance(ev, Update):
        for r in ev.retire:
            rec = state.keys.get(r.key_id) if state is not None else None
            was = rec.not_after if rec is not None else None
            out["retire"].append({"keyId": r.key_id, "notAfter": r.not_after, "was": was or None})
        if ev.set_metadata:
            out["metadata"] = ev.metadata
    if isinstance(ev, Inception) and ev.metadata:
        out["metadata"] = ev.metadata
    if isinstance(ev, Revocation):
        out["revoke"] = {"keyId": ev.key_id or None, "effectiveAt": ev.effective_at, "reason": ev.reason}
    if isinstance(ev, Inception | Rotation):
        out["controllers"] = {
            "before": [_addr(c) for c in state.controllers] if state is not None else None,
            "thresholdBefore": state.threshold if state is not None else None,
            "after": [_addr(c) for c in ev.controllers],
            "threshold": ev.threshold,
            "nextCommitment": _addr(ev.next_commitment) if any(ev.next_commitment) else None,
        }
        before = state.governor if state is not None and any(state.governor) else None
        after = ev.governor if any(ev.governor) else None
        out["governor"] = {
            "before": _addr(before) if before else None,
            "after": _addr(after) if after else None,
            "changes": state is not None and before != after,
        }
    if isinstance(ev, Inception | Rotation | Delegation):
        before_ops = _operators(state.operators) if state is not None else None
        after_ops = _operators(ev.operators)
        out["operators"] = {"before": before_ops, "after": after_ops, "changes": before_ops != after_ops}
    out["summary"] = _summary(ev)
    return out
