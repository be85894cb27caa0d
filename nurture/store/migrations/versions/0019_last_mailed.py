"""``prospects.last_mailed_at``: the latest ``sent_at`` of the prospect's mailed deliveries, kept by triggers.

The leaks report asks of every prospect "mailed in the last N days?" and "ever mailed?": at a million prospects
each question was a hash anti-join of all prospects with all their deliveries (0.6-0.8 s each on a quiet
machine). With the time stored on the prospect, the first is a column comparison and the second needs the
deliveries only for prospects without one.

The triggers recompute the column from the deliveries (one index-only probe of ix_deliveries_mailed, 0018)
whenever a delivery enters or leaves a mailed state (sent, unknown), changes its ``sent_at`` while mailed, or is
deleted while mailed; so sends, provider webhooks, erasure and an operator's SQL all keep it right. A send pays
one indexed UPDATE of the prospect.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_MAILED = "('sent', 'unknown')"
_LATEST = (
    "UPDATE prospects SET last_mailed_at = (SELECT max(d.sent_at) FROM deliveries d "
    f"WHERE d.prospect_id = {{0}}.prospect_id AND d.state IN {_MAILED}) WHERE id = {{0}}.prospect_id"
)
_UPDATE_WHEN = (
    f"(OLD.state IN {_MAILED} OR NEW.state IN {_MAILED}) "
    "AND (OLD.state IS NOT NEW.state OR OLD.sent_at IS NOT NEW.sent_at OR OLD.prospect_id IS NOT NEW.prospect_id)"
)


def _sqlite() -> list[str]:
    return [
        "CREATE TRIGGER trg_deliveries_mailed_ins AFTER INSERT ON deliveries "
        f"FOR EACH ROW WHEN NEW.state IN {_MAILED} BEGIN {_LATEST.format('NEW')}; END",
        "CREATE TRIGGER trg_deliveries_mailed_upd AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN {_UPDATE_WHEN} BEGIN {_LATEST.format('OLD')}; {_LATEST.format('NEW')}; END",
        "CREATE TRIGGER trg_deliveries_mailed_del AFTER DELETE ON deliveries "
        f"FOR EACH ROW WHEN OLD.state IN {_MAILED} BEGIN {_LATEST.format('OLD')}; END",
    ]


def _postgresql() -> list[str]:
    when = _UPDATE_WHEN.replace(" IS NOT ", " IS DISTINCT FROM ")
    return [
        "CREATE FUNCTION nurture_last_mailed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {_LATEST.format('OLD')}; END IF; "
        f"IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.prospect_id IS DISTINCT FROM OLD.prospect_id) "
        f"THEN {_LATEST.format('NEW')}; END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER trg_deliveries_mailed_ins AFTER INSERT ON deliveries FOR EACH ROW "
        f"WHEN (NEW.state IN {_MAILED}) EXECUTE FUNCTION nurture_last_mailed()",
        "CREATE TRIGGER trg_deliveries_mailed_upd AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION nurture_last_mailed()",
        "CREATE TRIGGER trg_deliveries_mailed_del AFTER DELETE ON deliveries FOR EACH ROW "
        f"WHEN (OLD.state IN {_MAILED}) EXECUTE FUNCTION nurture_last_mailed()",
    ]


def upgrade() -> None:
    op.add_column("prospects", sa.Column("last_mailed_at", UTCDateTime, nullable=True))
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # One grouped pass, not a correlated subquery per prospect (a million index probes).
        op.execute(
            "UPDATE prospects p SET last_mailed_at = m.latest FROM (SELECT prospect_id, max(sent_at) AS latest "
            f"FROM deliveries WHERE state IN {_MAILED} GROUP BY prospect_id) m WHERE m.prospect_id = p.id "
            "AND m.latest IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE prospects SET last_mailed_at = (SELECT max(d.sent_at) FROM deliveries d "
            f"WHERE d.prospect_id = prospects.id AND d.state IN {_MAILED})"
        )
    for statement in _postgresql() if postgresql else _sqlite():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in ("trg_deliveries_mailed_ins", "trg_deliveries_mailed_upd", "trg_deliveries_mailed_del"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deliveries" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS nurture_last_mailed()")
    op.drop_column("prospects", "last_mailed_at")
