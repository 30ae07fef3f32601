"""Anti-entropy sync, ``/keyreg/sync/1``: find what a peer has that we lack, and pull it.

The puller (initiator) and the server speak in request/response frames (docs/p2p.md, "Sync"):

1. ``hello``: compare the roots of the sparse Merkle trees over subject heads; equal roots end it.
2. ``nodes``: where roots differ, ask for the peer's (hash, count) of the 16 subtrees four levels
   further down each differing subtree, many subtrees per round trip; descend where they differ.
3. ``leaves``: where a differing subtree is small on the peer's side, or empty on ours, list its
   (subject, seq, head) leaves (paged) and compute wants: subjects the peer is ahead on, or that
   we lack, or whose head differs at the same seq (a duplicity to record).
4. ``events``: request (subject, from_seq) wants; the server streams ``events`` frames of at most
   ``sync_frame_bytes`` then ``end``. Events are ingested in batches with ``source="sync"``.

Each side can pull; the service runs pulls at start-up (bootstrap peers), periodically with a
random peer, and targeted (straight to step 4) when gossip shows a head we cannot apply.

Bounds (node/p2p/sync_limits.py): every read has a timeout; a session has a deadline and a request
budget; requests are checked (shape, sizes, disjoint prefixes, distinct wants) before the tree or
the store is read, and answered at O(log n) a node, O(log n + page) a leaves page. The server
serves ``sync_server_slots`` sessions at once (``sync_server_slots_per_peer`` per peer) within a
work budget per peer and in all; it refuses with an ``error`` frame. A pull takes at most
``sync_max_*_per_pull`` wants, tree nodes, leaves, frames and events, and stops cleanly there.
Broken rules on either side are strikes against the peer; STRIKES_TO_BAN strikes ban it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ..config import P2PConfig
from ..core.codec import loads_strict
from ..core.errors import RuleViolation
from ..core.merkle import DEPTH, SparseMerkleTree
from ..registry import PreparedBatch, Registry
from .sync_ingest import INGEST_BATCH, PREPARED_AHEAD, SyncResult, ingest_frames
from .sync_limits import (
    LEAF_PAGE,
    MAX_LEAF_PREFIXES,
    MAX_NODES,
    MAX_WANTS,
    STRIKES_TO_BAN,
    UNITS_EVENT,
    UNITS_LEAF,
    UNITS_NODE,
    UNITS_PREFIX,
    UNITS_REQUEST,
    UNITS_SESSION,
    UNITS_WANT,
    PeerTable,
    PullBudget,
    ServeBudgets,
    Slots,
    Strikes,
    SyncError,
    SyncRefused,
    check_page,
    hex32,
    parse_after,
    parse_nodes,
    parse_prefixes,
    parse_wants,
    ranges_of,
)
from .wire import (
    FrameError,
    FrameReader,
    FrameWriter,
    compress_message,
    encode_batch,
    expand_message,
    frame,
    frame_raw,
)

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/keyreg/sync/1")
STEP = 4  # levels descended per round trip: 16 children per differing subtree
LEAF_FETCH = 64  # list leaves once a differing subtree holds at most this many subjects (peer side)
MAX_EVENTS_PER_REQUEST = 50_000
MAX_EVENTS_PER_SUBJECT = 10_000
MAX_ROUNDS = 64  # the last round lists the leaves of whatever still differs
MAX_REQUESTS = 4096
REQUEST_FRAME_BYTES = 256 * 1024
READ_TIMEOUT_S = 15.0
SESSION_DEADLINE_S = 300.0
BUSY_RETRY_S = 5.0  # what a server with no free slot tells the puller to wait
READ_AHEAD_EVENTS = 4096  # events a serving session reads from the store per thread hop
# A pull stops (a strike) once this many received events broke the rules: an honest server sends
# none, and each one cost a signature recovery. Counted as ingested, so up to the ingest window
# (PREPARED_AHEAD events and the frames queued for it) more may be recovered before it stops.
INVALID_EVENTS_TO_STOP = 64
# Likewise for events we already held: a server answers from the seqs we asked, so only events that
# gossip brought meanwhile can be known; more than this is a server replaying to waste our CPU.
KNOWN_EVENTS_TO_STOP = 16_384

__all__ = [
    "INGEST_BATCH",
    "PREPARED_AHEAD",
    "PROTOCOL",
    "STRIKES_TO_BAN",
    "SyncError",
    "SyncProtocol",
    "SyncRefused",
    "SyncResult",
    "TreeView",
]


def _uncharged(units: int) -> None:
    """No budget (tests that answer requests without a session)."""


class _UnknownRequest(SyncError):
    """A request type this server does not know (a newer protocol, or junk): refused, not struck."""


class _BudgetReached(Exception):
    """This pull took all its budget allows of one kind: stop it cleanly."""


class TreeView:
    """Reads of the registry's Merkle tree from trio code: in a worker thread, through
    :meth:`Registry.read_tree` (which holds the registry's lock; see there why)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def hashes(self, nodes: Sequence[tuple[int, int]]) -> list[tuple[bytes, int]]:
        """(hash, count) of each node; coordinates from a peer never grow the tree's cache."""

        def read(tree: SparseMerkleTree) -> list[tuple[bytes, int]]:
            lookup = tree.lookup
            return [lookup(d, p) for d, p in nodes]

        return await trio.to_thread.run_sync(self.registry.read_tree, read)

    async def scan(self, ranges: list[tuple[int, int]], after: int) -> tuple[list[tuple[bytes, int, bytes]], bool]:
        """One page of leaves after ``after`` within sorted disjoint key ranges (see SparseMerkleTree.scan)."""
        return await trio.to_thread.run_sync(self.registry.read_tree, lambda t: t.scan(ranges, after, LEAF_PAGE))

    async def root(self) -> tuple[bytes, int]:
        """(root, count) as of the registry's last commit (no lock, no thread)."""
        return self.registry.tree_head


class SyncProtocol:
    """Both ends of ``/keyreg/sync/1`` for one registry."""

    def __init__(
        self,
        host: IHost,
        registry: Registry,
        config: P2PConfig,
        ban: Callable[[ID, str], None] | None = None,
        is_banned: Callable[[ID], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.registry = registry
        self.config = config
        self.tree = TreeView(registry)
        self.ban = ban
        self.is_banned = is_banned or (lambda _peer: False)
        self._clock = clock
        self._slots = Slots(config.sync_server_slots, config.sync_server_slots_per_peer)
        self.budgets = ServeBudgets(config, clock)
        self._strikes = Strikes(clock)
        self._not_before = PeerTable()  # peer -> when its server asked us to come back (retry_after)
        self.last: SyncResult | None = None
        self.served = 0
        self.pulls = 0
        self.refused: dict[str, int] = {}  # sessions and requests we refused, by error code
        self.violations = 0  # broken rules seen from peers, either side

    def register(self) -> None:
        """Install the stream handler on the host."""
        self.host.set_stream_handler(PROTOCOL, self.handle)

    def status(self) -> dict[str, Any]:
        """The ``sync`` part of the p2p health status."""
        return {
            "pulls": self.pulls,
            "served": self.served,
            "serving": self._slots.used,
            "refused": dict(self.refused),
            "violations": self.violations,
            "units_charged": self.budgets.charged,
        }

    def _strike(self, peer: ID, why: str) -> None:
        self.violations += 1
        strikes = self._strikes.add(peer)
        log.info("sync strike %d against %s: %s", strikes, peer, why)
        if strikes >= STRIKES_TO_BAN and self.ban is not None:
            self.ban(peer, why)

    # ------------------------------------------------------------------ server

    async def handle(self, stream: Any) -> None:
        """Serve one inbound sync session."""
        peer = stream.muxed_conn.peer_id
        if self.is_banned(peer):
            await _reset(stream)
            return
        if not self._slots.acquire(peer):
            await self._refuse(stream, peer, "busy", "no free sync slot (in all, or for this peer)", BUSY_RETRY_S)
            return
        try:
            self.served += 1
            refusal = self.budgets.refusal(peer)
            if refusal is not None:
                code, wait = refusal
                if code == "over_budget":  # it was told to wait, and came back before retry_after
                    self._strike(peer, "opened a sync session while over its serving budget")
                await self._refuse(stream, peer, code, _REFUSALS[code], wait)
                return
            charge = partial(self.budgets.charge, peer)
            charge(UNITS_SESSION)
            reader = FrameReader(stream, REQUEST_FRAME_BYTES, READ_TIMEOUT_S)
            writer = FrameWriter(stream)
            with trio.move_on_after(SESSION_DEADLINE_S):
                for _ in range(MAX_REQUESTS):
                    req = await reader.read()
                    if req["type"] == "bye":
                        break
                    refusal = self.budgets.refusal(peer)
                    if refusal is not None:
                        code, wait = refusal
                        await self._refuse(stream, peer, code, _REFUSALS[code], wait, writer)
                        return
                    await self._answer(req, writer, charge)
                    await writer.flush()
            await stream.close()
        except _UnknownRequest as exc:  # perhaps a newer puller: say so, without blame
            await self._refuse(stream, peer, "unknown_request", str(exc)[:100], 0.0)
        except SyncError as exc:  # checked before any work: say why, and count it against the peer
            self._strike(peer, f"bad sync request: {exc}")
            await self._refuse(stream, peer, "bad_request", str(exc), 0.0)
        except (FrameError, trio.TooSlowError) as exc:
            log.debug("sync session with %s ended: %s", peer, exc)
            await _reset(stream)
        except Exception as exc:  # stream errors from py-libp2p have no common base we can name
            log.debug("sync session with %s failed: %r", peer, exc)
            await _reset(stream)
        finally:
            self._slots.release(peer)

    async def _refuse(
        self,
        stream: Any,
        peer: ID,
        code: str,
        message: str,
        retry_after_s: float,
        writer: FrameWriter | None = None,
    ) -> None:
        """Answer an ``error`` frame and close the session."""
        self.refused[code] = self.refused.get(code, 0) + 1
        log.debug("sync: refused %s: %s: %s", peer, code, message)
        err = {"code": code, "message": message, "retry_after_ms": int(retry_after_s * 1000), "type": "error"}
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                out = writer or FrameWriter(stream)
                await out.send(frame(err), flush=True)
                await stream.close()
                return
        except Exception as exc:  # the peer is gone: nothing to tell it
            log.debug("sync: error frame to %s not sent: %r", peer, exc)
        await _reset(stream)

    async def _answer(
        self, req: dict[str, Any], writer: FrameWriter, charge: Callable[[int], None] = _uncharged
    ) -> None:
        """Answer one request, charging its work to the peer once the request is checked, before
        the reads (an events answer charges each store hop as it goes): a peer that resets the
        stream halfway has paid for what it asked. (``handle`` always passes ``charge``; the
        default is for tests that drive this method alone, as tests/fuzz does.)"""
        kind = req["type"]
        if kind == "hello":
            charge(UNITS_REQUEST + UNITS_NODE)
            root, count = await self.tree.root()
            await writer.send(frame({"type": "hello", "root": "0x" + root.hex(), "count": count}))
        elif kind == "nodes":
            nodes = parse_nodes(req.get("nodes"))
            charge(UNITS_REQUEST + UNITS_NODE * len(nodes))
            hashes = await self.tree.hashes(nodes)
            await writer.send(frame({"type": "nodes", "nodes": [["0x" + h.hex(), c] for h, c in hashes]}))
        elif kind == "leaves":
            ranges = parse_prefixes(req.get("prefixes"))
            after = parse_after(req.get("after", ""))
            charge(UNITS_REQUEST + UNITS_PREFIX * len(ranges))
            found, more = await self.tree.scan(ranges, after)
            charge(UNITS_LEAF * len(found))
            leaves = [["0x" + s.hex(), seq, "0x" + head.hex()] for s, seq, head in found]
            await writer.send(frame({"type": "leaves", "leaves": leaves, "more": more}))
        elif kind == "events":
            await self._answer_events(req, writer, charge)
        else:
            raise _UnknownRequest(f"unknown request {kind!r}")

    async def _answer_events(self, req: dict[str, Any], writer: FrameWriter, charge: Callable[[int], None]) -> None:
        wants = parse_wants(req.get("wants"))
        # Only wants that can match read the store: a subject we hold, from a seq we have.
        states = self.registry.states
        served = [(s, f) for s, f in wants if (st := states.get(s)) is not None and f <= st.seq]
        charge(UNITS_REQUEST + len(wants) + UNITS_WANT * len(served))
        compress = req.get("compress") == "zlib"
        budget = self.config.sync_frame_bytes - 64
        total = 0
        pending: list[bytes] = []
        size = 0

        async def send_batch(raws: list[bytes]) -> None:
            body = encode_batch(raws)
            if compress:
                body = await trio.to_thread.run_sync(compress_message, body)  # zlib releases the GIL
            await writer.send(frame_raw(body))

        # Read ahead at most READ_AHEAD_EVENTS per thread hop: a session holds ~2 MB of events at
        # a time, however long the wanted logs are.
        todo = deque((s, f, MAX_EVENTS_PER_SUBJECT) for s, f in served)
        while todo and total < MAX_EVENTS_PER_REQUEST:
            room = min(READ_AHEAD_EVENTS, MAX_EVENTS_PER_REQUEST - total)
            raws = await trio.to_thread.run_sync(self._read_events, todo, room)
            charge(UNITS_EVENT * len(raws))
            for raw in raws:
                if pending and size + len(raw) + 1 > budget:
                    await send_batch(pending)
                    pending, size = [], 0
                pending.append(raw)
                size += len(raw) + 1
                total += 1
        if pending:
            await send_batch(pending)
        await writer.send(frame({"type": "end", "count": total}))

    def _read_events(self, todo: deque[tuple[bytes, int, int]], room: int) -> list[bytes]:
        """Up to ``room`` events of the wants in ``todo`` ((subject, next seq, events left) each),
        in order; a want read to its end leaves ``todo``, one cut short stays at its front."""
        out: list[bytes] = []
        while todo and len(out) < room:
            subject, seq, left = todo[0]
            n = min(1000, left, room - len(out))
            page = self.registry.events(subject, seq, n)
            out.extend(page)
            left -= len(page)
            if len(page) < n or left == 0:
                todo.popleft()
            else:
                todo[0] = (subject, seq + len(page), left)
        return out

    # ------------------------------------------------------------------ client

    async def pull(self, peer: ID, subjects: Sequence[bytes] | None = None, kind: str = "full") -> SyncResult:
        """Pull from ``peer``: the diff (``subjects`` None) or just those subjects; never raises."""
        result = SyncResult(str(peer), kind)
        not_before = self._not_before.get(peer)
        if not_before is not None and self._clock() < not_before:
            result.error = "the peer asked us to retry later"
            return result
        started = time.monotonic()
        cpu_started = time.process_time() + self.registry.signature_workers.cpu_seconds()
        self.pulls += 1
        budget = PullBudget.of(self.config)
        stream = None
        try:
            with trio.fail_after(SESSION_DEADLINE_S):
                stream = await self.host.new_stream(peer, [PROTOCOL])
                session = _Session(stream, self.config.sync_frame_bytes + 1024)
                if subjects is None:
                    wants = await self._diff(session, result, budget)
                else:
                    wants = self._wants_after_local(subjects)
                result.wants = len(wants)
                if wants:
                    await self._fetch(session, wants, result, budget)
                await session.send({"type": "bye"})
                await stream.close()
            result.ok = True
        except _BudgetReached as exc:  # events still in flight: end the stream rather than read them
            result.ok = True
            result.stopped = str(exc)
            await _reset(stream)
        except SyncRefused as exc:
            result.error = f"refused: {exc}"
            self._not_before.touch(peer, float)
            self._not_before[peer] = self._clock() + exc.retry_after_s
            await _reset(stream)
        except SyncError as exc:
            result.error = f"SyncError: {exc}"
            await _reset(stream)
        except (FrameError, trio.TooSlowError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            await _reset(stream)
        except Exception as exc:  # dial/stream failures from py-libp2p
            result.error = f"{type(exc).__name__}: {exc}"
            await _reset(stream)
        result.seconds = time.monotonic() - started
        result.cpu_seconds = time.process_time() + self.registry.signature_workers.cpu_seconds() - cpu_started
        if result.error.startswith("SyncError"):
            self._strike(peer, f"sync protocol broken by the server: {result.error}")
        elif result.invalid:
            self._strike(peer, f"{result.invalid} invalid events in sync")
        self.last = result
        log.info("sync %s with %s: %s", kind, peer, result.to_dict())
        return result

    def _wants_after_local(self, subjects: Sequence[bytes]) -> list[tuple[bytes, int]]:
        out = []
        for s in subjects[:MAX_WANTS]:
            state = self.registry.states.get(s)
            out.append((s, 0 if state is None else state.seq + 1))
        return out

    async def _diff(self, session: _Session, result: SyncResult, budget: PullBudget) -> list[tuple[bytes, int]]:
        hello = await session.request({"type": "hello"}, "hello")
        peer_root = hex32(hello.get("root"))
        peer_count = hello.get("count")
        if type(peer_count) is not int or peer_count < 0:
            raise SyncError("bad hello")
        local_root, _ = await self.tree.root()
        if peer_root == local_root:
            return []
        frontier: list[tuple[int, int, int]] = [(0, 0, peer_count)]
        wants: dict[bytes, int] = {}
        tree = self.registry.tree
        while frontier and result.rounds < MAX_ROUNDS and not result.stopped:
            result.rounds += 1
            last_round = result.rounds == MAX_ROUNDS
            leaf_nodes: list[tuple[int, int]] = []
            descend: list[tuple[int, int]] = []
            for depth, prefix, count in frontier:
                if count == 0:
                    continue  # we hold subjects the peer lacks: its own pull will fetch them
                if last_round or count <= LEAF_FETCH or depth + STEP > DEPTH or tree.count(depth, prefix) == 0:
                    leaf_nodes.append((depth, prefix))
                else:
                    descend.append((depth, prefix))
            frontier = []
            room = (budget.nodes - budget.nodes_used) >> STEP
            if len(descend) > room:  # the rest of the difference is for the next pull
                descend = descend[:room]
                result.stopped = "nodes"
            budget.nodes_used += len(descend) << STEP
            per_request = MAX_NODES >> STEP
            for i in range(0, len(descend), per_request):
                children = [
                    (d + STEP, (p << STEP) | c) for d, p in descend[i : i + per_request] for c in range(1 << STEP)
                ]
                resp = await session.request({"type": "nodes", "nodes": [[d, hex(p)] for d, p in children]}, "nodes")
                theirs = resp.get("nodes")
                if not isinstance(theirs, list) or len(theirs) != len(children):
                    raise SyncError("nodes answer does not match the request")
                ours = await self.tree.hashes(children)
                for (d, p), item, (h, _) in zip(children, theirs, ours, strict=True):
                    if not isinstance(item, list) or len(item) != 2 or type(item[1]) is not int or item[1] < 0:
                        raise SyncError("bad node")
                    if hex32(item[0]) != h:
                        frontier.append((d, p, item[1]))
            for i in range(0, len(leaf_nodes), MAX_LEAF_PREFIXES):
                await self._leaves(session, leaf_nodes[i : i + MAX_LEAF_PREFIXES], wants, budget)
                if len(wants) >= budget.wants or budget.leaves_used >= budget.leaves:
                    result.stopped = "wants" if len(wants) >= budget.wants else "leaves"
                    break
        return list(wants.items())[: budget.wants]  # the last page may overshoot

    async def _leaves(
        self, session: _Session, nodes: list[tuple[int, int]], wants: dict[bytes, int], budget: PullBudget
    ) -> None:
        """List the leaves of disjoint nodes, page by page; a page must ascend within them."""
        tree = self.registry.tree
        ranges = ranges_of(nodes)
        after, after_key = "", -1
        while len(wants) < budget.wants and budget.leaves_used < budget.leaves:
            resp = await session.request(
                {"type": "leaves", "prefixes": [[d, hex(p)] for d, p in nodes], "after": after}, "leaves"
            )
            leaves = resp.get("leaves")
            if not isinstance(leaves, list) or len(leaves) > LEAF_PAGE:
                raise SyncError("bad leaves answer")
            page: list[tuple[bytes, int, bytes]] = []
            for leaf in leaves:
                if not isinstance(leaf, list) or len(leaf) != 3 or type(leaf[1]) is not int:
                    raise SyncError("a leaf is [subject, seq, head]")
                page.append((hex32(leaf[0]), leaf[1], hex32(leaf[2])))
            check_page([int.from_bytes(s, "big") for s, _, _ in page], ranges, after_key)
            budget.leaves_used += len(page)
            for subject, seq, head in page:
                local = tree.get(subject)
                if local is None:
                    wants[subject] = 0
                elif seq > local[0]:
                    wants[subject] = local[0] + 1
                elif seq == local[0] and head != local[1]:
                    wants[subject] = seq  # the same seq with another head: fetch it as evidence
            if not resp.get("more"):
                return
            if len(page) < LEAF_PAGE:  # a server fills every page but the last: this one could loop us
                raise SyncError("a short leaves page with more to come")
            after, after_key = leaves[-1][0], int.from_bytes(page[-1][0], "big")

    async def _fetch(
        self, session: _Session, wants: list[tuple[bytes, int]], result: SyncResult, budget: PullBudget
    ) -> None:
        send, recv = trio.open_memory_channel[bytes](8)
        max_frame = self.config.sync_frame_bytes + 1024  # as read: an inflated frame gets no more
        pending: deque[PreparedBatch] = deque()  # prepared, recovering, not yet ingested (_ingest_frames)

        async def ingest() -> None:
            try:
                async with recv:
                    bodies: list[bytes] = []
                    async for body in recv:
                        bodies.append(body)
                        # Drain whatever else is ready so one thread hop ingests several frames.
                        while True:
                            try:
                                bodies.append(recv.receive_nowait())
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                        await trio.to_thread.run_sync(self._ingest_frames, bodies, result, pending)
                        bodies = []
            finally:
                if pending:  # also when the pull fails later: keep the events already received
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._ingest_frames, [], result, pending, True)

        # The reader's errors are kept and raised after the nursery, once ingest has ended (with
        # what it received): raised inside, they would come out wrapped in an exception group.
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest)
            async with send:
                try:
                    await self._read_frames(session, wants, result, budget, send, max_frame)
                except (_BudgetReached, SyncRefused, SyncError, FrameError) as exc:
                    failure = exc
        if failure is not None:
            raise failure

    async def _read_frames(
        self,
        session: _Session,
        wants: list[tuple[bytes, int]],
        result: SyncResult,
        budget: PullBudget,
        send: trio.MemorySendChannel[bytes],
        max_frame: int,
    ) -> None:
        """Send the events requests and pass each answer frame on to the ingest, within the budget."""
        chunks = [wants[i : i + MAX_WANTS] for i in range(0, len(wants), MAX_WANTS)]
        # One request ahead: the server starts on the next chunk while we read this one's frames,
        # so the stream never idles for a round trip. Never more than one: a request (<= ~75 KB)
        # waiting unread must fit the peer's receive window, or we would block writing while the
        # server blocks writing to us.
        await session.send(_events_request(chunks[0]))
        for i in range(len(chunks)):
            if i + 1 < len(chunks):
                await session.send(_events_request(chunks[i + 1]))
            while True:
                # Checked per frame: the events count lags by the frames still queued for ingest.
                if budget.frames_used >= budget.frames:
                    raise _BudgetReached("frames")
                if result.received >= budget.events:
                    raise _BudgetReached("events")
                if result.invalid > INVALID_EVENTS_TO_STOP:  # each cost a signature recovery
                    raise SyncError(f"{result.invalid} invalid events")
                if result.known > KNOWN_EVENTS_TO_STOP:  # each cost decoding and hashing
                    raise SyncError(f"{result.known} events we held already")
                body = await session.reader.read_body()
                budget.frames_used += 1
                if body.startswith(b'{"count":'):
                    end = _control_frame(body)
                    count = end.get("count")
                    if end.get("type") != "end" or type(count) is not int or not 0 <= count <= MAX_EVENTS_PER_REQUEST:
                        raise SyncError("expected end")
                    break
                if body.startswith(b'{"code":'):
                    raise _refused(_control_frame(body))
                if body[:1] != b"{":  # compressed (we asked): inflate beside the ingest
                    try:
                        body = await trio.to_thread.run_sync(expand_message, body, max_frame)
                    except RuleViolation:
                        result.invalid += 1
                        continue
                await send.send(body)

    def _ingest_frames(
        self, bodies: list[bytes], result: SyncResult, pending: deque[PreparedBatch], last: bool = False
    ) -> None:
        ingest_frames(self.registry, bodies, result, pending, last, self.config.sync_max_new_subjects_per_pull)


_REFUSALS = {
    "over_budget": "this peer's sync work budget is spent",
    "busy": "the sync server's work budget for all peers is spent",
}
MAX_RETRY_AFTER_S = 3600.0


def _control_frame(body: bytes) -> dict[str, Any]:
    """An ``end`` or ``error`` frame's object; SyncError if it is not JSON (found by tests/fuzz)."""
    try:
        obj: dict[str, Any] = loads_strict(body)  # a dict: the body starts with '{'
    except RuleViolation as exc:
        raise SyncError(f"bad end or error frame: {exc.message}") from None
    return obj


def _refused(obj: dict[str, Any]) -> SyncRefused:
    """The SyncRefused of a server's ``error`` frame (SyncError if it is not one)."""
    code, message, wait = obj.get("code"), obj.get("message"), obj.get("retry_after_ms")
    if obj.get("type") != "error" or not isinstance(code, str) or not isinstance(message, str):
        raise SyncError("bad error frame")
    seconds = min(MAX_RETRY_AFTER_S, wait / 1000) if type(wait) is int and wait > 0 else 0.0
    return SyncRefused(code[:64], message[:256], seconds)


def _events_request(chunk: Sequence[tuple[bytes, int]]) -> dict[str, Any]:
    # "compress": servers since wire 1.1 answer with zlib-compressed event frames; older ones
    # ignore the field and answer plainly, which the puller reads all the same.
    return {"compress": "zlib", "type": "events", "wants": [["0x" + s.hex(), f] for s, f in chunk]}


class _Session:
    def __init__(self, stream: Any, max_frame: int) -> None:
        self.stream = stream
        self.reader = FrameReader(stream, max_frame, READ_TIMEOUT_S)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.stream.write(frame(obj))

    async def request(self, obj: dict[str, Any], expect: str) -> dict[str, Any]:
        await self.send(obj)
        resp = await self.reader.read()
        if resp["type"] == "error":
            raise _refused(resp)
        if resp["type"] != expect:
            raise SyncError(f"expected a {expect} frame, got {resp['type']!r}")
        return resp


async def _reset(stream: Any) -> None:
    if stream is None:
        return
    try:
        await stream.reset()
    except Exception:  # already closed
        log.debug("stream reset failed", exc_info=True)


def pick_peer(peers: Sequence[ID]) -> ID | None:
    """A random peer for the periodic sync."""
    return random.choice(list(peers)) if peers else None  # noqa: S311  # not security-relevant
