"""Prospects, their tags, and the suppression list (issue 2).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prospects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("company", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("industry", sa.String(100), nullable=False),
        sa.Column("temperature", sa.String(8), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("rank", sa.String(1), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("last_contact_at", UTCDateTime),
        sa.Column("next_action", sa.Text, nullable=False),
        sa.Column("next_action_due", sa.Date),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("attributes", JSONType, nullable=False),
        *[
            sa.Column(f"strength_{name}", sa.Integer, nullable=False)
            for name in (
                "existing_business",
                "empathy",
                "contribution",
                "multiple_contacts",
                "decision_maker",
                "invested",
            )
        ],
        sa.Column("consent_basis", sa.String(32), nullable=False),
        sa.Column("consent_source", sa.String(200), nullable=False),
        sa.Column("consent_at", UTCDateTime),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=False),
        sa.Column("status_changed_at", UTCDateTime),
        sa.Column("paused_until", UTCDateTime),
        sa.Column("frequency_factor", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_prospects_industry", "prospects", ["industry"])
    op.create_index("ix_prospects_temperature", "prospects", ["temperature"])
    op.create_index("ix_prospects_status", "prospects", ["status"])
    op.create_table(
        "prospect_tags",
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
    )
    op.create_index("ix_prospect_tags_tag", "prospect_tags", ["tag"])
    op.create_table(
        "suppressions",
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("prospect_tags")
    op.drop_table("prospects")
