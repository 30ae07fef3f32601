"""The ballot gossip topic: signed ballots travel between nodes so any of them can relay.

Topic ``/keyreg/ballots/1/<chainId>/<registry>`` on the node's gossipsub (the p2p service's
``Pubsub``; nothing in node.p2p changes). One message = one ballot in the wire format of
keyreg.gov.ballots. The topic validator decodes, checks the signature and dedups through the
relay (:meth:`BallotRelay.accept`, which charges the forwarder's hourly budget,
``[gov] ballots_per_peer_per_hour``): valid new ballots are forwarded and scheduled for a
fallback relay; malformed, badly signed, duplicate-key, unknown-DAO or over-budget ballots are
dropped (False), which gossipsub's scoring counts against the forwarder. Ballots a client gave this node are
published here once accepted.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core.errors import KeyregError
from .ballots import Ballot
from .relay import BallotRelay

log = logging.getLogger("keyreg.gov.gossip")


def ballot_topic(chain_id: int, registry: str) -> str:
    """The gossip topic for ballots on one network."""
    return f"/keyreg/ballots/1/{chain_id}/{registry.lower()}"


class BallotGossip:
    """Validator, subscriber and publisher of the ballot topic."""

    def __init__(self, pubsub: Any, topic: str, relay: BallotRelay) -> None:
        self.pubsub = pubsub
        self.topic = topic
        self.relay = relay
        self._my_id = pubsub.my_id
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](256)
        self.stats = {"in_valid": 0, "in_invalid": 0, "out": 0, "out_dropped": 0}

    async def validate(self, forwarder: Any, msg: Any) -> bool:
        """Gossipsub validator: True forwards, False drops (and penalises the forwarder)."""
        if forwarder == self._my_id:
            return True  # our own publish: accepted already
        try:
            result = self.relay.accept(bytes(msg.data), "gossip", client=f"peer:{forwarder}")
        except KeyregError as exc:
            log.debug("dropping gossiped ballot: %s", exc.message)
            self.stats["in_invalid"] += 1
            return False
        except Exception:  # a fault must not reach py-libp2p's validator loop: drop and say why
            log.warning("dropping a gossiped ballot after a fault", exc_info=True)
            self.stats["in_invalid"] += 1
            return False
        self.relay.enqueue(result)
        self.stats["in_valid"] += 1
        return True

    def publish_soon(self, ballot: Ballot) -> None:
        """Relay listener: queue a client's ballot for publishing (never blocks)."""
        try:
            self._out_send.send_nowait(ballot.encode())
        except trio.WouldBlock:
            self.stats["out_dropped"] += 1  # the submitting node still relays it itself

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and publish until cancelled."""
        self.pubsub.set_topic_validator(self.topic, self.validate, True)
        subscription = await self.pubsub.subscribe(self.topic)
        self.relay.on_accepted.append(self.publish_soon)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, subscription)
                nursery.start_soon(self._publish_loop)
                task_status.started()
        finally:
            self.relay.on_accepted.remove(self.publish_soon)

    async def _drain(self, subscription: Any) -> None:
        async for _ in subscription:  # validation did the work; keep py-libp2p's buffer empty
            pass

    async def _publish_loop(self) -> None:
        async for data in self._out_recv:
            try:
                await self.pubsub.publish(self.topic, data)
            except Exception:  # best effort: the submitting node relays the ballot itself anyway
                log.warning("publishing a ballot failed", exc_info=True)
                self.stats["out_dropped"] += 1
                continue
            self.stats["out"] += 1
