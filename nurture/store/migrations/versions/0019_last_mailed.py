"""``prospects.last_mailed_at``: the latest ``sent_at`` of the prospect's mailed deliveries, kept by triggers.

The leaks report asks of every prospect "mailed in the last N days?" and "ever mailed?": at a million prospects
each question was a hash anti-join of all prospects with all their deliveries (0.6-0.8 s each on a quiet
machine). With the time stored on the prospect, the first is a column comparison and the second needs the
deliveries only for prospects without one.

Triggers on deliveries keep it, so sends, provider webhooks, erasure and an operator's SQL all keep it right: a
delivery inserted mailed or entering a mailed state (sent, unknown) moves the time forward (the send path: one
UPDATE of the prospect by primary key, only when the time grows); one leaving a mailed state, changing its
``sent_at`` while mailed, moved to another prospect or deleted while mailed makes the prospect's time recomputed
from its deliveries (an index-only probe of ix_deliveries_mailed, 0018).

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
# A mail entering a mailed state (the send path: pending -> sent) can only move the time forward: one update by
# primary key, no look at the other deliveries.
_LATER = (
    "UPDATE prospects SET last_mailed_at = NEW.sent_at WHERE id = NEW.prospect_id "
    "AND (last_mailed_at IS NULL OR last_mailed_at < NEW.sent_at)"
)
_ENTERS = f"OLD.state NOT IN {_MAILED} AND NEW.state IN {_MAILED} AND OLD.prospect_id = NEW.prospect_id"
_OTHER = (
    f"OLD.state IN {_MAILED} AND (OLD.state IS NOT NEW.state OR OLD.sent_at IS NOT NEW.sent_at "
    "OR OLD.prospect_id IS NOT NEW.prospect_id)"
)


def _sqlite() -> list[str]:
    return [
        "CREATE TRIGGER trg_deliveries_mailed_ins AFTER INSERT ON deliveries "
        f"FOR EACH ROW WHEN NEW.state IN {_MAILED} AND NEW.sent_at IS NOT NULL BEGIN {_LATER}; END",
        "CREATE TRIGGER trg_deliveries_mailed_enter AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN {_ENTERS} AND NEW.sent_at IS NOT NULL BEGIN {_LATER}; END",
        # Moved to another prospect while not mailed, and mailed now: both ends recomputed.
        "CREATE TRIGGER trg_deliveries_mailed_move AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN OLD.state NOT IN {_MAILED} AND NEW.state IN {_MAILED} "
        f"AND OLD.prospect_id IS NOT NEW.prospect_id BEGIN {_LATEST.format('NEW')}; END",
        "CREATE TRIGGER trg_deliveries_mailed_upd AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN {_OTHER} BEGIN {_LATEST.format('OLD')}; {_LATEST.format('NEW')}; END",
        "CREATE TRIGGER trg_deliveries_mailed_del AFTER DELETE ON deliveries "
        f"FOR EACH ROW WHEN OLD.state IN {_MAILED} BEGIN {_LATEST.format('OLD')}; END",
    ]


def _postgresql() -> list[str]:
    other = _OTHER.replace(" IS NOT ", " IS DISTINCT FROM ")
    return [
        "CREATE FUNCTION nurture_last_mailed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND {_ENTERS}) THEN "
        f"IF NEW.sent_at IS NOT NULL THEN {_LATER}; END IF; RETURN NULL; END IF; "
        f"IF TG_OP <> 'INSERT' THEN {_LATEST.format('OLD')}; END IF; "
        "IF TG_OP = 'UPDATE' AND NEW.prospect_id IS DISTINCT FROM OLD.prospect_id "
        f"THEN {_LATEST.format('NEW')}; END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER trg_deliveries_mailed_ins AFTER INSERT ON deliveries FOR EACH ROW "
        f"WHEN (NEW.state IN {_MAILED} AND NEW.sent_at IS NOT NULL) EXECUTE FUNCTION nurture_last_mailed()",
        "CREATE TRIGGER trg_deliveries_mailed_upd AFTER UPDATE OF state, sent_at, prospect_id ON deliveries "
        f"FOR EACH ROW WHEN ((OLD.state NOT IN {_MAILED} AND NEW.state IN {_MAILED}) OR ({other})) "
        "EXECUTE FUNCTION nurture_last_mailed()",
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
    names = ["trg_deliveries_mailed_ins", "trg_deliveries_mailed_upd", "trg_deliveries_mailed_del"]
    if not postgresql:
        names += ["trg_deliveries_mailed_enter", "trg_deliveries_mailed_move"]
    for name in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deliveries" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS nurture_last_mailed()")
    op.drop_column("prospects", "last_mailed_at")
