"""Sign-up with double opt-in: pending subscriptions, the topics a prospect chose, and consent records.

Revision ID: 0012
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import JSONType, UTCDateTime

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prospect_topics",
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic", sa.String(100), primary_key=True),
        sa.Column("subscribed", sa.Boolean, nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
    )
    op.create_table(
        "pending_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("form_id", sa.String(100), nullable=False),
        sa.Column("fields", JSONType, nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("wording", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("last_sent_at", UTCDateTime, nullable=True),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("email_hash"),
    )
    op.create_index("ix_pending_subscriptions_expires", "pending_subscriptions", ["expires_at"])
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="SET NULL"), nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("given_at", UTCDateTime, nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("wording", sa.Text, nullable=False),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
        sa.Column("topics", JSONType, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_consent_records_prospect", "consent_records", ["prospect_id"])
    op.create_index("ix_consent_records_email", "consent_records", ["email"])
    op.create_index("ix_consent_records_given", "consent_records", ["given_at"])


def downgrade() -> None:
    op.drop_table("consent_records")
    op.drop_table("pending_subscriptions")
    op.drop_table("prospect_topics")
