"""Gossip of key events: the topic validator (wired to the registry's verdicts) and the publisher.

Inbound: gossipsub calls :meth:`Gossip.validate` for every message before it forwards it. The
validator rate-limits the forwarder, decodes the batch, and ingests it through one ingest task
(which coalesces concurrent batches into one ``Registry.ingest`` call and keeps arrival order).
Each message gets one of three verdicts (gossipsub v1.1), decided from its events' results:

- *accept* (forwarded): every event was fully checked and passed: accepted, already known, or
  evidence;
- *reject* (dropped, forwarder penalised by the score function, P4): the message is malformed,
  oversized, over the peer's rate, or holds even one event that breaks a rule no honest node can
  judge otherwise: a fault of the event alone (shape, network, signatures of an inception) or a
  rule checked against state every honest node shares (the stored event it names as prev);
- *ignore* (dropped, not forwarded, not penalised; ``KeyregPubsub.ignore``): otherwise, when some
  event could not be checked here for reasons of this node's own state: over a local budget
  (Throttled, capacity), a gap in a subject's log or an unknown subject (this node may lag), or a
  timestamp ahead of the local clock. Another honest node in another state may accept what we
  ignore, so neither forwarding it (unchecked events would travel) nor penalising it (honest nodes
  would penalise each other at an attacker's will) is right. Gaps schedule a targeted sync with
  the forwarder, which repairs them.

The events that passed are stored whatever the verdict: only the forwarding stops.

Outbound: a registry listener queues events accepted from any source but gossip and sync (gossip
already forwards what it validated; sync only repairs), and every duplicity evidence. The
publisher sends one batch per ``publish_interval_s`` at most, up to ``max_events_per_message``
events or ``max_message_bytes``: py-libp2p drops silently beyond 32 queued messages per peer, so
pacing, not hope, keeps batches from being lost. Batches of ``COMPRESS_MIN_BYTES`` or more go out
zlib-compressed when ``p2p.compress_gossip`` is on (wire version 1.1, docs/p2p.md).

Invariant: memory is bounded: the outbox holds at most ``OUTBOX_MAX`` events (overflow is counted
as ``dropped`` and later repaired by sync), per-peer state at most ``MAX_TRACKED_PEERS`` entries.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..config import P2PConfig
from ..core.codec import CanonicalEvent
from ..core.errors import ChainBroken, RuleViolation, StaleEvent, TimestampViolation, TransportError, UnknownSubject
from ..core.records import Inception, SignedEvent
from ..outcomes import IngestResult, Report
from ..registry import Registry
from .wire import COMPRESS_MIN_BYTES, compress_message, decode_message, encode_batch, encode_duplicity

log = logging.getLogger(__name__)

OUTBOX_MAX = 50_000
MAX_TRACKED_PEERS = 4096
INGEST_COALESCE = 1024  # events per Registry.ingest call from gossip
MESSAGE_OVERHEAD = 16 * 1024
QUEUE_HIGH = 8  # of py-libp2p's 32-RPC per-peer outbound queue
QUEUE_WAIT_MAX_S = 2.0  # pubsub envelope (signature, key, sender record) under the RPC cap

GapHandler = Callable[[ID, dict[bytes, int]], None]
Verdict = Literal["accept", "ignore", "reject"]


class TokenBucket:
    """Per-peer message rate limit (tokens refill at ``rate`` per second up to ``burst``)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are as many (else take none)."""
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def charge(self, n: float) -> None:
        """Spend ``n`` tokens after the fact (the balance may go negative: a debt paid by waiting)."""
        self._refill()
        self.tokens -= n

    def in_credit(self) -> bool:
        """Whether the balance is positive (no debt left)."""
        self._refill()
        return self.tokens > 0


@dataclass
class GossipStats:
    """Counters for /v1/health and the benchmarks."""

    messages_in: int = 0
    messages_valid: int = 0
    messages_invalid: int = 0
    messages_gap: int = 0  # ignored messages that held a gap (a targeted sync was asked for)
    messages_ignored: int = 0  # not forwarded, not penalised: an event unchecked for local reasons
    new_subjects_over: int = 0  # ignored before ingest: over the forwarder's new-subject budget
    rate_limited: int = 0
    messages_out: int = 0
    events_out: int = 0
    evidence_out: int = 0
    events_in_accepted: int = 0
    events_in_invalid: int = 0  # events that broke a rule, in messages judged invalid for them
    dropped: int = 0
    backpressure_waits: int = 0
    invalid_by_peer: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("invalid_by_peer")
        return d


@dataclass
class _Job:
    events: list[SignedEvent | CanonicalEvent]
    done: trio.Event = field(default_factory=trio.Event)
    results: list[IngestResult] = field(default_factory=list)


def is_gap(result: IngestResult) -> bool:
    """A rejection that means "cannot apply yet" rather than "breaks the rules"."""
    err = result.error
    return isinstance(err, (ChainBroken, UnknownSubject)) and not isinstance(err, StaleEvent)


def is_local(result: IngestResult, event: SignedEvent | CanonicalEvent, now: float) -> bool:
    """A rejection another honest node may not share: it depends on this node's state.

    A budget or capacity refusal (every TransportError), a gap or unknown subject (this node may
    lag), or a timestamp ahead of the local clock (clocks differ within the skew bound).
    """
    err = result.error
    if isinstance(err, TransportError) or is_gap(result):
        return True
    if isinstance(err, TimestampViolation):
        return _signed(event).event.timestamp > now
    return False


def _signed(item: SignedEvent | CanonicalEvent) -> SignedEvent:
    return item.signed if isinstance(item, CanonicalEvent) else item


class Gossip:
    """Validator, ingest task, listener and publisher for one topic."""

    def __init__(
        self,
        registry: Registry,
        config: P2PConfig,
        pubsub: Any,
        topic: str,
        on_gap: GapHandler | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.pubsub = pubsub
        self.topic = topic
        self.on_gap = on_gap
        self.stats = GossipStats()
        self._my_id: ID = pubsub.my_id
        self._buckets: collections.OrderedDict[ID, tuple[TokenBucket, TokenBucket, TokenBucket]] = (
            collections.OrderedDict()
        )
        # Thread-safe handoff from the registry's worker thread: deque appends are atomic.
        self._outbox: collections.deque[bytes] = collections.deque()
        self._evidence: collections.deque[bytes] = collections.deque(maxlen=1024)
        self._token: trio.lowlevel.TrioToken | None = None
        self._bell_send, self._bell_recv = trio.open_memory_channel[None](1)
        self._jobs_send, self._jobs_recv = trio.open_memory_channel[_Job](64)
        self._budget = max(4096, config.max_message_bytes - MESSAGE_OVERHEAD)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, register the validator and listener, and run until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        self.pubsub.set_topic_validator(self.topic, self.validate, True)
        if hasattr(self.pubsub, "admit"):
            self.pubsub.admit = self.admit
        subscription = await self.pubsub.subscribe(self.topic)
        self.registry.listeners.append(self.on_report)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, subscription)
                nursery.start_soon(self._ingest_loop)
                nursery.start_soon(self._publisher)
                task_status.started()
        finally:
            self.registry.listeners.remove(self.on_report)

    async def _drain(self, subscription: Any) -> None:
        # Ingestion happens in the validator; the subscription must still be read continuously,
        # or py-libp2p's 32-message buffer fills and it logs a warning per message.
        async for _ in subscription:
            pass

    # ------------------------------------------------------------------ inbound

    def _bucket(self, peer: ID) -> tuple[TokenBucket, TokenBucket, TokenBucket]:
        """The peer's (messages, inflated bytes, new subjects) budgets."""
        buckets = self._buckets.get(peer)
        if buckets is None:
            c = self.config
            rate, byte_rate = c.peer_rate_msgs_per_s, c.peer_rate_bytes_per_s
            byte_burst = max(2 * byte_rate, 2 * c.max_message_bytes)
            buckets = (
                TokenBucket(rate, max(2.0, 2 * rate)),
                TokenBucket(byte_rate, byte_burst),
                TokenBucket(c.new_subjects_per_peer_per_s, max(1, c.new_subjects_per_peer_burst)),
            )
            self._buckets[peer] = buckets
            if len(self._buckets) > MAX_TRACKED_PEERS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(peer)
        return buckets

    def _invalid(self, peer: ID) -> bool:
        self.stats.messages_invalid += 1
        key = str(peer)
        by_peer = self.stats.invalid_by_peer
        by_peer[key] = by_peer.get(key, 0) + 1
        if len(by_peer) > MAX_TRACKED_PEERS:
            by_peer.pop(next(iter(by_peer)))
        return False

    def admit(self, forwarder: ID) -> bool:
        """Per-forwarder rate limit, checked before validation (``KeyregPubsub.admit``): messages
        per second, and the bytes of JSON text its messages inflated to (charged by :meth:`judge`
        once known; a forwarder in debt is refused until it is paid off).

        Apart from validation because pubsub caches a message's verdict by its id: a copy refused
        for its forwarder's rate must not make the same bytes invalid from an honest forwarder.
        """
        messages, text_bytes, _ = self._bucket(forwarder)
        if text_bytes.in_credit() and messages.take():
            return True
        self.stats.messages_in += 1
        self.stats.rate_limited += 1
        return self._invalid(forwarder)

    async def validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Gossipsub topic validator: True forwards the message, False drops it.

        False penalises the forwarder unless the verdict is "ignore", which is announced to the
        pubsub first (``KeyregPubsub.ignore``) so it neither caches nor counts it.
        """
        verdict = await self.judge(forwarder, msg)
        if verdict == "ignore":
            ignore = getattr(self.pubsub, "ignore", None)
            if ignore is not None:
                ignore(msg)
        return verdict == "accept"

    async def judge(self, forwarder: ID, msg: rpc_pb2.Message) -> Verdict:
        """The message's verdict: accept, ignore or reject (see the module docstring)."""
        if forwarder == self._my_id:
            return "accept"  # our own publish: its events are already in the registry
        self.stats.messages_in += 1
        try:
            decoded = decode_message(
                msg.data,
                self.config.max_message_bytes,
                self.config.max_events_per_message,
                self.registry.limits,
                raw=True,
            )
        except RuleViolation:
            return self._reject(forwarder)
        _, text_bytes, new_subjects = self._bucket(forwarder)
        text_bytes.charge(decoded.size)
        if not decoded.events or decoded.malformed:
            # One malformed event makes the whole message invalid: judged before any ingest work.
            return self._reject(forwarder)
        inceptions = sum(1 for e in decoded.events if isinstance(_signed(e).event, Inception))
        if inceptions and not new_subjects.take(inceptions):
            # Over this forwarder's budget of new subjects (docs/adr/0027-subject-admission.md):
            # not ingested (no recovery), not forwarded; not penalised, as an honest forwarder may
            # relay a burst the network made. Sync brings the subjects later, within its own budget.
            self.stats.new_subjects_over += 1
            self.stats.messages_ignored += 1
            return "ignore"
        job = _Job(decoded.events)
        await self._jobs_send.send(job)
        await job.done.wait()
        bad = local = 0
        gaps: dict[bytes, int] = {}
        now = self.registry.clock()
        for r, event in zip(job.results, decoded.events, strict=False):
            if r.status != "rejected":
                if r.status == "accepted":
                    self.stats.events_in_accepted += 1
            elif is_local(r, event, now):
                local += 1
                if is_gap(r) and r.subject is not None:
                    state = self.registry.states.get(r.subject)
                    gaps[r.subject] = 0 if state is None else state.seq + 1
            else:
                bad += 1
        if len(job.results) < len(decoded.events):  # the ingest failed (logged): nothing was checked
            local += 1
        if gaps and self.on_gap is not None:
            self.on_gap(forwarder, gaps)
        # Any event that breaks a rule makes the whole message invalid, so no valid event can
        # carry invalid ones across the network, and its forwarder pays for it (P4). A message
        # forwarded was checked in full: an event this node could not check (for reasons of its
        # own state) stops the forwarding, without blame.
        if bad:
            self.stats.events_in_invalid += bad
            return self._reject(forwarder)
        if local:
            self.stats.messages_ignored += 1
            if gaps:
                self.stats.messages_gap += 1
            return "ignore"
        self.stats.messages_valid += 1
        return "accept"

    def _reject(self, forwarder: ID) -> Verdict:
        self._invalid(forwarder)
        return "reject"

    async def _ingest_loop(self) -> None:
        """One ingest at a time, in arrival order; concurrent batches coalesce into one call."""
        while True:
            jobs = [await self._jobs_recv.receive()]
            total = len(jobs[0].events)
            while total < INGEST_COALESCE:
                try:
                    job = self._jobs_recv.receive_nowait()
                except trio.WouldBlock:
                    break
                jobs.append(job)
                total += len(job.events)
            items = [e for j in jobs for e in j.events]
            try:
                results = await trio.to_thread.run_sync(self.registry.ingest, items, "gossip", True)
            except Exception:
                log.exception("gossip ingest failed; the batch is dropped and sync will retry it")
                results = []
            pos = 0
            for j in jobs:
                n = len(j.events)
                j.results = results[pos : pos + n]
                pos += n
                j.done.set()

    # ------------------------------------------------------------------ outbound

    def on_report(self, report: Report) -> None:
        """Registry listener (runs in the ingesting thread): queue what to gossip."""
        queued = False
        for ev in report.evidence:
            self._evidence.append(encode_duplicity(ev))
            queued = True
        if report.source not in ("gossip", "sync"):
            room = OUTBOX_MAX - len(self._outbox)
            accepted = report.accepted
            if len(accepted) > room:
                self.stats.dropped += len(accepted) - max(room, 0)
                accepted = accepted[: max(room, 0)]
            self._outbox.extend(raw for _, raw in accepted)
            queued = queued or bool(accepted)
        if queued and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._ring)

    def _ring(self) -> None:
        with contextlib.suppress(trio.WouldBlock):
            self._bell_send.send_nowait(None)

    def _take_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        size = 32
        limit = self.config.max_events_per_message
        while self._outbox and len(batch) < limit:
            raw = self._outbox[0]
            if batch and size + len(raw) + 1 > self._budget:
                break
            batch.append(self._outbox.popleft())
            size += len(raw) + 1
        return batch

    async def _publisher(self) -> None:
        interval = self.config.publish_interval_s
        last = -float("inf")
        while True:
            if not self._outbox and not self._evidence:
                await self._bell_recv.receive()
                continue
            wait = last + interval - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            last = trio.current_time()
            if self._evidence:
                data = self._evidence.popleft()
                self.stats.evidence_out += 1
            else:
                batch = self._take_batch()
                if not batch:
                    continue
                data = encode_batch(batch)
                if self.config.compress_gossip and len(data) >= COMPRESS_MIN_BYTES:
                    data = await trio.to_thread.run_sync(compress_message, data)  # zlib releases the GIL
                self.stats.events_out += len(batch)
            await self._wait_for_queues()
            self.stats.messages_out += 1
            await self.pubsub.publish(self.topic, data)

    async def _wait_for_queues(self) -> None:
        """Backpressure py-libp2p lacks: hold a publish while any peer's outbound queue is filling.

        Each peer has a 32-RPC queue that drops silently when full; a slow (busy) peer fills it.
        Waiting until every queue is under QUEUE_HIGH keeps our own publishes from being dropped;
        the wait is bounded so one stuck peer cannot stall gossip to the others.
        """
        queues = getattr(self.pubsub, "peer_queues", None)
        if not queues:
            return
        with trio.move_on_after(QUEUE_WAIT_MAX_S):
            while any(len(q) >= QUEUE_HIGH for q in list(queues.values())):
                self.stats.backpressure_waits += 1
                await trio.sleep(0.005)

    def status(self) -> dict[str, Any]:
        """Counters and queue depths."""
        return {
            **self.stats.to_dict(),
            "outbox": len(self._outbox),
            "duplicates_dropped": getattr(self.pubsub, "duplicates_dropped", 0),
            "unwanted_skipped": getattr(self.pubsub, "unwanted_skipped", 0),
            "unsigned_dropped": getattr(getattr(self.pubsub, "unsigned_log", None), "total", 0),
            "overload_dropped": getattr(self.pubsub, "overload_dropped", 0),
        }
