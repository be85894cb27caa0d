"""Scoring: each prospect's running tally of engagement (``nurture.score.model.Tally`` as JSON), so online
scoring adds a new event to it instead of reading and folding all the prospect's events again.

Revision ID: 0015
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("prospects", sa.Column("score_state", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("prospects", "score_state")
