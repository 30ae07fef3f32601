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
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, PROTOCOL_ID_V13, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub, ValidationCache, ValidationResult
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.pubsub.utils import safe_bytes_from_hex

from ..config import P2PConfig

# Score thresholds (normative for keyreg nodes, see docs/p2p.md). P4 counts invalid messages,
# decays by 10% per heartbeat, and weighs 1 each: a peer must send ~20 invalid messages in quick
# succession to be ignored, ~50 to be disconnected; an honest peer with an occasional gap recovers.
INVALID_WEIGHT = 1.0
INVALID_CAP = 1000.0
INVALID_DECAY = 0.9
PUBLISH_THRESHOLD = -20.0  # below: its messages are dropped before validation
GOSSIP_THRESHOLD = -10.0  # below: no IHAVE/IWANT exchange with it
GRAYLIST_THRESHOLD = -50.0  # below: disconnected and banned for a while (keyreg.p2p.service)
# Messages at least this large announce IDONTWANT to the mesh as soon as they arrive (see
# KeyregPubsub.push_msg); for smaller ones the announcement costs about as much as a duplicate.
IDONTWANT_MIN_BYTES = 16 * 1024
MAX_IDONTWANT_PER_PEER = 256  # message ids remembered per peer (upstream: 10)
# Upstream forgets every IDONTWANT at each heartbeat (1 s); validating a large batch under load
# takes about that long, so the IDONTWANT was often gone when the forward it should stop came.
IDONTWANT_KEEP_HEARTBEATS = 10


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
    """GossipSub with keyreg's changes: equivocation hashes, IDONTWANT on arrival, flood publish,
    and no IWANT for a message being validated.

    Upstream keeps up to 1,000 whole messages (up to 1 MB each) for the equivocation check; a hash
    is enough. Upstream sends IDONTWANT when it forwards a message, i.e. after validation, which
    in keyreg means after ingesting the batch: by then every mesh peer has validated and forwarded
    its own copy, so each node still received every large message once per mesh peer (4x the
    bytes, and each copy parsed). Here the IDONTWANT goes out on arrival, before validation
    (:meth:`announce_idontwant`, called by :class:`KeyregPubsub`), and none at forwarding time.

    Flood publish (``flood_publish``, go-libp2p's default): our own messages go to every peer
    subscribed to the topic whose score allows it, not only to the mesh. A peer outside the
    publisher's mesh otherwise learns a batch only once mesh peers have validated and forwarded it
    (several copies, none stopped by IDONTWANT since it had none yet) or from an IHAVE.

    Upstream answers an IHAVE with an IWANT for every id not yet *seen*, and marks a message seen
    only after validation: each IHAVE that arrived while a large batch was being validated fetched
    it once more (bench/gossip.py measured ~2.4 extra copies per message per node). A message whose
    validation is running counts as seen here (go-libp2p marks it seen before validating).
    """

    _heartbeats = 0
    flood_publish = True

    def _prune_idontwant_entries(self) -> None:
        self._heartbeats += 1
        if self._heartbeats % IDONTWANT_KEEP_HEARTBEATS == 0:
            super()._prune_idontwant_entries()

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Iterable[str]) -> None:
        return  # sent on arrival instead (announce_idontwant); our own publishes need none

    def announce_idontwant(self, msg_id: bytes, topic_ids: Iterable[str], forwarder: ID, origin: ID) -> None:
        """Tell every peer subscribed to the topic, but the forwarder, not to send us ``msg_id``.

        Not only the mesh: a mesh is not always symmetric (a peer may count us in its mesh while
        we do not count it in ours), and with flood publish the origin's copy to us may still be
        queued when a forwarder's copy arrives first. An IDONTWANT is a few dozen bytes.
        """
        peers: set[ID] = set()
        pubsub = self.pubsub
        if pubsub is not None:
            for topic in topic_ids:
                peers.update(pubsub.peer_topics.get(topic, ()))
            peers.intersection_update(pubsub.peers)
            if origin in pubsub.peers:
                peers.add(origin)
        peers.discard(forwarder)
        if not peers:
            return
        # No signed peer record in this RPC: the receiver would verify its signature for nothing.
        rpc = rpc_pb2.RPC()
        rpc.control.idontwant.add().messageIDs.append(msg_id)
        for peer in peers:
            if self.peer_protocol.get(peer) in (PROTOCOL_ID_V12, PROTOCOL_ID_V13):
                self.send_rpc(peer, rpc, priority=True)

    def _get_peers_to_send(
        self, topic_ids: Iterable[str], msg_forwarder: ID, origin: ID, msg_id: bytes | None = None
    ) -> Iterable[ID]:
        pubsub = self.pubsub
        if not self.flood_publish or pubsub is None or origin != pubsub.my_id or msg_forwarder != origin:
            yield from super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id)
            return
        peers: set[ID] = set(self.direct_peers)
        for topic in topic_ids:
            peers.update(pubsub.peer_topics.get(topic, ()))
        peers.discard(origin)
        # publish() still drops peers below the publish threshold (score gate) or disconnected.
        yield from peers

    async def handle_ihave(self, ihave_msg: rpc_pb2.ControlIHave, sender_peer_id: ID) -> None:
        is_validating = getattr(self.pubsub, "is_validating", None)
        if is_validating is not None:
            ids = [m for m in ihave_msg.messageIDs if not is_validating(safe_bytes_from_hex(m))]
            if len(ids) < len(ihave_msg.messageIDs):
                ihave_msg = rpc_pb2.ControlIHave(topicID=ihave_msg.topicID, messageIDs=ids)
        await super().handle_ihave(ihave_msg, sender_peer_id)

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

