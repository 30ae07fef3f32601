"""The node process and its composition root: every service is built and wired here, and only here.

``open_node(config)`` opens the store and the registry, builds the services the config enables
(:func:`node_services`), starts each under the node's :class:`~node.supervisor.Supervisor`, then
the public API and the loopback admin API, and yields the :class:`Node`; ``run_node(config)`` runs
one until SIGINT/SIGTERM.

Services get their dependencies at construction: the registry, the config, the relayer key (loaded
once here for the chain and governance services), the p2p layer's pubsub (for the ballot topic).
No service imports this module or looks another up; what one needs of another passes through the
functions below. A service is a starter ``starter(*, task_status)``: it sets up, calls
``task_status.started()`` (the node waits for this before serving) and runs until cancelled.

Under the supervisor, a failure after a service first started is logged with its cause and the
service is started again after a capped exponential backoff, while the API keeps serving; its
state is under ``services.<name>.supervisor`` in ``/v1/health`` and in the ``keyreg_service_*``
metrics. A failure before it first started (a bad config) stops the node at start-up.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client.core import CounterMetricFamily

from .api import views
from .api.admin import check_admin_host, create_admin_app
from .api.app import ApiContext, StatusProvider, create_app
from .api.server import serve_api
from .chain.service import ChainService, load_relayer_key
from .config import Config
from .core.errors import KeyregError
from .core.log import signatures_recovered
from .gov.service import GovService
from .keys.handout import Handout, handout_for
from .keys.keystore import Keystore, Password
from .keys.scheduler import RotationCollector, RotationScheduler
from .p2p.service import P2PService, run_p2p
from .registry import ConflictBudget, Registry
from .runtime import tune_gc
from .store.base import Store
from .store.sql import SqlStore
from .supervisor import Supervisor, SupervisorCollector

log = logging.getLogger("keyreg.node")

Starter = Callable[..., Awaitable[None]]  # called as starter(task_status=...)
Services = Callable[["Node"], list[tuple[str, Starter]]]


@dataclass
class Node:
    """A running node: its parts, and the services' state the root passes between them."""

    config: Config
    registry: Registry
    api: ApiContext
    supervisor: Supervisor
    keystore: Keystore | None = None
    relayer_key: bytes | None = field(default=None, repr=False)  # [chain] relayer_keystore, unlocked
    p2p: P2PService | None = None  # while the p2p layer runs
    api_url: str = ""
    admin_url: str = ""
    services: list[str] = field(default_factory=list)

    def register_status(self, name: str, provider: StatusProvider) -> None:
        """Show ``provider()`` under ``services.<name>`` in GET /v1/health (with the service's
        supervision state if it is supervised)."""
        self.api.status[name] = self.supervisor.wrap_status(name, provider)

    async def supervise(
        self, name: str, starter: Starter, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``starter`` under the supervisor as service ``name``, shown in /v1/health."""
        self.api.status.setdefault(name, self.supervisor.status_of(name))
        await self.supervisor.run(name, starter, task_status=task_status)

    def current_signing_key(self) -> Handout:
        """The key the service signs with now and the keys verifiers accept (node/keys/handout.py)."""
        return handout_for(self.registry, self.keystore, self.config.rotation.publish_ahead_s, views.key_jwk)


def node_services(node: Node) -> list[tuple[str, Starter]]:
    """The services ``node.config`` enables, in start order (governance gossips on p2p, so after it).

    Building the rotation scheduler checks its policy: a policy that cannot work stops start-up.
    """
    config = node.config
    services: list[tuple[str, Starter]] = []
    if config.p2p.enabled:
        services.append(("p2p", partial(run_p2p_layer, node)))
    if config.chain.rpc_url:
        services.append(("chain", partial(run_chain_services, node)))
        services.append(("gov", partial(run_governance, node)))
    if config.rotation.enabled:
        scheduler = RotationScheduler(config, node.registry, node.keystore, node.current_signing_key)
        node.register_status("rotation", scheduler.status)
        node.api.collectors.append(RotationCollector(scheduler))
        services.append(("rotation", scheduler.run))
    return services


async def run_p2p_layer(node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The p2p layer (host, gossip, sync: node/p2p/service.py); ``node.p2p`` while it runs."""
    try:
        async with trio.open_nursery() as nursery:
            p2p: P2PService = await nursery.start(run_p2p, node.registry, node.config)
            node.p2p = p2p
            node.register_status("p2p", p2p.status)
            task_status.started()
    finally:
        node.p2p = None


async def run_chain_services(node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The chain watcher and anchoring (node/chain/service.py), a fresh service per start."""
    service = ChainService(node.registry, node.config, node.relayer_key)
    node.register_status("chain", service.status)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        task_status.started()


async def run_governance(node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The governance indexer, relay and ballot topic (node/gov/service.py), served by the API's
    /v1/gov routes while it runs; ballots gossip on the p2p layer running when it starts."""
    service = GovService(node.registry, node.config, node.relayer_key)
    node.register_status("gov", service.status)
    node.api.gov = service
    try:
        await service.run(node.p2p.pubsub if node.p2p is not None else None, task_status=task_status)
    finally:
        node.api.gov = None


class CostCollector:
    """What inputs cost this process, for /metrics: ``keyreg_signatures_recovered_total`` (every
    signature recovery in the node process; its signature workers count their own)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "keyreg_signatures_recovered", "Signatures this node process tried to recover", value=signatures_recovered()
        )


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hypercorn_config(host: str, port: int, config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_bind(host, port)]
    hc.accesslog = None
    hc.loglevel = "WARNING"
    hc.keep_alive_timeout = 30
    hc.keep_alive_max_requests = 100_000  # hypercorn's default (1000) closes busy verifier connections
    hc.graceful_timeout = 2
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


def read_admin_token(data_dir: Path) -> str | None:
    path = data_dir / "admin.token"
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


@asynccontextmanager
async def open_node(
    config: Config,
    password: Password | None = None,
    store: Store | None = None,
    services: Services = node_services,
) -> AsyncIterator[Node]:
    """Start a node; leaving the block stops every service and closes the store.

    ``store`` defaults to the SQL store at ``config.store_url``; ``services`` builds the services
    to run from the node's parts (:func:`node_services`: the ones the config enables).
    """
    check_admin_host(config.api.admin_host)
    if store is None:
        store = await trio.to_thread.run_sync(partial(SqlStore, config.store_url, limits=config.limits))
    registry: Registry | None = None
    try:
        registry = await trio.to_thread.run_sync(
            lambda: Registry(
                config.domain,
                store,
                config.limits,
                signature_workers=config.ingest.signature_workers,
                conflicts=ConflictBudget(config.ingest.conflicts_per_subject, config.ingest.conflict_window_s),
                reject_audits_per_batch=config.ingest.reject_audits_per_batch,
            )
        )
        tune_gc()  # the loaded read model out of the cyclic GC's scans; fewer young collections
        keystore = None
        ks_path = config.data_dir / "keystore"
        if (ks_path / "keystore.json").exists():
            keystore = Keystore.open(ks_path)
            if password is not None:
                await trio.to_thread.run_sync(keystore.unlock, password)
        relayer_key = await trio.to_thread.run_sync(load_relayer_key, config) if config.chain.rpc_url else None
        supervisor = Supervisor(config.supervisor)
        ctx = ApiContext(registry, config)
        ctx.collectors += [SupervisorCollector(supervisor), CostCollector()]
        node = Node(config, registry, ctx, supervisor, keystore, relayer_key)
        async with trio.open_nursery() as nursery:
            for name, starter in services(node):
                await nursery.start(node.supervise, name, starter)
                node.services.append(name)
            # The public API: an HTTP/1.1 front end that frames every request, then the app
            # (node/api/server.py, docs/adr/0021-h11-front-end.md).
            binds = await nursery.start(
                serve_api, create_app(ctx), _hypercorn_config(config.api.host, config.api.port, config), config.api
            )
            node.api_url = binds[0]
            token = read_admin_token(config.data_dir)
            if token is not None:
                admin = create_admin_app(token, node.current_signing_key)
                cfg = _hypercorn_config(config.api.admin_host, config.api.admin_port, config)
                node.admin_url = (await nursery.start(serve, admin, cfg))[0]
            else:
                log.warning("no %s: the admin endpoint is off (run `keyreg init`)", config.data_dir / "admin.token")
            _write_runfile(config.data_dir, node)
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
                with suppress(OSError):
                    (config.data_dir / "node.json").unlink()
    finally:
        if registry is not None:
            await trio.to_thread.run_sync(registry.close)
        await trio.to_thread.run_sync(store.close)


def _write_runfile(data_dir: Path, node: Node) -> None:
    """<data_dir>/node.json: where this node listens (lets tools find ports chosen by the OS)."""
    if not data_dir.is_dir():
        return
    info = {"pid": os.getpid(), "api": node.api_url, "admin": node.admin_url, "services": node.services}
    tmp = data_dir / ".node.json.tmp"
    tmp.write_text(json.dumps(info))
    tmp.replace(data_dir / "node.json")


async def _serve_until_signal(config: Config, password: Password | None) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config, password) as node:
            log.info(
                "keyreg node up: api %s, admin %s, services %s, %d subjects",
                node.api_url,
                node.admin_url or "off",
                ", ".join(node.services) or "none",
                len(node.registry.states),
            )
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                break
    log.info("keyreg node stopped")


def run_node(config: Config, password: Password | None = None) -> None:
    """Run a node in this process until SIGINT or SIGTERM."""
    try:
        trio.run(_serve_until_signal, config, password)
    except BaseExceptionGroup as group:
        # A service failing at start-up surfaces through the nursery: re-raise a lone keyreg error
        # plainly so the CLI prints its code and message instead of a traceback.
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], KeyregError):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
