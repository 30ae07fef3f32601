"""A minimal node process for the p2p end-to-end tests and benchmarks.

    python -m keyreg.p2p.testnode --data-dir D [--bootstrap MULTIADDR ...] [--set p2p.FIELD=VALUE ...]

Runs a Registry (in-memory store) + ``run_p2p`` and a JSON-lines control socket on 127.0.0.1
(port written to ``<data_dir>/control.port``). Each request line is an object with an ``op``:
``submit`` {events: [wire-json-str]} -> results; ``state`` -> root, count, disputed;
``subject`` {subject} -> seq, head, disputed, evidence; ``status`` -> p2p status;
``times`` {digests} -> unix time each digest was applied here (bench latency; needs --record-times);
``watch`` {digests} then ``watched`` -> how many are still missing, and when the last one arrived;
``connect`` {addr}; ``publish_raw`` {data, direct} (abuse tests: gossip arbitrary bytes on the topic;
``direct``: to every pubsub peer, not just the mesh); ``pubsub_peers`` -> how many there are;
``sync_sessions`` {peer, sessions: [[request, ...], ...]} (abuse tests: raw ``/keyreg/sync/1``
requests, each session opened after the previous one was answered and all kept open until the
last is) -> a summary of each answer per session.

Once ``keyreg node run`` exists, tests should prefer it; this entry stays for the benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

from ..config import load_config
from ..outcomes import Report
from ..registry import Registry
from ..runtime import tune_gc
from ..store.memory import MemoryStore
from .service import P2PService, run_p2p
from .sync import PROTOCOL as SYNC_PROTOCOL
from .wire import FrameReader, frame

MAX_LINE = 64 * 1024 * 1024
MAX_TIMES = 2_000_000


def send_to_every_peer(svc: P2PService, data: bytes) -> int:
    """Send a signed pubsub message straight to every pubsub peer, as an attacker would.

    A node that publishes through its router reaches only its mesh, which prunes a peer whose
    score turns negative; an attacker ignores that. Returns how many peers it was sent to.
    """
    pubsub = svc.pubsub
    msg = rpc_pb2.Message(data=data, topicIDs=[svc.topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno())
    msg.signature = pubsub.sign_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = pubsub.host.get_public_key().serialize()
    rpc = rpc_pb2.RPC(publish=[msg])
    peers = list(pubsub.peers)
    for peer in peers:
        pubsub.router.send_rpc(peer, rpc)  # type: ignore[attr-defined]
    return len(peers)


def _summary(resp: dict[str, Any]) -> dict[str, Any]:
    """An answer frame, with its lists replaced by their lengths (abuse tests check shapes, not hashes)."""
    return {k: len(v) if isinstance(v, list) else v for k, v in resp.items()}


async def sync_sessions(svc: P2PService, peer: str, sessions: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Raw ``/keyreg/sync/1`` sessions to ``peer``, as an attacker would run them: each request's
    answer frame is read (one frame: no ``events`` requests), a session ends at an ``error`` frame,
    and every session stays open until the last one is answered (so they hold the server's slots)."""
    target = ID.from_base58(peer)
    streams: list[Any] = []
    out: list[list[dict[str, Any]]] = []
    try:
        for requests in sessions:
            answers: list[dict[str, Any]] = []
            out.append(answers)
            try:
                stream = await svc.host.new_stream(target, [SYNC_PROTOCOL])
            except Exception as exc:  # refused (a banned peer's streams are reset)
                answers.append({"type": "closed", "error": type(exc).__name__})
                continue
            streams.append(stream)
            reader = FrameReader(stream, 8 << 20, 30.0)
            for request in requests:
                try:
                    await stream.write(frame(request))
                    answer = await reader.read()
                except Exception as exc:  # the server reset or closed the stream
                    answers.append({"type": "closed", "error": type(exc).__name__})
                    break
                answers.append(_summary(answer))
                if answer["type"] == "error":
                    break
    finally:
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.reset()
    return out


