"""The postal channel: postal addresses and postal status on prospects, postal batches and their recipients.

Revision ID: 0013
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import JSONType, UTCDateTime

revision = "0013"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_ADDRESS = (("postal_code", 16), ("prefecture", 16), ("address_line", 300), ("building", 200), ("department", 200))


def upgrade() -> None:
    for name, width in (*_ADDRESS, ("postal_status", 16)):
        op.add_column("prospects", sa.Column(name, sa.String(width), nullable=False, server_default=""))
    op.create_table(
        "postal_batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("mailed_on", sa.Date, nullable=True),
        sa.Column("out_dir", sa.Text, nullable=False),
    )
    op.create_table(
        "postal_recipients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("postal_batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("prospect_id", sa.Integer, sa.ForeignKey("prospects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_key", sa.String(100), nullable=False),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("address", JSONType, nullable=False),
        sa.Column("delivery_id", _ID, sa.ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True),
        sa.Column("returned_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("batch_id", "prospect_id", name="uq_postal_recipients_batch_prospect"),
    )
    op.create_index("ix_postal_recipients_prospect", "postal_recipients", ["prospect_id"])


def downgrade() -> None:
    op.drop_table("postal_recipients")
    op.drop_table("postal_batches")
    with op.batch_alter_table("prospects") as batch:
        for name, _ in (*_ADDRESS, ("postal_status", 16)):
            batch.drop_column(name)
