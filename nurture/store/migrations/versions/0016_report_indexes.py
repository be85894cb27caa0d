"""Index the human opens by delivery, for the campaigns report's open rate (issue 11, found at 10M events).

The open rate counts the mails sent in the period that a person opened: a semi-join from those deliveries to
their human opens. Without this index PostgreSQL hashed every human open of the year (2.4M of 10M events, a scan
of the whole table: 3.4 s); probing ix_events_delivery instead fetched every event of each mail from the heap
(the same 3.4 s). This partial index holds only human opens, with the instant the rate compares, so each of the
period's 150k mails is one index-only probe (0.5 s). Written only for human opens (ARCHITECTURE.md, "Report
queries at a million prospects", has the plans and what it costs tracking).

Revision ID: 0016
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import HUMAN_OPENS_WHERE

revision = "0016"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_human_opens",
        "events",
        ["delivery_id", "occurred_at"],
        sqlite_where=sa.text(HUMAN_OPENS_WHERE),
        postgresql_where=sa.text(HUMAN_OPENS_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_events_human_opens", "events")
