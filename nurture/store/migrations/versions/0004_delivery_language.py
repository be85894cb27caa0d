"""The language of each mail on its delivery, so the tracking server reads it instead of campaign files.

The unsubscribe, preferences and view pages speak the mail's language. The server used to find it by loading
the campaign file inside the request; the planner now stores the campaign's language on the row. Rows planned
before this migration get "" (the pages then fall back to the prospect's language, then Accept-Language).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("language", sa.String(8), nullable=False, server_default=""))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 has no ALTER TABLE DROP COLUMN; alembic copies the table there.
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("language")
