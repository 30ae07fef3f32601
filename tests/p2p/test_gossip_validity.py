"""A gossip message with any invalid event is invalid (issue 13, finding 10), and unsigned gossip
is dropped and logged (StrictSign).

Before, a message was valid (forwarded network-wide) as soon as one of its events was accepted or
already known, so up to 2,047 badly signed events could ride along with one valid event and the
forwarder was never penalised. The validator's verdicts are pinned against a stub pubsub; the
forwarding and the penalty run over real libp2p: in-process hosts for the unsigned-message rule,
three OS processes in a line for the forwarding rule.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from node.config import Config, P2PConfig
from node.core.codec import encode_event
from node.core.eip712 import event_digest
from node.core.records import SignedEvent
from node.p2p.gossip import Gossip
from node.p2p.router import UNSIGNED_LOG_INTERVAL_S, RateLimitedLog
from node.p2p.testing import NodeProcess, subject_log, wait_until
from node.p2p.wire import encode_batch
from node.registry import Registry
from node.store.memory import MemoryStore

DOMAIN = Config().domain
NOW = 1_700_000_000


def secret(i: int) -> bytes:
    return hashlib.sha256(b"gossip-validity-%d" % i).digest()


@pytest.fixture(scope="module")
def logs() -> list[list[SignedEvent]]:
    return [subject_log(DOMAIN, secret(i), 2, NOW, str(i)) for i in range(8)]


class StubPubsub:
    my_id = "me"

    def set_topic_validator(self, *a: Any) -> None:
        pass


class Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def run_validator(registry: Registry, messages: list[bytes]) -> tuple[list[bool], Gossip]:
    gossip = Gossip(registry, P2PConfig(), StubPubsub(), "t", on_gap=lambda p, w: None)

    async def main() -> list[bool]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gossip._ingest_loop)
            out = [await gossip.validate("peer", Msg(m)) for m in messages]  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
        return out

    return trio.run(main), gossip


def batch(events: list[SignedEvent]) -> bytes:
    return encode_batch([encode_event(e) for e in events])


def forged(e: SignedEvent, other: SignedEvent) -> SignedEvent:
    return replace(e, signatures=other.signatures)


def test_one_forged_event_makes_the_whole_message_invalid(logs: list) -> None:
    reg = Registry(DOMAIN, MemoryStore())
    reg.ingest([logs[0][0]], "api")
    bad = forged(logs[1][0], logs[2][0])
    verdicts, gossip = run_validator(
        reg,
        [
            batch([logs[3][0], bad]),  # a new valid event and a forgery (was: valid)
            batch([logs[0][0], bad]),  # a known event and a forgery (was: valid)
            batch([logs[4][0], logs[4][1]]),  # all valid
        ],
    )
    assert verdicts == [False, False, True]
    assert gossip.stats.invalid_by_peer == {"peer": 2}
    assert gossip.stats.events_in_invalid == 2
    # What was valid in the invalid message is kept: only its forwarding stops.
    assert event_digest(DOMAIN, logs[3][0].event) in reg.states
    assert event_digest(DOMAIN, bad.event) not in reg.states


def test_a_malformed_event_makes_the_message_invalid_before_any_ingest(logs: list) -> None:
    reg = Registry(DOMAIN, MemoryStore())
    raw = encode_batch([encode_event(logs[5][0]), b'{"kind":"inception"}'])
    verdicts, _ = run_validator(reg, [raw])
    assert verdicts == [False]
    assert not reg.states  # judged on its shape alone: nothing was ingested


def test_gaps_beside_valid_events_are_tolerated_but_not_alone(logs: list) -> None:
    reg = Registry(DOMAIN, MemoryStore())
    verdicts, gossip = run_validator(
        reg,
        [
            batch([logs[6][0], logs[7][1]]),  # valid + unknown subject (a gap): an honest peer ahead of us
            batch([logs[7][2]]),  # only a gap
        ],
    )
    assert verdicts == [True, False]
    assert gossip.stats.messages_gap == 1


def test_rate_limited_log_says_how_many_it_stands_for(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("test.ratelimited")
    rl = RateLimitedLog(logger, 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.ratelimited"):
        for _ in range(1000):
            rl.info("dropped from %s", "peer")
        now[0] = 10.5
        rl.info("dropped from %s", "peer")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped from peer (1 such since the last line)",
        "dropped from peer (1000 such since the last line)",
    ]
    assert rl.total == 1001


# ---------------------------------------------------------------------- real libp2p, one process


# py-libp2p 0.8 can leave one dialed socket unclosed when two in-process hosts shut down.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unsigned_gossip_is_dropped_logged_once_and_penalised(
    tmp_path: Path, logs: list, caplog: pytest.LogCaptureFixture
) -> None:
    from node.p2p.service import run_p2p

    ra, rb = Registry(DOMAIN, MemoryStore()), Registry(DOMAIN, MemoryStore())
    cfg = Config(data_dir=tmp_path / "a", p2p=P2PConfig(sync_interval_s=3600))
    data = batch([logs[0][0]])

    async def main() -> tuple[int, float, int]:
        async with trio.open_nursery() as outer:
            sa = await outer.start(run_p2p, ra, cfg)
            async with trio.open_nursery() as inner:
                sb = await inner.start(run_p2p, rb, replace(cfg, data_dir=tmp_path / "b"))
                await sb.connect(sa.addrs[0])
                b_id, a_id = sb.host.get_id(), sa.host.get_id()
                with trio.fail_after(30):
                    while b_id not in sa.pubsub.peers or a_id not in sb.pubsub.peers:
                        await trio.sleep(0.02)
                for i in range(30):  # as a peer without StrictSign would send them
                    msg = rpc_pb2.Message(
                        data=data, topicIDs=[sa.topic], from_id=a_id.to_bytes(), seqno=i.to_bytes(8, "big")
                    )
                    sa.pubsub.router.send_rpc(b_id, rpc_pb2.RPC(publish=[msg]))
                with trio.fail_after(30):
                    while sb.pubsub.unsigned_log.total < 30:
                        await trio.sleep(0.02)
                p4 = sb.pubsub.router.scorer.get_score_stats(a_id, sb.topic)
                out = sb.pubsub.unsigned_log.total, p4["invalid_messages"], sb.gossip.stats.messages_in
                inner.cancel_scope.cancel()
            outer.cancel_scope.cancel()
        return out

    with caplog.at_level(logging.INFO, logger="node.p2p.router"):
        total, invalid, validated = trio.run(main)
    gc.collect()  # attribute py-libp2p's unclosed dialed socket (if any) to this test, where it is ignored
    assert total == 30
    assert validated == 0  # never reached the validator: no ingest work
    assert not rb.states
    assert invalid > 0  # counted against the forwarder (P4)
    lines = [r for r in caplog.records if "unsigned gossip message" in r.getMessage()]
    assert len(lines) == 1, "one line per UNSIGNED_LOG_INTERVAL_S, however many are dropped"
    assert lines[0].levelno == logging.INFO
    assert UNSIGNED_LOG_INTERVAL_S >= 1.0


# ---------------------------------------------------------------------- real libp2p, OS processes


@pytest.mark.slow
@pytest.mark.e2e
def test_a_mixed_message_is_not_forwarded_and_its_forwarder_is_penalised(tmp_path: Path) -> None:
    """attacker -> B -> C: B ingests the valid event of a mixed message but does not forward it."""
    settings = {"sync_interval_s": 3600, "publish_interval_s": 0.05}
    b = NodeProcess(tmp_path / "b", settings=settings).start()
    nodes = [b]
    try:
        c = NodeProcess(tmp_path / "c", [b.addr], settings=settings).start()
        nodes.append(c)
        attacker = NodeProcess(tmp_path / "x", [b.addr], settings=settings).start()
        nodes.append(attacker)
        wait_until(lambda: attacker.call("pubsub_peers") >= 1 and c.call("pubsub_peers") >= 1, 30, "connected")
        wait_until(lambda: b.call("pubsub_peers") >= 2, 30, "B sees both peers")
        wait_until(lambda: b.call("status")["mesh_peers"] >= 2, 30, "B's mesh holds C (and the attacker)")
        carried = subject_log(DOMAIN, secret(100), 0, NOW)[0]
        victim = subject_log(DOMAIN, secret(101), 0, NOW)[0]
        bad = forged(victim, carried)
        mixed = batch([carried, bad])
        clean = subject_log(DOMAIN, secret(102), 0, NOW)[0]
        attacker.call("publish_raw", data=mixed.hex(), direct=True)
        carried_subject = "0x" + event_digest(DOMAIN, carried.event).hex()
        wait_until(lambda: b.call("subject", subject=carried_subject)["seq"] == 0, 30, "B ingested the valid event")
        # A clean message after it does travel B -> C: C is reachable by gossip, so what C lacks
        # it lacks because B refused to forward it.
        attacker.call("publish_raw", data=batch([clean]).hex(), direct=True)
        clean_subject = "0x" + event_digest(DOMAIN, clean.event).hex()
        wait_until(lambda: c.call("subject", subject=clean_subject)["seq"] == 0, 30, "C got the clean message")
        assert c.call("subject", subject=carried_subject)["seq"] is None
        victim_subject = "0x" + event_digest(DOMAIN, victim.event).hex()
        assert b.call("subject", subject=victim_subject)["seq"] is None
        status = b.call("status")
        assert status["gossip"]["messages_invalid"] >= 1
        assert status["gossip"]["events_in_invalid"] >= 1
        assert status["peer_scores"][attacker.peer_id] < 0  # the invalid message cost the forwarder
    finally:
        for n in nodes:
            n.stop()
