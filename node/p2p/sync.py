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

Bounds: every read has a timeout; a session has a deadline and a request budget; requests carry
at most MAX_NODES nodes, MAX_LEAF_PREFIXES prefixes, MAX_WANTS wants; the server answers at most
MAX_EVENTS_PER_REQUEST events per request and serves SERVER_SLOTS sessions at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ..config import P2PConfig
from ..core.canonical import CanonicalEvent
from ..core.codec import loads_strict
from ..core.errors import RuleViolation
from ..core.merkle import DEPTH, SparseMerkleTree
from ..core.records import SignedEvent
from ..recovery import short_switch_interval
from ..registry import PreparedBatch, Registry
from .gossip import is_gap
from .wire import (
    FrameError,
    FrameReader,
    FrameWriter,
    canonical_batch,
    compress_message,
    encode_batch,
    event_items,
    expand_message,
    frame,
    frame_raw,
    parse_message,
)

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/keyreg/sync/1")
STEP = 4  # levels descended per round trip: 16 children per differing subtree
LEAF_FETCH = 64  # list leaves once a differing subtree holds at most this many subjects (peer side)
MAX_NODES = 1024
MAX_LEAF_PREFIXES = 256
LEAF_PAGE = 4096
MAX_WANTS = 1024
MAX_EVENTS_PER_REQUEST = 50_000
MAX_EVENTS_PER_SUBJECT = 10_000
MAX_ROUNDS = 64
MAX_REQUESTS = 4096
REQUEST_FRAME_BYTES = 256 * 1024
READ_TIMEOUT_S = 15.0
SESSION_DEADLINE_S = 300.0
SERVER_SLOTS = 4
# Sync ingests received events in batches of INGEST_BATCH, each prepared (decoded, hashed, its
# signatures sent to recovery) up to PREPARED_AHEAD events before it is ingested. Keeping only one
# batch of 2,048 ahead left the recovery helpers idle while the next frame was decoded (~82% of
# two cores busy). bench/sync.py, alternating runs: 1,024 / 4,096 gave 10,836-11,244 events/s,
# one batch of 2,048 ahead 7,177-9,748; 512 or 2,048 per batch, 3,072-6,144 ahead, within noise.
INGEST_BATCH = 1024
PREPARED_AHEAD = 4096
STRIKES_TO_BAN = 3


class SyncError(Exception):
    """The peer broke the sync protocol or sent invalid data."""


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
    cpu_seconds: float = 0.0  # this process (all threads) and its recovery helpers while the pull ran
    at: float = field(default_factory=time.time)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _hex32(s: Any) -> bytes:
    if not isinstance(s, str) or not s.startswith("0x") or len(s) != 66:
        raise SyncError("expected a 0x-prefixed 32-byte hex string")
    try:
        return bytes.fromhex(s[2:])
    except ValueError:
        raise SyncError("bad hex") from None


def _node(item: Any) -> tuple[int, int]:
    if not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or not isinstance(item[1], str):
        raise SyncError("a node is [depth, prefix-hex]")
    depth = item[0]
    try:
        prefix = int(item[1], 16)
    except ValueError:
        raise SyncError("bad prefix") from None
    if not 0 <= depth <= DEPTH or not 0 <= prefix < (1 << depth) or not item[1].startswith("0x"):
        raise SyncError("node out of range")
    return depth, prefix


