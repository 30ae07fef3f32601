"""Abuse of ``/keyreg/sync/1`` from both ends (issue 13 findings 5 and 6), against the real code.

Server side (finding 5): the real ``SyncProtocol.handle`` serves sessions over an in-memory byte
pipe (the stream is the only stand-in; tree, registry and handler are real), so the work can be
measured: hash-cache entries, keys of the tree read, work units charged.
Puller side (finding 6): two real libp2p hosts in this process; one's sync handler is replaced by a
scripted hostile server, the other pulls from it with the real puller.
The multi-process test at the end runs an attacker node process against a real node process.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from keyreg.config import Config, P2PConfig
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import keccak
from keyreg.core.merkle import DEPTH
from keyreg.p2p.sync import INVALID_EVENTS_TO_STOP, KNOWN_EVENTS_TO_STOP, PREPARED_AHEAD, PROTOCOL, SyncProtocol
from keyreg.p2p.sync_limits import (
    LEAF_PAGE,
    UNITS_PREFIX,
    UNITS_REQUEST,
    UNITS_SESSION,
    Strikes,
    SyncError,
    check_page,
    ranges_of,
)
from keyreg.p2p.testing import NodeProcess, generate, subject_log, wait_until
from keyreg.p2p.wire import FrameError, FrameReader, encode_batch, frame, frame_raw
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from tests.unit.test_merkle_hostile_reads import CountingKeys

DOMAIN = Config().domain
NOW = 1_700_000_000
TOP = (1 << DEPTH) - 1


# ---------------------------------------------------------------------- server side, in-memory pipe


class PipeStream:
    """One end of an in-memory byte pipe with the stream methods the sync code uses."""

    def __init__(self, end: trio.testing.StapledStream[Any, Any], peer: str) -> None:
        self._end = end
        self.muxed_conn = SimpleNamespace(peer_id=peer)

    async def read(self, n: int) -> bytes:
        try:
            return bytes(await self._end.receive_some(n))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return b""

    async def write(self, data: bytes) -> None:
        # Writing to a reset pipe is lost silently; the next read sees the end of the stream.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._end.send_all(data)

    async def close(self) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._end.send_eof()

    async def reset(self) -> None:
        await self._end.aclose()


class Client:
    """A session opened on the server's handler: send requests, read answer frames."""

    def __init__(self, end: PipeStream) -> None:
        self.end = end
        self.reader = FrameReader(end, 8 << 20, 10.0)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.end.write(frame(request))
        return await self.reader.read()


def server(
    registry: Registry, clock: Callable[[], float] = time.monotonic, **settings: Any
) -> tuple[SyncProtocol, list[str]]:
    """The real sync protocol of ``registry`` (no host: only its handler runs); the peers it banned."""
    banned: list[str] = []
    proto = SyncProtocol(None, registry, P2PConfig(**settings), clock=clock)  # type: ignore[arg-type]
    proto.ban = lambda peer, why: banned.append(peer)  # type: ignore[assignment,arg-type]
    proto.is_banned = lambda peer: peer in banned  # type: ignore[assignment,operator]
    return proto, banned


async def open_session(nursery: trio.Nursery, proto: SyncProtocol, peer: str) -> Client:
    ours, theirs = trio.testing.memory_stream_pair()
    nursery.start_soon(proto.handle, PipeStream(theirs, peer))
    return Client(PipeStream(ours, peer))


