"""The first schema: events, archive, derived subjects/keys, evidence, governance, anchors, audit.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: this file states the schema as first shipped and does not import keyreg.store.schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("subject", sa.LargeBinary(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "archived_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.LargeBinary(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("archived_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_archived_subject_seq", "archived_events", ["subject", "seq"])
    op.create_table(
        "subjects",
        sa.Column("subject", sa.LargeBinary(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head", sa.LargeBinary(32), nullable=False),
        sa.Column("disputed", sa.Boolean, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "keys",
        sa.Column("subject", sa.LargeBinary(32), primary_key=True),
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("purposes", sa.Text, nullable=False),
        sa.Column("published_seq", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.BigInteger, nullable=False),
        sa.Column("valid_from", sa.BigInteger, nullable=False),
        sa.Column("not_after", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_seq", sa.BigInteger, nullable=True),
        sa.Column("revoked_reason", sa.Text, nullable=False),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.LargeBinary(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("first_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("first_raw", sa.LargeBinary, nullable=False),
        sa.Column("second_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("second_raw", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("first_digest", "second_digest", name="uq_evidence_pair"),
    )
    op.create_index("ix_evidence_subject", "evidence", ["subject"])
    op.create_table(
        "governance",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.LargeBinary(32), nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("effective_at", sa.BigInteger, nullable=False),
        sa.Column("proposal_id", sa.String(80), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("subject", "key_id", "proposal_id", name="uq_governance"),
    )
    op.create_table(
        "anchors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.LargeBinary(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.LargeBinary, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=True),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("digest", "position", name="uq_anchor"),
    )
    op.create_index("ix_anchors_subject", "anchors", ["subject"])
    op.create_table(
        "audit",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.LargeBinary(32), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("digest", sa.LargeBinary(32), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next_index", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.LargeBinary(32), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "next_index": 0, "last_hash": b"\x00" * 32}])


def downgrade() -> None:
    for name in ("audit_head", "audit", "anchors", "governance", "evidence", "keys", "subjects", "archived_events"):
        op.drop_table(name)
    op.drop_table("events")