# Ids marked "ignore" and not yet consumed (each is consumed by its own validation; one left by a
# validation that never finished is forgotten, oldest first, past this many).
MAX_IGNORING = 4096


class MessageIgnored(Exception):  # a verdict, not an error
    """The "ignore" verdict (gossipsub v1.1): not forwarded, not delivered, and not penalised."""


class _VerdictCache(ValidationCache):
    """Upstream's cache of verdicts by message id, minus "ignore": an ignored message has no
    verdict that holds for the next forwarder (it depended on this node's state), so none is kept."""

    def __init__(self, ignoring: OrderedDict[bytes, bool], ttl: int, max_size: int) -> None:
        super().__init__(ttl, max_size)
        self.ignoring = ignoring

    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        if not result.is_valid and msg_id in self.ignoring:
            return
        super().put(msg_id, result)


UNSIGNED_LOG_INTERVAL_S = 10.0  # at most one log line per this many seconds for dropped unsigned messages


class RateLimitedLog:
    """Logs at most one line per ``interval_s``, saying how many occurrences it stands for.

    For events any peer can cause at will (a dropped message): each is worth knowing about, but a
    line per occurrence would let a peer flood the log.
    """

    def __init__(self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.total = 0
        self._pending = 0
        self._last = -math.inf

    def info(self, fmt: str, *args: object) -> None:
        """Count one occurrence; log it (with the count since the last line) unless one was logged lately."""
        self.total += 1
        self._pending += 1
        now = self.clock()
        if now - self._last < self.interval_s:
            return
        self._last = now
        count, self._pending = self._pending, 0
        self.logger.info(fmt + " (%d such since the last line)", *args, count)


class KeyregPubsub(Pubsub):
    """Pubsub with a read loop that cannot take the node down, per-peer admission, and dedupe.

    Upstream lets a protobuf ``DecodeError`` (any peer can send one) escape the stream handler,
    which cancels the swarm and with it every connection. Here a broken inbound stream costs only
    that peer: it is penalised and its stream reset.

    Upstream marks a message seen only after validation, so every copy that arrives while the
    first is being validated (each mesh peer forwards one) is validated again: a whole batch
    decoded and ingested once per copy. Here a copy whose id is being validated is dropped: the
    verdict depends only on the bytes (ids are content hashes), except the forwarder's rate limit,
    which is therefore checked before (``admit``) and never cached as the message's verdict.

    Messages in validation are capped per forwarder and in all (``max_validating_per_peer``,
    ``max_validating``): upstream starts a task per received message, and each waits its turn
    holding its bytes, so a peer within its message rate could still pile up memory.

    Messages must be signed by their origin (StrictSign, docs/p2p.md): upstream drops an unsigned
    one silently (debug level); here it is logged at info, at most once per
    ``UNSIGNED_LOG_INTERVAL_S`` (so a peer cannot flood the log), and counts against the forwarder
    as an invalid message. A signed message whose signature does not verify is still dropped by
    upstream (checking it here too would verify every message twice).

    A validator's verdict has three values, as in gossipsub v1.1: the boolean of the topic
    validator (accept: forward; reject: drop and penalise the forwarder, P4) plus "ignore", which
    the validator announces with :meth:`ignore` before returning False: dropped, not forwarded,
    not penalised, and not cached as a verdict. It is for messages whose verdict depends on this
    node's own state (a budget, a lagging head), which another honest node may judge otherwise:
    penalising for those would let an attacker make honest nodes graylist each other. An ignored
    message is marked seen, so further copies cost nothing (go-libp2p marks a message seen before
    validating it).

    Invariant: ``_validating`` holds the ids of messages whose push_msg task is running, no more;
    ``_ignoring`` only ids marked during their own validation (consumed by validate_msg).
    """

    def __init__(self, *args: Any, max_validating_per_peer: int = 32, max_validating: int = 256, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._validating: set[bytes] = set()
        # Messages admitted but not yet judged, each holding up to max_message_bytes: at most
        # max_validating_per_peer per forwarder and max_validating in all. Beyond, a message is
        # dropped unjudged (not seen, not penalised: another peer's copy, an IHAVE or sync brings
        # it again); upstream starts a task per message, so nothing else bounds them.
        self.max_validating_per_peer = max_validating_per_peer
        self.max_validating = max_validating
        self._validating_by_peer: dict[ID, int] = {}
        self.overload_dropped = 0
        self.admit: Callable[[ID], bool] | None = None  # per-forwarder rate limit (Gossip.admit)
        self.duplicates_dropped = 0
        self.unwanted_skipped = 0  # queued publishes not sent: the peer said IDONTWANT meanwhile
        self.unsigned_log = RateLimitedLog(log, UNSIGNED_LOG_INTERVAL_S)  # .total: unsigned messages dropped
        self._ignoring: OrderedDict[bytes, bool] = OrderedDict()
        self.ignored = 0  # messages dropped with the "ignore" verdict
        cache = self.validation_cache
        self.validation_cache = _VerdictCache(self._ignoring, cache.ttl, cache.max_size)

    def ignore(self, msg: rpc_pb2.Message) -> None:
        """Called by a topic validator that is about to return False: the verdict is "ignore"."""
        self._ignoring[self._msg_id_constructor(msg)] = True
        if len(self._ignoring) > MAX_IGNORING:
            self._ignoring.popitem(last=False)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Upstream's validation; a False marked by :meth:`ignore` raises MessageIgnored instead
        of ValidationError, which upstream's push_msg would count against the forwarder."""
        try:
            await super().validate_msg(msg_forwarder, msg)
        except ValidationError:
            if self._ignoring and self._ignoring.pop(self._msg_id_constructor(msg), False):
                raise MessageIgnored from None
            raise

    async def write_msg(self, stream: Any, rpc_msg: rpc_pb2.RPC) -> bool:
        """Drop, at send time, published messages the peer has said it does not want.

        Upstream checks IDONTWANT only when a message is queued; a forwarded batch can wait in a
        peer's queue behind others while that peer receives it elsewhere and says IDONTWANT.
        """
        if rpc_msg.publish:
            unwanted = getattr(self.router, "dont_send_message_ids", {}).get(stream.muxed_conn.peer_id)
            if unwanted:
                keep = [m for m in rpc_msg.publish if self._msg_id_constructor(m) not in unwanted]
                if len(keep) < len(rpc_msg.publish):
                    self.unwanted_skipped += len(rpc_msg.publish) - len(keep)
                    if not keep and not rpc_msg.subscriptions and not rpc_msg.HasField("control"):
                        return True  # nothing left worth sending (a sender record alone is not)
                    trimmed = rpc_pb2.RPC()
                    trimmed.CopyFrom(rpc_msg)
                    del trimmed.publish[:]
                    trimmed.publish.extend(keep)
                    rpc_msg = trimmed
        return await super().write_msg(stream, rpc_msg)

    def is_validating(self, msg_id: bytes | None) -> bool:
        """True while a copy of ``msg_id`` is being validated (counts as seen for IHAVE)."""
        return msg_id in self._validating

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:
            await super().push_msg(msg_forwarder, msg)
            return
        if self.is_peer_blacklisted(msg_forwarder):
            return
        scorer = getattr(self.router, "scorer", None)
        if self.strict_signing and not msg.signature:
            self.unsigned_log.info(
                "dropped an unsigned gossip message forwarded by %s (keyreg requires StrictSign)", msg_forwarder
            )
            if scorer is not None:
                for topic in msg.topicIDs:
                    scorer.on_invalid_message(msg_forwarder, topic)
            return
        msg_id = self._msg_id_constructor(msg)
        if msg_id in self._validating or self.seen_messages.has(msg_id):
            self.duplicates_dropped += 1
            return
        topics = list(msg.topicIDs)
        if scorer is not None and not scorer.allow_publish(msg_forwarder, topics):
            # Below the publish threshold a peer's messages are dropped unvalidated (as upstream
            # does), but each one still costs it as an invalid message: a peer that keeps sending
            # sinks to the graylist threshold and is disconnected (P2PService._score_watchdog)
            # instead of hovering just under the publish threshold for as long as it likes.
            for topic in topics:
                scorer.on_invalid_message(msg_forwarder, topic)
            return
        if self.admit is not None and not self.admit(msg_forwarder):
            if scorer is not None:
                for topic in topics:
                    scorer.on_invalid_message(msg_forwarder, topic)
            return
        by_peer = self._validating_by_peer
        mine = by_peer.get(msg_forwarder, 0)
        if mine >= self.max_validating_per_peer or len(self._validating) >= self.max_validating:
            self.overload_dropped += 1
            return
        self._validating.add(msg_id)
        by_peer[msg_forwarder] = mine + 1
        try:
            if len(msg.data) >= IDONTWANT_MIN_BYTES and isinstance(self.router, KeyregGossipSub):
                self.router.announce_idontwant(msg_id, msg.topicIDs, msg_forwarder, ID(msg.from_id))
            await super().push_msg(msg_forwarder, msg)
        except MessageIgnored:
            self.ignored += 1
            self.seen_messages.add(msg_id)
        finally:
            self._validating.discard(msg_id)
            left = by_peer[msg_forwarder] - 1
            if left:
                by_peer[msg_forwarder] = left
            else:
                del by_peer[msg_forwarder]

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
    router = KeyregGossipSub(
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
        max_idontwant_messages=MAX_IDONTWANT_PER_PEER,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )
    router.flood_publish = config.flood_publish
    return router


def message_id(msg: rpc_pb2.Message) -> bytes:
    """Content-addressed message id: a replayed payload is a duplicate whoever re-signs it."""
    return hashlib.sha256(msg.data).digest()
