"""The anchoring service: batch anchors every epoch, direct anchors on request, retries with backoff.

**Batch anchoring.** Every epoch (``anchor_epoch_s`` seconds, or sooner once
``anchor_epoch_events`` heads are waiting) the service commits the root of the registry's sparse
Merkle tree of subject heads with one ``anchorBatch(root, count)`` transaction, whatever the
number of events, if some head is not anchored yet and that root is not on chain already (another
node in sync may have anchored the very same root). The watcher later maps the confirmed root
back to heads (node/chain/batches.py).

**Direct anchoring.** On request (``keyreg anchor SUBJECT --direct``, or :meth:`request_direct`)
the service reads the subject's anchored head from the contract and submits the subject's signed
events after it, in order, in ``anchorEvents`` transactions. The contract checks every
controller signature itself, so the relayer cannot write anything the subject did not sign; the
service refuses up front when the chain holds a different event than the local log (a conflict).

**Authority reductions of the node's own subject** (ADR 0012). Whoever submits them (the CLI,
the rotation scheduler, a script against the API), revocations, retirements, rotations and
delegations of the subject in this node's keystore are anchored directly: a registry listener
notes them, and the service queues a direct request for the subject (unless one is queued
already). New duplicity evidence of the own subject is noted the same way: when the chain holds
an operator-signed head and the controllers' event at that seq lost locally to it, the direct
anchor replaces it with ``supersede`` (ADR 0028). Only the own
subject: relaying other subjects' events would let anyone spend this node's ETH.

**Durable queue.** ``<data_dir>/chain/anchoring.json`` holds the direct requests not yet done,
the transaction in flight, the last batch and the results of recent requests; it is rewritten
atomically (temp file + rename) after every change. Other processes (the CLI) add requests by
dropping one file each into ``<data_dir>/chain/requests/`` (atomic rename), which the service
moves into its queue; so there is a single writer of ``anchoring.json``. The batch work itself
needs no queue entry: which heads are unanchored is derived from the store (recorded anchors)
on start-up. A request survives restarts and RPC outages until it is done or refused.

**Failures.** Transport failures (RPC down, timeouts, a dropped transaction) keep the work
queued and retry after an exponential backoff (``backoff_base_s`` doubling up to
``backoff_max_s``); the service never holds a lock the registry, gossip or the API needs, and
all chain I/O runs in worker threads. A contract refusal or a conflict is final for that request
and is reported in its result.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..core.eip712 import event_digest
from ..core.errors import ChainError, ConfigError, KeyregError
from ..core.log import signers_of, update_authority
from ..core.records import (
    NO_OPERATORS,
    ZERO32,
    Delegation,
    Domain,
    Inception,
    OperatorSet,
    Rotation,
    SignedEvent,
    Update,
)
from ..keys.operations import reduces_authority
from ..outcomes import Report
from ..registry import Registry
from .batches import BatchTracker
from .client import ChainClient, ChainUnavailable, NoRelayer, TransactionReverted
from .deploy import event_body, event_input

log = logging.getLogger("keyreg.chain.anchoring")

MAX_EVENTS_PER_TX = 16  # events per anchorEvents transaction (gas stays far below block limits)
MAX_RESULTS = 50
OWN_SUBJECT_REREAD_S = 5.0  # a node without its own subject yet looks for one this often (at most)


class AnchorRefused(ChainError):
    """A direct anchor that cannot be made: unknown subject, or the chain holds a different event."""

    code = "anchor_refused"


# ---------------------------------------------------------------------------------------------
# The durable queue


@dataclass
class DirectRequest:
    """A request to anchor a subject's head directly."""

    id: str
    subject: str  # 0x-hex
    requested_at: float


@dataclass
class QueueState:
    """Everything in anchoring.json."""

    direct: list[DirectRequest] = field(default_factory=list)
    inflight: dict[str, Any] | None = None
    last_batch: dict[str, Any] | None = None
    last_batch_at: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)


def chain_dir(data_dir: Path) -> Path:
    """Where the chain services keep their files."""
    return Path(data_dir) / "chain"


