"""The planner's index of who is due: ``prospects.next_plan_at`` and ``plan_state``, kept right by triggers.

``next_plan_at`` is a lower bound (see nurture.plan.due): no campaign can be due for the prospect before it unless
something about the prospect changes; NULL = unknown, planned at the next run. The triggers below reset it to NULL
whenever something the planner reads changes, so that no write path (import, tracking, scoring, preferences page,
an operator's SQL) can forget to. ``plan_state`` keeps the fingerprint of the rules the stored times were computed
under; removing a suppression deletes it (the next run then plans everyone).

Revision ID: 0014
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from nurture.store.models import PLAN_COLUMNS, UTCDateTime

revision = "0014"
down_revision = "0016"
branch_labels = None
depends_on = None

#: Delivery states on the way to a mail (the stored time assumed the mail goes out); leaving them resets it.
_ON_PATH = "('pending', 'sent', 'unknown')"
_LINKED = ("prospect_tags", "prospect_topics")


def _sqlite() -> list[str]:
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in PLAN_COLUMNS)
    stale = "UPDATE prospects SET next_plan_at = NULL WHERE id = {0}.prospect_id AND next_plan_at IS NOT NULL;"
    out = [
        f"CREATE TRIGGER trg_prospects_plan_stale AFTER UPDATE OF {', '.join(PLAN_COLUMNS)} ON prospects "
        f"FOR EACH ROW WHEN NEW.next_plan_at IS NOT NULL AND ({changed}) "
        "BEGIN UPDATE prospects SET next_plan_at = NULL WHERE id = NEW.id; END",
        "CREATE TRIGGER trg_deliveries_plan_stale AFTER UPDATE OF state ON deliveries "
        f"FOR EACH ROW WHEN NEW.state NOT IN {_ON_PATH} AND OLD.state IS NOT NEW.state "
        f"BEGIN {stale.format('NEW')} END",
        f"CREATE TRIGGER trg_deliveries_plan_gone AFTER DELETE ON deliveries BEGIN {stale.format('OLD')} END",
        "CREATE TRIGGER trg_suppressions_plan_stale AFTER DELETE ON suppressions "
        "BEGIN DELETE FROM plan_state WHERE name = 'fingerprint'; END",
    ]
    for table in _LINKED:
        out += [
            f"CREATE TRIGGER trg_{table}_plan_ins AFTER INSERT ON {table} BEGIN {stale.format('NEW')} END",
            f"CREATE TRIGGER trg_{table}_plan_del AFTER DELETE ON {table} BEGIN {stale.format('OLD')} END",
            f"CREATE TRIGGER trg_{table}_plan_upd AFTER UPDATE ON {table} "
            f"BEGIN {stale.format('OLD')} {stale.format('NEW')} END",
        ]
    return out


def _postgresql() -> list[str]:
    old = ", ".join(f"OLD.{c}" for c in PLAN_COLUMNS)
    new = ", ".join(f"NEW.{c}" for c in PLAN_COLUMNS)
    out = [
        # A BEFORE trigger changes the row being written: no second write, unlike SQLite's AFTER trigger.
        "CREATE FUNCTION nurture_plan_stale_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.next_plan_at := NULL; RETURN NEW; END $$",
        f"CREATE TRIGGER trg_prospects_plan_stale BEFORE UPDATE OF {', '.join(PLAN_COLUMNS)} ON prospects "
        f"FOR EACH ROW WHEN (NEW.next_plan_at IS NOT NULL AND ROW({old}) IS DISTINCT FROM ROW({new})) "
        "EXECUTE FUNCTION nurture_plan_stale_row()",
        "CREATE FUNCTION nurture_plan_stale_prospect() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP <> 'INSERT' THEN UPDATE prospects SET next_plan_at = NULL "
        "WHERE id = OLD.prospect_id AND next_plan_at IS NOT NULL; END IF; "
        "IF TG_OP <> 'DELETE' THEN UPDATE prospects SET next_plan_at = NULL "
        "WHERE id = NEW.prospect_id AND next_plan_at IS NOT NULL; END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER trg_deliveries_plan_stale AFTER UPDATE OF state ON deliveries FOR EACH ROW "
        f"WHEN (NEW.state NOT IN {_ON_PATH} AND OLD.state IS DISTINCT FROM NEW.state) "
        "EXECUTE FUNCTION nurture_plan_stale_prospect()",
        "CREATE TRIGGER trg_deliveries_plan_gone AFTER DELETE ON deliveries FOR EACH ROW "
        "EXECUTE FUNCTION nurture_plan_stale_prospect()",
        "CREATE FUNCTION nurture_plan_forget() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN DELETE FROM plan_state WHERE name = 'fingerprint'; RETURN NULL; END $$",
        "CREATE TRIGGER trg_suppressions_plan_stale AFTER DELETE ON suppressions FOR EACH STATEMENT "
        "EXECUTE FUNCTION nurture_plan_forget()",
    ]
    for table in _LINKED:
        out.append(
            f"CREATE TRIGGER trg_{table}_plan_stale AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION nurture_plan_stale_prospect()"
        )
    return out


def upgrade() -> None:
    op.add_column("prospects", sa.Column("next_plan_at", UTCDateTime, nullable=True))
    op.create_index("ix_prospects_next_plan_at", "prospects", ["next_plan_at"])
    op.create_table(
        "plan_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    for statement in _postgresql() if op.get_bind().dialect.name == "postgresql" else _sqlite():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    triggers = [
        ("prospects", "trg_prospects_plan_stale"),
        ("deliveries", "trg_deliveries_plan_stale"),
        ("deliveries", "trg_deliveries_plan_gone"),
        ("suppressions", "trg_suppressions_plan_stale"),
    ]
    if postgresql:
        triggers += [(t, f"trg_{t}_plan_stale") for t in _LINKED]
    else:
        triggers += [(t, f"trg_{t}_plan_{k}") for t in _LINKED for k in ("ins", "del", "upd")]
    for table, name in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        for fn in ("nurture_plan_stale_row", "nurture_plan_stale_prospect", "nurture_plan_forget"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.drop_table("plan_state")
    op.drop_index("ix_prospects_next_plan_at", "prospects")
    op.drop_column("prospects", "next_plan_at")
