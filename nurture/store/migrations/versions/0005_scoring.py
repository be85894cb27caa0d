"""Scoring: the parts of the score on each prospect, the history of rank/temperature/stage changes, the handoffs
to sales, and the time an event was relabelled.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import CATCHING_WHERE, JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.add_column("prospects", sa.Column("fit_score", sa.Float, nullable=False, server_default="0"))
    op.add_column("prospects", sa.Column("engagement_score", sa.Float, nullable=False, server_default="0"))
    op.add_column("prospects", sa.Column("scored_at", UTCDateTime, nullable=True))
    op.add_column("events", sa.Column("relabeled_at", UTCDateTime, nullable=True))
    op.create_index(
        "ix_events_catchers",
        "events",
        ["prospect_id", "occurred_at"],
        sqlite_where=sa.text(CATCHING_WHERE),
        postgresql_where=sa.text(CATCHING_WHERE),
    )
    op.create_table(
        "score_changes",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("old", sa.String(16), nullable=False),
        sa.Column("new", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("score_before", sa.Float, nullable=False),
        sa.Column("score_after", sa.Float, nullable=False),
        sa.Column("event_ids", JSONType, nullable=False),
        sa.Column("rules", JSONType, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("details", JSONType, nullable=False),
    )
    op.create_index("ix_score_changes_prospect_at", "score_changes", ["prospect_id", "at"])
    op.create_index("ix_score_changes_at", "score_changes", ["at"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("change_id", _ID, sa.ForeignKey("score_changes.id", ondelete="SET NULL"), nullable=True),
        sa.Column("event_id", _ID, sa.ForeignKey("events.id", ondelete="SET NULL"), nullable=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("notice_due_at", UTCDateTime, nullable=True),
        sa.Column("notice_attempts", sa.Integer, nullable=False),
        sa.Column("notice_error", sa.Text, nullable=False),
        sa.Column("notified_at", UTCDateTime, nullable=True),
        sa.Column("escalated_at", UTCDateTime, nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("verdict_reason", sa.Text, nullable=False),
        sa.UniqueConstraint("change_id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_handoffs_state_created", "handoffs", ["state", "created_at"])
    op.create_index("ix_handoffs_notice_due", "handoffs", ["notice_due_at"])
    op.create_index("ix_handoffs_prospect", "handoffs", ["prospect_id"])


def downgrade() -> None:
    op.drop_table("handoffs")
    op.drop_table("score_changes")
    op.drop_index("ix_events_catchers", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("relabeled_at")
    with op.batch_alter_table("prospects") as batch:
        batch.drop_column("scored_at")
        batch.drop_column("engagement_score")
        batch.drop_column("fit_score")
