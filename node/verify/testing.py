"""Test double: a simulated registry chain state that produces real proofs, without a chain.

:class:`SimulatedRegistry` keeps the registry contract's storage as {slot: value} (written in the
contract's layout), builds the storage and state tries with :func:`keyreg.verify.mpt.build_trie`,
wraps the state root in a block header, and emits a bundle whose proofs are exactly what
``eth_getProof`` would return for that state. Tests of the verifier's rules and the benchmark
run on it in milliseconds; the anvil integration test proves the same code against a real node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..core.eip712 import event_digest
from ..core.hashing import keccak
from ..core.merkle import SparseMerkleTree
from ..core.records import Domain, SignedEvent
from . import layout, mpt, rlp
from .bundle import (
    BatchAnchor,
    Bundle,
    Checkpoint,
    DirectAnchor,
    EvidenceEntry,
    GovernanceEntry,
    SubjectEntry,
)


def make_header(state_root: bytes, number: int, timestamp: int, parent: bytes = b"\x11" * 32) -> bytes:
    """RLP of a plausible post-Cancun header with the given state root, number and timestamp."""
    u = rlp.encode_uint
    fields: list[rlp.Item] = [
        parent,
        keccak(rlp.encode([])),  # ommers hash
        b"\x00" * 20,  # coinbase
        state_root,
        mpt.EMPTY_TRIE_ROOT,  # transactions root
        mpt.EMPTY_TRIE_ROOT,  # receipts root
        b"\x00" * 256,  # logs bloom
        u(0),  # difficulty
        u(number),
        u(30_000_000),  # gas limit
        u(0),  # gas used
        u(timestamp),
        b"",  # extra data
        b"\x00" * 32,  # mix hash / prevrandao
        b"\x00" * 8,  # nonce
        u(1_000_000_000),  # base fee
        mpt.EMPTY_TRIE_ROOT,  # withdrawals root
        u(0),  # blob gas used
        u(0),  # excess blob gas
        b"\x00" * 32,  # parent beacon block root
    ]
    return rlp.encode(fields)


@dataclass
class SubjectRecord:
    """What the simulated exporter knows about one subject."""

    events: list[SignedEvent]
    evidence: list[EvidenceEntry] = field(default_factory=list)
    governance: list[GovernanceEntry] = field(default_factory=list)
    batch: BatchAnchor | None = None


class SimulatedRegistry:
    """The registry contract's storage at one block, and a bundle exporter over it."""

    def __init__(self, domain: Domain, number: int = 1000, timestamp: int = 1_700_000_000) -> None:
        self.domain = domain
        self.number = number
        self.timestamp = timestamp
        self.storage: dict[int, int] = {}
        self.subjects: dict[bytes, SubjectRecord] = {}
        self.batches: list[bytes] = []

    # ---------------------------------------------------------------- what the contract would do

    def anchor_direct(self, subject: bytes, seq: int, digest: bytes, timestamp: int = 0, kind: int = 0) -> None:
        """Write a subject's head slots as a direct anchor does."""
        seq_slot, digest_slot, _ = layout.head_slots(subject)
        self.storage[seq_slot] = seq | timestamp << 64 | kind << 128
        self.storage[digest_slot] = int.from_bytes(digest, "big")

    def anchor_batch(self, tree: SparseMerkleTree, block: int | None = None) -> bytes:
        """Anchor a batch root; every subject in the tree gets an inclusion proof in the bundle."""
        root = tree.root
        self.storage[layout.batch_slot(root)] = (block or self.number) | self.timestamp << 48
        self.batches.append(root)
        for sid in tree.subjects_under(0, 0):
            if sid in self.subjects:
                head = tree.get(sid)
                assert head is not None
                self.subjects[sid].batch = BatchAnchor(root, head[0], head[1], tree.prove(sid).siblings)
        return root

    def revoke_by_governance(self, subject: bytes, entry: GovernanceEntry) -> None:
        """Record a governance revocation in storage and as an indexed record."""
        self.storage[layout.governance_slot(subject, entry.key_id)] = entry.effective_at
        self.subjects[subject].governance.append(entry)

    # ---------------------------------------------------------------- what a node holds

    def add_subject(self, events: Sequence[SignedEvent]) -> bytes:
        """Register a subject's log (first event: its inception); returns the subject id."""
        sid = event_digest(self.domain, events[0].event)
        self.subjects[sid] = SubjectRecord(list(events))
        return sid

    def head(self, subject: bytes) -> tuple[int, bytes]:
        """(seq, digest) of the subject's log head."""
        events = self.subjects[subject].events
        return events[-1].event.seq, event_digest(self.domain, events[-1].event)

    # ---------------------------------------------------------------- export

    def slots(self, subject: bytes) -> list[int]:
        """Every storage slot a verifier reads for this subject."""
        rec = self.subjects[subject]
        seq_slot, digest_slot, _ = layout.head_slots(subject)
        out = [seq_slot, digest_slot]
        evidence_events = [s for e in rec.evidence for s in (e.first, e.second)]
        if layout.names_governor(rec.events):
            ids = layout.governance_key_ids([*rec.events, *evidence_events], (g.key_id for g in rec.governance))
            out += [layout.governance_slot(subject, k) for k in ids]
        return out

    def export(self, subjects: Iterable[bytes] | None = None, extra_accounts: int = 8) -> tuple[Bundle, bytes]:
        """A bundle of the chosen subjects (default all) and the checkpoint block hash to pin."""
        chosen = sorted(self.subjects if subjects is None else subjects)
        storage_root, storage_nodes = mpt.build_trie(mpt.storage_items(self.storage))
        account = mpt.Account(1, 0, storage_root, keccak(b"registry runtime code"))
        registry = self.domain.verifying_contract
        items = dict([mpt.account_item(registry, account)])
        for i in range(extra_accounts):  # other accounts, so the state trie has some depth
            addr = keccak(i.to_bytes(4, "big"))[:20]
            items.update([mpt.account_item(addr, mpt.Account(i, 10**18, mpt.EMPTY_TRIE_ROOT, mpt.EMPTY_CODE_HASH))])
        state_root, state_nodes = mpt.build_trie(items)
        header = make_header(state_root, self.number, self.timestamp)
        block_hash = keccak(header)

        nodes: set[bytes] = set(mpt.proof_nodes(state_nodes, state_root, keccak(registry)))
        roots = set()
        slots: list[int] = []
        entries = []
        for sid in chosen:
            rec = self.subjects[sid]
            slots += self.slots(sid)
            if rec.batch is not None:
                roots.add(rec.batch.root)
            seq_slot, digest_slot, _ = layout.head_slots(sid)
            anchor = DirectAnchor(
                layout.unpack_seq(self.storage.get(seq_slot, 0)),
                self.storage.get(digest_slot, 0).to_bytes(32, "big"),
            )
            entries.append(
                SubjectEntry(sid, tuple(rec.events), tuple(rec.evidence), tuple(rec.governance), anchor, rec.batch)
            )
        slots += [layout.batch_slot(r) for r in roots]
        pool = mpt.NodePool(storage_nodes.values())
        for slot in slots:
            nodes.update(mpt.proof_nodes(storage_nodes, storage_root, keccak(slot.to_bytes(32, "big")), pool))
        checkpoint = Checkpoint(self.number, block_hash, self.timestamp, header)
        bundle = Bundle(self.domain, checkpoint, tuple(sorted(nodes)), tuple(sorted(roots)), tuple(entries))
        return bundle, block_hash
