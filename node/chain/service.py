"""The node's chain services: the watcher and the anchoring service, plus their health status.

Enabled only when ``[chain] rpc_url`` is set. Nothing here ever blocks gossip or the API: chain
I/O runs in worker threads with bounded timeouts, and when the RPC endpoint is down both loops
keep their work, retry with exponential backoff (``retry_max_s`` at most) and say so in the
status shown under ``services.chain`` in ``GET /v1/health``::

    {"ok": false, "rpc": "down", "last_error": "...", "retry_in_s": 4.0, "queue_depth": 3, ...}

The relayer (the account that pays for anchoring) is an Ethereum V3 keyfile named by
``[chain] relayer_keystore``, unlocked with ``KEYREG_RELAYER_PASSWORD`` or the file named by
``KEYREG_RELAYER_PASSWORD_FILE``. Without it the node only watches.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import trio
from eth_keyfile import decode_keyfile_json

from ..config import Config
from ..core.eip712 import domain_separator
from ..core.errors import ChainError, ConfigError
from ..registry import Registry
from .anchoring import AnchoringService, AnchorQueue, chain_dir
from .batches import BatchTracker
from .client import ChainClient, ChainUnavailable
from .watcher import Watcher

log = logging.getLogger("keyreg.chain")


def load_relayer_key(config: Config) -> bytes | None:
    """The relayer's private key from its V3 keyfile, or None if none is configured."""
    path = config.chain.relayer_keystore
    if not path:
        return None
    keyfile = Path(path)
    if not keyfile.is_absolute():
        keyfile = config.data_dir / keyfile
    password = os.environ.get("KEYREG_RELAYER_PASSWORD")
    pw_file = os.environ.get("KEYREG_RELAYER_PASSWORD_FILE")
    if password is None and pw_file:
        try:
            password = Path(pw_file).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"cannot read KEYREG_RELAYER_PASSWORD_FILE: {exc.strerror}") from None
    if password is None:
        raise ConfigError(
            "the relayer keystore needs a password: set KEYREG_RELAYER_PASSWORD or KEYREG_RELAYER_PASSWORD_FILE"
        )
    try:
        doc = json.loads(keyfile.read_text())
        return bytes(decode_keyfile_json(doc, password.encode()))
    except OSError as exc:
        raise ConfigError(f"cannot read the relayer keystore {keyfile}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"cannot unlock the relayer keystore {keyfile}: wrong password or damaged file") from None


class ChainService:
    """Owns the client, the batch tracker, the watcher, the anchoring service and their status."""

    def __init__(self, registry: Registry, config: Config, relayer_key: bytes | None = None) -> None:
        c = config.chain
        self.registry = registry
        self.config = config
        self.client = ChainClient(
            c.rpc_url,
            config.network.registry,
            timeout_s=c.rpc_timeout_s,
            relayer_key=relayer_key,
            max_answer_bytes=c.rpc_max_answer_bytes,
            max_in_flight=c.rpc_max_in_flight,
        )
        self.tracker = BatchTracker(registry)
        self.watcher = Watcher(
            self.client,
            registry,
            self.tracker,
            confirmations=c.confirmations,
            start_block=c.start_block,
            state_path=chain_dir(config.data_dir) / "watcher.json",
        )
        self.anchoring_status: dict[str, Any] = {}
        self.anchoring = AnchoringService(
            self.client,
            registry,
            self.tracker,
            AnchorQueue(config.data_dir),
            epoch_s=c.anchor_epoch_s,
            epoch_events=c.anchor_epoch_events,
            poll_interval_s=c.poll_interval_s,
            backoff_base_s=min(1.0, c.poll_interval_s),
            backoff_max_s=c.retry_max_s,
            status=self.anchoring_status,
        )
        self.rpc = "connecting"
        self.ready = False  # chain id and contract checked since the last successful contact
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.retry_in_s: float | None = None
        self.failures = 0

    def status(self) -> dict[str, Any]:
        """JSON-able health of the chain services (for /v1/health and `keyreg chain status`)."""
        a = self.anchoring_status
        rpc = "down" if self.rpc == "ok" and a.get("rpc") == "down" and a.get("anchor_error") else self.rpc
        return {
            "ok": rpc == "ok" and self.last_error is None,
            "rpc": rpc,
            "endpoint": self.client.endpoint,
            "registry": self.client.address,
            "relayer": self.client.relayer_address,
            "last_block": self.watcher.state.head if self.watcher.state.head >= 0 else None,
            "confirmed_block": self.watcher.state.confirmed,
            "queue_depth": self.anchoring.depth(),
            "direct_requests": len(self.anchoring.queue.state.direct),
            "unanchored_heads": self.tracker.pending(),
            "last_error": self.last_error or a.get("anchor_error"),
            "retry_in_s": self.retry_in_s if self.retry_in_s is not None else a.get("anchor_retry_in_s"),
            "last_ok_at": self.last_ok_at,
            "last_batch": self.anchoring.queue.state.last_batch,
            "last_direct": self.anchoring.queue.state.results[-1] if self.anchoring.queue.state.results else None,
            "watcher": self.watcher.status(),
        }

    async def _check_chain(self) -> None:
        chain_id = await self.client.chain_id()
        if chain_id != self.config.network.chain_id:
            raise ChainError(
                f"the RPC endpoint serves chain id {chain_id} but this node is configured for "
                f"{self.config.network.chain_id}: fix [network] chain_id or [chain] rpc_url"
            )
        if not await self.client.has_code():
            raise ChainError(
                f"no contract at {self.client.address} on chain {chain_id}: deploy it (`keyreg chain deploy`) "
                "or fix [network] registry"
            )
        # The contract must sign over the same EIP-712 domain as this node: a registry of another
        # protocol version (a v1 KeyRegistry), or another contract, would refuse every direct anchor
        # and its events would mean something else.
        try:
            theirs = await self.client.domain_separator()
        except ChainUnavailable:
            raise
        except ChainError as exc:
            raise ChainError(
                f"the contract at {self.client.address} is not a keyreg registry ({exc.message}): "
                "fix [network] registry"
            ) from None
        ours = domain_separator(self.registry.domain)
        if theirs != ours:
            version = self.registry.domain.version
            raise ChainError(
                f"the contract at {self.client.address} signs over another EIP-712 domain than this node "
                f"(protocol version {version}): deploy KeyRegistry v{version} (`keyreg chain deploy`) "
                "or fix [network] registry"
            )
        self.ready = True

    async def watch_forever(self) -> None:
        """Poll the chain; on failure keep going with exponential backoff."""
        c = self.config.chain
        while True:
            try:
                if not self.ready:
                    await self._check_chain()
                await self.watcher.poll()
                self.rpc, self.last_error, self.retry_in_s, self.failures = "ok", None, None, 0
                self.last_ok_at = time.time()
                if self.anchoring_status.get("rpc") == "down":
                    self.anchoring_status["rpc"] = "ok"
                delay = c.poll_interval_s
            except ChainError as exc:
                self.failures += 1
                self.ready = self.ready and not isinstance(exc, ChainUnavailable)
                self.rpc = "down" if isinstance(exc, ChainUnavailable) else "error"
                self.last_error = exc.message
                delay = min(c.retry_max_s, c.poll_interval_s * 2 ** (self.failures - 1))
                self.retry_in_s = delay
                log.warning("chain watcher: %s (retrying in %.1fs)", exc.message, delay)
            await trio.sleep(delay)

    async def anchor_forever(self) -> None:
        """Run the anchoring service once the chain has been checked."""
        while not self.ready:
            await trio.sleep(min(0.2, self.config.chain.poll_interval_s))
        await self.anchoring.run()

    async def run(self, task_status: trio.TaskStatus[ChainService] = trio.TASK_STATUS_IGNORED) -> None:
        """Start both loops; ``task_status.started(self)`` once the tracker listens to the registry."""
        self.tracker.attach()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.watch_forever)
                nursery.start_soon(self.anchor_forever)
                task_status.started(self)
        finally:
            self.tracker.detach()
