"""The node process: one trio nursery running the API servers and every service.

``open_node(config)`` opens the store and the registry, starts the public API, the loopback admin
API, the rotation scheduler and the optional services, and yields a :class:`Node`;
``run_node(config)`` runs one until SIGINT/SIGTERM.

Plugging a service in (p2p, chain, ...): add a module with an async starter and name it in
:data:`OPTIONAL_SERVICES`::

    async def start_p2p(node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        ...                                   # set up; may read node.config / node.registry
        node.register_status("p2p", lambda: {"ok": True, "peers": 3})   # shown in /v1/health
        task_status.started()                 # the node waits for this before serving
        await trio.sleep_forever()            # run until the node's nursery is cancelled

A starter whose module does not exist yet is skipped; a starter that decides it is disabled by
config calls ``task_status.started()`` and returns. Starters run in list order, after the store
and registry are open and before the API servers start listening.

Every service runs under the node's :class:`~node.supervisor.Supervisor`: a failure after it first
started is logged with its cause and the service is started again after a capped exponential
backoff, while the API keeps serving; its state is under ``services.<name>.supervisor`` in
``/v1/health`` and in the ``keyreg_service_*`` metrics. A failure before it first started (a bad
config) stops the node at start-up with the error.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client.core import CounterMetricFamily

from .api import views
from .api.admin import check_admin_host, create_admin_app
from .api.app import ApiContext, StatusProvider, create_app
from .api.server import serve_api
from .config import Config
from .core.errors import KeyregError
from .core.log import signatures_recovered
from .keys.handout import Handout, handout_for
from .keys.keystore import Keystore, Password
from .registry import ConflictBudget, Registry
from .runtime import tune_gc
from .store.base import Store
from .supervisor import Supervisor, SupervisorCollector

log = logging.getLogger("keyreg.node")

# (name, module, starter function): looked up at start, skipped if the module does not exist.
OPTIONAL_SERVICES: list[tuple[str, str, str]] = [
    ("p2p", "node.p2p.service", "start_p2p"),
    ("chain", "node.chain.service", "start_chain"),
    ("gov", "node.gov.service", "start_gov"),  # after p2p (ballot gossip) and chain
]

Starter = Callable[..., Awaitable[None]]


@dataclass
class Node:
    """A running node: what services get handed."""

    config: Config
    registry: Registry
    api: ApiContext
    nursery: trio.Nursery
    supervisor: Supervisor
    keystore: Keystore | None = None
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
        """Run ``starter(self)`` under the supervisor as service ``name``, shown in /v1/health."""
        self.api.status.setdefault(name, self.supervisor.status_of(name))
        await self.supervisor.run(name, starter, self, task_status=task_status)

    def current_signing_key(self) -> Handout:
        """The key the service signs with now and the keys verifiers accept (node/keys/handout.py)."""
        return handout_for(self.registry, self.keystore, self.config.rotation.publish_ahead_s, views.key_jwk)


class CostCollector:
    """What inputs cost this process, for /metrics: ``keyreg_signatures_recovered_total`` (every
    signature recovery in the node process; sync pulls on helper processes count there)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "keyreg_signatures_recovered", "Signatures this node process tried to recover", value=signatures_recovered()
        )


def open_store(config: Config) -> Store:
    """The SQL store for config.store_url, or the in-memory store until the SQL store exists."""
    if importlib.util.find_spec("node.store.sql") is not None:
        from .store.sql import SqlStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = SqlStore(config.store_url)
        return store
    from .store.memory import MemoryStore

    log.warning("node.store.sql is not available: using the in-memory store (nothing survives a restart)")
    return MemoryStore()


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


def _load_starter(module: str, attr: str) -> Starter | None:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # the parent package does not exist yet
        return None
    if spec is None:
        return None
    starter = getattr(importlib.import_module(module), attr, None)
    if starter is None:  # the module is there but not plugged in yet
        log.warning("%s has no %s(node, task_status) starter: service not started", module, attr)
    return starter


@asynccontextmanager
async def open_node(
    config: Config,
    password: Password | None = None,
    store: Store | None = None,
    services: list[tuple[str, str, str]] | None = None,
) -> AsyncIterator[Node]:
    """Start a node; leaving the block stops every service and closes the store."""
    check_admin_host(config.api.admin_host)
    store = store if store is not None else await trio.to_thread.run_sync(open_store, config)
    registry: Registry | None = None
    try:
        registry = await trio.to_thread.run_sync(
            lambda: Registry(
                config.domain,
                store,
                config.limits,
                recovery=config.ingest.recovery,
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
        supervisor = Supervisor(config.supervisor)
        ctx = ApiContext(registry, config)
        ctx.collectors += [SupervisorCollector(supervisor), CostCollector()]
        async with trio.open_nursery() as nursery:
            node = Node(config, registry, ctx, nursery, supervisor, keystore)
            for name, module, attr in OPTIONAL_SERVICES if services is None else services:
                starter = _load_starter(module, attr)
                if starter is not None:
                    await nursery.start(node.supervise, name, starter)
                    node.services.append(name)
            if config.rotation.enabled:
                from .keys.scheduler import run_rotation_scheduler

                await nursery.start(node.supervise, "rotation", run_rotation_scheduler)
                node.services.append("rotation")
            # The public API: an HTTP/1.1 front end that frames every request, then the app
            # (node/api/server.py, docs/adr/0006-api-serving.md, docs/adr/0018-http-front-end.md).
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
