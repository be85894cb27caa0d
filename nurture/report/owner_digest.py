"""What one owner's weekly digest says: read-only queries, one set per digest (not one query per prospect).

:func:`owner_digest` returns an :class:`OwnerDigest` for one owner (the value of ``prospects.owner``, ``""`` for
prospects nobody owns) over the period ``[since, until)``:

==========================  ==========================================================================================
``not_contacted``           active prospects whose ``last_contact_at`` is older than ``no_contact_days`` (or who
                            were never contacted and entered nurture longer ago than that), longest silence first
``overdue_actions``         active prospects whose ``next_action_due`` is before today (in ``time_zone``)
``open_handoffs``           handoffs still ``open`` (neither acknowledged nor rejected), oldest first; ``new`` marks
                            those made in the period
``new_handoffs``            every handoff made in the period, whatever its state now
``moved_up``                prospects whose rank, temperature or stage went up in the period (``score_changes``):
                            one move per field, the period's first old value to its last new value, with the
                            explanation of every step
==========================  ==========================================================================================

:func:`digest_owners` lists the owners who have anything to report. Each list holds at most ``limit`` rows;
``counts`` has the full number of each. Reports never write.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.orm import Session

from nurture.store.models import Handoff, Prospect, ScoreChange

# Higher is better: a move counts as "up" when the new value ranks above the old one.
ORDER = {
    "rank": {"C": 0, "B": 1, "A": 2},
    "temperature": {"cold": 0, "warm": 1, "hot": 2},
    "stage": {"MQL": 0, "SQL": 1},
}


@dataclass
class OwnerDigest:
    """One owner's digest. Rows are plain dicts (JSON-ready apart from dates)."""

    owner: str
    since: datetime
    until: datetime
    not_contacted: list[dict[str, Any]] = field(default_factory=list)
    overdue_actions: list[dict[str, Any]] = field(default_factory=list)
    open_handoffs: list[dict[str, Any]] = field(default_factory=list)
    new_handoffs: list[dict[str, Any]] = field(default_factory=list)
    moved_up: list[dict[str, Any]] = field(default_factory=list)
    #: Mailable prospects nurture is not mailing, with why (nurture.plan.silence; filled by the caller, who
    #: has the campaigns): content run out, a window never reached, overdue.
    silent: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "since": self.since,
            "until": self.until,
            "counts": self.counts,
            "not_contacted": self.not_contacted,
            "overdue_actions": self.overdue_actions,
            "open_handoffs": self.open_handoffs,
            "new_handoffs": self.new_handoffs,
            "moved_up": self.moved_up,
            "silent": self.silent,
        }


def _is_up(field_name: str, old: str, new: str) -> bool:
    order = ORDER.get(field_name, {})
    return old in order and new in order and order[new] > order[old]


def _person(p: Any) -> dict[str, Any]:
    return {
        "email": p.email,
        "name": p.name,
        "company": p.company,
        "rank": p.rank,
        "temperature": p.temperature,
        "stage": p.stage,
        "score": round(float(p.score or 0.0), 1),
        "language": p.language,
    }


def digest_owners(conn: Connection, *, since: datetime, until: datetime, no_contact_days: int) -> list[str]:
    """Every owner (``prospects.owner`` value; ``""`` for nobody's prospects) with active prospects or handoffs,
    sorted. Owners with nothing to report are dropped later by :func:`owner_digest` (``.empty``)."""
    owners = set(
        conn.execute(select(Prospect.owner).where(Prospect.status == "active").group_by(Prospect.owner)).scalars()
    )
    owners |= set(
        conn.execute(
            select(Prospect.owner)
            .join(Handoff, Handoff.prospect_id == Prospect.id)
            .where(or_(Handoff.state == "open", Handoff.created_at >= since))
            .group_by(Prospect.owner)
        ).scalars()
    )
    return sorted(o or "" for o in owners)


