"""The p2p service: host + gossip + sync in one nursery, started by the node process.

``run_p2p(registry, config)`` is the only entry point the node needs. It reports a
:class:`P2PService` through ``task_status.started`` once the host listens, the topic is
subscribed and the listen multiaddrs are written to ``<data_dir>/p2p.addr``.

Background tasks: bootstrap (dial configured peers, redial them when they drop), the start-up
backfill (a full sync pull from each bootstrap peer once connected), the periodic anti-entropy sync
with a random peer, targeted syncs requested by the gossip validator, and the score watchdog
that disconnects and bans peers whose gossipsub score falls below the graylist threshold.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from ..config import Config
from ..registry import Registry
from .gossip import Gossip
from .host import build_host, listen_addrs, load_or_create_key, parse_peer_addr, write_addr_file
from .router import GRAYLIST_THRESHOLD, KeyregPubsub, build_router, message_id
from .sync import SyncProtocol, pick_peer
from .wire import topic_name

log = logging.getLogger(__name__)


BAN_S = 600.0
MAX_BANS = 1024
REDIAL_S = 3.0
DIAL_TIMEOUT_S = 5.0
TARGETED_MIN_GAP_S = 1.0
MAX_TARGETED_PEERS = 64
MAX_TARGETED_SUBJECTS = 4096
RPC_OVERHEAD = 64 * 1024


@dataclass
class P2PService:
    """A running p2p layer: identity, addresses, components and health status."""

    host: IHost
    pubsub: Pubsub
    gossip: Gossip
    sync: SyncProtocol
    topic: str
    peer_id: str
    addrs: list[str]
    config: Config
    bans: OrderedDict[ID, float] = field(default_factory=OrderedDict)
    ban_log: list[dict[str, Any]] = field(default_factory=list)
    _targeted: dict[ID, set[bytes]] = field(default_factory=dict)
    _targeted_bell: Any = None

    # ------------------------------------------------------------------ peers

    def connected_peers(self) -> list[ID]:
        return [p for p in self.host.get_connected_peers() if p not in self.bans]

    def is_banned(self, peer: ID) -> bool:
        until = self.bans.get(peer)
        if until is None:
            return False
        if until < time.monotonic():
            del self.bans[peer]
            self.pubsub.remove_from_blacklist(peer)
            return False
        return True

    def ban(self, peer: ID, why: str) -> None:
        """Disconnect a peer and refuse it for BAN_S seconds."""
        if peer in self.bans:
            return
        log.warning("banning peer %s for %ss: %s", peer, BAN_S, why)
        self.bans[peer] = time.monotonic() + BAN_S
        if len(self.bans) > MAX_BANS:
            self.bans.popitem(last=False)
        self.ban_log.append({"peer": str(peer), "why": why, "at": time.time()})
        del self.ban_log[:-32]
        self.pubsub.add_to_blacklist(peer)
        self.pubsub.manager.run_task(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        try:
            await self.host.disconnect(peer)
        except Exception:  # already gone
            log.debug("disconnect %s failed", peer, exc_info=True)

    async def connect(self, addr: str) -> ID:
        """Dial a peer by its /p2p/ multiaddr."""
        info = parse_peer_addr(addr)
        with trio.fail_after(DIAL_TIMEOUT_S):
            await self.host.connect(info)
        return info.peer_id

    # ------------------------------------------------------------------ sync scheduling

    def request_targeted(self, peer: ID, wants: dict[bytes, int]) -> None:
        """Called by the gossip validator: pull these subjects from ``peer`` soon."""
        if self.is_banned(peer):
            return
        subjects = self._targeted.get(peer)
        if subjects is None:
            if len(self._targeted) >= MAX_TARGETED_PEERS:
                return
            subjects = self._targeted[peer] = set()
        room = MAX_TARGETED_SUBJECTS - len(subjects)
        subjects.update(list(wants)[: max(room, 0)])
        with contextlib.suppress(trio.WouldBlock):
            self._targeted_bell.send_nowait(None)

    async def _targeted_loop(self, bell: trio.MemoryReceiveChannel[None]) -> None:
        last: dict[ID, float] = {}
        while True:
            if not self._targeted:
                await bell.receive()
                continue
            peer, subjects = next(iter(self._targeted.items()))
            del self._targeted[peer]
            wait = last.get(peer, -1e9) + TARGETED_MIN_GAP_S - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            last[peer] = trio.current_time()
            if len(last) > MAX_TARGETED_PEERS * 4:
                last.clear()
            # Gossip may have filled the gap meanwhile (reordered batches): only pull what still lags.
            await self.sync.pull(peer, sorted(subjects), kind="targeted")

    async def _periodic_loop(self) -> None:
        interval = self.config.p2p.sync_interval_s
        while True:
            await trio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311  # jitter only
            peer = pick_peer(self.connected_peers())
            if peer is not None:
                await self.sync.pull(peer, kind="periodic")

    async def _bootstrap_loop(self) -> None:
        """Dial bootstrap peers; backfill from each once; redial them whenever they drop."""
        infos: list[PeerInfo] = [parse_peer_addr(a) for a in self.config.p2p.bootstrap]
        backfilled: set[ID] = set()
        while True:
            for info in infos:
                if self.is_banned(info.peer_id):
                    continue
                if info.peer_id not in self.host.get_connected_peers():
                    try:
                        with trio.fail_after(DIAL_TIMEOUT_S):
                            await self.host.connect(info)
                    except Exception as exc:  # dial errors of many kinds; we retry later
                        log.debug("bootstrap dial %s failed: %r", info.peer_id, exc)
                        continue
                if info.peer_id not in backfilled:
                    result = await self.sync.pull(info.peer_id, kind="backfill")
                    if result.ok:
                        backfilled.add(info.peer_id)
            if not infos:
                return
            await trio.sleep(REDIAL_S)

    async def _score_watchdog(self) -> None:
        scorer = getattr(self.pubsub.router, "scorer", None)
        if scorer is None:
            return
        while True:
            await trio.sleep(self.config.p2p.heartbeat_s)
            for peer in list(self.host.get_connected_peers()):
                if peer not in self.bans and scorer.score(peer, [self.topic]) < GRAYLIST_THRESHOLD:
                    self.ban(peer, "gossip score below the graylist threshold")

    # ------------------------------------------------------------------ health

    def peer_scores(self) -> dict[str, float]:
        scorer = getattr(self.pubsub.router, "scorer", None)
        if scorer is None:
            return {}
        return {str(p): round(scorer.score(p, [self.topic]), 3) for p in self.host.get_connected_peers()}

    def status(self) -> dict[str, Any]:
        """The p2p part of /v1/health."""
        last = self.sync.last
        head = self.sync.registry.tree_head  # published at each commit: no lock, no refresh loop
        return {
            "peer_id": self.peer_id,
            "addrs": self.addrs,
            "topic": self.topic,
            "root": "0x" + head[0].hex(),
            "subjects": head[1],
            "peers": len(self.connected_peers()),
            # Peers known to be subscribed to the topic, and those in our gossipsub mesh (what a
            # publish reaches; it fills at the first heartbeat after subscriptions are exchanged).
            "topic_peers": len(self.pubsub.peer_topics.get(self.topic, ())),
            "mesh_peers": len(getattr(self.pubsub.router, "mesh", {}).get(self.topic, ())),
            "peer_scores": self.peer_scores(),
            "banned": [{"peer": str(p)} for p in self.bans],
            "bans": list(self.ban_log),
            "gossip": self.gossip.status(),
            "messages_in": self.gossip.stats.messages_in,
            "messages_out": self.gossip.stats.messages_out,
            "dropped": self.gossip.stats.dropped,
            "sync": self.sync.status(),
            "last_sync": None if last is None else last.to_dict(),
        }


async def run_p2p(
    registry: Registry, config: Config, task_status: trio.TaskStatus[P2PService] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the p2p layer until cancelled; ``task_status.started`` gets the :class:`P2PService`."""
    p2p = config.p2p
    key_pair = load_or_create_key(config.data_dir)
    host = build_host(p2p, key_pair)
    router = build_router(p2p)
    pubsub = KeyregPubsub(
        host,
        router,
        msg_id_constructor=message_id,
        max_inbound_rpc_size=p2p.max_message_bytes + RPC_OVERHEAD,
        validation_timeout=120.0,
        seen_ttl=300,
        cache_size=1024,
        max_validating_per_peer=p2p.max_validating_per_peer,
        max_validating=p2p.max_validating,
    )
    topic = topic_name(config.network.chain_id, config.network.registry)
    async with (
        host.run([multiaddr.Multiaddr(p2p.listen)]),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        bell_send, bell_recv = trio.open_memory_channel[None](1)
        service: P2PService
        gossip = Gossip(registry, p2p, pubsub, topic, on_gap=lambda peer, wants: service.request_targeted(peer, wants))
        sync = SyncProtocol(
            host,
            registry,
            p2p,
            ban=lambda peer, why: service.ban(peer, why),
            is_banned=lambda peer: service.is_banned(peer),
        )
        addrs = listen_addrs(host)
        service = P2PService(host, pubsub, gossip, sync, topic, str(host.get_id()), addrs, config)
        service._targeted_bell = bell_send
        sync.register()
        try:
            async with trio.open_nursery() as nursery:
                await _start_tasks(nursery, service, bell_recv, task_status)
        finally:
            # Close connections explicitly: when py-libp2p's services are merely cancelled, dialed
            # sockets can stay open (ResourceWarning) and peers see no orderly close.
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                await host.close()


async def _start_tasks(
    nursery: trio.Nursery,
    service: P2PService,
    bell_recv: trio.MemoryReceiveChannel[None],
    task_status: trio.TaskStatus[P2PService],
) -> None:
    config, addrs, topic = service.config, service.addrs, service.topic
    await nursery.start(service.gossip.run)
    write_addr_file(config.data_dir, addrs)
    nursery.start_soon(service._bootstrap_loop)
    nursery.start_soon(service._periodic_loop)
    nursery.start_soon(service._targeted_loop, bell_recv)
    nursery.start_soon(service._score_watchdog)
    log.info("p2p listening on %s, topic %s", ", ".join(addrs), topic)
    task_status.started(service)