def run_session(proto: SyncProtocol, peer: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One session: each request's answer frame, until an error frame or a reset; then bye."""

    async def main() -> list[dict[str, Any]]:
        answers = []
        async with trio.open_nursery() as nursery:
            client = await open_session(nursery, proto, peer)
            for request in requests:
                try:
                    answers.append(await client.ask(request))
                except FrameError as exc:
                    answers.append({"type": "closed", "error": str(exc)})
                if answers[-1]["type"] in ("error", "closed"):
                    break
            else:
                await client.end.write(frame({"type": "bye"}))
        return answers

    return trio.run(main)


def tree_registry(n: int, seed: int = 0) -> Registry:
    """A registry whose Merkle tree holds n subjects (heads only: nodes and leaves read just the tree)."""
    registry = Registry(DOMAIN, MemoryStore())
    for i in range(n):
        subject = keccak(b"abuse-%d-%d" % (seed, i))
        registry.tree.set(subject, i % 3, keccak(subject))
    return registry


def node_item(depth: int, prefix: int) -> list[Any]:
    return [depth, hex(prefix)]


def test_hostile_nodes_requests_leave_the_tree_cache_unchanged() -> None:
    """Finding 5: 50 requests of 1,024 nodes anywhere (depth <= 256) used to add 51,200 cache
    entries (+13.8 MB) and make every later update walk 256 levels."""
    registry = tree_registry(5000)
    tree = registry.tree
    root = tree.root
    cached, depth = tree.cached_nodes, tree.cached_depth
    rng = random.Random(1)
    keys = sorted(tree._keys)
    requests = []
    for _ in range(50):
        items = []
        for _ in range(1024):
            d = rng.randrange(0, DEPTH + 1)
            base = rng.choice(keys) if rng.random() < 0.5 else rng.getrandbits(DEPTH)
            items.append(node_item(d, base >> (DEPTH - d)))
        requests.append({"type": "nodes", "nodes": items})
    proto, banned = server(registry)
    answers = run_session(proto, "attacker", requests)
    assert [len(a["nodes"]) for a in answers] == [1024] * 50
    assert (tree.cached_nodes, tree.cached_depth) == (cached, depth)
    assert tree.root == root
    # The answers are right all the same (checked against a tree that answered nothing else).
    reference = tree_registry(5000).tree
    for request, answer in zip(requests[:3], answers[:3], strict=True):
        for (d, p), (h, c) in zip(request["nodes"], answer["nodes"], strict=True):
            assert (bytes.fromhex(h[2:]), c) == reference.lookup(d, int(p, 16))
    assert not banned


def test_leaves_with_copies_of_one_prefix_get_a_clear_error_and_strikes_ban() -> None:
    """Finding 5: 256 copies of the root prefix with after = 0xff..ff cost 4.39 s at 50,000
    subjects; prefixes must now be distinct and disjoint, or the request is refused before any read."""
    registry = tree_registry(50_000)
    counting = CountingKeys(registry.tree._keys)
    registry.tree._keys = counting
    proto, banned = server(registry)
    request = {"type": "leaves", "prefixes": [node_item(0, 0)] * 256, "after": "0x" + "ff" * 32}
    for attempt in range(3):
        (answer,) = run_session(proto, "attacker", [request])
        assert answer["type"] == "error"
        assert answer["code"] == "bad_request"
        assert "disjoint" in answer["message"]
        assert banned == (["attacker"] if attempt == 2 else [])
    assert counting.visited == 0
    assert proto.violations == 3
    # A banned peer's sessions are reset at once: no answer at all.
    assert run_session(proto, "attacker", [{"type": "hello"}]) == [
        {"type": "closed", "error": "stream closed mid-frame"}
    ]


def test_leaves_work_is_bisects_plus_the_page() -> None:
    """Finding 5, disjoint prefixes: listing every key of every prefix before skipping those up to
    ``after`` read all 50,000 keys for an empty answer; a bisect per prefix reads ~17 each."""
    registry = tree_registry(50_000, seed=1)
    counting = CountingKeys(registry.tree._keys)
    registry.tree._keys = counting
    proto, _ = server(registry)
    prefixes = [node_item(8, p) for p in range(256)]
    (answer,) = run_session(proto, "peer", [{"type": "leaves", "prefixes": prefixes, "after": "0x" + "ff" * 32}])
    assert (answer["leaves"], answer["more"]) == ([], False)
    assert counting.visited <= 256 * 2 * 17
    assert proto.budgets.charged == UNITS_SESSION + UNITS_REQUEST + UNITS_PREFIX * 256
    counting.visited = 0
    (answer,) = run_session(proto, "peer", [{"type": "leaves", "prefixes": prefixes, "after": ""}])
    assert len(answer["leaves"]) == LEAF_PAGE
    assert answer["more"] is True
    assert counting.visited <= LEAF_PAGE + 256 * 2 * 17


def test_bad_requests_are_refused_before_any_read() -> None:
    registry = tree_registry(100)
    proto, _ = server(registry)
    subject = "0x" + "11" * 32
    cases = {
        "distinct subjects": {"type": "events", "wants": [[subject, 0], [subject, 1]]},
        "2^63": {"type": "events", "wants": [[subject, 2**63]]},
        "node out of range": {"type": "nodes", "nodes": [[257, "0x0"]]},
        "node out of range ": {"type": "nodes", "nodes": [[4, "0x" + "f" * 100]]},
        "at most 1024": {"type": "nodes", "nodes": [[0, "0x0"]] * 1025},
    }
    for why, request in cases.items():
        (answer,) = run_session(proto, f"peer-{why}", [request])
        assert answer["type"] == "error", why
        assert answer["code"] == "bad_request", why
        assert why.strip() in answer["message"], answer
    assert proto.violations == len(cases)
    # A request type this server does not know may come from a newer puller: refused without a strike.
    (answer,) = run_session(proto, "newer", [{"type": "gimme"}])
    assert (answer["code"], answer["message"]) == ("unknown_request", "unknown request 'gimme'")
    assert proto.violations == len(cases)


def test_wants_the_registry_cannot_serve_skip_the_store() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    log = subject_log(DOMAIN, hashlib.sha256(b"abuse-events").digest(), 2, NOW, "e")
    registry.ingest(log, "api")
    subject = "0x" + log[1].event.subject.hex()
    reads: list[bytes] = []
    real_events = registry.events
    registry.events = lambda s, f=0, n=1000: reads.append(s) or real_events(s, f, n)  # type: ignore[method-assign]
    proto, _ = server(registry)
    unknown = [["0x" + keccak(b"%d" % i).hex(), 0] for i in range(1000)]
    wants = [*unknown, [subject, 1]]

    async def main() -> list[bytes]:
        async with trio.open_nursery() as nursery:
            client = await open_session(nursery, proto, "peer")
            await client.end.write(frame({"type": "events", "wants": wants}))
            bodies = [await client.reader.read_body(), await client.reader.read_body()]
            await client.end.write(frame({"type": "bye"}))
        return bodies

    events_frame, end = trio.run(main)
    assert end == frame({"type": "end", "count": 2})[4:]
    assert events_frame == encode_batch([encode_event(e) for e in log[1:]])
    assert reads == [log[1].event.subject]  # the 1,000 unknown subjects never reached the store


def test_one_peer_cannot_hold_every_slot() -> None:
    """Finding 5: SERVER_SLOTS = 4 was global, so one peer could hold them all."""
    proto, _ = server(tree_registry(10), sync_server_slots=3, sync_server_slots_per_peer=2)

    async def main() -> list[str]:
        out = []
        async with trio.open_nursery() as nursery:
            held = [await open_session(nursery, proto, "greedy") for _ in range(2)]
            for client in held:  # answered: the session holds its slot
                assert (await client.ask({"type": "hello"}))["type"] == "hello"
            third = await open_session(nursery, proto, "greedy")
            out.append((await third.reader.read())["code"])
            other = await open_session(nursery, proto, "honest")
            out.append((await other.ask({"type": "hello"}))["type"])
            fourth = await open_session(nursery, proto, "someone")  # all three slots in use
            out.append((await fourth.reader.read())["code"])
            for client in [*held, other]:
                await client.end.write(frame({"type": "bye"}))
        return out

    assert trio.run(main) == ["busy", "hello", "busy"]
    assert proto.refused == {"busy": 2}


def test_a_peer_over_its_budget_gets_an_error_frame_then_strikes() -> None:
    registry = tree_registry(1000)
    clock = [1000.0]
    proto, banned = server(registry, lambda: clock[0], sync_serve_burst_units=20_000, sync_serve_units_per_s=1000.0)
    nodes = {"type": "nodes", "nodes": [node_item(10, p) for p in range(1024)]}  # 3,082 units each
    answers = run_session(proto, "heavy", [nodes] * 20)
    assert [a["type"] for a in answers] == ["nodes"] * 7 + ["error"]
    refusal = answers[-1]
    assert refusal["code"] == "over_budget"
    wait_ms = refusal["retry_after_ms"]
    assert 1000 < wait_ms < 10_000
    assert not proto.violations  # told to wait: not yet a strike
    # Another peer has its own budget.
    assert run_session(proto, "other", [{"type": "hello"}])[0]["type"] == "hello"
    # Coming back before retry_after: refused again, and each time a strike; the third bans.
    for _ in range(3):
        (answer,) = run_session(proto, "heavy", [{"type": "hello"}])
        assert answer["code"] == "over_budget"
    assert banned == ["heavy"]
    # Once the wait is over, a peer that honoured it is served without a strike.
    proto2, _ = server(registry, lambda: clock[0], sync_serve_burst_units=20_000, sync_serve_units_per_s=1000.0)
    assert run_session(proto2, "heavy", [nodes] * 20)[-1]["code"] == "over_budget"
    clock[0] += 2 * wait_ms / 1000
    assert run_session(proto2, "heavy", [{"type": "hello"}])[0]["type"] == "hello"
    assert proto2.violations == 0


# ---------------------------------------------------------------------- puller side, two libp2p hosts


Answer = dict[str, Any] | Iterator[bytes]  # one frame, or raw frames to write one after another
Script = Callable[[dict[str, Any]], Answer]


class HostileServer:
    """A sync handler that answers each request with a script (the attacker's choice of frames)."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.sessions = 0
        self.requests: list[str] = []

    async def handle(self, stream: Any) -> None:
        self.sessions += 1
        reader = FrameReader(stream, 1 << 20, 10.0)
        try:
            while True:
                req = await reader.read()
                self.requests.append(req["type"])
                if req["type"] == "bye":
                    break
                assert self.script is not None
                answer = self.script(req)
                if isinstance(answer, dict):
                    await stream.write(frame(answer))
                    continue
                for raw in answer:
                    await stream.write(raw)
            await stream.close()
        except Exception:  # the puller reset the stream: what the test expects it to do
            with contextlib.suppress(Exception):
                await stream.reset()


def hello(count: int) -> dict[str, Any]:
    return {"type": "hello", "root": "0x" + "ab" * 32, "count": count}


def subject_hex(i: int) -> str:
    return "0x" + i.to_bytes(32, "big").hex()


@pytest.fixture(scope="module")
def fresh_logs() -> list[list[Any]]:
    return [subject_log(DOMAIN, hashlib.sha256(b"puller-%d" % i).digest(), 0, NOW, str(i)) for i in range(10)]


# py-libp2p 0.8 can leave one dialed socket unclosed when two in-process hosts shut down (as in
# tests/p2p/test_gossip_sync.py): ignore only that warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_puller_bounds_a_hostile_server(tmp_path: Path, fresh_logs: list[list[Any]]) -> None:
    """Finding 6: a server could make the puller follow ``more`` for 4,096 pages of 4,096 leaves and
    read events frames until it said ``end``. Each pull now stops at its budget, keeps the valid
    events it received, and a server that breaks the protocol is struck (3 strikes: banned)."""
    puller_reg, hostile_reg = Registry(DOMAIN, MemoryStore()), Registry(DOMAIN, MemoryStore())
    for i in range(LEAF_PAGE):  # subjects the puller already holds: leaves of them yield no wants
        puller_reg.tree.set(int(i + 1).to_bytes(32, "big"), 5, b"\x01" * 32)
    hostile = HostileServer()
    events = [encode_event(lg[0]) for lg in fresh_logs]
    # Inceptions of subjects the puller never gets, signed by another controller: each is recovered.
    other = fresh_logs[0][0].signatures
    strangers = [subject_log(DOMAIN, hashlib.sha256(b"stranger-%d" % i).digest(), 0, NOW, "s") for i in range(9)]
    forged = [encode_event(replace(lg[0], signatures=other)) for lg in strangers]
    wanted = sorted("0x" + event_digest(DOMAIN, lg[0].event).hex() for lg in fresh_logs)
    results: dict[str, Any] = {}

    def endless_leaves(req: dict[str, Any]) -> Answer:
        if req["type"] == "hello":
            return hello(10)
        if req["type"] == "leaves":  # full pages of new subjects, ascending, always "more"
            start = int(req["after"], 16) + 1 if req["after"] else 1 << 200
            page = [[subject_hex(start + i), 0, "0x" + "cd" * 32] for i in range(LEAF_PAGE)]
            return {"type": "leaves", "leaves": page, "more": True}
        return {"type": "end", "count": 0}

    def known_leaves(req: dict[str, Any]) -> Answer:
        if req["type"] == "hello":
            return hello(10)
        page = [[subject_hex(i + 1), 5, "0x" + "01" * 32] for i in range(LEAF_PAGE)]  # all known, equal
        return {"type": "leaves", "leaves": page, "more": True}

    def endless_events(req: dict[str, Any]) -> Answer:
        """Leaves of the ten fresh subjects, then frames of their events, forever."""
        if req["type"] == "hello":
            return hello(10)
        if req["type"] == "leaves":
            return {"type": "leaves", "leaves": [[s, 0, "0x" + "cd" * 32] for s in wanted], "more": False}
        return itertools.repeat(frame_raw(encode_batch(events)))

    def bad(kind: str) -> Script:
        def script(req: dict[str, Any]) -> Answer:
            if req["type"] == "hello":
                return hello(10)
            if kind == "short page":
                return {"type": "leaves", "leaves": [[subject_hex(1 << 201), 0, "0x" + "cd" * 32]], "more": True}
            if req["type"] == "leaves":
                return {"type": "leaves", "leaves": [[s, 0, "0x" + "cd" * 32] for s in wanted], "more": False}
            if kind == "junk":  # frames of forged events (each costs the puller a recovery), forever
                return itertools.repeat(frame_raw(encode_batch(forged)))
            return {"type": "end", "count": 10**9}

        return script

    def refuse(req: dict[str, Any]) -> Answer:
        return {"type": "error", "code": "over_budget", "message": "wait", "retry_after_ms": 600_000}

    async def body(sa: Any, sb: Any) -> None:
        sb.host.set_stream_handler(PROTOCOL, hostile.handle)
        peer = sb.host.get_id()
        sync = sa.sync
        base = sync.config

        async def pull(name: str, script: Script, **limits: int) -> Any:
            hostile.script, hostile.requests = script, []
            sync.config = replace(base, **limits)
            results[name] = (await sync.pull(peer), list(hostile.requests))
            return results[name][0]

        await pull("endless leaves", endless_leaves, sync_max_wants_per_pull=5000)
        await pull("known leaves", known_leaves, sync_max_wants_per_pull=1024)
        await pull("endless frames", endless_events, sync_max_frames_per_pull=50)
        await pull("events budget", endless_events, sync_max_events_per_pull=200)
        assert not sync.violations
        await pull("known replay", endless_events)  # past KNOWN_EVENTS_TO_STOP: a violation
        assert sync.violations == 1
        sync._strikes = Strikes()  # forget that strike: the three below make the ban
        await pull("refused", refuse)
        sessions = hostile.sessions
        await pull("retry later", refuse)
        results["sessions after retry"] = hostile.sessions - sessions
        sync._not_before.clear()  # forget the retry time, for the next scripts
        for kind in ("junk", "short page", "end count"):
            await pull(kind, bad(kind))
        with trio.fail_after(10):
            while not sa.is_banned(peer):
                await trio.sleep(0.01)

    trio.run(_pair, tmp_path, puller_reg, hostile_reg, body)

    r, requests = results["endless leaves"]
    assert r.ok, r.error
    assert (r.stopped, r.wants) == ("wants", 5000)
    assert requests.count("leaves") == 2  # two pages of 4,096 new subjects fill 5,000 wants
    r, requests = results["known leaves"]
    assert (r.ok, r.stopped, r.wants) == (True, "leaves", 0)
    assert requests.count("leaves") == 1  # 4 x 1,024 leaves a pull
    r, requests = results["endless frames"]
    assert (r.ok, r.stopped) == (True, "frames")
    assert r.accepted == 10  # the valid events it sent were kept
    assert r.received <= 50 * 10
    r, _ = results["events budget"]
    assert (r.ok, r.stopped) == (True, "events")
    # Counted as ingested: the frames queued for the ingest (8) and in its hop (<= 9) add a few.
    assert 200 <= r.received <= 200 + 30 * 10
    r, _ = results["known replay"]
    assert r.error.endswith(" events we held already")  # counted past the bound; the window adds more after
    assert r.known >= KNOWN_EVENTS_TO_STOP
    assert KNOWN_EVENTS_TO_STOP < r.received <= KNOWN_EVENTS_TO_STOP + PREPARED_AHEAD + 1000
    r, _ = results["refused"]
    assert r.error.startswith("refused: over_budget")
    r, _ = results["retry later"]
    assert r.error == "the peer asked us to retry later"
    assert results["sessions after retry"] == 0
    r, _ = results["junk"]
    assert r.invalid > INVALID_EVENTS_TO_STOP
    assert r.received <= PREPARED_AHEAD + 1000  # what the ingest window held when the count passed the bound
    assert r.accepted == 0
    for kind, why in [("junk", "invalid events"), ("short page", "short leaves page"), ("end count", "expected end")]:
        r, _ = results[kind]
        assert not r.ok
        assert why in r.error, (kind, r.error)
    for lg in fresh_logs:
        assert puller_reg.states[event_digest(DOMAIN, lg[0].event)].seq == 0
    gc.collect()  # py-libp2p's unclosed socket (see the filterwarnings mark): attributed to this test


async def _pair(tmp: Path, ra: Registry, rb: Registry, body: Any) -> Any:
    """Two in-process nodes (A pulls, B serves); B dials A."""
    from keyreg.p2p.service import run_p2p

    cfg = Config(data_dir=tmp / "a", p2p=P2PConfig(sync_interval_s=3600))
    async with trio.open_nursery() as outer:
        sa = await outer.start(run_p2p, ra, cfg)
        async with trio.open_nursery() as inner:
            sb = await inner.start(run_p2p, rb, replace(cfg, data_dir=tmp / "b"))
            await sb.connect(sa.addrs[0])
            out = await body(sa, sb)
            inner.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    return out


# ---------------------------------------------------------------------- across OS processes


@pytest.mark.slow
def test_a_sync_attacker_process_is_refused_and_banned_while_honest_sync_works(tmp_path: Path) -> None:
    """A node process serves 1,500 events; an attacker process runs the finding-5 abuse over real
    libp2p: nodes anywhere, copies of the root prefix, more sessions than its share. The node keeps
    its hash cache, answers the attacker with error frames, bans it, and a fresh honest node still
    backfills everything from it."""
    events = generate(DOMAIN, 500, 2, cache_dir=tmp_path / "cache", workers=2)
    settings = {"sync_interval_s": 3600}
    nodes: list[NodeProcess] = []
    try:
        victim = NodeProcess(tmp_path / "victim", settings=settings).start()
        nodes.append(victim)
        assert all(r["status"] == "accepted" for r in victim.submit(events))
        before = victim.call("state")
        attacker = NodeProcess(tmp_path / "attacker", settings=settings).start()  # no backfill of its own
        nodes.append(attacker)
        attacker.call("connect", addr=victim.addr)
        wait_until(lambda: attacker.call("status")["peers"] >= 1, 30, "the attacker connected")
        rng = random.Random(3)
        nodes_req = {
            "type": "nodes",
            "nodes": [node_item(d, rng.getrandbits(d)) for d in (rng.randrange(1, DEPTH + 1) for _ in range(1024))],
        }
        copies = {"type": "leaves", "prefixes": [node_item(0, 0)] * 256, "after": "0x" + "ff" * 32}
        # Three sessions at once (the third is one more than a peer's share), the first flooding nodes.
        answers = attacker.call(
            "sync_sessions", peer=victim.peer_id, sessions=[[nodes_req] * 50, [{"type": "hello"}], [{"type": "hello"}]]
        )
        assert [a["type"] for a in answers[0]] == ["nodes"] * 50
        assert all(a["nodes"] == 1024 for a in answers[0])
        assert answers[1] == [{"type": "hello", "root": before["root"], "count": 500}]
        assert answers[2][0]["type"] == "error"
        assert answers[2][0]["code"] == "busy"
        after = victim.call("state")
        assert (after["cached_nodes"], after["cached_depth"]) == (before["cached_nodes"], before["cached_depth"])
        # Bad requests: an error frame each, and the third one bans the attacker.
        for _ in range(3):
            (answer,) = attacker.call("sync_sessions", peer=victim.peer_id, sessions=[[copies]])
            assert answer[0]["type"] in ("error", "closed")
        wait_until(
            lambda: attacker.peer_id in [b["peer"] for b in victim.call("status")["bans"]], 30, "the attacker banned"
        )
        status = victim.call("status")["sync"]
        assert status["refused"]["bad_request"] >= 2
        assert status["violations"] >= 3
        # The node is alive and serves honest peers: a fresh node backfills everything.
        honest = NodeProcess(tmp_path / "honest", [victim.addr], settings).start()
        nodes.append(honest)
        wait_until(lambda: honest.call("state")["root"] == before["root"], 120, "the honest backfill")
        # The pull reports once it has said bye, a moment after its last events were ingested.
        wait_until(lambda: honest.call("status")["last_sync"] is not None, 30, "the backfill's result")
        last = honest.call("status")["last_sync"]
        assert last["ok"], last
        assert last["accepted"] == len(events)
    finally:
        for n in nodes:
            n.stop()


def test_check_page_accepts_only_ascending_leaves_within_the_asked_prefixes() -> None:
    ranges = ranges_of([(8, 0x10), (8, 0x20), (4, 0x3)])  # keys 0x10.., 0x20.., 0x30..0x3f..
    top = lambda b: b << (DEPTH - 8)  # noqa: E731
    check_page([top(0x10), top(0x10) + 5, top(0x20), top(0x3A)], ranges, -1)
    check_page([], ranges, top(0x3F))
    for keys, after, why in [
        ([top(0x10) + 5, top(0x10)], -1, "ascend"),  # descending
        ([top(0x10), top(0x10)], -1, "ascend"),  # repeated
        ([top(0x10)], top(0x10), "ascend"),  # not after ``after``
        ([top(0x11)], -1, "outside"),  # between the prefixes
        ([top(0x40)], -1, "outside"),  # past the last one
    ]:
        with pytest.raises(SyncError, match=why):
            check_page(keys, ranges, after)


def test_the_server_reads_ahead_a_bounded_number_of_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each thread hop of an events answer reads at most READ_AHEAD_EVENTS from the store (before, a
    chunk of 128 wants read up to 10,000 events each: 1.28M events in memory for one request)."""
    import keyreg.p2p.sync as sync_mod

    monkeypatch.setattr(sync_mod, "READ_AHEAD_EVENTS", 10)
    monkeypatch.setattr(sync_mod, "MAX_EVENTS_PER_SUBJECT", 15)
    registry = Registry(DOMAIN, MemoryStore())
    logs = [subject_log(DOMAIN, hashlib.sha256(b"long-%d" % i).digest(), 20, NOW, str(i)) for i in range(3)]
    for lg in logs:
        registry.ingest(lg, "api")
    proto, _ = server(registry)
    hops: list[int] = []
    real = proto._read_events
    proto._read_events = lambda todo, room: hops.append(len(out := real(todo, room))) or out  # type: ignore[method-assign]
    wants = [["0x" + event_digest(DOMAIN, lg[0].event).hex(), 0] for lg in logs]

    async def main() -> list[bytes]:
        bodies = []
        async with trio.open_nursery() as nursery:
            client = await open_session(nursery, proto, "peer")
            await client.end.write(frame({"type": "events", "wants": wants}))
            while not (body := await client.reader.read_body()).startswith(b'{"count":'):
                bodies.append(body)
            await client.end.write(frame({"type": "bye"}))
        return bodies

    bodies = trio.run(main)
    sent = [e for body in bodies for e in json.loads(body)["events"]]
    assert [json.dumps(e, separators=(",", ":")) for e in sent] == [
        encode_event(e).decode() for lg in logs for e in lg[:15]
    ]
    assert max(hops) <= 10
    assert sum(hops) == 45
