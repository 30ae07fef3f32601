"""keyreg's gossipsub changes, unit-tested on the router with a stand-in pubsub (no network).

The multi-process tests (tests/p2p/test_e2e.py) and bench/gossip.py run the same code over real
libp2p connections; these pin each rule on its own: flood publish of our own messages, no IWANT
for a message being validated, IDONTWANT to mesh and origin on arrival, and publishes dropped at
send time once the peer has said IDONTWANT.
"""

from __future__ import annotations

import hashlib
from typing import Any

import trio
import trio.testing
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from keyreg.config import P2PConfig
from keyreg.p2p.router import KeyregPubsub, build_router, message_id

TOPIC = "keyreg/test"
ME, A, B, C, D = (ID(hashlib.sha256(bytes([i])).digest()[:20]) for i in range(5))


class FakePubsub:
    """What the router reads of its pubsub: ids, topic peers, peers, seen and validating sets."""

    def __init__(self) -> None:
        self.my_id = ME
        self.peer_topics = {TOPIC: {A, B, C, D}}
        self.peers = {A: None, B: None, C: None, D: None}
        self.validating: set[bytes] = set()
        self.seen: set[bytes] = set()
        self.seen_messages = self
        self.sent: list[tuple[ID, rpc_pb2.RPC, bool]] = []

    def has(self, msg_id: bytes) -> bool:  # seen_messages.has
        return msg_id in self.seen

    def is_validating(self, msg_id: bytes | None) -> bool:
        return msg_id in self.validating

    def get_message_id(self, msg: rpc_pb2.Message) -> bytes:
        return message_id(msg)


def router_with(flood: bool = True) -> tuple[Any, FakePubsub]:
    router = build_router(P2PConfig(flood_publish=flood))
    pubsub = FakePubsub()
    router.pubsub = pubsub  # type: ignore[assignment]
    router.mesh[TOPIC] = {A, B}
    for p in (A, B, C, D):
        router.peer_protocol[p] = PROTOCOL_ID_V12
    router.send_rpc = lambda peer, rpc, priority=False: pubsub.sent.append((peer, rpc, priority))  # type: ignore[method-assign]
    return router, pubsub


def test_own_messages_flood_to_every_topic_peer_forwards_use_the_mesh() -> None:
    router, _ = router_with()
    own = set(router._get_peers_to_send([TOPIC], ME, ME))
    assert own == {A, B, C, D}  # C and D are outside our mesh
    forwarded = set(router._get_peers_to_send([TOPIC], A, C))
    assert forwarded == {B}  # mesh minus forwarder and origin
    router.dont_send_message_ids[B] = {b"m"}
    assert set(router._get_peers_to_send([TOPIC], A, C, b"m")) == set()


def test_flood_publish_off_publishes_to_the_mesh_only() -> None:
    router, _ = router_with(flood=False)
    assert set(router._get_peers_to_send([TOPIC], ME, ME)) == {A, B}


def test_no_iwant_for_a_message_being_validated_or_seen() -> None:
    router, pubsub = router_with()
    validating, seen, unknown = (hashlib.sha256(bytes([i])).digest() for i in range(3))  # ids: sha256
    pubsub.validating.add(validating)
    pubsub.seen.add(seen)
    wanted: list[list[bytes]] = []

    async def emit_iwant(ids: list[bytes], peer: ID) -> None:
        wanted.append(list(ids))

    router.emit_iwant = emit_iwant
    ihave = rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=[validating, seen, unknown])
    trio.run(router.handle_ihave, ihave, C)
    assert wanted == [[unknown]]


def test_idontwant_goes_to_every_topic_peer_but_the_forwarder() -> None:
    router, pubsub = router_with()
    del pubsub.peers[D]  # subscribed but no longer connected: not told
    router.announce_idontwant(b"id", [TOPIC], A, C)  # from A (mesh), originated by C (not mesh)
    told = {peer for peer, rpc, priority in pubsub.sent if list(rpc.control.idontwant[0].messageIDs) == [b"id"]}
    assert told == {B, C}
    assert all(priority for _, _, priority in pubsub.sent)


class Conn:
    def __init__(self, peer: ID) -> None:
        self.peer_id = peer


class Stream:
    def __init__(self, peer: ID) -> None:
        self.muxed_conn = Conn(peer)


