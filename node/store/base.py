"""The storage seam: what the registry needs from a store, and nothing more.

Implementations: :class:`keyreg.store.memory.MemoryStore` (test double, shipped with the code) and
the SQLAlchemy store (SQLite / PostgreSQL). Both must pass the same test suite.

Invariant: :meth:`Store.commit` applies a whole :class:`Changes` in one transaction: appended
events, the derived subject states, duplicity evidence, branch switches and audit records commit
together or not at all. After ``commit`` returns, every event in it is durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import StorageError
from ..core.fork import Duplicity
from ..core.log import Accepted, SubjectState
from ..core.records import GovernanceRevocation, SignedEvent


class EventConflict(StorageError):
    """A commit tried to store a different event at an occupied (subject, seq).

    The registry turns such events into duplicity evidence before they reach the store, so this
    is a bug guard: the transaction is rolled back and nothing is overwritten.
    """

    code = "store_conflict"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record before it is chained: what happened, to what, and why."""

    action: str  # "accept" | "reject" | "duplicity" | "switch" | "key-op" | "anchor" | "governance" | ...
    subject: bytes | None
    seq: int | None
    digest: bytes | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One chained audit record as stored (see keyreg.store.audit for the hash rule)."""

    index: int  # 0, 1, 2... without gaps
    time: int  # unix milliseconds when the store wrote it
    action: str
    subject: bytes | None
    seq: int | None
    digest: bytes | None
    detail: dict[str, Any]
    prev_hash: bytes  # hash of record index-1 (32 zero bytes for index 0)
    hash: bytes


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    """A head the chain watcher saw anchored with enough confirmations."""

    subject: bytes
    seq: int
    digest: bytes
    position: int  # block_number * 1_000_000 + log_index: lower = anchored earlier
    mode: str  # "direct" | "batch" | "recovery" (a HeadReplaced: the contract accepted a recovery rotation)
    block_number: int
    tx_hash: bytes
    root: bytes | None = None  # the batch root, for mode == "batch"


@dataclass
class Changes:
    """Everything one ingest batch changes, committed atomically."""

    appended: list[tuple[Accepted, bytes]] = field(default_factory=list)  # (accepted, canonical wire bytes)
    states: dict[bytes, SubjectState] = field(default_factory=dict)  # new head state per touched subject
    evidence: list[Duplicity] = field(default_factory=list)
    # (subject, seq): the branch from seq on was replaced by fork choice; stored events at >= seq
    # are moved to the losing-branch archive (never deleted) before ``appended`` is applied.
    switched: list[tuple[bytes, int]] = field(default_factory=list)
    disputed: dict[bytes, bool] = field(default_factory=dict)  # subject -> disputed now?
    governance: list[GovernanceRevocation] = field(default_factory=list)
    anchors: list[AnchorRecord] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.appended
            or self.states
            or self.evidence
            or self.switched
            or self.governance
            or self.anchors
            or self.audit
        )


class Store(Protocol):
    """Durable registry storage."""

    def load_states(self) -> Iterator[tuple[SubjectState, bool]]:
        """Every subject's head state and whether it is disputed (read once at start-up)."""
        ...

    def commit(self, changes: Changes) -> None:
        """Apply all changes in one transaction (see module invariant)."""
        ...

    def events(self, subject: bytes, from_seq: int = 0, limit: int = 1000) -> list[bytes]:
        """Canonical wire bytes of the subject's current-branch events, seq >= from_seq, ascending."""
        ...

    def log(self, subject: bytes) -> list[SignedEvent]:
        """The subject's whole current branch, decoded (for the conflict path and exports)."""
        ...

    def evidence(self, subject: bytes | None = None) -> list[Duplicity]:
        """Duplicity evidence, for one subject or all."""
        ...

    def evidence_page(self, subject: bytes, after: int = 0, limit: int = 100) -> list[tuple[int, Duplicity]]:
        """At most ``limit`` of a subject's evidence entries with id > ``after``, as (id, entry) in
        id order: the id is the next page's ``after``."""
        ...

    def governance_revocations(self, subject: bytes | None = None) -> list[GovernanceRevocation]:
        """Governance revocations applied, for one subject or all."""
        ...

    def digest_at(self, subject: bytes, seq: int) -> bytes | None:
        """Digest of the current-branch event at (subject, seq), or None."""
        ...

    def anchors(self, subject: bytes | None = None) -> list[AnchorRecord]:
        """Anchors recorded, for one subject or all, in chain order."""
        ...

    def append_audit(self, entries: list[AuditEntry]) -> list[AuditRecord]:
        """Chain and store audit records of local operations (key ops...) in their own transaction."""
        ...

    def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Chained audit records with index >= from_index, ascending."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split an iterable into lists of at most ``size`` items."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
