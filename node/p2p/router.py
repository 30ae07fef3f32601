"""Gossipsub construction: parameters, peer scoring, and one memory fix.

py-libp2p 0.8 defaults that we override (docs/p2p.md, "Gossipsub parameters"):
- ``heartbeat_interval`` 120 s -> ``P2PConfig.heartbeat_s`` (about 1 s);
- adaptive gossip off: it would stretch the heartbeat back to 30-60 s when the mesh looks unhealthy;
- built-in spam protection off: it caps 10 messages/s per peer *after* validation and also throttles
  our own publishes; we rate-limit per peer in the validator instead, before any work;
- scoring: ``ScoreParams`` with a positive invalid-message weight and negative thresholds, so an
  invalid message costs its forwarder score and a persistently bad peer is ignored, then dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

from ..config import P2PConfig

# Score thresholds (normative for keyreg nodes, see docs/p2p.md). P4 counts invalid messages,
# decays by 10% per heartbeat, and weighs 1 each: a peer must send ~20 invalid messages in quick
# succession to be ignored, ~50 to be disconnected; an honest peer with an occasional gap recovers.
INVALID_WEIGHT = 1.0
INVALID_CAP = 1000.0
INVALID_DECAY = 0.9
PUBLISH_THRESHOLD = -20.0  # below: its messages are dropped before validation
GOSSIP_THRESHOLD = -10.0  # below: no IHAVE/IWANT exchange with it
GRAYLIST_THRESHOLD = -50.0  # below: disconnected and banned for a while (node.p2p.service)


def score_params() -> ScoreParams:
    """Peer-score parameters: penalise invalid messages and misbehaviour, reward first deliveries."""
    return ScoreParams(
        p2_first_message_deliveries=TopicScoreParams(weight=0.05, cap=100.0, decay=0.9),
        p4_invalid_messages=TopicScoreParams(weight=INVALID_WEIGHT, cap=INVALID_CAP, decay=INVALID_DECAY),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.9,
        p5_behavior_penalty_threshold=0.0,
        publish_threshold=PUBLISH_THRESHOLD,
        gossip_threshold=GOSSIP_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD,
        accept_px_threshold=-math.inf,
    )


class KeyregGossipSub(GossipSub):
    """GossipSub that remembers a 32-byte hash per message for its equivocation check.

    Upstream keeps up to 1,000 whole messages (up to 1 MB each) for that check; a hash is enough.
    """

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        key = msg.from_id + msg.seqno
        digest = hashlib.sha256(msg.data + "\x00".join(msg.topicIDs).encode()).digest()
        seen = self.equivocation_detection.get(key)
        if seen is None:
            self.equivocation_detection[key] = digest  # type: ignore[assignment]
            return True
        if seen != digest:
            if self.scorer is not None:
                self.scorer.penalize_equivocation(ID(msg.from_id), 100.0)
            return False
        return True


log = logging.getLogger(__name__)


class KeyregPubsub(Pubsub):
    """Pubsub whose per-peer read loop cannot take the node down.

    Upstream lets a protobuf ``DecodeError`` (any peer can send one) escape the stream handler,
    which cancels the swarm and with it every connection. Here a broken inbound stream costs only
    that peer: it is penalised and its stream reset.
    """

    async def continuously_read_stream(self, stream: Any) -> None:
        try:
            await super().continuously_read_stream(stream)
        except Exception as exc:  # DecodeError and any other parse failure
            peer = stream.muxed_conn.peer_id
            log.info("dropping pubsub stream from %s: %s: %s", peer, type(exc).__name__, exc)
            scorer = getattr(self.router, "scorer", None)
            if scorer is not None:
                scorer.penalize_behavior(peer, 10.0)
            try:
                await stream.reset()
            except Exception:  # already closed
                log.debug("reset failed", exc_info=True)


def build_router(config: P2PConfig, degree: int = 4) -> GossipSub:
    """The gossipsub router with keyreg's parameters (1.2 preferred, 1.1/1.0 accepted)."""
    return KeyregGossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=degree,
        degree_low=max(1, degree - 1),
        degree_high=degree + 2,
        time_to_live=30,
        gossip_window=3,
        gossip_history=5,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=config.heartbeat_s,  # type: ignore[arg-type]  # accepts float at runtime
        prune_back_off=10,
        score_params=score_params(),
        adaptive_gossip_enabled=False,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )


def message_id(msg: rpc_pb2.Message) -> bytes:
    """Content-addressed message id: a replayed payload is a duplicate whoever re-signs it."""
    return hashlib.sha256(msg.data).digest()
