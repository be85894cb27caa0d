"""Who may be due: the stored lower bound ``prospects.next_plan_at`` that lets a run look only at them.

``next_plan_at`` means "no campaign can be due for this prospect before this instant unless something about the
prospect changes"; NULL means unknown (the next run plans them). A real run writes it for every prospect it
decides (:func:`recheck_at` per decision, :func:`membership_changes_at` for segments that change with time), and
the next run reads only ``next_plan_at IS NULL OR next_plan_at <= now`` through its index.

Kept right three ways:

- the prospect changed: triggers of migration 0014 reset it to NULL when a column the planner reads
  (:data:`nurture.store.models.PLAN_COLUMNS`), a tag or a topic choice changes, or a delivery leaves the way to a
  mail (skipped, failed, deleted). The database does it, so no write path can forget;
- the rules changed: :func:`fingerprint` hashes everything decisions depend on besides the prospect (campaign
  files with their items, ``[cadence]``, the workspace's language and zone, which campaigns are in play); a run
  whose fingerprint differs from the stored one resets every prospect first (:func:`start`). Removing a
  suppression deletes the stored fingerprint (a trigger), which does the same;
- time: the bound itself is when a decision can change (not due until, gap, quiet hours, cap, pause ends, a
  ``last_contact`` condition flips).

A bound that is too early costs a look; one that is too late would lose mail, so every doubt stores an earlier
time. tests/plan/test_due.py compares the indexed planner with the full scan over random histories.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from nurture.core.config import Config
from nurture.plan.campaigns import Campaign
from nurture.store import db
from nurture.store.models import PlanState, Prospect

#: "Not before anything changes": the bound of a decision only a change of the prospect or the rules can undo.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
_FINGERPRINT = "fingerprint"


def fingerprint(config: Config, campaigns: Sequence[Campaign]) -> str:
    """A hash of everything decisions depend on besides the prospect and their deliveries: the campaigns in play
    (whole definitions: segment, cadence with holidays, content items, fallback, ...), ``[cadence]`` and the
    workspace's language and zone. Items added to a content folder change the campaign's items, hence this."""
    parts = (config.cadence, config.default_time_zone, config.workspace.language, tuple(campaigns))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def due_clause(now: datetime) -> Any:
    """The prospects a run must look at: never planned, changed since, or whose bound has come."""
    return or_(Prospect.next_plan_at.is_(None), Prospect.next_plan_at <= now)


def start(conn: Connection, config: Config, campaigns: Sequence[Campaign], now: datetime) -> bool:
    """Before an indexed run: when the rules differ from those the stored bounds were computed under, forget
    every bound and store the new fingerprint. True when everyone is to be planned."""
    current = fingerprint(config, campaigns)
    stored = conn.scalar(select(PlanState.value).where(PlanState.name == _FINGERPRINT))
    if stored == current:
        return False
    conn.execute(update(Prospect).where(Prospect.next_plan_at.is_not(None)).values(next_plan_at=None))
    conn.execute(delete(PlanState).where(PlanState.name == _FINGERPRINT))
    conn.execute(insert(PlanState).values(name=_FINGERPRINT, value=current, updated_at=now))
    return True


def membership_changes_at(campaigns: Iterable[Campaign], row: Any, now: datetime) -> datetime:
    """When the prospect ``row`` (with ``last_contact_at`` and ``paused_until``) can enter or leave a campaign by
    the clock alone: a ``last_contact older_than/newer_than N`` condition flips at last contact + N days, and a
    pause ends at ``paused_until``. NEVER when nothing flips."""
    at = NEVER
    if row.paused_until is not None and row.paused_until > now:
        at = row.paused_until
    if row.last_contact_at is not None:
        for campaign in campaigns:
            for condition in campaign.segment.conditions:
                if condition.field == "last_contact":
                    flip = row.last_contact_at + timedelta(days=float(condition.value))
                    if now <= flip < at:  # at the instant itself it has yet to flip: look again
                        at = flip
    return at


def store(conn: Connection, bounds: dict[int, datetime]) -> None:
    """Write the bounds of one planned batch (one statement on PostgreSQL, one prepared executemany through
    :class:`nurture.store.db.Bulk` on SQLite).

    Writing ``next_plan_at`` alone fires none of the triggers (they watch other columns)."""
    if not bounds:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "UPDATE prospects SET next_plan_at = v.at FROM unnest(CAST(:ids AS integer[]), "
                "CAST(:ats AS timestamptz[])) AS v(id, at) WHERE prospects.id = v.id"
            ),
            {"ids": list(bounds), "ats": list(bounds.values())},
        )
        return
    stmt = update(Prospect).where(Prospect.id == bindparam("pid")).values(next_plan_at=bindparam("at"))
    db.Bulk(stmt, conn.dialect, ["at", "pid"]).run(conn, [{"pid": pid, "at": at} for pid, at in bounds.items()])


def due_ids(conn: Connection, now: datetime) -> list[int]:
    """The ids of every prospect the run must look at, in id order (served by ``ix_prospects_next_plan_at``)."""
    return sorted(conn.scalars(select(Prospect.id).where(due_clause(now))))


def waiting(conn: Connection, now: datetime, looked: int) -> int:
    """How many prospects are not looked at because nothing can be due for them yet (``looked``: how many are).

    On PostgreSQL above :data:`EXACT_BELOW` prospects: the table's row estimate (kept by autovacuum and ANALYZE)
    less ``looked``, since an exact count reads every row (1.2 s at 1M, more than the rest of a no-op run);
    exact otherwise."""
    estimate = db.row_estimate(conn, "prospects")
    if estimate is not None and estimate >= EXACT_BELOW:
        return max(0, int(estimate) - looked)
    return conn.scalar(select(func.count()).where(Prospect.next_plan_at > now)) or 0


#: Below this many prospects the not-due count is exact on PostgreSQL too.
EXACT_BELOW = 10_000
