"""Index the mailed deliveries by prospect and campaign, for the leaks report's "silent" list (issue 11).

The silent list joins each member of a campaign's segment to their mails of that campaign and keeps the last
one. At a million prospects the join probed uq_deliveries_campaign_prospect_item and fetched every delivery from
the heap to read its state and sent_at (two random heap pages per member, 150k members for one campaign). This
partial index holds only mailed deliveries (sent or unknown) with the columns the list reads, so each member is
one index-only probe. It gains an entry when a delivery becomes mailed; pending and failed rows are not in it.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import MAILED_WHERE

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_mailed",
        "deliveries",
        ["prospect_id", "campaign", "sent_at"],
        sqlite_where=sa.text(MAILED_WHERE),
        postgresql_where=sa.text(MAILED_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_mailed", "deliveries")
