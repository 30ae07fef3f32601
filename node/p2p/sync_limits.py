"""Bounds of ``/keyreg/sync/1``: cheap checks of requests, serving slots and work budgets per peer,
strikes, and the budget of one pull (docs/p2p.md section 4, "Bounds").

Everything here is O(size of the request) and runs before the tree or the store is touched.
Every table keyed by peer is capped (an outsider can make up peer ids for free).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..config import P2PConfig
from ..core.merkle import DEPTH

MAX_NODES = 1024  # per nodes request
MAX_LEAF_PREFIXES = 256  # per leaves request
LEAF_PAGE = 4096  # leaves per answer
MAX_WANTS = 1024  # per events request
MAX_SEQ = 2**63 - 1  # the store's integer range: a from_seq past it can match nothing
MAX_TRACKED_PEERS = 4096  # budgets, strikes and retry times are kept for this many peers (LRU)
STRIKES_TO_BAN = 3
STRIKE_MEMORY_S = 3600.0  # a strike older than this is forgotten

# Work units: about 1 us of the server's CPU each with the in-memory store, measured on the
# reference machine (a tree node looked up ~2.4 us; a leaf listed ~0.45 us; a want read from
# SQLite ~300 us, from memory ~5 us). Charged per request from its size and what it returned.
UNITS_SESSION = 100
UNITS_REQUEST = 10
UNITS_NODE = 3
UNITS_PREFIX = 3
UNITS_LEAF = 1
UNITS_WANT = 100
UNITS_EVENT = 5
TOTAL_BURST_FACTOR = 2  # the all-peers bucket holds this many per-peer bursts


class SyncError(Exception):
    """The peer broke the sync protocol or sent invalid data."""


class SyncRefused(Exception):
    """The server refused to serve (busy, over our budget, or a bad request): not a violation by it."""

    def __init__(self, code: str, message: str, retry_after_s: float) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after_s = retry_after_s


# ---------------------------------------------------------------------------- request checks


def hex32(s: Any) -> bytes:
    """A 0x-prefixed 32-byte hex string's bytes."""
    if not isinstance(s, str) or not s.startswith("0x") or len(s) != 66:
        raise SyncError("expected a 0x-prefixed 32-byte hex string")
    try:
        return bytes.fromhex(s[2:])
    except ValueError:
        raise SyncError("bad hex") from None


def parse_node(item: Any) -> tuple[int, int]:
    """A ``[depth, "0x<prefix>"]`` node: 0 <= depth <= 256, prefix of at most ``depth`` bits."""
    if not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or not isinstance(item[1], str):
        raise SyncError("a node is [depth, prefix-hex]")
    depth, text = item
    # A prefix of depth bits takes at most 64 hex digits: check the length before int() parses it.
    if not 0 <= depth <= DEPTH or not text.startswith("0x") or len(text) > 66:
        raise SyncError("node out of range")
    try:
        prefix = int(text, 16)
    except ValueError:
        raise SyncError("bad prefix") from None
    if not 0 <= prefix < (1 << depth):
        raise SyncError("node out of range")
    return depth, prefix


def parse_nodes(items: Any) -> list[tuple[int, int]]:
    """The nodes of a ``nodes`` request (at most MAX_NODES)."""
    if not isinstance(items, list) or len(items) > MAX_NODES:
        raise SyncError(f"nodes must be a list of at most {MAX_NODES}")
    return [parse_node(i) for i in items]


def parse_prefixes(items: Any) -> list[tuple[int, int]]:
    """The key ranges [start, end) of a ``leaves`` request's prefixes, sorted; they must be disjoint
    (so distinct), at most MAX_LEAF_PREFIXES: one range is then scanned once per page."""
    if not isinstance(items, list) or len(items) > MAX_LEAF_PREFIXES:
        raise SyncError(f"prefixes must be a list of at most {MAX_LEAF_PREFIXES}")
    ranges = sorted(_key_range(*parse_node(i)) for i in items)
    for (_, end), (start, _) in pairwise(ranges):
        if start < end:
            raise SyncError("prefixes must be distinct and disjoint")
    return ranges


def _key_range(depth: int, prefix: int) -> tuple[int, int]:
    shift = DEPTH - depth
    return prefix << shift, (prefix + 1) << shift


def parse_after(value: Any) -> int:
    """A ``leaves`` request's ``after``: "" (from the start, -1) or a subject id."""
    return -1 if value == "" else int.from_bytes(hex32(value), "big")


def parse_wants(items: Any) -> list[tuple[bytes, int]]:
    """The ``[subject, from_seq]`` wants of an ``events`` request: at most MAX_WANTS, distinct subjects."""
    if not isinstance(items, list) or len(items) > MAX_WANTS:
        raise SyncError(f"wants must be a list of at most {MAX_WANTS}")
    wants: list[tuple[bytes, int]] = []
    for w in items:
        if not isinstance(w, list) or len(w) != 2 or type(w[1]) is not int or not 0 <= w[1] <= MAX_SEQ:
            raise SyncError("a want is [subject, from_seq], 0 <= from_seq < 2^63")
        wants.append((hex32(w[0]), w[1]))
    if len({s for s, _ in wants}) != len(wants):
        raise SyncError("wants must name distinct subjects")
    return wants


