"""End-to-end: five real nodes (``keyreg node run``, SQLite store, HTTP API, p2p) as OS processes.

One cluster serves the whole module (starting a node costs seconds of CPU); the tests run in file
order and each uses its own subjects. Everything waits on conditions with deadlines.

(a) an event submitted to one node is applied by all;
(c) two nodes stopped while 10,000 events are published catch up after restart, and all five end
    with the same Merkle root of subject heads;
(b) a node started after those 10,000 events were published backfills all of them;
(e) an equivocation is detected (evidence stored, subject disputed) by every node;
(d) a peer spraying invalid and replayed gossip does not stop the others, and every node bans it.

(e) runs after the root comparisons on purpose: while a subject is disputed, each node keeps the
branch it saw first, so roots differ until an anchor resolves it (fork choice has no tie-break).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keyreg.config import Config
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.records import SignedEvent
from keyreg.p2p.testing import KeyregNode, NodeProcess, conflicting_update, generate, subject_log, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOMAIN = Config().domain
SETTINGS = {"max_message_bytes": 256 * 1024, "sync_interval_s": 5.0, "publish_interval_s": 0.05}
N = 5


@pytest.fixture(scope="module")
def events_10k(pytestconfig: pytest.Config) -> list[bytes]:
    """10,000 events: 2,000 subjects x (inception + 4 updates), cached across runs."""
    cache = Path(pytestconfig.cache.mkdir("keyreg-p2p-events"))
    return generate(DOMAIN, 2000, 4, cache_dir=cache)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[KeyregNode]]:
    root = tmp_path_factory.mktemp("cluster")
    first = KeyregNode(root / "n0", settings=SETTINGS).start()
    nodes = [first]
    # Each node bootstraps from every earlier one: a full mesh without discovery.
    rest = [KeyregNode(root / f"n{i}", [first.addr], settings=SETTINGS) for i in range(1, N)]
    try:
        with ThreadPoolExecutor(N) as pool:
            nodes += list(pool.map(lambda n: n.start(), rest))
        for i, n in enumerate(nodes[2:], start=2):
            n.bootstrap = [m.addr for m in nodes[:i]]  # used on restart
        wait_until(lambda: all(n.p2p()["peers"] >= 1 for n in nodes), 30, "every node connected")
        # A publish reaches only the gossipsub mesh, which fills at the first heartbeat after the
        # subscriptions are exchanged: before that an event would reach others only by sync.
        wait_until(lambda: all(n.p2p()["mesh_peers"] >= 1 for n in nodes), 30, "every node in a mesh")
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def subject_hex(inception: SignedEvent) -> str:
    return "0x" + event_digest(DOMAIN, inception.event).hex()


def applied_everywhere(nodes: list[KeyregNode], subject: str, seq: int) -> bool:
    for n in nodes:
        st = n.subject(subject)
        if st is None or st["seq"] < seq:
            return False
    return True


def _roots(nodes: list[KeyregNode]) -> set[str]:
    return {n.p2p()["root"] for n in nodes}


def test_a_event_submitted_to_one_node_is_applied_by_all(cluster: list[KeyregNode]) -> None:
    log = subject_log(DOMAIN, hashlib.sha256(b"e2e-a").digest(), 1, 1_700_000_000)
    subject = "0x" + log[1].event.subject.hex()
    assert cluster[2].submit([encode_event(log[0])])["accepted"] == 1
    wait_until(lambda: applied_everywhere(cluster, subject, 0), 20, "the inception on all nodes")
    assert cluster[4].submit([encode_event(log[1])])["accepted"] == 1
    wait_until(lambda: applied_everywhere(cluster, subject, 1), 20, "the update on all nodes")


def test_c_stopped_nodes_catch_up_and_roots_converge(cluster: list[KeyregNode], events_10k: list[bytes]) -> None:
    base = cluster[0].count()
    chunks = [events_10k[i : i + 1000] for i in range(0, len(events_10k), 1000)]
    for i, chunk in enumerate(chunks):
        if i == 3:
            cluster[3].kill()  # SIGKILL: no orderly shutdown
            cluster[4].stop()  # SIGTERM
        cluster[i % 3].submit(chunk)
    cluster[3].start()
    cluster[4].start()
    expected = base + 2000

    seen: list[object] = []

    def converged() -> bool:
        states = [(n.p2p()["subjects"], n.p2p()["root"][:10], n.p2p()["peers"]) for n in cluster]
        seen[:] = [states, [n.p2p()["last_sync"] for n in cluster]]
        return all(n.count() == expected for n in cluster) and len(_roots(cluster)) == 1

    try:
        wait_until(converged, 120, "all five nodes at the same Merkle root", interval=0.5)
    except TimeoutError:
        pytest.fail(f"no convergence to {expected} subjects: {seen}")
    events = {n.health()["events"] for n in cluster}
    assert len(events) == 1


def test_b_new_node_backfills_everything(cluster: list[KeyregNode], tmp_path: Path) -> None:
    target = cluster[0].health()
    late = KeyregNode(tmp_path / "late", [cluster[1].addr, cluster[2].addr], settings=SETTINGS).start()
    try:
        wait_until(lambda: late.count() == target["subjects"], 120, "backfill of every subject", interval=0.5)
        wait_until(lambda: late.p2p()["root"] == cluster[0].p2p()["root"], 30, "the same root")
        assert late.health()["events"] == target["events"] >= 10_000
    finally:
        late.stop()


def test_e_equivocation_is_detected_by_every_node(cluster: list[KeyregNode]) -> None:
    secret = hashlib.sha256(b"e2e-e").digest()
    log = subject_log(DOMAIN, secret, 0, 1_700_000_000)
    subject = subject_hex(log[0])
    cluster[0].submit([encode_event(log[0])])
    wait_until(lambda: applied_everywhere(cluster, subject, 0), 20, "the inception on all nodes")
    a = conflicting_update(DOMAIN, secret, log[0], "left")
    b = conflicting_update(DOMAIN, secret, log[0], "right")
    # Same controller, same seq, two valid updates, sent to two different nodes.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda nb: nb[0].submit([encode_event(nb[1])]), [(cluster[1], a), (cluster[3], b)]))

    def detected() -> bool:
        for n in cluster:
            d = n.duplicity(subject)
            if d is None or not d["disputed"] or not d["evidence"]:
                return False
        return True

    wait_until(detected, 30, "evidence and a disputed subject on every node")


def test_d_spraying_peer_does_not_stop_honest_nodes(cluster: list[KeyregNode], tmp_path: Path) -> None:
    attacker = NodeProcess(
        tmp_path / "attacker", [n.addr for n in cluster], settings={**SETTINGS, "sync_interval_s": 3600}
    ).start()
    try:
        # Connected to every honest node, with a pubsub stream to each (it sends to them directly).
        wait_until(lambda: attacker.call("pubsub_peers") >= N, 30, "the attacker connected to every node")
        honest = subject_log(DOMAIN, hashlib.sha256(b"e2e-d").digest(), 0, 1_700_000_000)
        old = generate(DOMAIN, 20, 0)  # valid events; re-sent below as replays
        cluster[0].submit(old)
        victim = subject_log(DOMAIN, hashlib.sha256(b"e2e-d-victim").digest(), 0, 1_700_000_000)[0]
        forged = encode_event(victim).replace(b'"signatures":["0x', b'"signatures":["0x00', 1)[:-1]
        spray = [
            b"garbage " + os.urandom(64),
            b'{"type":"events","events":[{"kind":"inception"}]}',
            b'{"events":[' + forged + b'],"type":"events"}',  # a forged signature
            b'{"events":[' + encode_event(victim)[:-10] + b'],"type":"events"}',  # truncated
            b'{"events":[' + b",".join(old[:5]) + b'],"type":"events"}',  # a replay of known events
            b"{" + b" " * (300 * 1024) + b"}",  # over the 256 KiB message cap
        ]
        # 60 rounds: 300 invalid messages to each honest node, 6x what takes a score below the
        # graylist threshold (-50) even as it decays 10% a second. A sprayer that goes on sending
        # below the publish threshold keeps paying for it (KeyregPubsub), so the ban is certain.
        for i in range(60):
            for data in spray:
                attacker.call("publish_raw", data=(data + b" " * i).hex(), direct=True)
            if i == 30:
                assert cluster[0].submit([encode_event(honest[0])])["accepted"] == 1
        wait_until(
            lambda: applied_everywhere(cluster, subject_hex(honest[0]), 0), 30, "honest event applied while sprayed"
        )

        def banned_everywhere() -> bool:
            return all(attacker.peer_id in {b["peer"] for b in n.p2p()["bans"]} for n in cluster)

        wait_until(banned_everywhere, 30, "every honest node to disconnect and ban the attacker")
        for n in cluster:  # no honest peer was banned
            banned = {b["peer"] for b in n.p2p()["bans"]}
            assert banned <= {attacker.peer_id}
    finally:
        attacker.stop()
    # Honest gossip still flows after the attack.
    later = subject_log(DOMAIN, hashlib.sha256(b"e2e-d-after").digest(), 0, 1_700_000_000)[0]
    cluster[3].submit([encode_event(later)])
    wait_until(lambda: applied_everywhere(cluster, subject_hex(later), 0), 30, "an honest event after the attack")
