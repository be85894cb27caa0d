"""Scoring: each prospect's colleague group (normalised company name or e-mail domain), written by scoring, so
the online path finds the colleagues of a prospect with one indexed lookup.

Revision ID: 0010
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("prospects", sa.Column("company_key", sa.String(200), nullable=False, server_default=""))
    op.create_index("ix_prospects_company_key", "prospects", ["company_key"])


def downgrade() -> None:
    op.drop_index("ix_prospects_company_key", table_name="prospects")
    op.drop_column("prospects", "company_key")
