"""Deliveries, campaign state and events (issues 4 and 5).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_key", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sender", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("provider_message_id", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=False),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("campaign", "prospect_id", "item_key", name="uq_deliveries_campaign_prospect_item"),
    )
    op.create_index("ix_deliveries_state_next", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_prospect_sent", "deliveries", ["prospect_id", "sent_at"])
    op.create_index("ix_deliveries_provider_message_id", "deliveries", ["provider_message_id"])
    op.create_table(
        "campaign_states",
        sa.Column("campaign", sa.String(100), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("paused_reason", sa.Text, nullable=False),
        sa.Column("paused_at", UTCDateTime),
        sa.Column("started_at", UTCDateTime),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="SET NULL")),
        sa.Column("delivery_id", BigId, sa.ForeignKey("deliveries.id", ondelete="SET NULL")),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("item_key", sa.String(100), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("dedup_key", sa.String(255), unique=True),
        sa.Column("data", JSONType, nullable=False),
    )
    op.create_index("ix_events_prospect_time", "events", ["prospect_id", "occurred_at"])
    op.create_index("ix_events_delivery", "events", ["delivery_id"])
    op.create_index("ix_events_type_time", "events", ["type", "occurred_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("campaign_states")
    op.drop_table("deliveries")