class Node:
    def __init__(self, registry: Registry, record_times: bool) -> None:
        self.registry = registry
        self.service: P2PService | None = None
        self.times: OrderedDict[bytes, float] = OrderedDict()
        # Digests the benchmark waits for (``watch``): cheaper to poll than ``times`` for many events.
        self.watched: set[bytes] = set()
        self.watched_last = 0.0
        if record_times:
            registry.listeners.append(self._record)

    def _record(self, report: Report) -> None:
        now = time.time()
        watched = self.watched
        for acc, _ in report.accepted:
            self.times[acc.digest] = now
            if watched and acc.digest in watched:
                watched.discard(acc.digest)
                self.watched_last = now
        while len(self.times) > MAX_TIMES:
            self.times.popitem(last=False)

    async def handle(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        reg = self.registry
        svc = self.service
        assert svc is not None
        if op == "submit":
            raws = [e.encode() for e in req["events"]]
            results = await trio.to_thread.run_sync(reg.ingest, raws, "api", True)
            return [r.to_dict() for r in results]
        if op == "state":
            root, count = await svc.sync.tree.root()
            tree = reg.tree  # cache figures: sync abuse tests check that peers cannot grow them
            return {
                "root": "0x" + root.hex(),
                "count": count,
                "disputed": len(reg.disputed),
                "cached_nodes": tree.cached_nodes,
                "cached_depth": tree.cached_depth,
            }
        if op == "subject":
            subject = bytes.fromhex(req["subject"].removeprefix("0x"))
            st = reg.states.get(subject)
            ev = await trio.to_thread.run_sync(reg.store.evidence, subject)
            return {
                "seq": None if st is None else st.seq,
                "head": None if st is None else "0x" + st.head.hex(),
                "disputed": subject in reg.disputed,
                "evidence": len(ev),
            }
        if op == "status":
            return svc.status()
        if op == "times":
            return [self.times.get(bytes.fromhex(d.removeprefix("0x"))) for d in req["digests"]]
        if op == "watch":
            digests = {bytes.fromhex(d.removeprefix("0x")) for d in req["digests"]}
            self.watched_last = max((self.times[d] for d in digests if d in self.times), default=0.0)
            self.watched = digests - self.times.keys()
            return len(self.watched)
        if op == "watched":
            return {"pending": len(self.watched), "last": self.watched_last}
        if op == "connect":
            return str(await svc.connect(req["addr"]))
        if op == "publish_raw":
            data = bytes.fromhex(req["data"])
            if not req.get("direct"):
                await svc.pubsub.publish(svc.topic, data)
                return True
            return send_to_every_peer(svc, data)
        if op == "pubsub_peers":
            return len(svc.pubsub.peers)
        if op == "sync_sessions":
            return await sync_sessions(svc, req["peer"], req["sessions"])
        raise ValueError(f"unknown op {op!r}")

    async def serve_client(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await stream.receive_some(1 << 20)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > MAX_LINE:
                    return
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf = bytearray(rest)
                    try:
                        out = {"ok": True, "result": await self.handle(json.loads(line))}
                    except Exception as exc:  # report any failure to the test driver
                        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    await stream.send_all(json.dumps(out).encode() + b"\n")
        except trio.BrokenResourceError:
            return


async def main_async(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    p2p: dict[str, Any] = {"bootstrap": ",".join(args.bootstrap)}
    for item in args.set:
        k, _, v = item.partition("=")
        section, _, name = k.partition(".")
        if section != "p2p":
            raise SystemExit(f"--set only supports p2p.* (got {k})")
        p2p[name] = v
    config = load_config(data_dir, {"p2p": p2p})
    registry = Registry(config.domain, MemoryStore(), config.limits, signature_workers=config.ingest.signature_workers)
    tune_gc()  # as `keyreg node run` does (node/app.py), so benchmarks measure the real settings
    node = Node(registry, args.record_times)
    async with trio.open_nursery() as nursery:
        node.service = await nursery.start(run_p2p, registry, config)
        listeners = await nursery.start(partial(trio.serve_tcp, node.serve_client, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        tmp = data_dir / "control.port.tmp"
        tmp.write_text(str(port))
        tmp.replace(data_dir / "control.port")
        print(json.dumps({"peer_id": node.service.peer_id, "addrs": node.service.addrs, "control": port}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--set", action="append", default=[], help="p2p.FIELD=VALUE config override")
    ap.add_argument("--record-times", action="store_true")
    ap.add_argument("--log-level", default=os.environ.get("KEYREG_P2P_LOG", "WARNING"))
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    # py-libp2p logs expected churn (closed streams, rejected messages) as warnings/errors.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main_async, args)


if __name__ == "__main__":
    main()
