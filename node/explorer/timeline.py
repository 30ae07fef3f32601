"""The key timeline of a subject as server-rendered SVG: one lane per key, drawn to scale.

Input is the subject's JSON view (``GET /v1/subjects/{id}``: keys with validFrom/notAfter/
revokedAt, the governance revocations, the subject's own revocation); output is an SVG string
in which every text that came from an event (key ids, reasons) is XML-escaped, so attacker text
can only ever show as text. Each lane carries ``data-*`` attributes with its interval in Unix
seconds, which is what the browser tests read.

A key's drawn interval is [validFrom, end) where end is the earliest of its notAfter, its
controller revocation, a governance revocation of it or of the whole subject, and the subject's
revocation; an open end runs to the right edge. Overlap windows are the times at which two or
more keys are valid at once (a zero-downtime rotation's overlap).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

WIDTH = 1000
LABEL_W = 170  # left column: key ids
PLOT_W = WIDTH - LABEL_W - 20
LANE_H = 26
TOP = 34  # room for the axis labels
RANGES = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400, "1y": 365 * 86_400}


@dataclass(frozen=True)
class Lane:
    key_id: str
    start: int
    end: int | None  # None: open (valid until further notice)
    status: str
    ended_by: str  # "", "retired", "revoked-controllers", "revoked-governance", "subject-revoked"
    note: str  # what ended it, for the tooltip
    proposal_id: str | None


def lanes(view: dict[str, Any]) -> list[Lane]:
    """The lanes of a subject view, in publication order."""
    gov_by_key: dict[str, dict[str, Any]] = {}
    whole_gov: dict[str, Any] | None = None
    for g in view.get("governanceRevocations", []):
        if g["keyId"] == "":
            if whole_gov is None or g["effectiveAt"] < whole_gov["effectiveAt"]:
                whole_gov = g
        elif g["keyId"] not in gov_by_key or g["effectiveAt"] < gov_by_key[g["keyId"]]["effectiveAt"]:
            gov_by_key[g["keyId"]] = g
    revoked = view.get("revoked")
    out = []
    for k in view["keys"]:
        ends: list[tuple[int, str, str, str | None]] = []
        if k["notAfter"]:
            ends.append((k["notAfter"], "retired", f"not after {_fmt(k['notAfter'])}", None))
        if k["revokedAt"] is not None:
            ends.append(
                (k["revokedAt"], "revoked-controllers", f"revoked by the controllers at {_fmt(k['revokedAt'])}", None)
            )
        for g in (gov_by_key.get(k["keyId"]), whole_gov):
            if g is not None:
                what = "revoked" if g["keyId"] else "subject revoked"
                note = f"{what} by governance (proposal {g['proposalId']}) at {_fmt(g['effectiveAt'])}"
                ends.append((g["effectiveAt"], "revoked-governance", note, str(g["proposalId"])))
        if revoked is not None:
            note = f"subject revoked by the controllers at {_fmt(revoked['at'])}"
            if revoked.get("reason"):
                note += f": {revoked['reason']}"
            ends.append((revoked["at"], "subject-revoked", note, None))
        end = min(ends, key=lambda e: e[0]) if ends else None
        out.append(
            Lane(
                k["keyId"],
                k["validFrom"],
                None if end is None else end[0],
                k["status"],
                "" if end is None else end[1],
                "" if end is None else end[2],
                None if end is None else end[3],
            )
        )
    return out


def overlaps(items: list[Lane]) -> list[tuple[int, int | None]]:
    """Intervals in which two or more lanes are valid at once (a sweep over the interval ends)."""
    points: list[tuple[float, int]] = []
    for lane in items:
        end = float("inf") if lane.end is None else lane.end
        if end > lane.start:
            points += [(lane.start, 1), (end, -1)]
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant: [a, b) intervals
    out: list[tuple[int, int | None]] = []
    depth, opened = 0, 0.0
    for t, d in points:
        if t == float("inf"):  # only open ends are left: what is open stays open
            break
        if depth < 2 <= depth + d:
            opened = t
        elif depth >= 2 > depth + d and t > opened:
            out.append((int(opened), int(t)))
        depth += d
    if depth >= 2:
        out.append((int(opened), None))
    return out


def window(items: list[Lane], now: int, span: str | None) -> tuple[int, int]:
    """The drawn time range: a named span around now, or everything with some margin."""
    if span in RANGES:
        width = RANGES[span]
        return now - width, now + width // 4
    times = [now] + [lane.start for lane in items] + [lane.end for lane in items if lane.end is not None]
    lo, hi = min(times), max(times)
    pad = max((hi - lo) // 10, 3600)
    return lo - pad, hi + pad


def _fmt(t: int) -> str:
    if t >= 253402300800:
        return f"{t} (unix)"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _tick_step(seconds: int) -> int:
    for step in (60, 600, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400, 365 * 86_400):
        if seconds / step <= 8:
            return step
    return 10 * 365 * 86_400


def render(
    view: dict[str, Any], now: int, span: str | None = None, max_lanes: int = 64, proposal_url: str = ""
) -> Markup:
    """The timeline SVG of a subject view (escaped throughout; see the module docstring)."""
    all_lanes = lanes(view)
    shown = all_lanes[-max_lanes:]  # the most recently published keys
    lo, hi = window(shown, now, span)
    scale = PLOT_W / max(hi - lo, 1)

    def x(t: float) -> float:
        return round(LABEL_W + (min(max(t, lo), hi) - lo) * scale, 1)

    height = TOP + LANE_H * max(len(shown), 1) + 10
    parts = [
        f'<svg class="timeline" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="tl-title" data-from="{lo}" data-to="{hi}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="tl-title">Key timeline: {len(shown)} keys from {escape(_fmt(lo))} to {escape(_fmt(hi))}</title>',
    ]
    step = _tick_step(hi - lo)
    t = (lo // step + 1) * step
    while t < hi:
        parts.append(f'<line class="tick" x1="{x(t)}" x2="{x(t)}" y1="{TOP - 6}" y2="{height - 6}"/>')
        label = time.strftime("%Y-%m-%d" if step >= 86_400 else "%m-%d %H:%M", time.gmtime(t))
        parts.append(f'<text class="axis" x="{x(t)}" y="{TOP - 12}" text-anchor="middle">{escape(label)}</text>')
        t += step
    for a, b in overlaps(shown):
        bx = b if b is not None else hi
        if bx <= lo or a >= hi:
            continue
        w = max(x(bx) - x(a), 1.5)
        parts.append(
            f'<rect class="overlap" x="{x(a)}" y="{TOP - 4}" width="{round(w, 1)}" height="{height - TOP}" '
            f'data-start="{a}" data-end="{"" if b is None else b}"><title>overlap: two or more keys valid from '
            f"{escape(_fmt(a))}{'' if b is None else ' to ' + escape(_fmt(b))}</title></rect>"
        )
    for i, lane in enumerate(shown):
        y = TOP + i * LANE_H
        end = hi if lane.end is None else lane.end
        x1, x2 = x(lane.start), x(end)
        cls = "lane " + ("lane-" + lane.ended_by if lane.ended_by else "lane-open")
        parts.append(
            f'<g class="{cls}" data-key="{escape(lane.key_id)}" data-start="{lane.start}" '
            f'data-end="{"" if lane.end is None else lane.end}" data-status="{escape(lane.status)}" '
            f'data-ended-by="{escape(lane.ended_by)}">'
        )
        parts.append(f'<text class="kid" x="{LABEL_W - 8}" y="{y + 17}" text-anchor="end">{escape(lane.key_id)}</text>')
        if end > lane.start and x2 > x1 - 0.1:
            tip = f"{lane.key_id}: valid from {_fmt(lane.start)}" + (f"; {lane.note}" if lane.note else "; no end")
            w = round(max(x2 - x1, 1.5), 1)
            parts.append(
                f'<rect class="bar status-{escape(lane.status)}" x="{x1}" y="{y + 6}" width="{w}" '
                f'height="{LANE_H - 12}" rx="3"><title>{escape(tip)}</title></rect>'
            )
        if lane.end is None:
            parts.append(f'<path class="open-end" d="M{x2 - 6},{y + 8} l6,5 l-6,5"/>')
        elif lane.ended_by and lo <= lane.end <= hi:
            mark = _mark(lane, x2, y)
            if lane.proposal_id is not None and proposal_url:
                href = escape(f"{proposal_url}/{lane.proposal_id}")
                mark = f'<a href="{href}">{mark}</a>'
            parts.append(mark)
        parts.append("</g>")
    if lo <= now <= hi:
        parts.append(
            f'<line class="now" x1="{x(now)}" x2="{x(now)}" y1="{TOP - 6}" y2="{height - 4}" data-now="{now}"/>'
            f'<text class="now-label" x="{x(now) + 3}" y="{height - 6}">now</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above went through escape()


def _mark(lane: Lane, x: float, y: int) -> str:
    tip = escape(lane.note)
    if lane.ended_by == "retired":
        return (
            f'<line class="mark mark-retired" x1="{x}" x2="{x}" y1="{y + 3}" y2="{y + LANE_H - 3}">'
            f"<title>{tip}</title></line>"
        )
    cls = "mark mark-" + lane.ended_by
    # A cross for the controllers' revocations, a diamond for governance.
    if lane.ended_by == "revoked-governance":
        d = f"M{x},{y + 4} l8,9 l-8,9 l-8,-9 z"
    else:
        d = f"M{x - 7},{y + 6} l14,14 m0,-14 l-14,14"
    return f'<path class="{cls}" d="{d}" data-proposal="{escape(lane.proposal_id or "")}"><title>{tip}</title></path>'