def ranges_of(nodes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sorted key ranges of disjoint nodes (what a puller asked leaves of)."""
    return sorted(_key_range(d, p) for d, p in nodes)


def check_page(keys: Sequence[int], ranges: Sequence[tuple[int, int]], after: int) -> None:
    """A leaves page must ascend strictly from past ``after`` and stay within the asked ranges."""
    j = 0
    last = after
    for k in keys:
        if k <= last:
            raise SyncError("leaves must ascend, after the given subject")
        last = k
        while j < len(ranges) and k >= ranges[j][1]:
            j += 1
        if j == len(ranges) or k < ranges[j][0]:
            raise SyncError("a leaf outside the asked prefixes")


# ---------------------------------------------------------------------------- per-peer state


class PeerTable(OrderedDict[Any, Any]):
    """A dict keyed by peer that keeps the most recently used MAX_TRACKED_PEERS entries."""

    def touch(self, peer: Hashable, default: Callable[[], Any]) -> Any:
        value = self.get(peer)
        if value is None:
            value = self[peer] = default()
            if len(self) > MAX_TRACKED_PEERS:
                self.popitem(last=False)
        else:
            self.move_to_end(peer)
        return value


class Strikes:
    """Counts protocol violations per peer; ``add`` says when a peer has earned a ban."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._table = PeerTable()

    def add(self, peer: Hashable) -> int:
        """Record a strike; the peer's strikes within STRIKE_MEMORY_S, this one included."""
        now = self._clock()
        entry = self._table.touch(peer, lambda: [0, now])
        if now - entry[1] > STRIKE_MEMORY_S:
            entry[0] = 0
        entry[0] += 1
        entry[1] = now
        return int(entry[0])


class Slots:
    """Serving sessions at once: at most ``total``, and ``per_peer`` for any one peer."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self.used = 0
        self._by_peer: dict[Hashable, int] = {}  # peers with a session open: at most ``total`` keys

    def acquire(self, peer: Hashable) -> bool:
        held = self._by_peer.get(peer, 0)
        if self.used >= self.total or held >= self.per_peer:
            return False
        self.used += 1
        self._by_peer[peer] = held + 1
        return True

    def release(self, peer: Hashable) -> None:
        self.used -= 1
        held = self._by_peer[peer] - 1
        if held:
            self._by_peer[peer] = held
        else:
            del self._by_peer[peer]


class _Bucket:
    __slots__ = ("at", "level")

    def __init__(self, level: float, at: float) -> None:
        self.level = level
        self.at = at

    def refill(self, now: float, rate: float, burst: float) -> float:
        self.level = min(burst, self.level + (now - self.at) * rate)
        self.at = now
        return self.level


class ServeBudgets:
    """Work budgets of the sync server: a token bucket per peer, and one for all peers together.

    Requests are charged after they are answered (their cost is known then, and bounded by the
    request limits); a request is refused while the bucket is empty, with the time until it holds
    a unit again.
    """

    def __init__(self, config: P2PConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = config.sync_serve_units_per_s
        self.burst = float(config.sync_serve_burst_units)
        self.total_rate = config.sync_serve_total_units_per_s
        self.total_burst = self.burst * TOTAL_BURST_FACTOR
        self._clock = clock
        self._peers = PeerTable()
        self._total = _Bucket(self.total_burst, clock())
        self.charged = 0  # units charged to all peers so far (status, tests)

    def _peer(self, peer: Hashable, now: float) -> _Bucket:
        bucket: _Bucket = self._peers.touch(peer, lambda: _Bucket(self.burst, now))
        return bucket

    def refusal(self, peer: Hashable) -> tuple[str, float] | None:
        """None if ``peer`` may be served now, else ("over_budget" or "busy", seconds to wait)."""
        now = self._clock()
        level = self._peer(peer, now).refill(now, self.rate, self.burst)
        if level <= 0:
            return "over_budget", (1 - level) / self.rate
        total = self._total.refill(now, self.total_rate, self.total_burst)
        if total <= 0:
            return "busy", (1 - total) / self.total_rate
        return None

    def charge(self, peer: Hashable, units: int) -> None:
        now = self._clock()
        self._peer(peer, now).level -= units
        self._total.level -= units
        self.charged += units


# ---------------------------------------------------------------------------- pulling


@dataclass
class PullBudget:
    """What one pull may take from a server (``p2p.sync_max_*_per_pull``); counters of what it took."""

    wants: int
    nodes: int
    leaves: int
    events: int
    frames: int
    nodes_used: int = 0
    leaves_used: int = 0
    frames_used: int = 0

    @classmethod
    def of(cls, config: P2PConfig) -> PullBudget:
        wants = config.sync_max_wants_per_pull
        return cls(wants, 16 * wants, 4 * wants, config.sync_max_events_per_pull, config.sync_max_frames_per_pull)