def test_publishes_the_peer_no_longer_wants_are_dropped_at_send_time(monkeypatch: Any) -> None:
    written: list[rpc_pb2.RPC] = []

    async def write(self: Any, stream: Any, rpc: rpc_pb2.RPC) -> bool:
        written.append(rpc)
        return True

    monkeypatch.setattr(Pubsub, "write_msg", write)
    router, _ = router_with()
    pubsub = KeyregPubsub.__new__(KeyregPubsub)  # only the fields write_msg reads
    pubsub.router = router
    pubsub._msg_id_constructor = message_id
    pubsub.unwanted_skipped = 0
    m1, m2 = rpc_pb2.Message(data=b"one"), rpc_pb2.Message(data=b"two")
    router.dont_send_message_ids[A] = {message_id(m1)}

    assert trio.run(pubsub.write_msg, Stream(A), rpc_pb2.RPC(publish=[m1, m2]))
    assert [list(r.publish) for r in written] == [[m2]]
    assert trio.run(pubsub.write_msg, Stream(A), rpc_pb2.RPC(publish=[m1], senderRecord=b"r"))
    assert len(written) == 1  # nothing left but the sender record: not sent
    with_control = rpc_pb2.RPC(publish=[m1])
    with_control.control.graft.add(topicID=TOPIC)
    assert trio.run(pubsub.write_msg, Stream(A), with_control)
    assert len(written) == 2
    assert not written[1].publish
    assert written[1].control.graft[0].topicID == TOPIC
    assert trio.run(pubsub.write_msg, Stream(B), rpc_pb2.RPC(publish=[m1]))  # B never said IDONTWANT
    assert list(written[2].publish) == [m1]
    assert pubsub.unwanted_skipped == 3


def test_messages_in_validation_are_capped_per_forwarder_and_in_all(monkeypatch: Any) -> None:
    """Upstream starts a task per received message; each waits for validation holding its bytes."""
    from libp2p import new_host
    from libp2p.crypto.secp256k1 import create_new_key_pair

    release = trio.Event()
    started: list[ID] = []

    async def validating(self: Any, forwarder: ID, msg: rpc_pb2.Message) -> None:  # upstream's part
        started.append(forwarder)
        await release.wait()

    monkeypatch.setattr(Pubsub, "push_msg", validating)
    pubsub = KeyregPubsub(
        new_host(key_pair=create_new_key_pair()),
        build_router(P2PConfig()),
        msg_id_constructor=message_id,
        max_validating_per_peer=2,
        max_validating=3,
    )

    def msg(i: int) -> rpc_pb2.Message:
        return rpc_pb2.Message(data=b"m%d" % i, topicIDs=[TOPIC], seqno=b"%d" % i, signature=b"s")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(5):  # A sends 5 at once: 2 are validated, 3 dropped unjudged
                nursery.start_soon(pubsub.push_msg, A, msg(i))
            await trio.testing.wait_all_tasks_blocked()
            assert started == [A, A]
            for i in range(5, 8):  # B: one fits under the total of 3
                nursery.start_soon(pubsub.push_msg, B, msg(i))
            await trio.testing.wait_all_tasks_blocked()
            assert started == [A, A, B]
            assert pubsub.overload_dropped == 3 + 2
            release.set()
        assert not pubsub._validating
        assert not pubsub._validating_by_peer  # nothing left behind once judged
        await pubsub.push_msg(C, msg(9))  # room again
        assert started[-1] == C

    trio.run(main)


def test_an_ignored_message_is_neither_forwarded_nor_penalised_nor_cached() -> None:
    """Review H2: the "ignore" verdict (KeyregPubsub.ignore) next to upstream's boolean validator.

    A validator that cannot judge a message for reasons of its own node's state says "ignore": the
    message is dropped (not delivered, not forwarded) and marked seen, its forwarder is not
    penalised (P4), and no verdict is cached for the next forwarder's copy. A plain False still
    penalises and is cached, as upstream does.
    """
    from libp2p import new_host
    from libp2p.crypto.secp256k1 import create_new_key_pair

    pubsub = KeyregPubsub(
        new_host(key_pair=create_new_key_pair()),
        build_router(P2PConfig()),
        msg_id_constructor=message_id,
        strict_signing=False,
    )
    scorer = pubsub.router.scorer  # type: ignore[attr-defined]
    delivered: list[bytes] = []

    async def validator(forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if msg.data.startswith(b"ignore"):
            pubsub.ignore(msg)
            return False
        return msg.data.startswith(b"accept")

    pubsub.set_topic_validator(TOPIC, validator, True)
    pubsub.notify_subscriptions = lambda msg: delivered.append(msg.data)  # type: ignore[method-assign]

    def msg(data: bytes) -> rpc_pb2.Message:
        return rpc_pb2.Message(data=data, topicIDs=[TOPIC], seqno=data, from_id=A.to_bytes())

    def invalid(peer: ID) -> float:
        return float(scorer.get_score_stats(peer, TOPIC)["invalid_messages"])

    async def main() -> None:
        ignored = msg(b"ignore me")
        await pubsub.push_msg(A, ignored)
        assert pubsub.ignored == 1
        assert invalid(A) == 0
        assert pubsub.seen_messages.has(message_id(ignored))  # further copies cost nothing
        assert pubsub.validation_cache.get(message_id(ignored)) is None
        assert not pubsub._ignoring  # consumed
        await pubsub.push_msg(B, ignored)  # another forwarder's copy: dropped as seen, unpenalised
        assert invalid(B) == 0
        rejected = msg(b"reject me")
        await pubsub.push_msg(B, rejected)
        assert invalid(B) > 0
        cached = pubsub.validation_cache.get(message_id(rejected))
        assert cached is not None
        assert not cached.is_valid
        assert delivered == []

    trio.run(main)
