"""Loading a bundle: the one pass that checks everything against the pinned checkpoint.

:meth:`keyreg.verify.Verifier.from_bundle` runs this pass and refuses the whole bundle on the first
fault (a specific :class:`~keyreg.verify.errors.BundleRefused`):

1. the checkpoint header hashes to the pinned block hash; its state root anchors every proof;
2. the registry account is proven in that state, and each subject's head slots (seq, digest) and,
   for subjects that named a governor, each governance-revocation slot are proven in its storage;
3. batch roots are proven anchored, and each batch head's sparse Merkle proof leads to its root;
4. every log replays through the core's pipeline (:class:`keyreg.core.validator.Validator`, one
   implementation of the rules),
   duplicity evidence goes through :class:`keyreg.core.fork.SubjectLog` with the proven anchors;
5. every governance record matches the storage exactly (none missing, none invented).

Afterwards each subject is classified: consistent with its anchors, *disputed* (the log and an
anchor disagree, or an unresolved duplicity), or *stale view* (an anchor shows a head newer than
the log: the exporter hid it).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..core.errors import RuleViolation
from ..core.fork import SubjectLog
from ..core.hashing import keccak
from ..core.limits import Limits
from ..core.log import SubjectState
from ..core.records import ZERO32, Authority, Domain, GovernanceRevocation, Inception, SignedEvent
from ..core.validator import Validator
from . import layout
from .bundle import Bundle, SubjectEntry, decode_subject
from .errors import (
    AnchorMismatch,
    BundleFormatError,
    CheckpointMismatch,
    EvidenceInvalid,
    GovernanceInvalid,
    LogInvalid,
    ProofInvalid,
)
from .header import Header, HeaderError, decode_header
from .inclusion import InclusionChecker
from .mpt import EMPTY_CODE_HASH, NodePool, ProofError, account_at, storage_at

_PARALLEL_MIN_SUBJECTS = 512


def default_workers() -> int:
    """Threads used to verify a large bundle: one per CPU this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


