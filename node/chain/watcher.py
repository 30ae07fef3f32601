"""The chain watcher: index the registry contract's events, with confirmations, across reorgs.

Each poll:

1. **Reorg check.** The watcher remembers the hashes of the recent blocks it scanned (the
   unconfirmed window plus a margin). It re-reads its highest scanned block; if the hash changed
   (or the block is gone, e.g. an RPC node restarted from an older state), it walks down the
   remembered blocks to the highest one whose hash still matches, forgets everything above it
   (remembered hashes and pending logs) and scans again from there. New blocks are linked by
   ``parentHash`` to the remembered ones, which catches a reorg that happened between two reads.
2. **Scan** ``[scanned + 1, head]`` with ``eth_getLogs`` (in ranges of ``max_range`` blocks).
   Logs in blocks deeper than ``confirmations`` are final; the rest wait in ``pending``.
3. **Feed** final logs to the registry: ``HeadAnchored`` -> ``Registry.record_anchors`` (mode
   "direct"); ``HeadReplaced`` (recoverRotation or supersede) -> mode "recovery";
   ``BatchAnchored`` -> the heads the root commits, via :class:`BatchTracker`
   (mode "batch"); ``GovernanceRevoked`` -> ``Registry.add_governance_revocations``.

Hostile logs. Anyone can put bytes into a registry log, and a hostile RPC endpoint anything into
any field, so the client decodes each log on its own (keyreg.chain.client.decode_registry_log): a
log that does not decode, or holds a value out of its real range, is skipped, counted and kept
among the last ``SKIPPED_KEPT`` in ``status()["skipped"]`` (``services.chain.watcher`` in
``/v1/health``) with a warning in the log; the rest of its range is fed. A range whose
``eth_getLogs`` keeps failing for a reason other than an unreachable endpoint (an error answer,
an answer over the byte cap) is split in halves down to one block, and a single block that fails
``MAX_BLOCK_FAILURES`` times in a row is skipped and recorded the same way: the same range is
never retried forever.

Invariants:
- ``confirmed`` is the highest block whose logs were all fed; nothing above it was fed.
- ``scanned >= confirmed``; ``pending`` holds exactly the logs of blocks in (confirmed, scanned].
- ``hashes`` holds hashes of scanned blocks only, and they form one chain.

A reorg deeper than ``confirmations`` (below ``confirmed``) cannot be undone in the registry
(anchors are append-only facts there); the watcher rewinds its own cursor, re-feeds what the new
chain says (earliest position wins in fork choice), counts it in ``deep_reorgs`` and reports it.
The cursor is saved in ``<data_dir>/chain/watcher.json`` so a restart resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..core.errors import ChainError
from ..core.records import GovernanceRevocation
from ..registry import Registry
from ..store.base import AnchorRecord
from .batches import BatchTracker
from .client import ChainClient, ChainLog, ChainUnavailable

log = logging.getLogger("keyreg.chain.watcher")

HASH_MARGIN = 32  # remembered blocks below the confirmation depth
MAX_UNMATCHED = 64  # confirmed batch roots kept for a later match
SKIPPED_KEPT = 20  # the latest skipped logs shown in status (all are counted)
MAX_BLOCK_FAILURES = 5  # consecutive eth_getLogs failures of a one-block range before it is skipped


@dataclass
class WatcherState:
    """The watcher's progress, as reported in the node's status."""

    confirmed: int = -1
    scanned: int = -1
    head: int = -1
    reorgs: int = 0
    deep_reorgs: int = 0
    anchors_fed: int = 0
    batches_seen: int = 0
    governance_fed: int = 0
    skipped_logs: int = 0  # logs that did not decode or were out of range
    skipped_blocks: int = 0  # blocks whose logs could not be read at all


class Watcher:
    """Polls the chain and feeds confirmed registry events into the Registry."""

    def __init__(
        self,
        client: ChainClient,
        registry: Registry,
        tracker: BatchTracker,
        *,
        confirmations: int = 2,
        start_block: int = 0,
        state_path: Path | None = None,
        max_range: int = 2000,
    ) -> None:
        self.client = client
        self.registry = registry
        self.tracker = tracker
        self.confirmations = max(0, confirmations)
        self.start_block = start_block
        self.state_path = state_path
        self.max_range = max_range
        self.state = WatcherState(confirmed=start_block - 1, scanned=start_block - 1)
        self.hashes: dict[int, bytes] = {}
        self.pending: list[ChainLog] = []
        self.unmatched: dict[bytes, ChainLog] = {}  # confirmed batch roots our tree has not had (yet)
        self.on_batch_confirmed: list[Callable[[bytes, int], None]] = []  # (root, block)
        self.skipped: deque[dict[str, Any]] = deque(maxlen=SKIPPED_KEPT)
        self._range = max_range  # the eth_getLogs span in use: halved on failures, doubled back
        self._block_failures = 0  # consecutive failures of the one-block range at scanned + 1
        self.skip_block: int | None = None  # a one-block range given up on by _narrow: scanned as empty
        self._load()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable watcher cursor %s", self.state_path)
            return
        if data.get("registry", "").lower() != self.client.address.lower():
            return  # another contract (a redeployed devnet): start over
        confirmed = int(data.get("confirmed", self.start_block - 1))
        self.state.confirmed = self.state.scanned = max(confirmed, self.start_block - 1)
        self.state.reorgs = int(data.get("reorgs", 0))
        self.state.deep_reorgs = int(data.get("deep_reorgs", 0))
        self.hashes = {int(k): bytes.fromhex(v) for k, v in data.get("hashes", {}).items() if int(k) <= confirmed}

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = {
            "registry": self.client.address,
            "confirmed": self.state.confirmed,
            "reorgs": self.state.reorgs,
            "deep_reorgs": self.state.deep_reorgs,
            "hashes": {str(n): h.hex() for n, h in self.hashes.items() if n <= self.state.confirmed},
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------ one poll

    async def poll(self) -> int:
        """One round: reorg check, scan, feed. Returns the number of records fed."""
        head = await self.client.block_number()
        self.state.head = head
        await self._check_reorg(head)
        fed = 0
        while self.state.scanned < head:
            start = self.state.scanned + 1
            end = min(head, start + self._range - 1)
            try:
                scanned = await self._scan(start, end, head)
            except ChainUnavailable:
                raise  # the endpoint is down or slow: retrying the same range later is right
            except ChainError as exc:
                if not self._narrow(start, end, exc):
                    raise
                continue
            self._block_failures = 0
            self._range = min(self.max_range, self._range * 2)
            if not scanned:
                break  # a reorg was found mid-scan; the next poll starts from the rolled-back point
        fed += await self._feed(head - self.confirmations)
        fed += await self._retry_unmatched()
        return fed

    async def _check_reorg(self, head: int) -> None:
        top = self.state.scanned
        if top < self.start_block or top not in self.hashes:
            if head < top:  # the chain is shorter than what we scanned and we hold no hash to compare
                await self._rollback(max(head, self.start_block - 1))
            return
        block = await self.client.block(top)
        if block is not None and block.hash == self.hashes[top]:
            return
        # Walk down the remembered blocks to the highest one still on the chain.
        ancestor = self.start_block - 1
        for n in sorted(self.hashes, reverse=True):
            if n > top:
                continue
            b = await self.client.block(n)
            if b is not None and b.hash == self.hashes[n]:
                ancestor = n
                break
        else:
            ancestor = min(self.hashes, default=self.start_block) - 1
        await self._rollback(ancestor)

    async def _rollback(self, ancestor: int) -> None:
        self.state.reorgs += 1
        log.warning("chain reorg: rolling back from block %d to %d", self.state.scanned, ancestor)
        if ancestor < self.state.confirmed:
            self.state.deep_reorgs += 1
            log.error(
                "reorg deeper than %d confirmations: blocks %d..%d were already fed; re-indexing them",
                self.confirmations,
                ancestor + 1,
                self.state.confirmed,
            )
            self.state.confirmed = ancestor
        self.state.scanned = ancestor
        self.hashes = {n: h for n, h in self.hashes.items() if n <= ancestor}
        self.pending = [lg for lg in self.pending if lg.block_number <= ancestor]
        self._save()

    def _narrow(self, start: int, end: int, exc: ChainError) -> bool:
        """After a scan of [start, end] failed: True to go on at once with a smaller range (or past
        a skipped block), False to raise (the service backs off, the next poll retries)."""
        if end > start:
            self._range = max(1, (end - start + 1) // 2)
            log.warning("chain watcher: blocks %d..%d: %s; trying %d blocks at a time", start, end, exc.message,
                        self._range)  # fmt: skip
            return True
        self._block_failures += 1
        if self._block_failures < MAX_BLOCK_FAILURES:
            return False
        self._block_failures = 0
        self.state.skipped_blocks += 1
        self._record_skip({"block": start, "error": f"eth_getLogs failed {MAX_BLOCK_FAILURES} times: {exc.message}"})
        self.skip_block = start
        return True

    def _record_skip(self, where: dict[str, Any]) -> None:
        self.skipped.append(where)
        log.warning("chain watcher: skipped %s", where)

    async def _scan(self, start: int, end: int, head: int) -> bool:
        """Fetch logs and headers for [start, end]; False if a reorg interrupted it."""
        skipped: list[dict[str, Any]] = []
        if self.skip_block == start == end:
            logs: list[ChainLog] = []  # its logs could not be read: recorded by _narrow
        else:
            logs = await self.client.logs(start, end, skipped)
        self.skip_block = None
        # Remember hashes only near the tip: deeper blocks are final by the confirmation rule.
        first_tracked = max(start, head - self.confirmations - HASH_MARGIN)
        for n in range(first_tracked, end + 1):
            b = await self.client.block(n)
            if b is None:
                return False
            prev = self.hashes.get(n - 1)
            if prev is not None and b.parent_hash != prev:
                # Block n-1 changed since we read it: forget this scan; the next poll's reorg
                # check finds the common ancestor.
                self.hashes = {k: h for k, h in self.hashes.items() if k <= self.state.scanned}
                return False
            self.hashes[n] = b.hash
        for lg in logs:
            known = self.hashes.get(lg.block_number)
            if known is not None and known != lg.block_hash:
                # The logs came from a block that has since been replaced: rescan.
                self.hashes = {k: h for k, h in self.hashes.items() if k <= self.state.scanned}
                return False
        for where in skipped:
            self.state.skipped_logs += 1
            self._record_skip(where)
        self.pending.extend(logs)
        self.state.scanned = end
        floor = end - self.confirmations - HASH_MARGIN
        self.hashes = {n: h for n, h in self.hashes.items() if n >= floor}
        return True

    async def _feed(self, safe: int) -> int:
        safe = min(safe, self.state.scanned)
        if safe <= self.state.confirmed:
            return 0
        ready = [lg for lg in self.pending if lg.block_number <= safe]
        self.pending = [lg for lg in self.pending if lg.block_number > safe]
        anchors: list[AnchorRecord] = []
        governance: list[GovernanceRevocation] = []
        for lg in ready:
            if lg.name == "HeadAnchored":
                a = AnchorRecord(
                    subject=bytes(lg.args["subject"]),
                    seq=int(lg.args["seq"]),
                    digest=bytes(lg.args["digest"]),
                    position=lg.position,
                    mode="direct",
                    block_number=lg.block_number,
                    tx_hash=lg.tx_hash,
                )
                if self.registry.anchored_position(a.digest) != a.position:
                    anchors.append(a)
            elif lg.name == "HeadReplaced":
                # The contract replaced its head at this seq: a recovery rotation (recoverRotation)
                # or a controller-signed event over an operator-signed update (supersede, ADR 0028
                # section 9). Either way the new head outranks the earlier direct anchor in fork
                # choice (keyreg.registry.anchor_rank, mode "recovery"): the contract allows it only
                # with the authority that wins at the head.
                anchors.append(
                    AnchorRecord(
                        subject=bytes(lg.args["subject"]),
                        seq=int(lg.args["seq"]),
                        digest=bytes(lg.args["digest"]),
                        position=lg.position,
                        mode="recovery",
                        block_number=lg.block_number,
                        tx_hash=lg.tx_hash,
                    )
                )
            elif lg.name == "BatchAnchored":
                anchors.extend(self._batch_anchors(lg))
            elif lg.name == "GovernanceRevoked":
                if len(lg.args["keyId"]) > self.registry.limits.max_key_id_chars:
                    # longer than any key id this registry accepts: it can match no key
                    self.state.skipped_logs += 1
                    self._record_skip({"block": lg.block_number, "logIndex": lg.log_index,
                                       "error": "GovernanceRevoked: keyId longer than any key id"})  # fmt: skip
                    continue
                governance.append(
                    GovernanceRevocation(
                        subject=bytes(lg.args["subject"]),
                        key_id=str(lg.args["keyId"]),
                        effective_at=int(lg.args["effectiveAt"]),
                        reason_hash=bytes(lg.args["reasonHash"]),
                        proposal_id=int(lg.args["proposalId"]),
                        governor=bytes.fromhex(str(lg.args["governor"])[2:]),
                        block_number=lg.block_number,
                        tx_hash=lg.tx_hash,
                    )
                )
        if anchors:
            await trio.to_thread.run_sync(self.registry.record_anchors, anchors)
            self.state.anchors_fed += len(anchors)
        if governance:
            await trio.to_thread.run_sync(self.registry.add_governance_revocations, governance)
            self.state.governance_fed += len(governance)
        self.state.confirmed = safe
        self._save()
        return len(anchors) + len(governance)

    async def _retry_unmatched(self) -> int:
        """Match confirmed roots again: gossip may have brought the heads they commit since."""
        if not self.unmatched:
            return 0
        anchors: list[AnchorRecord] = []
        for root, lg in list(self.unmatched.items()):
            if self.tracker.knows(root):
                del self.unmatched[root]
                anchors.extend(self._batch_anchors(lg, retry=True))
        if anchors:
            await trio.to_thread.run_sync(self.registry.record_anchors, anchors)
            self.state.anchors_fed += len(anchors)
        return len(anchors)

    def _batch_anchors(self, lg: ChainLog, retry: bool = False) -> list[AnchorRecord]:
        root = bytes(lg.args["root"])
        if not retry:
            self.state.batches_seen += 1
            for callback in self.on_batch_confirmed:
                callback(root, lg.block_number)
        leaves = self.tracker.match(root)
        if leaves is None:
            # Not (yet) a root of our tree: keep the newest few and retry after later commits.
            self.unmatched[root] = lg
            while len(self.unmatched) > MAX_UNMATCHED:
                del self.unmatched[next(iter(self.unmatched))]
            return []
        return [
            AnchorRecord(
                subject=leaf.subject,
                seq=leaf.seq,
                digest=leaf.head,
                position=lg.position,
                mode="batch",
                block_number=lg.block_number,
                tx_hash=lg.tx_hash,
                root=root,
            )
            for leaf in leaves
        ]

    def status(self) -> dict[str, Any]:
        """Progress for /v1/health and `keyreg chain status`."""
        s = self.state
        return {
            "head": s.head,
            "scanned": s.scanned,
            "confirmed": s.confirmed,
            "confirmations": self.confirmations,
            "pending_logs": len(self.pending),
            "reorgs": s.reorgs,
            "deep_reorgs": s.deep_reorgs,
            "anchors_fed": s.anchors_fed,
            "batches_seen": s.batches_seen,
            "batches_unmatched": len(self.unmatched),
            "governance_fed": s.governance_fed,
            "skipped_logs": s.skipped_logs,
            "skipped_blocks": s.skipped_blocks,
            "skipped": list(self.skipped),
        }
