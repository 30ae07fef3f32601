"""The SQL schema, as SQLAlchemy Core tables (the runtime's view; migrations create it).

Authoritative data: ``events`` (the current branch of each log, canonical wire bytes),
``archived_events`` (losing branches, never deleted), ``evidence``, ``governance``, ``anchors``
and ``audit``. Derived data, rebuilt by replay and checked by ``db check``: ``subjects`` (head
state) and ``keys`` (per-key query columns). ``audit_head`` is the single row that serialises
audit writers (the node and a CLI may both append).

A test compares this module with the migrated database, so the two cannot drift.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("subject", LargeBinary(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("raw", LargeBinary, nullable=False),  # canonical wire bytes (keyreg.core.codec)
    Column("received_at", BigInteger, nullable=False),  # unix ms
)

archived_events = Table(
    "archived_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", LargeBinary(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("archived_at", BigInteger, nullable=False),
    Index("ix_archived_subject_seq", "subject", "seq"),
)

subjects = Table(
    "subjects",
    metadata,
    Column("subject", LargeBinary(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("head", LargeBinary(32), nullable=False),
    Column("disputed", Boolean, nullable=False, default=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("state", Text, nullable=False),  # keyreg.store.serialize.state_to_json
)

keys = Table(
    "keys",
    metadata,
    Column("subject", LargeBinary(32), primary_key=True),
    Column("key_id", Text, primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("purposes", Text, nullable=False),  # canonical JSON list
    Column("published_seq", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=False),
    Column("valid_from", BigInteger, nullable=False),
    Column("not_after", BigInteger, nullable=True),  # NULL = no expiry
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_seq", BigInteger, nullable=True),
    Column("revoked_reason", Text, nullable=False),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", LargeBinary(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("first_digest", LargeBinary(32), nullable=False),
    Column("first_raw", LargeBinary, nullable=False),
    Column("second_digest", LargeBinary(32), nullable=False),
    Column("second_raw", LargeBinary, nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    UniqueConstraint("first_digest", "second_digest", name="uq_evidence_pair"),
    Index("ix_evidence_subject", "subject"),
)

governance = Table(
    "governance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", LargeBinary(32), nullable=False),
    Column("key_id", Text, nullable=False),
    Column("effective_at", BigInteger, nullable=False),  # clamped; ``record`` is exact
    Column("proposal_id", String(80), nullable=False),  # uint256 as decimal text
    Column("record", Text, nullable=False),  # keyreg.store.serialize.governance_to_json
    Column("recorded_at", BigInteger, nullable=False),
    UniqueConstraint("subject", "key_id", "proposal_id", name="uq_governance"),
)

anchors = Table(
    "anchors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", LargeBinary(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("tx_hash", LargeBinary, nullable=False),
    Column("root", LargeBinary, nullable=True),
    Column("recorded_at", BigInteger, nullable=False),
    UniqueConstraint("digest", "position", name="uq_anchor"),
    Index("ix_anchors_subject", "subject"),
)

audit = Table(
    "audit",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),  # unix ms
    Column("action", String(32), nullable=False),
    Column("subject", LargeBinary(32), nullable=True),
    Column("seq", BigInteger, nullable=True),
    Column("digest", LargeBinary(32), nullable=True),
    Column("detail", Text, nullable=False),  # canonical JSON
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("next_index", BigInteger, nullable=False),
    Column("last_hash", LargeBinary(32), nullable=False),
)
