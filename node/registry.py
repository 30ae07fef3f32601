"""The registry: where adapter input becomes a core verdict, then a stored fact, then news.

Data flows one way: bytes from an adapter (API, gossip, sync, CLI) -> :func:`apply_event` ->
one :meth:`Store.commit` per batch -> in-memory head states and Merkle tree -> listeners (gossip
out, anchor queue). Reads (state, verdicts, heads) come from memory and never touch the store.

Thread model: ``ingest`` and the other writers take one lock and may block on the store, so trio
code calls them through ``trio.to_thread.run_sync``; reads are plain dict lookups, safe from any
thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar, overload

from .core.codec import CanonicalEvent, encode_event
from .core.errors import ChainBroken, KeyregError, OverCapacity, RuleViolation, StaleEvent, StorageError, Throttled
from .core.fork import SubjectLog
from .core.hashing import keccak
from .core.keystate import Verdict, key_verdict, valid_keys
from .core.limits import DEFAULT_LIMITS, Limits
from .core.log import Accepted, KeyRecord, SubjectState, check_competitor
from .core.merkle import SparseMerkleTree
from .core.records import (
    Delegation,
    Domain,
    GovernanceRevocation,
    Inception,
    OperatorSet,
    Rotation,
    SignedEvent,
)
from .core.validator import Item, Validator
from .governance_book import GovernanceBook
from .outcomes import IngestResult, Listener, Report
from .signature_workers import CHUNK, MIN_BATCH, Prepared, SignatureWorkers, SignerBatch
from .store.base import AnchorRecord, AuditEntry, Changes, Store

T = TypeVar("T")


class TreeHead(NamedTuple):
    """The Merkle root of every subject head and their number, as of the last commit."""

    root: bytes
    count: int


@dataclass(slots=True)
class PreparedBatch:
    """Events decoded and hashed, their signers (if ``signers``) being recovered on the signature
    workers: made by :meth:`Registry.prepare`, consumed once by :meth:`Registry.ingest_prepared`."""

    items: Sequence[Item]
    prepared: list[Prepared]
    signers: SignerBatch | None


def wire_bytes(item: Item, signed: SignedEvent) -> bytes:
    """The canonical wire bytes of ``signed`` (decoded from ``item``): a CanonicalEvent's own
    (rendered beside the decode by gossip and sync), else ``encode_event``."""
    if isinstance(item, CanonicalEvent):
        return item.wire
    return encode_event(signed)


class ConflictBudget:
    """How many conflicts per subject may reach the expensive path, per time window.

    A conflict (a different event at an occupied seq) that names the right prev and is signed by
    the signer set in force costs a replay of the subject's log (fork choice needs the whole
    state); only the subject's controllers, or whoever holds their keys, can make one. This
    bounds that: ``per_subject`` conflicts per subject per ``window_s`` seconds (a fixed window
    starting at the first), for at most ``max_subjects`` subjects at once (the least recently
    charged is forgotten first), so neither the replays nor this table grow with what a peer sends.
    """

    def __init__(
        self,
        per_subject: int = 16,
        window_s: float = 60.0,
        max_subjects: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_subject = per_subject
        self.window_s = window_s
        self.max_subjects = max_subjects
        self.clock = clock
        self.refused = 0
        self._windows: OrderedDict[bytes, tuple[float, int]] = OrderedDict()  # subject -> (start, used)

    def take(self, subject: bytes) -> bool:
        """Charge one conflict to ``subject``; False (charging nothing) when its budget is spent."""
        now = self.clock()
        start, used = self._windows.pop(subject, (now, 0))
        if now - start >= self.window_s:
            start, used = now, 0
        ok = used < self.per_subject
        self._windows[subject] = (start, used + 1 if ok else used)
        if len(self._windows) > self.max_subjects:
            self._windows.popitem(last=False)
        if not ok:
            self.refused += 1
        return ok


_RANK_BAND = 10**15
_SCAN_PAGE = 256  # stored events read per query when looking back for the signer set in force
# Pages read back for free; a look-back past them (a conflict far behind a later rotation) is
# charged to the subject's look-back budget first, page by page, so its cost stays bounded.
_FREE_SCAN_PAGES = 4
# Commits one batch may make for conflicts on subjects it extended itself (fork choice replays the
# stored log, so what the batch appended must be stored first). Only validly signed conflicts get
# there (junk is refused on in-memory checks), each charged to its subject's budget.
MAX_CONFLICT_COMMITS_PER_BATCH = 4
# Stored digests kept by (subject, seq) for the stale path (re-deliveries, conflicts, junk below a
# head): junk repeated at the same seqs costs no store read. Anyone chooses those seqs, so it is
# capped (least recently used out): 4,096 entries of ~150 bytes, ~0.6 MB.
DIGEST_CACHE_ENTRIES = 4096
CAPACITY_WARNING = 0.9  # /v1/health warns from this share of limits.max_subjects on


def anchor_rank(a: AnchorRecord) -> int:
    """Fork-choice rank of an anchor (lower wins), as fed to :func:`keyreg.core.fork.choose`.

    The registry contract holds one head per seq and only lets a recovery rotation replace an
    anchored non-establishment head, so: a recovery (HeadReplaced) beats everything, the latest
    recovery first; then direct anchors, earliest first (the contract allows exactly one per seq);
    then batch anchors, earliest first (anyone may post a root, so a later root cannot displace).
    """
    if a.mode == "recovery":
        return _RANK_BAND - 1 - a.position % _RANK_BAND
    band = 1 if a.mode == "direct" else 2
    return band * _RANK_BAND + a.position % _RANK_BAND


class Registry:
    """The node's registry of subjects: validation, storage, and the in-memory read model."""

    def __init__(
        self,
        domain: Domain,
        store: Store,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        signature_workers: int = 0,
        conflicts: ConflictBudget | None = None,
        reject_audits_per_batch: int = 16,
    ) -> None:
        self.domain = domain
        self.store = store
        self.limits = limits
        self.validator = Validator(domain, limits)
        self.clock = clock
        self._lock = threading.Lock()
        self.states: dict[bytes, SubjectState] = {}
        # Invariant: event_count == sum(s.seq + 1 for s in states.values()), kept by _applied, so
        # /v1/health is O(1) whatever the number of subjects.
        self.event_count = 0
        self.disputed: set[bytes] = set()
        # Changed only under the lock. Readers that need just the root take tree_head, replaced
        # whole after every commit, so they never take the lock nor fill the tree's hash cache.
        self.tree = SparseMerkleTree()
        # One per (subject, key id), the named governor's only, capped per subject (node.governance_book).
        self._governance = GovernanceBook(limits.max_keys_per_subject + 1)
        self._anchored: dict[bytes, int] = {}  # digest -> best fork-choice rank (anchor_rank)
        self._positions: dict[bytes, int] = {}  # digest -> earliest on-chain position
        # subject -> newest registry head the watcher confirmed (direct or recovery anchor): what an
        # online verdict rests on (ADR 0012); one entry per directly anchored subject.
        self._direct_heads: dict[bytes, AnchorRecord] = {}
        self.listeners: list[Listener] = []
        self.counters: dict[str, int] = {"accepted": 0, "known": 0, "duplicity": 0, "rejected": 0}
        self.conflicts = conflicts or ConflictBudget()
        # Separate budgets, so that no one can spend another's: recovery rotations (conflicts
        # signed by the pre-committed next controllers: only the owner holds those keys, and
        # others' conflicts must never throttle them), and deep look-backs for the signer set in
        # force (charged before the signatures are checked, so anyone can spend it: it guards
        # nothing but the look-back itself).
        c = self.conflicts
        self.recoveries = ConflictBudget(c.per_subject, c.window_s, c.max_subjects, c.clock)
        self.lookbacks = ConflictBudget(c.per_subject, c.window_s, c.max_subjects, c.clock)
        self._conflict_commits = 0  # in the batch being ingested
        # (subject, seq) -> digest the store holds there (see _stored_digest). Invariant: equal to
        # the committed store's, since a stored seq changes only when its subject's branch switches,
        # and _applied drops the subject's entries after any commit that switches it.
        self._digests: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self._new_subjects = 0  # accepted in the batch being ingested, not yet in ``states``
        # Rejections audited one by one per ingest call; the rest only counted, in one summary
        # entry, so junk cannot grow the audit chain by a row per event.
        self.reject_audits_per_batch = reject_audits_per_batch
        self._rejects_left = 0
        self._rejects_over: Counter[str] = Counter()
        # Processes recovering the signers of bulk batches (node.signature_workers; 0: in-line).
        self.signature_workers = SignatureWorkers(signature_workers)
        for state, disputed in store.load_states():
            self.states[state.subject] = state
            self.event_count += state.seq + 1
            self.tree.set(state.subject, state.seq, state.head)
            if disputed:
                self.disputed.add(state.subject)
        self._contested: set[bytes] = {d.subject for d in store.evidence()}  # subjects with duplicity evidence
        self._governance.load(store.governance_revocations(), self.states)
        for a in store.anchors():
            self._note_anchor(a)
        self.tree_head = TreeHead(self.tree.root, len(self.tree))

    # ------------------------------------------------------------------ writes

    def ingest(
        self, items: Sequence[Item], source: str = "api", admission: bool = True, bulk: bool = False
    ) -> list[IngestResult]:
        """Validate and store a batch of events (wire bytes or decoded) in order.

        Returns once every event of the batch is durable (the results are the acknowledgements):
        a batch is one transaction (a conflict may commit what precedes it first, see _stale).

        ``admission`` applies the clock-skew bound (events from the future are refused); backfill
        of old events passes too, since there is no lower bound.

        ``bulk`` marks a bulk load (see :meth:`prepare`).
        """
        return self.ingest_prepared(self.prepare(items, bulk), source, admission)

    def prepare(self, items: Sequence[Item], bulk: bool = False) -> PreparedBatch:
        """Decode and hash ``items``; for a bulk batch, start recovering their signers on the workers.

        Needs no lock and changes no state: a caller with a stream of batches (sync) prepares the
        next batch while the workers still recover this one's signers, then hands each to
        :meth:`ingest_prepared` in order, so the workers never wait for decoding.

        Only a ``bulk`` batch (a sync pull) of MIN_BATCH events or more uses the workers: a bulk
        load has the node's cores to itself. Under a steady stream (gossip, API) on a machine whose
        every core is already busy, extra processes cost more CPU than they save, so those batches
        recover in-line (docs/adr/0023-signature-workers.md).
        """
        prepared, signers = self._prepare(items, bulk and len(items) >= MIN_BATCH)
        return PreparedBatch(items, prepared, signers)

    def ingest_prepared(self, batch: PreparedBatch, source: str = "api", admission: bool = True) -> list[IngestResult]:
        """:meth:`ingest` for a batch made by :meth:`prepare` (one result per event)."""
        now = int(self.clock()) if admission else None
        items, prepared, signers = batch.items, batch.prepared, batch.signers
        with self._lock:
            results: list[IngestResult] = []
            changes = Changes()
            self._rejects_left, self._rejects_over = self.reject_audits_per_batch, Counter()
            self._conflict_commits = 0
            self._new_subjects = 0
            work: dict[bytes, SubjectState] = {}
            chunk: list[tuple[bytes, ...] | None] | None = None
            for i, item in enumerate(items):
                if i % CHUNK == 0:
                    chunk = signers.take(i // CHUNK) if signers is not None else None
                found = chunk[i % CHUNK] if chunk else None
                results.append(self._ingest_one(item, prepared[i], found, source, now, changes, work))
            if self._rejects_over:
                over = self._rejects_over
                detail = {"source": source, "unaudited": sum(over.values()), "codes": dict(sorted(over.items()))}
                changes.audit.append(AuditEntry("reject-summary", None, None, None, detail))
            self._commit(changes, source)
            counters = self.counters
            for status, n in Counter([r.status for r in results]).items():
                counters[status] += n
            return results

    def _prepare(self, items: Sequence[Item], parallel: bool) -> tuple[list[Prepared], SignerBatch | None]:
        """Decode every item and hash it; when ``parallel``, start recovering signatures meanwhile.

        Returns one (signed or decode error, digest or None) per item (stages 1-2 of
        :class:`keyreg.core.validator.Validator`), and the batch's chunks on the signature workers
        (stage 3, CHUNK items each) if parallel and there are workers.
        """
        prepared: list[Prepared] = []
        signers: SignerBatch | None = None
        chains: dict[bytes, tuple[int, bytes, bool]] = {}  # for _to_recover
        start = 0
        if parallel:
            signers = self.signature_workers.batch()
        prepare = self.validator.prepare
        for item in items:
            prepared.append(prepare(item))
            if signers is not None and len(prepared) - start == CHUNK:
                signers.submit(self._to_recover(prepared[start:], chains))
                start = len(prepared)
        if signers is not None and len(prepared) > start:
            signers.submit(self._to_recover(prepared[start:], chains))
        return prepared, signers

    def _to_recover(self, chunk: list[Prepared], chains: dict[bytes, tuple[int, bytes, bool]]) -> list[Prepared]:
        """``chunk`` with no digest (so nothing is recovered ahead) for events that cannot apply.

        Rule 1 of docs/security.md for large batches, whose signatures are recovered before the
        rules run: an event is recovered ahead only if it extends its subject's head (or, within
        the batch, an event that does). An event at or below the head is a re-delivery (known,
        nothing to recover) or a conflict, whose signatures :meth:`_stale` recovers only after its
        cheap checks; one naming another prev, or following such an event, is rejected before any
        recovery by apply_event. Only sync pulls (bulk batches) come here, and a pull prepares a batch
        while the one before it is still being ingested, so a gap or an unknown subject may be filled
        by then: those are recovered ahead too. ``chains`` (subject -> next seq, its prev, whether that chain
        extends the head) carries the batch's chains across chunks.

        Heads are read without the lock and may be older than at ingest; a head only moves back
        on a branch switch. Either way an event left without signers is recovered by apply_event
        itself, with the same result: this decides only where and whether recovery is done early.
        """
        states = self.states
        out = chunk
        for i, (signed, digest) in enumerate(chunk):
            if digest is None or isinstance(signed, RuleViolation):
                continue
            event = signed.event
            if isinstance(event, Inception):
                ahead = digest not in states and digest not in chains
                if ahead:
                    chains[digest] = (1, digest, True)
            else:
                subject, seq = event.subject, event.seq
                chain = chains.get(subject)
                if chain is not None:
                    ahead = seq == chain[0] and event.prev == chain[1] and chain[2]
                    if seq >= chain[0]:  # an earlier seq (a copy, a conflict) leaves the chain as it is
                        chains[subject] = (seq + 1, digest, ahead)
                else:
                    state = states.get(subject)
                    if state is None or seq > state.seq + 1:
                        ahead = True  # a gap or an unknown subject: the batch before may fill it
                    elif seq == state.seq + 1:
                        ahead = event.prev == state.head
                    else:
                        ahead = False  # stale: known or a conflict; a chain goes on from the head
                    if state is None or seq > state.seq:
                        chains[subject] = (seq + 1, digest, ahead)
            if not ahead:
                if out is chunk:
                    out = list(chunk)
                out[i] = (signed, None)
        return out

    def close(self) -> None:
        """End the signature workers (the registry stays readable)."""
        self.signature_workers.close()

    def _ingest_one(
        self,
        item: Item,
        prepared: Prepared,
        signers: tuple[bytes, ...] | None,
        source: str,
        now: int | None,
        changes: Changes,
        work: dict[bytes, SubjectState],
    ) -> IngestResult:
        signed, digest = prepared
        if isinstance(signed, RuleViolation):
            exc = signed
            raw_hash = keccak(item) if isinstance(item, bytes) else None
            self._audit_reject(changes, None, None, raw_hash, source, exc)
            return IngestResult("rejected", error=exc)
        event = signed.event
        # An inception's subject is its digest; None (another network, or hashing failed on a rule
        # violation) leaves it unknown (b""), and apply names the violation.
        subject = self.validator.subject(signed, digest)
        state = work.get(subject) or self.states.get(subject)
        if state is None and subject and isinstance(event, Inception) and self.at_capacity():
            # Before any recovery: a new subject past limits.max_subjects costs nothing more.
            full = OverCapacity(f"this node holds its limit of {self.limits.max_subjects} subjects; no new subject")
            self._audit_reject(changes, subject, 0, digest, source, full)
            return IngestResult("rejected", subject, 0, digest, error=full)
        try:
            # signers came from the signature workers (None: not computed or failed, so the rules
            # recover again and raise the exact error).
            acc = self.validator.apply(state, signed, now, digest, signers)
        except StaleEvent:
            return self._stale(signed, subject, digest, source, now, changes, work)
        except RuleViolation as exc:
            self._audit_reject(changes, subject or None, event.seq, None, source, exc)
            return IngestResult("rejected", subject or None, event.seq, error=exc)
        subject, seq, new_digest, new_state = acc.subject, event.seq, acc.digest, acc.state
        changes.appended.append((acc, wire_bytes(item, signed)))
        changes.states[subject] = new_state
        work[subject] = new_state
        if not seq:
            self._new_subjects += 1
        detail: dict[str, object] = {"source": source, "kind": event.kind}
        if acc.authority == "operators":  # controller-signed entries keep their pre-protocol-2 form
            detail["authority"] = "operators"
        changes.audit.append(AuditEntry("accept", subject, seq, new_digest, detail))
        return IngestResult("accepted", subject, seq, new_digest, authority=acc.authority)

    def _stale(
        self,
        signed: SignedEvent,
        subject: bytes,
        digest: bytes | None,
        source: str,
        now: int | None,
        changes: Changes,
        work: dict[bytes, SubjectState],
    ) -> IngestResult:
        """An event at or below its subject's head: known already, or a conflict (fork choice).

        ``digest`` is the event's digest from _prepare (None: computed here). Re-delivered
        events (gossip duplicates) come here often: the head and the batch's own events are checked
        before the store, without building a set of the batch's digests.
        """
        event = signed.event
        if digest is None:
            digest = self.validator.digest(event)
        state = work.get(subject) or self.states[subject]
        if digest == state.head or any(a.digest == digest for a, _ in changes.appended):
            return IngestResult("known", subject, event.seq, digest)
        if self._stored_digest(subject, event.seq) == digest:
            return IngestResult("known", subject, event.seq, digest)
        # A different event at an occupied seq: a conflict, and the cheapest thing anyone can
        # send (any seq below the head, any bytes). Fork choice needs the subject's whole log
        # replayed, so it runs only for a candidate that first passes the checks that need no
        # replay: prev against the digest held at seq - 1, then its signatures (one recovery
        # each, after every count check) against the signer set in force there; and then only
        # within the subject's conflict budget, charged only now (junk spends no one's budget),
        # or its recovery budget for a rotation (signed by the pre-committed next set). Junk costs
        # no replay and no commit: seq - 1 may be an event this batch appended (not yet stored),
        # whose digest and resulting state are in memory.
        seq = event.seq
        try:
            if subject in changes.disputed:
                # A conflict earlier in this batch may have switched the subject's branch: the
                # store must hold it before anything is checked against the store.
                self._commit_for_conflict(changes, work, subject, source)
            stored = self.states.get(subject)  # committed: the store holds seqs 0..stored.seq
            if stored is None or seq - 1 > stored.seq:  # seq - 1 was appended by this batch
                before = self._batch_event(changes, subject, seq - 1)
                if before is None:  # not held (the batch's events form one chain per subject)
                    raise ChainBroken(f"prev 0x{event.prev.hex()} is not the digest of seq {seq - 1}")
                after = before.state

                def signer_set() -> tuple[tuple[bytes, ...], int, bytes, OperatorSet]:
                    return after.controllers, after.threshold, after.next_commitment, after.operators

                _, authority = check_competitor(signed, digest, before.digest, signer_set)
            else:
                held = stored
                prev = self._stored_digest(subject, seq - 1)
                _, authority = check_competitor(
                    signed, digest, prev, lambda: self._signer_set_after(subject, seq - 1, held)
                )
            # A rotation, or the controllers taking a seq back from operators (fork choice rule 4),
            # spends the recovery budget: operators flooding conflicts cannot lock the controllers out.
            takeback = authority == "controllers" and bool(state.operators.operators)
            self._charge_conflict(subject, isinstance(event, Rotation) or takeback)
            if subject in work:
                # This batch extended the subject: the replay reads the store, which lacks those
                # events yet. Commit what we have: only for a validly signed conflict within its
                # budget, and at most MAX_CONFLICT_COMMITS_PER_BATCH times per batch.
                self._commit_for_conflict(changes, work, subject, source)
        except (RuleViolation, Throttled) as exc:
            self._audit_reject(changes, subject, event.seq, digest, source, exc)
            return IngestResult("rejected", subject, event.seq, digest, error=exc)
        log = self._load_subject_log(subject)
        try:
            outcome = log.append(signed, self._anchored, now)
        except RuleViolation as exc:
            self._audit_reject(changes, subject, event.seq, digest, source, exc)
            return IngestResult("rejected", subject, event.seq, digest, error=exc)
        if outcome.status == "known":
            return IngestResult("known", subject, event.seq, digest)
        assert outcome.evidence is not None
        assert log.state is not None
        changes.evidence.append(outcome.evidence)
        changes.audit.append(
            AuditEntry(
                "duplicity",
                subject,
                event.seq,
                digest,
                {
                    "source": source,
                    "existing": "0x" + outcome.evidence.first_digest.hex(),
                    "switched": outcome.switched,
                },
            )
        )
        if outcome.switched:
            changes.switched.append((subject, event.seq))
            winner = log.events[event.seq]
            changes.appended.append((winner, encode_event(winner.signed)))
            changes.audit.append(AuditEntry("switch", subject, event.seq, digest, {"dropped": len(outcome.dropped)}))
        changes.states[subject] = log.state
        changes.disputed[subject] = log.disputed
        work[subject] = log.state
        return IngestResult("duplicity", subject, event.seq, digest, switched=outcome.switched)

    def at_capacity(self) -> bool:
        """Whether the node holds ``limits.max_subjects`` subjects (with this batch's new ones)."""
        return len(self.states) + self._new_subjects >= self.limits.max_subjects

    def capacity(self) -> dict[str, object]:
        """Subjects held against ``limits.max_subjects``, with a warning from 90% on (for /v1/health)."""
        held, limit = len(self.states), self.limits.max_subjects
        out: dict[str, object] = {"subjects": held, "maxSubjects": limit}
        if held >= CAPACITY_WARNING * limit:
            full = "full: new subjects are refused" if held >= limit else f"{held / limit:.0%} full"
            out["warning"] = f"limits.max_subjects is {full} (docs/adr/0027-subject-admission.md)"
        return out

    def _audit_reject(
        self,
        changes: Changes,
        subject: bytes | None,
        seq: int | None,
        digest: bytes | None,
        source: str,
        exc: KeyregError,
    ) -> None:
        """Audit a rejection, or past this ingest call's allowance count it for its summary entry."""
        if self._rejects_left > 0:
            self._rejects_left -= 1
            changes.audit.append(AuditEntry("reject", subject, seq, digest, {"source": source, **exc.to_dict()}))
        else:
            self._rejects_over[exc.code] += 1

    def _charge_conflict(self, subject: bytes, recovery: bool = False, lookback: bool = False) -> None:
        """Charge one to the subject's conflict budget (or its recovery or look-back budget), or
        raise Throttled when it is spent."""
        budget = self.lookbacks if lookback else self.recoveries if recovery else self.conflicts
        if not budget.take(subject):
            what = "look-backs" if lookback else "recovery rotations" if recovery else "conflicts"
            raise Throttled(
                f"over {budget.per_subject} {what} for this subject in {budget.window_s:g} s; retry later",
                subject="0x" + subject.hex(),
            )

    def _commit_for_conflict(
        self, changes: Changes, work: dict[bytes, SubjectState], subject: bytes, source: str
    ) -> None:
        """Commit the batch so far, before a conflict on a subject it changed is judged; Throttled
        past MAX_CONFLICT_COMMITS_PER_BATCH such commits in one batch."""
        if self._conflict_commits >= MAX_CONFLICT_COMMITS_PER_BATCH:
            raise Throttled(
                f"over {MAX_CONFLICT_COMMITS_PER_BATCH} conflicts on subjects changed in the same batch; "
                "send it again in another batch",
                subject="0x" + subject.hex(),
            )
        self._conflict_commits += 1
        self._commit(changes, source)
        changes.__init__()  # type: ignore[misc]
        work.clear()
        self._new_subjects = 0  # now in ``states``

    def _stored_digest(self, subject: bytes, seq: int) -> bytes | None:
        """The digest the store holds at (subject, seq), through the capped cache (under the lock)."""
        key = (subject, seq)
        cache = self._digests
        digest = cache.get(key)
        if digest is not None:
            cache.move_to_end(key)
            return digest
        digest = self.store.digest_at(subject, seq)
        if digest is not None:  # nothing stored there (yet): not cached, an append may fill it
            cache[key] = digest
            if len(cache) > DIGEST_CACHE_ENTRIES:
                cache.popitem(last=False)
        return digest

    @staticmethod
    def _batch_event(changes: Changes, subject: bytes, seq: int) -> Accepted | None:
        """The event this batch appended to ``subject`` at ``seq`` (not yet stored), if any."""
        for acc, _ in reversed(changes.appended):
            if acc.subject == subject and acc.signed.event.seq == seq:
                return acc
        return None

    def _signer_set_after(
        self, subject: bytes, seq: int, state: SubjectState
    ) -> tuple[tuple[bytes, ...], int, bytes, OperatorSet]:
        """(controllers, threshold, next commitment, operator set) in force after the stored event ``seq``.

        The head state's, unless a rotation or delegation came later (``last_establishment_seq`` >
        ``seq``): then the stored log is read back from ``seq`` to the establishment event in force
        there (for the operators, the latest delegation may come after it), in pages,
        decoding without any signature recovery (stored events were validated when stored). That is
        rare (rotations are); the first _FREE_SCAN_PAGES pages are free, each further page is
        charged to the subject's look-back budget (not its conflict budget: this runs before the
        signatures are checked, so junk may spend it, and spending it blocks only deep look-backs).
        """
        if state.last_establishment_seq <= seq:
            return state.controllers, state.threshold, state.next_commitment, state.operators
        operators: OperatorSet | None = None  # set by the latest delegation at or before seq, if any
        hi, pages = seq + 1, 0
        while hi > 0:
            pages += 1
            if pages > _FREE_SCAN_PAGES:
                self._charge_conflict(subject, lookback=True)
            lo = max(0, hi - _SCAN_PAGE)
            for raw in reversed(self.store.events(subject, lo, hi - lo)):
                ev = self.validator.decode(raw).event
                if isinstance(ev, Delegation) and operators is None:
                    operators = ev.operators
                elif isinstance(ev, Inception | Rotation):
                    ops = ev.operators if operators is None else operators
                    return ev.controllers, ev.threshold, ev.next_commitment, ops
            hi = lo
        raise StorageError(f"no inception stored for subject 0x{subject.hex()}")

    def _load_subject_log(self, subject: bytes) -> SubjectLog:
        log = SubjectLog(self.domain, self.limits)
        for signed in self.store.log(subject):
            log.append(signed)
        for ev in self.store.evidence(subject):
            for s in (ev.first, ev.second):
                # Evidence against a branch no longer held raises here; it stays stored as evidence.
                with contextlib.suppress(RuleViolation):
                    log.append(s, self._anchored)
        log.evidence.clear()
        return log

    def _commit(self, changes: Changes, source: str) -> None:
        if not changes:
            return
        self.store.commit(changes)
        self._applied(changes, source)

    def _applied(self, changes: Changes, source: str) -> None:
        """Bring the read model up to a committed Changes, then tell the listeners."""
        if not changes:
            return
        if changes.switched and self._digests:
            # A switch rewrites the subject's stored seqs from the switch on: forget its digests
            # (O(cache) per switch; switches are rare and each already replays a whole log).
            switched = {subject for subject, _ in changes.switched}
            for key in [k for k in self._digests if k[0] in switched]:
                del self._digests[key]
        states = self.states
        for subject, state in changes.states.items():
            old = states.get(subject)
            self.event_count += state.seq - (old.seq if old is not None else -1)
            states[subject] = state
            self.tree.set(subject, state.seq, state.head)
        if changes.states:
            self.tree_head = TreeHead(self.tree.root, len(self.tree))
        for subject, flag in changes.disputed.items():
            if flag:
                self.disputed.add(subject)
            else:
                self.disputed.discard(subject)
        self._contested.update(d.subject for d in changes.evidence)
        for g in changes.governance:
            self._governance.put(g)
        for a in changes.anchors:
            self._note_anchor(a)
        report = Report(changes.appended, changes.evidence, changes.governance, changes.anchors, source)
        for listener in self.listeners:
            listener(report)

    def _note_anchor(self, a: AnchorRecord) -> None:
        rank = anchor_rank(a)
        current = self._anchored.get(a.digest)
        if current is None or rank < current:
            self._anchored[a.digest] = rank
        position = self._positions.get(a.digest)
        if position is None or a.position < position:
            self._positions[a.digest] = a.position
        if a.mode != "batch":
            head = self._direct_heads.get(a.subject)
            if head is None or (a.seq, a.position) > (head.seq, head.position):
                self._direct_heads[a.subject] = a

    def add_governance_revocations(self, items: Iterable[GovernanceRevocation]) -> None:
        """Record revocations executed on-chain by governors (from the chain watcher)."""
        with self._lock:
            changes = Changes()
            for g in self._governance.select(items, self.states):
                changes.governance.append(g)
                changes.audit.append(
                    AuditEntry(
                        "governance",
                        g.subject,
                        None,
                        None,
                        {"keyId": g.key_id, "effectiveAt": g.effective_at, "proposalId": str(g.proposal_id)},
                    )
                )
            self._commit(changes, "chain")

    def record_anchors(self, items: Iterable[AnchorRecord]) -> None:
        """Record confirmed anchors (from the chain watcher) and re-run fork choice where disputed."""
        with self._lock:
            changes = Changes()
            for a in items:
                changes.anchors.append(a)
                changes.audit.append(
                    AuditEntry("anchor", a.subject, a.seq, a.digest, {"mode": a.mode, "block": a.block_number})
                )
            self._commit(changes, "chain")
            # Only subjects with duplicity evidence can change branch when an anchor arrives.
            for subject in dict.fromkeys(a.subject for a in changes.anchors if a.subject in self._contested):
                self._resolve(subject)

    def _resolve(self, subject: bytes) -> None:
        # Loading the log re-runs fork choice over the stored evidence with the anchors known now.
        log = self._load_subject_log(subject)
        log.resolve(self._anchored)
        changes = Changes()
        for seq, acc in enumerate(log.events):
            if self.store.digest_at(subject, seq) != acc.digest:
                changes.switched.append((subject, seq))
                changes.appended.extend((a, encode_event(a.signed)) for a in log.events[seq:])
                changes.audit.append(AuditEntry("switch", subject, seq, acc.digest, {"by": "anchor"}))
                break
        if log.state is not None:
            changes.states[subject] = log.state
            changes.disputed[subject] = log.disputed
        self._commit(changes, "chain")

    # ------------------------------------------------------------------ reads

    def state(self, subject: bytes) -> SubjectState | None:
        """Head state of a subject, or None."""
        return self.states.get(subject)

    def governance(self, subject: bytes) -> list[GovernanceRevocation]:
        """Governance revocations recorded for a subject."""
        return self._governance.of(subject)

    def verdict(self, subject: bytes, key_id: str, at: int | None = None, purpose: str | None = None) -> Verdict:
        """Is key_id of subject valid for purpose at time ``at`` (default: now)?"""
        when = int(self.clock()) if at is None else at
        return key_verdict(
            self.states.get(subject),
            subject,
            key_id,
            when,
            purpose,
            self._governance.relevant(subject, key_id),
            subject in self.disputed,
        )

    def valid_keys(self, subject: bytes, at: int | None = None, purpose: str | None = None) -> list[KeyRecord]:
        """Keys valid now (or at ``at``): the JWKS view. Empty for unknown or disputed subjects."""
        state = self.states.get(subject)
        if state is None or subject in self.disputed:
            return []
        when = int(self.clock()) if at is None else at
        return valid_keys(state, when, purpose, self._governance.of(subject))

    @overload
    def read_tree(self, fn: Callable[[SparseMerkleTree], T], blocking: Literal[True] = True) -> T: ...
    @overload
    def read_tree(self, fn: Callable[[SparseMerkleTree], T], blocking: bool) -> T | None: ...

    def read_tree(self, fn: Callable[[SparseMerkleTree], T], blocking: bool = True) -> T | None:
        """``fn(tree)`` on the Merkle tree of subject heads, holding the registry's lock.

        For reads below the root (sync's subtree hashes and leaf pages); the root and count are
        :attr:`tree_head`, which needs no lock. The tree changes under that lock, and its hash
        reads fill a cache, so a hash read racing an update could cache a stale hash for good:
        read subtrees only through here. The call blocks while a batch is ingested;
        ``blocking=False`` returns None at once instead. ``fn`` must be quick and must not call
        back into the registry.
        """
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            return fn(self.tree)
        finally:
            self._lock.release()

    def direct_head(self, subject: bytes) -> AnchorRecord | None:
        """The newest registry head (direct or recovery anchor) the watcher confirmed for ``subject``."""
        return self._direct_heads.get(subject)

    def anchored_position(self, digest: bytes) -> int | None:
        """On-chain position of the earliest anchor of a digest, if any."""
        return self._positions.get(digest)

    def events(self, subject: bytes, from_seq: int = 0, limit: int = 1000) -> list[bytes]:
        """Canonical wire bytes of a subject's events from ``from_seq``."""
        return self.store.events(subject, from_seq, limit)
