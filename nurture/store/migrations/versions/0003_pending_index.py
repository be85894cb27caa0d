"""Index pending deliveries in id order (issue 4, found at 1M deliveries).

Claims ask for "the next pending rows in id order". With only (state, next_attempt_at) the database walked the
primary key from the start, past every row already sent: each claim got slower as the run went on (120 msg/s
after 40k of 1M). (state, id) hands out pending rows in order without looking at sent ones.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_state_id", "deliveries", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_state_id", table_name="deliveries")