_gc_lock = threading.Lock()
_gc_pauses = 0  # loads in progress (guarded by _gc_lock); the collector is off while > 0
_gc_was_enabled = False  # the collector's state when the first of them started


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off while a bundle loads, then age what it built once.

    A load allocates about a million container objects (parsed JSON, records, states) and frees
    few: with the collector on, the young generations are scanned over and over and the whole heap
    again each time it grows by a quarter (~10% of the load's CPU). Loading makes no reference
    cycles except on an error path, which are collected once the collector is back. Concurrent
    loads nest: the first one switches the collector off, the last one restores it.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
                # One scan of the young generations moves the loaded view to the oldest one, as
                # the collector would have done: the host's next collections do not rescan it.
                gc.collect(1)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head the chain proves anchored at the checkpoint."""

    seq: int
    digest: bytes
    source: str  # "direct" | "batch"
    root: bytes | None = None


@dataclass(frozen=True, slots=True)
class SubjectView:
    """What a verified bundle says about one subject."""

    subject: bytes
    state: SubjectState
    digests: tuple[bytes, ...]  # digest of the log's event at each seq
    governance: tuple[GovernanceRevocation, ...]
    anchors: tuple[Anchor, ...]
    disputed: bool
    disputed_reason: str = ""
    hidden_head: Anchor | None = None  # an anchored head newer than the log's head
    # who signed the log's event at each seq: "controllers", or "operators" (an operator-signed update)
    authorities: tuple[Authority, ...] = ()

    @property
    def anchored(self) -> Anchor | None:
        """The newest anchored head the proofs show."""
        return max(self.anchors, key=lambda a: a.seq) if self.anchors else None


def check_checkpoint(bundle: Bundle, pinned: bytes) -> Header:
    cp = bundle.checkpoint
    if cp.hash != pinned:
        raise CheckpointMismatch(
            f"bundle is for block 0x{cp.hash.hex()}, the pinned checkpoint is 0x{pinned.hex()}", part="checkpoint"
        )
    if keccak(cp.header) != pinned:  # the cheap check first: never decode bytes the pin does not vouch for
        raise CheckpointMismatch("checkpoint header does not hash to the pinned block hash", part="checkpoint")
    try:
        header = decode_header(cp.header)
    except HeaderError as exc:
        raise CheckpointMismatch(f"checkpoint header: {exc}", part="checkpoint") from None
    if header.number != cp.number or header.timestamp != cp.timestamp:
        raise CheckpointMismatch(
            f"checkpoint states block {cp.number} at {cp.timestamp}, its header says block {header.number} "
            f"at {header.timestamp}",
            part="checkpoint",
        )
    return header


class _Storage:
    """The registry's storage at the checkpoint, read through proofs."""

    def __init__(self, pool: NodePool, root: bytes) -> None:
        self.pool = pool
        self.root = root

    def __call__(self, slot: int, what: str, subject: bytes = b"") -> int:
        try:
            return storage_at(self.pool, self.root, slot)
        except ProofError as exc:
            of = f" of subject 0x{subject.hex()}" if subject else ""
            raise ProofInvalid(f"storage proof of {what}{of}: {exc}", part="proofNodes") from None


def verify_subjects(
    bundle: Bundle, raw_subjects: list[Any], header: Header, limits: Limits, workers: int = 1
) -> tuple[tuple[SubjectEntry, ...], dict[bytes, SubjectView]]:
    pool = NodePool(bundle.proof_nodes)
    registry = bundle.domain.verifying_contract
    try:
        account = account_at(pool, header.state_root, registry)
    except ProofError as exc:
        raise ProofInvalid(f"account proof of the registry: {exc}", part="proofNodes") from None
    if account is None or account.code_hash == EMPTY_CODE_HASH:
        raise ProofInvalid(
            f"no registry contract at 0x{registry.hex()} in block {header.number} (wrong domain or checkpoint?)",
            part="domain",
        )
    storage = _Storage(pool, account.storage_root)

    batch_blocks: dict[bytes, int] = {}
    for root in bundle.batches:
        word = storage(layout.batch_slot(root), f"batch root 0x{root.hex()}")
        if word == 0:
            raise ProofInvalid(f"batch root 0x{root.hex()} is not anchored at the checkpoint", part="batches")
        batch_blocks[root] = layout.unpack_batch_block(word)
    inclusion = InclusionChecker()
    validator = Validator(bundle.domain, limits)

    def verify_chunk(start: int, stop: int) -> list[tuple[SubjectEntry, SubjectView]]:
        out = []
        for i in range(start, stop):
            entry = decode_subject(raw_subjects[i], i)
            out.append((entry, _verify_subject(entry, validator, storage, batch_blocks, inclusion)))
        return out

    n = len(raw_subjects)
    if workers > 1 and n >= _PARALLEL_MIN_SUBJECTS:
        # Threads, not processes: libsecp256k1 (signature recovery, about half of a replay) runs
        # without the GIL, so one thread's recovery overlaps another's decoding and hashing.
        # Chunks are contiguous; the fault reported is the earliest of the first failing chunk.
        size = -(-n // workers)
        bounds = [(i, min(i + size, n)) for i in range(0, n, size)]
        with ThreadPoolExecutor(workers, thread_name_prefix="keyreg-verify") as ex:
            futures = [ex.submit(verify_chunk, a, b) for a, b in bounds]
            results = [pair for f in futures for pair in f.result()]
    else:
        results = verify_chunk(0, n)

    views: dict[bytes, SubjectView] = {}
    for entry, view in results:
        if entry.subject in views:
            raise BundleFormatError(f"subject 0x{entry.subject.hex()} appears twice", part="subjects")
        views[entry.subject] = view
    entries = tuple(entry for entry, _ in results)

    unused = pool.unused()
    if unused:
        raise ProofInvalid(
            f"{len(unused)} proof node(s) are not on any proven path (first 0x{unused[0].hex()}): tampered or padded",
            part="proofNodes",
        )
    return entries, views


def _replay(entry: SubjectEntry, validator: Validator) -> tuple[SubjectState, list[bytes], list[Authority]]:
    sid = "0x" + entry.subject.hex()
    if not entry.events:
        raise LogInvalid(f"subject {sid}: the log is empty", part="subjects", subject=sid)
    state: SubjectState | None = None
    digests: list[bytes] = []
    authorities: list[Authority] = []
    for i, signed in enumerate(entry.events):
        try:
            acc = validator.apply(state, signed)
        except RuleViolation as exc:
            raise LogInvalid(
                f"subject {sid}: event {i} does not replay: {exc.message}", part="subjects", subject=sid, rule=exc.code
            ) from None
        if i == 0 and (not isinstance(signed.event, Inception) or acc.digest != entry.subject):
            raise LogInvalid(f"subject {sid}: the log does not start with this subject's inception", part="subjects")
        state = acc.state
        digests.append(acc.digest)
        authorities.append(acc.authority)
    assert state is not None
    return state, digests, authorities


def _with_evidence(
    entry: SubjectEntry, domain: Domain, limits: Limits, anchored: dict[bytes, int]
) -> tuple[SubjectState, list[bytes], list[Authority], bool]:
    """Replay the log and its duplicity evidence through the core's fork choice."""
    sid = "0x" + entry.subject.hex()
    log = SubjectLog(domain, limits)
    for signed in entry.events:
        log.append(signed, anchored)  # already replayed once: cannot fail
    for i, ev in enumerate(entry.evidence):
        pair: tuple[SignedEvent, SignedEvent] = (ev.first, ev.second)
        if any(s.event.seq != ev.seq or isinstance(s.event, Inception) for s in pair):
            raise EvidenceInvalid(f"subject {sid}: evidence {i}: both events must be at seq {ev.seq}", part="subjects")
        if any(s.event.subject != entry.subject for s in pair):  # type: ignore[union-attr]
            raise EvidenceInvalid(f"subject {sid}: evidence {i} is about another subject", part="subjects")
        if ev.first == ev.second:
            raise EvidenceInvalid(f"subject {sid}: evidence {i} holds the same event twice", part="subjects")
        for signed in pair:
            try:
                result = log.append(signed, anchored)
            except RuleViolation as exc:
                raise EvidenceInvalid(
                    f"subject {sid}: evidence {i}: an event is not valid at seq {ev.seq}: {exc.message}",
                    part="subjects",
                    rule=exc.code,
                ) from None
            if result.status == "accepted":
                raise EvidenceInvalid(
                    f"subject {sid}: evidence {i}: seq {ev.seq} is not occupied in the log", part="subjects"
                )
    state = log.state
    assert state is not None
    return state, [a.digest for a in log.events], [a.authority for a in log.events], log.disputed


def _governance(entry: SubjectEntry, state: SubjectState, storage: _Storage) -> tuple[GovernanceRevocation, ...]:
    sid = "0x" + entry.subject.hex()
    records = {g.key_id: g for g in entry.governance}
    if len(records) != len(entry.governance):
        raise GovernanceInvalid(f"subject {sid}: two governance records for one key id", part="subjects")
    if not state.governors:  # no establishment event of the log named a governor (protocol 8.3)
        if records:
            raise GovernanceInvalid(
                f"subject {sid} named no governor, yet the bundle lists governance revocations", part="subjects"
            )
        return ()
    out: list[GovernanceRevocation] = []
    evidence_events = [s for ev in entry.evidence for s in (ev.first, ev.second)]
    for kid in layout.governance_key_ids([*entry.events, *evidence_events], records):
        word = storage(layout.governance_slot(entry.subject, kid), f"governance of {kid!r}")
        proven = layout.unpack_effective_at(word)
        g = records.get(kid)
        if g is None:
            if proven:
                raise GovernanceInvalid(
                    f"subject {sid}: the registry holds a governance revocation of {kid or 'the subject'!r} "
                    f"from {proven} that the bundle omits",
                    part="subjects",
                )
            continue
        if g.effective_at != proven:
            raise GovernanceInvalid(
                f"subject {sid}: governance record for {kid or 'the subject'!r} says effective {g.effective_at}, "
                f"the registry holds {proven or 'none'}",
                part="subjects",
            )
        if g.governor not in state.governors:
            named = ", ".join("0x" + a.hex() for a in state.governors)
            raise GovernanceInvalid(
                f"subject {sid}: governance record names governor 0x{g.governor.hex()}, the subject named {named}",
                part="subjects",
            )
        out.append(
            GovernanceRevocation(
                entry.subject, kid, g.effective_at, g.reason_hash, g.proposal_id, g.governor, g.block_number, g.tx_hash
            )
        )
    return tuple(out)


def _verify_subject(
    entry: SubjectEntry,
    validator: Validator,
    storage: _Storage,
    batch_blocks: dict[bytes, int],
    inclusion: InclusionChecker,
) -> SubjectView:
    sid = "0x" + entry.subject.hex()
    state, digests, authorities = _replay(entry, validator)

    seq_slot, digest_slot, _ = layout.head_slots(entry.subject)
    seq = layout.unpack_seq(storage(seq_slot, "the head seq", entry.subject))
    digest = storage(digest_slot, "the head digest", entry.subject).to_bytes(32, "big")
    if (entry.anchor.seq, entry.anchor.digest) != (seq, digest):
        raise AnchorMismatch(
            f"subject {sid}: bundle claims anchored head seq {entry.anchor.seq} 0x{entry.anchor.digest.hex()}, "
            f"the registry holds seq {seq} 0x{digest.hex()}",
            part="subjects",
        )
    anchors: list[Anchor] = []
    if digest != ZERO32:
        anchors.append(Anchor(seq, digest, "direct"))
    if entry.batch is not None:
        b = entry.batch
        if b.root not in batch_blocks:
            raise ProofInvalid(
                f"subject {sid}: batch root 0x{b.root.hex()} is not in the bundle's batches", part="subjects"
            )
        if not inclusion.verify(b.root, entry.subject, b.seq, b.digest, b.siblings):
            raise ProofInvalid(
                f"subject {sid}: the batch inclusion proof of seq {b.seq} does not lead to root 0x{b.root.hex()}",
                part="subjects",
            )
        anchors.append(Anchor(b.seq, b.digest, "batch", b.root))

    disputed = False
    if entry.evidence:
        positions = {
            a.digest: 0 if a.source == "direct" else batch_blocks[a.root or b""] * 1_000_000 + 1 for a in anchors
        }
        state, digests, authorities, disputed = _with_evidence(entry, validator.domain, validator.limits, positions)
    reason = "two valid events exist at one seq and no anchor resolves them; failing closed" if disputed else ""

    hidden: Anchor | None = None
    for a in anchors:
        if a.seq >= len(digests):
            if hidden is None or a.seq > hidden.seq:
                hidden = a
        elif digests[a.seq] != a.digest:
            disputed = True
            reason = (
                f"the {a.source} anchor holds 0x{a.digest.hex()} at seq {a.seq} but the log's event there is "
                f"0x{digests[a.seq].hex()}; failing closed"
            )
    governance = _governance(entry, state, storage)
    return SubjectView(
        entry.subject, state, tuple(digests), governance, tuple(anchors), disputed, reason, hidden, tuple(authorities)
    )