def owner_digest(
    conn: Connection,
    owner: str,
    *,
    since: datetime,
    until: datetime,
    no_contact_days: int = 30,
    time_zone: str = "Asia/Tokyo",
    limit: int = 50,
) -> OwnerDigest:
    """The digest of ``owner`` (see the module docstring). ``until`` is "now"; dates are compared in
    ``time_zone`` (an action due "today" there is not overdue yet)."""
    digest = OwnerDigest(owner, since, until)
    mine = Prospect.owner == owner
    active = Prospect.status == "active"
    today: date = until.astimezone(zoneinfo.ZoneInfo(time_zone)).date()
    silent_since = until - timedelta(days=no_contact_days)

    # Leaks 1: silence. Never contacted counts from the day the prospect entered nurture.
    silent = and_(
        mine,
        active,
        or_(
            Prospect.last_contact_at < silent_since,
            and_(Prospect.last_contact_at.is_(None), Prospect.created_at < silent_since),
        ),
    )
    # count(*) OVER () gives the full number with the first rows: one scan instead of two.
    total = func.count().over().label("total")
    found = (
        Session(conn)
        .execute(
            select(Prospect, total)
            .where(silent)
            .order_by(Prospect.last_contact_at.is_not(None), Prospect.last_contact_at, Prospect.id)
            .limit(limit)
        )
        .all()
    )
    digest.counts["not_contacted"] = found[0][1] if found else 0
    for p, _ in found:
        row = _person(p)
        row["last_contact_at"] = p.last_contact_at
        since_when = p.last_contact_at or p.created_at
        row["days_silent"] = max(0, (until - since_when).days) if since_when else None
        row["next_action"] = p.next_action
        digest.not_contacted.append(row)

    # Leaks 2: overdue next actions.
    overdue = and_(mine, active, Prospect.next_action_due.is_not(None), Prospect.next_action_due < today)
    found = (
        Session(conn)
        .execute(select(Prospect, total).where(overdue).order_by(Prospect.next_action_due, Prospect.id).limit(limit))
        .all()
    )
    digest.counts["overdue_actions"] = found[0][1] if found else 0
    for p, _ in found:
        row = _person(p)
        row["next_action"] = p.next_action
        row["next_action_due"] = p.next_action_due
        row["days_overdue"] = (today - p.next_action_due).days if p.next_action_due else 0
        digest.overdue_actions.append(row)

    # Handoffs: still open (a leak), and new in the period.
    def handoff_rows(where: Any, key: str) -> list[dict[str, Any]]:
        base = select(Handoff, Prospect, total).join(Prospect, Prospect.id == Handoff.prospect_id).where(mine, where)
        found = Session(conn).execute(base.order_by(Handoff.created_at, Handoff.id).limit(limit)).all()
        digest.counts[key] = found[0][2] if found else 0
        rows = []
        for h, p, _ in found:
            row = _person(p)
            row.update(
                handoff_id=h.id,
                reason=h.reason,
                state=h.state,
                created_at=h.created_at,
                notified_at=h.notified_at,
                escalated_at=h.escalated_at,
                new=h.created_at >= since,
                hours_open=round((until - h.created_at).total_seconds() / 3600, 1),
            )
            rows.append(row)
        return rows

    digest.open_handoffs = handoff_rows(Handoff.state == "open", "open_handoffs")
    digest.new_handoffs = handoff_rows(and_(Handoff.created_at >= since, Handoff.created_at < until), "new_handoffs")

    # Moved up: the period's changes, read in one query; a prospect's last move per field is what it shows.
    changes = (
        Session(conn)
        .execute(
            select(ScoreChange, Prospect)
            .join(Prospect, Prospect.id == ScoreChange.prospect_id)
            .where(mine, ScoreChange.at >= since, ScoreChange.at < until)
            .order_by(ScoreChange.at, ScoreChange.id)
        )
        .all()
    )
    first_old: dict[tuple[int, str], str] = {}
    last: dict[tuple[int, str], tuple[Any, Any]] = {}
    steps: dict[tuple[int, str], list[str]] = {}
    for change, p in changes:
        key = (p.id, change.field)
        first_old.setdefault(key, change.old)
        last[key] = (change, p)
        if change.explanation:
            steps.setdefault(key, []).append(change.explanation)
    moved: dict[int, dict[str, Any]] = {}
    for key, (change, p) in last.items():
        old = first_old[key]
        if not _is_up(change.field, old, change.new):
            continue  # up and down again within the week, or only down: not a move up
        row = moved.setdefault(p.id, {**_person(p), "moves": [], "at": change.at})
        row["moves"].append(
            {
                "field": change.field,
                "from": old,
                "to": change.new,
                "at": change.at,
                "explanation": change.explanation,  # of the last step
                "explanations": steps.get(key, []),  # of every step in the period, oldest first
            }
        )
        row["at"] = max(row["at"], change.at)
    ranked = sorted(moved.values(), key=lambda r: (-ORDER["rank"].get(r["rank"], 0), -r["score"], r["email"]))
    digest.counts["moved_up"] = len(ranked)
    digest.moved_up = ranked[:limit]
    return digest