class TreeView:
    """Reads of the registry's Merkle tree from trio code: in a worker thread, through
    :meth:`Registry.read_tree` (which holds the registry's lock; see there why)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def hashes(self, nodes: Sequence[tuple[int, int]]) -> list[tuple[bytes, int]]:
        def read(tree: SparseMerkleTree) -> list[tuple[bytes, int]]:
            return [(tree.node_hash(d, p), tree.count(d, p)) for d, p in nodes]

        return await trio.to_thread.run_sync(self.registry.read_tree, read)

    async def root(self) -> tuple[bytes, int]:
        return (await self.hashes([(0, 0)]))[0]

    async def root_if_idle(self) -> tuple[bytes, int] | None:
        """The root, or None when an ingest holds the lock (rehashing the top of the tree after
        every few hundred events costs the ingest itself ~5% during a backfill)."""
        return await trio.to_thread.run_sync(self.registry.read_tree, _root, False)


def _root(tree: SparseMerkleTree) -> tuple[bytes, int]:
    return tree.node_hash(0, 0), tree.count(0, 0)


class SyncProtocol:
    """Both ends of ``/keyreg/sync/1`` for one registry."""

    def __init__(
        self,
        host: IHost,
        registry: Registry,
        config: P2PConfig,
        ban: Callable[[ID, str], None] | None = None,
        is_banned: Callable[[ID], bool] | None = None,
    ) -> None:
        self.host = host
        self.registry = registry
        self.config = config
        self.tree = TreeView(registry)
        self.ban = ban
        self.is_banned = is_banned or (lambda _peer: False)
        self._slots = trio.Semaphore(SERVER_SLOTS)
        self._strikes: dict[ID, int] = {}
        self.last: SyncResult | None = None
        self.served = 0
        self.pulls = 0

    def register(self) -> None:
        """Install the stream handler on the host."""
        self.host.set_stream_handler(PROTOCOL, self.handle)

    # ------------------------------------------------------------------ server

    async def handle(self, stream: Any) -> None:
        """Serve one inbound sync session."""
        peer = stream.muxed_conn.peer_id
        if self.is_banned(peer):
            await _reset(stream)
            return
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await _reset(stream)  # busy: the peer retries later
            return
        try:
            self.served += 1
            reader = FrameReader(stream, REQUEST_FRAME_BYTES, READ_TIMEOUT_S)
            writer = FrameWriter(stream)
            with trio.move_on_after(SESSION_DEADLINE_S):
                for _ in range(MAX_REQUESTS):
                    req = await reader.read()
                    if req["type"] == "bye":
                        break
                    await self._answer(req, writer)
                    await writer.flush()
            await stream.close()
        except (FrameError, SyncError, trio.TooSlowError) as exc:
            log.debug("sync session with %s ended: %s", peer, exc)
            await _reset(stream)
        except Exception as exc:  # stream errors from py-libp2p have no common base we can name
            log.debug("sync session with %s failed: %r", peer, exc)
            await _reset(stream)
        finally:
            self._slots.release()

    async def _answer(self, req: dict[str, Any], writer: FrameWriter) -> None:
        kind = req["type"]
        if kind == "hello":
            root, count = await self.tree.root()
            await writer.send(frame({"type": "hello", "root": "0x" + root.hex(), "count": count}))
        elif kind == "nodes":
            items = req.get("nodes")
            if not isinstance(items, list) or len(items) > MAX_NODES:
                raise SyncError(f"nodes must be a list of at most {MAX_NODES}")
            nodes = [_node(i) for i in items]
            hashes = await self.tree.hashes(nodes)
            await writer.send(frame({"type": "nodes", "nodes": [["0x" + h.hex(), c] for h, c in hashes]}))
        elif kind == "leaves":
            await self._answer_leaves(req, writer)
        elif kind == "events":
            await self._answer_events(req, writer)
        else:
            raise SyncError(f"unknown request {kind!r}")

    async def _answer_leaves(self, req: dict[str, Any], writer: FrameWriter) -> None:
        items = req.get("prefixes")
        after_s = req.get("after", "")
        if not isinstance(items, list) or len(items) > MAX_LEAF_PREFIXES:
            raise SyncError(f"prefixes must be a list of at most {MAX_LEAF_PREFIXES}")
        prefixes = sorted(_node(i) for i in items)
        after = -1 if after_s == "" else int.from_bytes(_hex32(after_s), "big")
        tree = self.registry.tree

        def collect() -> tuple[list[list[Any]], bool]:
            out: list[list[Any]] = []
            # Leaves in ascending subject order across the (disjoint) prefixes, after ``after``.
            for depth, prefix in sorted(prefixes, key=lambda n: n[1] << (DEPTH - n[0])):
                for subject in tree.subjects_under(depth, prefix):
                    if int.from_bytes(subject, "big") <= after:
                        continue
                    head = tree.get(subject)
                    if head is None:
                        continue
                    if len(out) >= LEAF_PAGE:
                        return out, True
                    out.append(["0x" + subject.hex(), head[0], "0x" + head[1].hex()])
            return out, False

        leaves, more = await trio.to_thread.run_sync(collect)
        await writer.send(frame({"type": "leaves", "leaves": leaves, "more": more}))

    async def _answer_events(self, req: dict[str, Any], writer: FrameWriter) -> None:
        items = req.get("wants")
        if not isinstance(items, list) or len(items) > MAX_WANTS:
            raise SyncError(f"wants must be a list of at most {MAX_WANTS}")
        wants: list[tuple[bytes, int]] = []
        for w in items:
            if not isinstance(w, list) or len(w) != 2 or type(w[1]) is not int or w[1] < 0:
                raise SyncError("a want is [subject, from_seq]")
            wants.append((_hex32(w[0]), w[1]))
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

        for i in range(0, len(wants), 128):
            chunk = wants[i : i + 128]
            per_subject = min(MAX_EVENTS_PER_SUBJECT, MAX_EVENTS_PER_REQUEST - total)
            if per_subject <= 0:
                break
            lists = await trio.to_thread.run_sync(self._read_events, chunk, per_subject)
            for raws in lists:
                for raw in raws:
                    if total >= MAX_EVENTS_PER_REQUEST:
                        break
                    if pending and size + len(raw) + 1 > budget:
                        await send_batch(pending)
                        pending, size = [], 0
                    pending.append(raw)
                    size += len(raw) + 1
                    total += 1
        if pending:
            await send_batch(pending)
        await writer.send(frame({"type": "end", "count": total}))

    def _read_events(self, chunk: list[tuple[bytes, int]], per_subject: int) -> list[list[bytes]]:
        out = []
        for subject, from_seq in chunk:
            raws: list[bytes] = []
            seq = from_seq
            while len(raws) < per_subject:
                page = self.registry.events(subject, seq, min(1000, per_subject - len(raws)))
                raws.extend(page)
                seq += len(page)
                if len(page) < 1000:
                    break
            out.append(raws)
        return out

    # ------------------------------------------------------------------ client

    async def pull(self, peer: ID, subjects: Sequence[bytes] | None = None, kind: str = "full") -> SyncResult:
        """Pull from ``peer``: the diff (``subjects`` None) or just those subjects; never raises."""
        result = SyncResult(str(peer), kind)
        started = time.monotonic()
        cpu_started = time.process_time() + self.registry.recovery_cpu_seconds()
        self.pulls += 1
        stream = None
        try:
            with trio.fail_after(SESSION_DEADLINE_S):
                stream = await self.host.new_stream(peer, [PROTOCOL])
                session = _Session(stream, self.config.sync_frame_bytes + 1024)
                if subjects is None:
                    wants = await self._diff(session, result)
                else:
                    wants = self._wants_after_local(subjects)
                result.wants = len(wants)
                if wants:
                    await self._fetch(session, wants, result)
                await session.send({"type": "bye"})
                await stream.close()
            result.ok = True
        except (FrameError, SyncError, trio.TooSlowError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            await _reset(stream)
        except Exception as exc:  # dial/stream failures from py-libp2p
            result.error = f"{type(exc).__name__}: {exc}"
            await _reset(stream)
        result.seconds = time.monotonic() - started
        result.cpu_seconds = time.process_time() + self.registry.recovery_cpu_seconds() - cpu_started
        if result.invalid:
            self._strike(peer, f"{result.invalid} invalid events in sync")
        self.last = result
        log.info("sync %s with %s: %s", kind, peer, result.to_dict())
        return result

    def _strike(self, peer: ID, why: str) -> None:
        self._strikes[peer] = self._strikes.get(peer, 0) + 1
        if len(self._strikes) > 4096:
            self._strikes.pop(next(iter(self._strikes)))
        if self._strikes[peer] >= STRIKES_TO_BAN and self.ban is not None:
            self.ban(peer, why)

    def _wants_after_local(self, subjects: Sequence[bytes]) -> list[tuple[bytes, int]]:
        out = []
        for s in subjects[:MAX_WANTS]:
            state = self.registry.states.get(s)
            out.append((s, 0 if state is None else state.seq + 1))
        return out

    async def _diff(self, session: _Session, result: SyncResult) -> list[tuple[bytes, int]]:
        hello = await session.request({"type": "hello"}, "hello")
        peer_root = _hex32(hello.get("root"))
        peer_count = hello.get("count")
        if type(peer_count) is not int or peer_count < 0:
            raise SyncError("bad hello")
        local_root, _ = await self.tree.root()
        if peer_root == local_root:
            return []
        frontier: list[tuple[int, int, int]] = [(0, 0, peer_count)]
        wants: dict[bytes, int] = {}
        tree = self.registry.tree
        while frontier and result.rounds < MAX_ROUNDS and len(wants) < MAX_WANTS * 64:
            result.rounds += 1
            leaf_nodes: list[tuple[int, int]] = []
            descend: list[tuple[int, int]] = []
            for depth, prefix, count in frontier:
                if count == 0:
                    continue  # we hold subjects the peer lacks: its own pull will fetch them
                if count <= LEAF_FETCH or depth + STEP > DEPTH or tree.count(depth, prefix) == 0:
                    leaf_nodes.append((depth, prefix))
                else:
                    descend.append((depth, prefix))
            frontier = []
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
                    if not isinstance(item, list) or len(item) != 2 or type(item[1]) is not int:
                        raise SyncError("bad node")
                    if _hex32(item[0]) != h:
                        frontier.append((d, p, item[1]))
            for i in range(0, len(leaf_nodes), MAX_LEAF_PREFIXES):
                await self._leaves(session, leaf_nodes[i : i + MAX_LEAF_PREFIXES], wants)
        return list(wants.items())

    async def _leaves(self, session: _Session, nodes: list[tuple[int, int]], wants: dict[bytes, int]) -> None:
        tree = self.registry.tree
        after = ""
        for _ in range(MAX_REQUESTS):
            resp = await session.request(
                {"type": "leaves", "prefixes": [[d, hex(p)] for d, p in nodes], "after": after}, "leaves"
            )
            leaves = resp.get("leaves")
            if not isinstance(leaves, list) or len(leaves) > LEAF_PAGE:
                raise SyncError("bad leaves answer")
            for leaf in leaves:
                if not isinstance(leaf, list) or len(leaf) != 3 or type(leaf[1]) is not int:
                    raise SyncError("a leaf is [subject, seq, head]")
                subject, seq, head = _hex32(leaf[0]), leaf[1], _hex32(leaf[2])
                local = tree.get(subject)
                if local is None:
                    wants[subject] = 0
                elif seq > local[0]:
                    wants[subject] = local[0] + 1
                elif seq == local[0] and head != local[1]:
                    wants[subject] = seq  # the same seq with another head: fetch it as evidence
            if not resp.get("more") or not leaves:
                return
            after = leaves[-1][0]

    async def _fetch(self, session: _Session, wants: list[tuple[bytes, int]], result: SyncResult) -> None:
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

        chunks = [wants[i : i + MAX_WANTS] for i in range(0, len(wants), MAX_WANTS)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest)
            async with send:
                # One request ahead: the server starts on the next chunk while we read this one's
                # frames, so the stream never idles for a round trip. Never more than one: a
                # request (<= ~75 KB) waiting unread must fit the peer's receive window, or we
                # would block writing while the server blocks writing to us.
                await session.send(_events_request(chunks[0]))
                for i in range(len(chunks)):
                    if i + 1 < len(chunks):
                        await session.send(_events_request(chunks[i + 1]))
                    while True:
                        body = await session.reader.read_body()
                        if body.startswith(b'{"count":'):
                            end = loads_strict(body)
                            if end.get("type") != "end":
                                raise SyncError("expected end")
                            break
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
        """Decode frames and ingest their events, behind a window of prepared batches.

        Each batch of INGEST_BATCH events is prepared (decoded, hashed, its signatures handed to
        the recovery helpers or workers) up to PREPARED_AHEAD events before it is ingested, so
        recovery keeps running while this thread decodes the next frames (it does not wait for the
        frame after the batch it is ingesting). Batches still in the window stay in ``pending``
        for the next call; ``last`` ingests them all.
        """
        limits = self.registry.limits
        ahead = sum(len(b.items) for b in pending)
        with short_switch_interval():
            for body in bodies:
                fast = canonical_batch(body, limits)
                events: Sequence[SignedEvent | CanonicalEvent] = (
                    fast if fast is not None else self._strict_frame(body, result)
                )
                for i in range(0, len(events), INGEST_BATCH):
                    batch = self.registry.prepare(events[i : i + INGEST_BATCH], bulk=True)
                    pending.append(batch)
                    ahead += len(batch.items)
                    while ahead > PREPARED_AHEAD:
                        done = pending.popleft()
                        ahead -= len(done.items)
                        self._ingest_batch(done, result)
            while last and pending:
                self._ingest_batch(pending.popleft(), result)

    def _strict_frame(self, body: bytes, result: SyncResult) -> list[SignedEvent | CanonicalEvent]:
        """A frame that is not in canonical form, decoded by the strict parser (its bad events counted)."""
        try:
            obj = parse_message(body)
        except RuleViolation:
            result.invalid += 1
            return []
        if type(obj) is not dict or obj.get("type") != "events" or not isinstance(obj.get("events"), list):
            result.invalid += 1
            return []
        items, bad = event_items(obj["events"], self.registry.limits)
        result.invalid += bad
        return items

    def _ingest_batch(self, batch: PreparedBatch, result: SyncResult) -> None:
        results = self.registry.ingest_prepared(batch, "sync", False)
        result.events += len(results)
        for r in results:
            if r.status == "accepted":
                result.accepted += 1
            elif r.status == "rejected" and not is_gap(r):
                result.invalid += 1


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
