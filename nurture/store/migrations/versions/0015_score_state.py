"""Scoring: each prospect's running tally of engagement (``nurture.score.model.Tally`` as JSON), so online
scoring adds a new event to it instead of reading and folding all the prospect's events again; and an index
that counts a prospect's scorable events without reading the rows (the check that the tally holds them all).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("prospects", sa.Column("score_state", sa.Text, nullable=False, server_default=""))
    op.create_index("ix_events_prospect_scoring", "events", ["prospect_id", "type", "label", "confidence"])


def downgrade() -> None:
    op.drop_index("ix_events_prospect_scoring", table_name="events")
    op.drop_column("prospects", "score_state")