def enqueue_direct(data_dir: Path, subject: bytes, clock: Callable[[], float] = time.time) -> str:
    """Ask the node's anchoring service (possibly in another process) to anchor ``subject``; returns the request id."""
    req = DirectRequest(id=secrets.token_hex(8), subject="0x" + subject.hex(), requested_at=clock())
    folder = chain_dir(data_dir) / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{req.id}.tmp"
    tmp.write_text(json.dumps(asdict(req)))
    os.replace(tmp, folder / f"{req.id}.json")
    return req.id


def keystore_subject(data_dir: Path) -> bytes | None:
    """The node's own subject id from its keystore's metadata (no unlock needed), or None if it has none yet."""
    try:
        sid = json.loads((Path(data_dir) / "keystore" / "keystore.json").read_text()).get("subject")
        return bytes.fromhex(sid.removeprefix("0x")) if isinstance(sid, str) and sid else None
    except (OSError, ValueError):
        return None


def read_queue(data_dir: Path) -> QueueState:
    """The queue as last saved (for the CLI; the service keeps its own copy in memory)."""
    return AnchorQueue(data_dir).state


class AnchorQueue:
    """anchoring.json plus the requests folder; one writer (the service)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = chain_dir(data_dir)
        self.path = self.dir / "anchoring.json"
        self.requests_dir = self.dir / "requests"
        self.state = QueueState()
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.state = QueueState(
                    direct=[DirectRequest(**r) for r in raw.get("direct", [])],
                    inflight=raw.get("inflight"),
                    last_batch=raw.get("last_batch"),
                    last_batch_at=float(raw.get("last_batch_at", 0.0)),
                    results=list(raw.get("results", [])),
                )
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(f"{self.path} is unreadable ({exc}); move it aside to reset the queue") from None

    def save(self) -> None:
        """Rewrite anchoring.json atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=1))
        os.replace(tmp, self.path)

    def pick_up_requests(self) -> int:
        """Move request files dropped by other processes into the queue; returns how many."""
        if not self.requests_dir.is_dir():
            return 0
        files = sorted(self.requests_dir.glob("*.json"))
        if not files:
            return 0
        known = {r.id for r in self.state.direct}
        for f in files:
            try:
                req = DirectRequest(**json.loads(f.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("dropping malformed anchor request %s", f.name)
                req = None
            if req is not None and req.id not in known:
                self.state.direct.append(req)
        self.save()  # durable in the queue before the request files go
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)

    def add_result(self, result: dict[str, Any]) -> None:
        self.state.results = [*self.state.results[-(MAX_RESULTS - 1) :], result]


# ---------------------------------------------------------------------------------------------
# Direct anchoring: signed events -> EventInput tuples


def direct_inputs(events: Sequence[SignedEvent], start: int, domain: Domain | None = None) -> list[tuple[Any, ...]]:
    """EventInput tuples for events[start:] of one subject's log (held from seq 0).

    Updates, revocations and delegations are checked against the controller set in force before
    them, and an operator-signed update against the operator set in force; walking the log from
    the inception gives both (inceptions and rotations set them, delegations set the operators).
    Which set signed an update is read from its signatures (``domain``: the log's; default the
    one each event carries), only when an operator set is in force.
    """
    controllers: tuple[bytes, ...] = ()
    threshold = 0
    operators = NO_OPERATORS
    out = []
    for i, signed in enumerate(events):
        e = signed.event
        if i >= start:
            if isinstance(e, Update) and operators and is_operator_signed(signed, controllers, threshold, operators,
                                                                          domain):  # fmt: skip
                out.append(event_input(signed, operators.operators, operators.threshold, by_operators=True))
            else:
                out.append(event_input(signed, controllers, threshold))
        if isinstance(e, Inception | Rotation):
            controllers, threshold, operators = e.controllers, e.threshold, e.operators
        elif isinstance(e, Delegation):
            operators = e.operators
    return out


def is_operator_signed(
    signed: SignedEvent,
    controllers: tuple[bytes, ...],
    threshold: int,
    operators: OperatorSet,
    domain: Domain | None = None,
) -> bool:
    """True if ``signed`` (an update the log accepted) is signed by the operators in force rather
    than the controllers (the update signature rule of docs/protocol.md 6.2)."""
    d = domain if domain is not None else signed.domain
    if d is None:
        raise ValueError("the signed event carries no domain: pass the log's")
    signers = signers_of(event_digest(d, signed.event), signed.signatures)
    return update_authority(signers, controllers, threshold, operators) == "operators"


# ---------------------------------------------------------------------------------------------
# The service


class AnchoringService:
    """Runs in the node's nursery; all chain calls go through :class:`ChainClient`."""

    def __init__(
        self,
        client: ChainClient,
        registry: Registry,
        tracker: BatchTracker,
        queue: AnchorQueue,
        *,
        epoch_s: float = 30.0,
        epoch_events: int = 1000,
        poll_interval_s: float = 2.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        receipt_timeout_s: float = 60.0,
        status: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        own_subject: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.client = client
        self.registry = registry
        self.tracker = tracker
        self.queue = queue
        self.epoch_s = epoch_s
        self.epoch_events = max(1, epoch_events)
        self.poll_interval_s = poll_interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.receipt_timeout_s = receipt_timeout_s
        self.status = status if status is not None else {}
        self.clock = clock
        self.failures = 0
        self._wake = trio.Event()
        self.can_write = client.relayer_address is not None
        # The own subject (default: the keystore's, read once it exists) and its authority reductions
        # noted by the registry listener (a committing thread) for the service loop to queue.
        self._own_subject = own_subject or (lambda: keystore_subject(queue.dir.parent))
        self._own: bytes | None = None
        self._own_read_at = -OWN_SUBJECT_REREAD_S  # monotonic time of the last keystore read that found none
        self._reduced_lock = threading.Lock()
        self._reduced = False
        # Listening from construction on, not from run(): the loop starts only once the chain answers,
        # and a reduction committed meanwhile must not be missed.
        registry.listeners.append(self.on_report)

    def detach(self) -> None:
        """Stop listening to the registry (a service that is discarded)."""
        if self.on_report in self.registry.listeners:
            self.registry.listeners.remove(self.on_report)

    # ------------------------------------------------------------------ public

    def request_direct(self, subject: bytes) -> str:
        """Queue a direct anchor of ``subject`` (durable); returns the request id."""
        req = DirectRequest(id=secrets.token_hex(8), subject="0x" + subject.hex(), requested_at=self.clock())
        self.queue.state.direct.append(req)
        self.queue.save()
        self._wake.set()
        return req.id

    def on_report(self, report: Report) -> None:
        """Registry listener (committing thread, under the registry lock): note own authority reductions.

        Cheap for everything else: a type check per accepted event; the keystore file is read only
        when a reduction is seen and the own subject is not known yet.
        """
        subjects = {acc.subject for acc, _ in report.accepted if reduces_authority(acc.signed.event, {})}
        # Duplicity of the own subject: the controllers' event may have lost locally to an operator
        # head the chain holds; a direct anchor supersedes it (or finds nothing to do).
        subjects.update(d.subject for d in report.evidence)
        if not subjects:
            return
        own = self._known_own()
        if own is not None and own in subjects:
            with self._reduced_lock:
                self._reduced = True

    def _known_own(self) -> bytes | None:
        """The own subject; a node without one yet re-reads its keystore at most every few seconds
        (gossip brings other subjects' reductions all the time and this runs under the registry lock)."""
        if self._own is None and time.monotonic() - self._own_read_at >= OWN_SUBJECT_REREAD_S:
            self._own = self._own_subject()
            self._own_read_at = time.monotonic()
        return self._own

    @property
    def reduction_pending(self) -> bool:
        """An own authority reduction was noted and is not queued yet."""
        with self._reduced_lock:
            return self._reduced

    def _note_unanchored_own_head(self) -> None:
        """At start: an own head no anchor covers may be a reduction noted before a restart; anchor it."""
        self._own_read_at = -OWN_SUBJECT_REREAD_S
        own = self._known_own()
        state = self.registry.state(own) if own is not None else None
        if state is not None and self.registry.anchored_position(state.head) is None:
            with self._reduced_lock:
                self._reduced = True

    def _queue_reductions(self) -> None:
        """Turn a noted own authority reduction into a direct request (one per subject in the queue)."""
        with self._reduced_lock:
            due, self._reduced = self._reduced, False
        own = self._own
        if not due or own is None:
            return
        sid = "0x" + own.hex()
        if not any(r.subject == sid for r in self.queue.state.direct):
            self.request_direct(own)
            log.info("queued a direct anchor of own subject %s after an authority-reducing event", sid)

    def depth(self) -> int:
        """Work this node still has to do: direct requests, a transaction in flight, unanchored heads."""
        pending_heads = self.tracker.pending() if self.can_write else 0
        return len(self.queue.state.direct) + (1 if self.queue.state.inflight else 0) + pending_heads

    def batch_due(self) -> bool:
        """True when the epoch has passed (or enough heads wait) and some head is unanchored."""
        pending = self.tracker.pending()
        if pending == 0:
            return False
        return pending >= self.epoch_events or self.clock() - self.queue.state.last_batch_at >= self.epoch_s

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Loop forever: pick up requests, do due work, back off on transport failures."""
        task_status.started()
        self._note_unanchored_own_head()
        while True:
            try:
                self.queue.pick_up_requests()
                if self.can_write:
                    self._queue_reductions()
                did = await self.step()
                self.failures = 0
                self.status.pop("anchor_retry_in_s", None)
                self.status["anchor_error"] = None
                delay = 0.0 if did else self._idle_delay()
            except NoRelayer:
                delay = self.poll_interval_s
            except ChainError as exc:  # transport trouble: keep the work, retry later
                self.failures += 1
                delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.failures - 1))
                self.status["anchor_error"] = exc.message
                self.status["anchor_retry_in_s"] = delay
                if isinstance(exc, ChainUnavailable):
                    self.status["rpc"] = "down"
                log.warning("anchoring: %s (retrying in %.1fs)", exc.message, delay)
            self.status["queue_depth"] = self.depth()
            if delay > 0:
                with trio.move_on_after(delay):
                    await self._wake.wait()
                self._wake = trio.Event()

    def _idle_delay(self) -> float:
        until_epoch = self.queue.state.last_batch_at + self.epoch_s - self.clock()
        return max(0.05, min(self.poll_interval_s, until_epoch if self.tracker.pending() else self.poll_interval_s))

    async def step(self) -> bool:
        """Do one unit of due work; True if something was done (so the loop continues at once)."""
        if not self.can_write:
            if self.queue.state.direct:  # nobody here can pay for it: say so instead of waiting forever
                req = self.queue.state.direct[0]
                self.queue.state.direct = self.queue.state.direct[1:]
                error = NoRelayer("this node has no relayer: set [chain] relayer_keystore to anchor directly")
                self.queue.add_result(
                    {
                        "id": req.id,
                        "subject": req.subject,
                        "at": self.clock(),
                        "status": "refused",
                        "error": error.to_dict(),
                    }
                )
                self.queue.save()
                return True
            return False
        if self.queue.state.direct:
            await self._direct_one(self.queue.state.direct[0])
            return True
        if self.batch_due():
            return await self.anchor_batch()
        return False

    # ------------------------------------------------------------------ batch

    async def anchor_batch(self) -> bool:
        """Anchor the current tree root unless it is on chain already; True if a transaction was sent."""
        root, count = self.tracker.latest()
        now = self.clock()
        if await self.client.batch_of(root):
            self.queue.state.last_batch_at = now  # someone (maybe another node) anchored this root
            self.queue.save()
            return False
        self.queue.state.inflight = {"kind": "batch", "root": "0x" + root.hex(), "count": count, "since": now}
        self.queue.save()
        try:
            tx = await self.client.anchor_batch(root, count)
            self.queue.state.inflight["tx"] = "0x" + tx.hex()
            self.queue.save()
            receipt = await self.client.wait_receipt(tx, self.poll_interval_s / 4, self.receipt_timeout_s)
        except TransactionReverted as exc:
            if exc.details.get("error") != "BatchExists":
                raise
            receipt = None  # a node in sync anchored the same root first: fine
        self.queue.state.inflight = None
        self.queue.state.last_batch_at = now
        if receipt is not None:
            self.queue.state.last_batch = {
                "root": "0x" + root.hex(),
                "count": count,
                "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
                "block": int(receipt["blockNumber"]),
                "gas": int(receipt["gasUsed"]),
                "at": now,
            }
            self.status["last_batch"] = self.queue.state.last_batch
            log.info("anchored batch root 0x%s over %d heads in block %d", root.hex(), count, receipt["blockNumber"])
        self.queue.save()
        return receipt is not None

    # ------------------------------------------------------------------ direct

    async def _direct_one(self, req: DirectRequest) -> None:
        try:
            result = await self.anchor_direct(bytes.fromhex(req.subject.removeprefix("0x")))
        except (AnchorRefused, TransactionReverted) as exc:  # final for this request
            result = {"status": "refused", "error": exc.to_dict()}
            log.warning("direct anchor of %s refused: %s", req.subject, exc.message)
        finally:
            self.queue.state.inflight = None
        self.queue.state.direct = [r for r in self.queue.state.direct if r.id != req.id]
        self.queue.add_result({"id": req.id, "subject": req.subject, "at": self.clock(), **result})
        self.status["last_direct"] = self.queue.state.results[-1]
        self.queue.save()

    async def anchor_direct(self, subject: bytes) -> dict[str, Any]:
        """Bring the contract's head of ``subject`` up to the local head; returns a result dict.

        Controllers over operators at the head (ADR 0028 sections 7 and 9): when the chain's head is
        an operator-signed update and the node holds a controller-signed event at that seq with the
        same prev (the local head's branch, or a competitor kept as duplicity evidence), the
        service replaces it with ``supersede`` first; the contract checks every signature, so this
        relays only what the controllers signed.
        """
        state = self.registry.state(subject)
        if state is None:
            raise AnchorRefused(f"unknown subject 0x{subject.hex()}: this node holds no log for it")
        events = await trio.to_thread.run_sync(self.registry.store.log, subject)
        chain_seq, chain_digest = await self.client.head_of(subject)
        start = 0
        txs: list[str] = []
        if chain_digest != ZERO32:
            if chain_seq >= len(events):
                return {"status": "behind", "chain_seq": chain_seq, "local_seq": len(events) - 1}
            local = event_digest(self.registry.domain, events[chain_seq].event)
            superseded = await self._supersede(subject, events, chain_seq, chain_digest, local)
            if superseded is not None:
                txs.append(superseded)
                if local == chain_digest:
                    # the head now is the controllers' competitor, not the local branch: the
                    # watcher's HeadReplaced moves the node over; nothing of this branch follows it.
                    return {"status": "superseded", "seq": chain_seq, "txs": txs}
            elif local != chain_digest:
                raise AnchorRefused(
                    f"conflict: the chain holds 0x{chain_digest.hex()} at seq {chain_seq}, "
                    f"the local log 0x{local.hex()}; fork choice follows the chain",
                    seq=chain_seq,
                )
            start = chain_seq + 1
        if start >= len(events):
            if txs:
                return {"status": "anchored", "seq": chain_seq, "digest": "0x" + chain_digest.hex(), "txs": txs}
            return {"status": "already", "seq": chain_seq, "digest": "0x" + chain_digest.hex()}
        inputs = direct_inputs(events, start, self.registry.domain)
        head = event_digest(self.registry.domain, events[-1].event)
        for i in range(0, len(inputs), MAX_EVENTS_PER_TX):
            chunk = inputs[i : i + MAX_EVENTS_PER_TX]
            self.queue.state.inflight = {"kind": "direct", "subject": "0x" + subject.hex(), "since": self.clock()}
            tx = await self.client.anchor_events(chunk)
            self.queue.state.inflight["tx"] = "0x" + tx.hex()
            self.queue.save()
            try:
                await self.client.wait_receipt(tx, self.poll_interval_s / 4, self.receipt_timeout_s)
            except TransactionReverted:
                # Anyone may relay a subject's signed events: another relayer (the subject's other
                # node, its controllers) may have anchored these very heads while ours was pending,
                # and ours then reverts on the seq it expected. That is success, not a refusal.
                raced = await self._anchored_by_others(subject, events, start + i + len(chunk) - 1)
                if raced is None:
                    raise
                if raced == len(events) - 1:
                    return {"status": "already", "seq": raced, "digest": "0x" + head.hex(), "txs": txs}
                return await self.anchor_direct(subject)  # the rest of the branch, from the chain's head
            txs.append("0x" + tx.hex())
        log.info("anchored subject 0x%s directly up to seq %d", subject.hex(), len(events) - 1)
        return {"status": "anchored", "seq": len(events) - 1, "digest": "0x" + head.hex(), "txs": txs}

    async def _anchored_by_others(self, subject: bytes, events: Sequence[SignedEvent], through: int) -> int | None:
        """The chain's head seq if the chain now holds this node's branch at least ``through``
        (someone else anchored it), else None."""
        chain_seq, chain_digest = await self.client.head_of(subject)
        if chain_seq < through or chain_seq >= len(events):
            return None
        if event_digest(self.registry.domain, events[chain_seq].event) != chain_digest:
            return None
        return chain_seq

    async def _supersede(
        self, subject: bytes, events: Sequence[SignedEvent], seq: int, chain_digest: bytes, local: bytes
    ) -> str | None:
        """Replace the chain's operator-signed head at ``seq`` by a controller-signed event the node
        holds at that seq; returns the transaction hash, or None when there is nothing to do."""
        domain = self.registry.domain
        found = await trio.to_thread.run_sync(competitors_at, self.registry.store, subject, seq)
        by_digest = {event_digest(domain, e.event): e for e in found}
        by_digest[local] = events[seq]
        displaced = by_digest.get(chain_digest)
        if displaced is None or not isinstance(displaced.event, Update):
            return None
        prior = list(events[:seq])
        try:
            by_operators = operator_signed_at(prior, displaced, domain)
        except KeyregError:
            return None
        if not by_operators:
            return None  # the chain's head is controller-signed: fork choice, not supersede, settles it
        candidates = [e for d, e in by_digest.items() if d != chain_digest and e.event.prev == displaced.event.prev]
        for candidate in candidates:
            try:
                [item] = direct_inputs([*prior, candidate], seq, domain)
            except KeyregError:  # its signers are neither set in force: not the controllers' either
                continue
            if item[8]:  # operator-signed too: operators never supersede
                continue
            self.queue.state.inflight = {"kind": "supersede", "subject": "0x" + subject.hex(), "since": self.clock()}
            tx = await self.client.send("supersede", [item, displaced.event.timestamp, event_body(displaced)])
            self.queue.state.inflight["tx"] = "0x" + tx.hex()
            self.queue.save()
            await self.client.wait_receipt(tx, self.poll_interval_s / 4, self.receipt_timeout_s)
            log.info("superseded the operator-signed head of 0x%s at seq %d", subject.hex(), seq)
            return "0x" + tx.hex()
        return None


def competitors_at(store: Any, subject: bytes, seq: int) -> list[SignedEvent]:
    """Events at (subject, seq) kept as duplicity evidence (both sides of each entry)."""
    out: list[SignedEvent] = []
    for d in store.evidence(subject):
        if d.seq == seq:
            out += [d.first, d.second]
    return out


def operator_signed_at(prior: Sequence[SignedEvent], signed: SignedEvent, domain: Domain) -> bool:
    """True if ``signed`` (an update following the events ``prior`` of its log) is operator-signed."""
    [item] = direct_inputs([*prior, signed], len(prior), domain)
    return bool(item[8])
