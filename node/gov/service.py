"""The node's governance service: the proposal indexer, the ballot relay and the ballot topic.

The composition root (node/app.py) builds one per start, after p2p and chain, when ``[chain]
rpc_url`` is set, and runs it under the node's supervisor. It relays with the chain relayer's key
(``[chain] relayer_keystore``, see keyreg.chain.service); without one it still indexes, accepts and
gossips ballots, and marks them ``unrelayed``. Status under ``services.gov`` in ``GET /v1/health``;
the HTTP routes are node/api/gov_routes.py.

Like every chain loop here it never blocks the API or gossip: web3 runs in worker threads with
bounded timeouts, and a down RPC endpoint means backoff and a status saying so. A fault of any
kind in one poll (not only a KeyregError) is caught, logged with its cause, counted, shown in
``services.gov`` and retried with backoff: the indexer reads what proposers wrote, and nothing
they write may stop the node (issue 13, rule 4). Limits come from ``[gov]`` (node.config.GovConfig).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from ..config import Config
from ..core.errors import ChainError, KeyregError
from ..registry import Registry
from .contracts import connect
from .gossip import BallotGossip, ballot_topic
from .indexer import GovernanceIndexer, IndexerLimits
from .recognition import Recogniser
from .relay import BallotRelay, RelayLimits

log = logging.getLogger("keyreg.gov")


class GovService:
    """Indexer + relay (+ gossip) for one node."""

    def __init__(self, registry: Registry, config: Config, relayer_key: bytes | None) -> None:
        c, g = config.chain, config.gov
        self.config = config
        self.w3 = connect(c.rpc_url, c.rpc_timeout_s)
        limits = IndexerLimits(
            max_named=g.max_named,
            max_governors=g.max_governors,
            max_proposals=g.max_proposals,
            max_resolves_per_poll=g.max_resolves_per_poll,
            resolve_retry_s=g.resolve_retry_s,
            catchup_blocks_per_poll=g.catchup_blocks_per_poll,
            max_refreshes_per_poll=g.max_refreshes_per_poll,
            refresh_every_s=g.refresh_every_s,
        )
        recogniser = Recogniser(self.w3, config.network.registry)
        self.indexer = GovernanceIndexer(self.w3, registry, recogniser, start_block=c.start_block, limits=limits)
        self.relay = BallotRelay(
            self.w3,
            config.network.chain_id,
            relayer_key,
            daos=self.indexer.dao,
            gossip_delay_s=max(2.0, 4 * c.poll_interval_s),
            limits=RelayLimits(
                gas_limit=g.relay_gas_limit,
                ballots_per_voter_per_hour=g.ballots_per_voter_per_hour,
                ballots_per_client_per_hour=g.ballots_per_client_per_hour,
                ballots_per_peer_per_hour=g.ballots_per_peer_per_hour,
                relays_per_governor_per_hour=g.relays_per_governor_per_hour,
                relays_per_hour=g.relays_per_hour,
                max_pending=g.max_pending_ballots,
            ),
        )
        self.gossip: BallotGossip | None = None
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.failures = 0
        self.faults = 0  # polls that failed with something other than a KeyregError

    async def index_forever(self) -> None:
        """Poll the governors; on failure back off exponentially (capped) and say so in status."""
        c = self.config.chain
        while True:
            try:
                await trio.to_thread.run_sync(self.indexer.poll, abandon_on_cancel=True)
                self.last_error, self.failures, self.last_ok_at = None, 0, time.time()
                delay = c.poll_interval_s
            except KeyregError as exc:
                self.failures += 1
                self.last_error = exc.message
                delay = min(c.retry_max_s, c.poll_interval_s * 2 ** (self.failures - 1))
                if not isinstance(exc, ChainError):
                    log.warning("governance indexer: %s", exc.message)
            except Exception as exc:  # a fault, not a transport error: logged with its cause, retried
                self.failures += 1
                self.faults += 1
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                delay = min(c.retry_max_s, c.poll_interval_s * 2 ** (self.failures - 1))
                log.error("governance indexer fault (retrying in %.1fs)", delay, exc_info=True)
            await trio.sleep(delay)

    def status(self) -> dict[str, Any]:
        return {
            "ok": self.last_error is None,
            "last_error": self.last_error,
            "last_ok_at": self.last_ok_at,
            "faults": self.faults,
            "indexer": self.indexer.status(),
            "relay": self.relay.status(),
            "gossip": None if self.gossip is None else {"topic": self.gossip.topic, **self.gossip.stats},
        }

    async def run(self, pubsub: Any | None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay, ballot gossip on ``pubsub`` (the node's p2p layer, if it runs) and the indexer,
        until cancelled; ``task_status.started()`` once the relay and the topic are up."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.relay.run)
                if pubsub is not None:
                    topic = ballot_topic(self.config.network.chain_id, self.config.network.registry)
                    self.gossip = BallotGossip(pubsub, topic, self.relay)
                    await nursery.start(self.gossip.run)
                nursery.start_soon(self.index_forever)
                task_status.started()
        finally:
            self.indexer.close()
