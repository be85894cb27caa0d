"""``nurture report leaks``: the weekly review of SEEDS 001/004 — who fell through the cracks.

Sections (each a count plus the first ``--limit`` prospects, worst first):

- ``not_contacted``: active prospects with neither a personal contact (``last_contact_at``) nor a mail sent in
  the last ``--stale-days`` days (default 90), hottest and best ranked first;
- ``overdue``: next actions whose due date has passed (short-term prospects nobody followed);
- ``never_mailed``: prospects no mail was ever sent to, with the first reason why, in the planner's order:
  the status (unsubscribed, bounced, ...), no consent on record, suppressed address, paused by the person,
  a pending next action (short-term: followed by that action, not by nurture), in no active campaign's segment,
  or ``waiting`` (in a segment, not yet due);
- ``silent``: members of an active campaign whose last mail of it is older than its cadence promises
  (interval for their temperature x their frequency factor, plus 7 days of slack);
- ``unacknowledged``: handoffs still open, oldest first.

Campaign definitions come from :mod:`nurture.plan` (segments as SQL); everything is one statement per section.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, case, exists, false, func, literal, or_, select

from nurture.core.config import Config
from nurture.plan.campaigns import Campaign
from nurture.plan.segments import mailable_clauses, segment_clauses
from nurture.report import silent_why
from nurture.report.model import LIST_LIMIT, Params, Report, Section
from nurture.store import db
from nurture.store.models import Delivery, Handoff, Prospect
from nurture.store.states import DeliveryState
from nurture.store.suppression import not_suppressed

SLACK_DAYS = 7
_MAILED = [DeliveryState.SENT, DeliveryState.UNKNOWN]
_WHO = ["email", "name", "company", "owner", "temperature", "rank"]


def _filters(params: Params) -> list[Any]:
    out = []
    if params.industries:
        out.append(Prospect.industry.in_(params.industries))
    if params.owners:
        out.append(Prospect.owner.in_(params.owners))
    return out


def _people(conn: Any, query: Any, params: Params, *, one_pass: bool = False) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` rows (default :data:`LIST_LIMIT`) and how many there are.

    The list, then a count only when the list is full (two statements: a window count beside the rows makes
    PostgreSQL sort and anti-join every candidate, 16 s at a million prospects, while a bare COUNT hash-joins in
    parallel and the limited list stops after ``limit`` rows). ``one_pass`` (a window count) for queries whose
    every row must be aggregated anyway (the "silent" list groups a campaign's deliveries): one pass, not two."""
    if one_pass:
        found = conn.execute(query.add_columns(func.count().over().label("_total")).limit(params.limit or LIST_LIMIT))
        out = [dict(r._mapping) for r in found]
        total = out[0]["_total"] if out else 0
        for r in out:
            del r["_total"]
        return out, total
    # The list first, one row past the limit: when it is not full it is everything, and the count (a second
    # scan of every prospect) is not needed — the usual case for overdue actions and returned post.
    limit = params.limit or LIST_LIMIT
    out = [dict(r._mapping) for r in conn.execute(query.limit(limit + 1))]
    if len(out) <= limit:
        return out, len(out)
    total = conn.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    return out[:limit], total


def build(engine: Engine, params: Params, config: Config, campaigns: list[Campaign]) -> Report:
    now = params.until
    report = Report("leaks", "Follow-up leaks", params)
    active = [c for c in campaigns if c.status == "active"]
    who = [getattr(Prospect, c) for c in _WHO]
    base = [Prospect.status == "active", *_filters(params)]

    rank_order = case((Prospect.rank == "A", 0), (Prospect.rank == "B", 1), else_=2)
    temp_order = case((Prospect.temperature == "hot", 0), (Prospect.temperature == "warm", 1), else_=2)
    cutoff = now - timedelta(days=params.stale_days)
    with engine.connect() as conn:
        # "No mail in the period" reads the prospect's own last_mailed_at (kept by triggers, 0019): the same answer
        # as an anti-join with their mailed deliveries, without joining a million prospects to them.
        no_recent_mail = or_(Prospect.last_mailed_at.is_(None), Prospect.last_mailed_at < cutoff)
        # The count per (temperature, rank) bucket, in one parallel scan of prospects; then the list sorts only
        # the buckets it needs. Sorting every candidate (two thirds of a million prospects) before anything else
        # took 1.4 s; the hottest, best-ranked buckets usually fill the list on their own.
        clauses = (*base, or_(Prospect.last_contact_at.is_(None), Prospect.last_contact_at < cutoff), no_recent_mail)
        bucket = (temp_order * 3 + rank_order).label("bucket")
        per_bucket: dict[int, int] = {
            int(b): int(n) for b, n in conn.execute(select(bucket, func.count()).where(*clauses).group_by(bucket))
        }
        total = sum(per_bucket.values())
        needed: list[int] = []
        filled = 0
        for b in sorted(per_bucket):
            if filled >= (params.limit or LIST_LIMIT):
                break
            needed.append(b)
            filled += per_bucket[b]
        # The list sorts narrow rows (id and sort keys) and fetches the columns of the rows shown only: sorting
        # every candidate's wide row spilled to disk at a million prospects.
        narrow = (
            select(Prospect.id.label("nid"), temp_order.label("t"), rank_order.label("r"), Prospect.last_contact_at)
            .where(*clauses, bucket.in_(needed) if needed else false())
            .order_by(temp_order, rank_order, Prospect.last_contact_at.nulls_first(), Prospect.id)
            .limit(params.limit or LIST_LIMIT)
            .subquery()
        )
        shown = (
            select(*who, Prospect.last_contact_at, Prospect.last_mailed_at.label("last_mail_at"))
            .join(narrow, narrow.c.nid == Prospect.id)
            .order_by(narrow.c.t, narrow.c.r, narrow.c.last_contact_at.nulls_first(), Prospect.id)
        )
        rows = [dict(r._mapping) for r in conn.execute(shown)]
        report.sections.append(
            Section(
                "not_contacted",
                f"Not contacted for {params.stale_days} days (no personal contact, no mail)",
                [*_WHO, "last_contact_at", "last_mail_at"],
                rows,
                total,
            )
        )
        today = now.astimezone(ZoneInfo(params.time_zone)).date()
        q = (
            select(*who, Prospect.next_action, Prospect.next_action_due)
            .where(*base, Prospect.next_action_due < today)
            .order_by(Prospect.next_action_due, Prospect.id)
        )
        rows, total = _people(conn, q, params)
        for r in rows:
            r["days_overdue"] = (today - r["next_action_due"]).days
        report.sections.append(
            Section(
                "overdue",
                "Overdue next actions",
                [*_WHO, "next_action", "next_action_due", "days_overdue"],
                rows,
                total,
            )
        )
        in_segment = or_(*(and_(*segment_clauses(c.segment, now)) for c in active)) if active else false()
        pending_action = or_(func.coalesce(Prospect.next_action, "") != "", Prospect.next_action_due.is_not(None))
        reason = case(
            (Prospect.status != "active", Prospect.status),
            (Prospect.consent_basis == "unknown", literal("no consent")),
            (~not_suppressed(), literal("suppressed")),
            (and_(Prospect.paused_until.is_not(None), Prospect.paused_until > now), literal("paused")),
            (and_(pending_action, ~in_segment), literal("next action pending")),
            (~in_segment, literal("in no segment")),
            else_=literal("waiting"),
        ).label("reason")
        # Never mailed: no last_mailed_at, and (for the few without one) no mailed delivery either — a mail whose
        # fate is unknown has no sent_at but was mailed.
        never = and_(
            Prospect.last_mailed_at.is_(None),
            ~exists().where(Delivery.prospect_id == Prospect.id, Delivery.state.in_(_MAILED)),
        )
        counts = conn.execute(
            select(reason, func.count()).where(never, *_filters(params)).group_by(reason).order_by(reason)
        ).all()
        report.sections.append(
            Section(
                "never_mailed",
                "Never mailed, and why",
                ["reason", "prospects"],
                [{"reason": r, "prospects": n} for r, n in sorted(counts, key=lambda rn: (-rn[1], rn[0]))],
            )
        )
        silent: list[dict[str, Any]] = []
        silent_total = 0
        for c in active:
            by_temperature = c.cadence.interval_by_temperature
            interval: Any = (
                case(
                    *((Prospect.temperature == t, d) for t, d in by_temperature.items()), else_=c.cadence.interval_days
                )
                if by_temperature
                else literal(c.cadence.interval_days)  # CASE needs at least one WHEN
            )
            days = (interval * func.coalesce(Prospect.frequency_factor, 1.0) + SLACK_DAYS).label("promised_days")
            # Join the members to their mails of the campaign, then aggregate: aggregating the campaign's mails
            # per prospect first grouped every recipient (800k at a million prospects, spilling to disk) although
            # the segment keeps a fraction of them. Grouped by the primary key, so the prospect's columns follow.
            last_mail = func.max(Delivery.sent_at)
            mailed = and_(Delivery.prospect_id == Prospect.id, Delivery.campaign == c.name, Delivery.state.in_(_MAILED))
            q = (
                select(*who, literal(c.name).label("campaign"), last_mail.label("last_mail_at"), days)
                .select_from(Prospect)
                .join(Delivery, mailed)
                .where(*mailable_clauses(now), *segment_clauses(c.segment, now), *_filters(params))
                .group_by(Prospect.id)
                .having(db.days_since(engine, last_mail, now) > days)
                .order_by(last_mail, Prospect.id)
            )
            rows, total = _people(conn, q, params, one_pass=True)
            silent.extend(rows)
            silent_total += total
        report.sections.append(
            Section(
                "silent",
                "Silent longer than the cadence promises",
                [*_WHO, "campaign", "last_mail_at", "promised_days"],
                silent[: params.limit or LIST_LIMIT],
                silent_total,
            )
        )
        hq = (
            select(
                Prospect.email,
                Prospect.name,
                Prospect.company,
                Handoff.owner,
                Handoff.reason,
                Handoff.created_at,
                Handoff.notified_at,
                Handoff.escalated_at,
            )
            .join(Prospect, Prospect.id == Handoff.prospect_id)
            .where(Handoff.state == "open", Handoff.created_at < now)
            .order_by(Handoff.created_at, Handoff.id)
        )
        if params.owners:
            hq = hq.where(Handoff.owner.in_(params.owners))
        if params.industries:
            hq = hq.where(Prospect.industry.in_(params.industries))
        rows, total = _people(conn, hq, params)
        for r in rows:
            r["days_open"] = round((now - r["created_at"]).total_seconds() / 86400, 1)
        report.sections.append(
            Section(
                "unacknowledged",
                "Handoffs not acknowledged",
                ["email", "company", "owner", "reason", "created_at", "days_open", "escalated_at"],
                rows,
                total,
            )
        )
        # Why nurture is silent towards people it could mail (nurture.plan.silence, the same answer as
        # `nurture send --dry-run`): content run out in which campaign, a send window no scheduled run reaches,
        # or overdue with each campaign's current reason (monthly cap, cadence gap ...).
        # Exact counts per kind in one statement; the planner's wording only for the rows shown (it takes
        # ~0.3 ms a prospect: minutes at a million). See nurture.report.silent_why.
        found = silent_why.classify(conn, campaigns, config, now, _filters(params))
        named = silent_why.first_rows(
            conn, campaigns, config, now, params.limit or LIST_LIMIT, _filters(params), found=found
        )
        report.sections.append(
            Section(
                "silent_why",
                "Mailable but not mailed, and why",
                ["email", "kind", "reason", "campaigns", "last_mailed_at"],
                [
                    {
                        "email": f.email,
                        "kind": f.kind,
                        "reason": f.reason,
                        "campaigns": ", ".join(f.campaigns),
                        "last_mailed_at": f.last_mailed_at,
                    }
                    for f in named
                ],
                len(found),
            )
        )
        # Post that came back (宛先不明): the address needs fixing before the next quarterly issue can reach them.
        pq = (
            select(*who, Prospect.postal_code, Prospect.prefecture, Prospect.address_line)
            .where(*base, Prospect.postal_status == "returned")
            .order_by(Prospect.updated_at, Prospect.id)
        )
        rows, total = _people(conn, pq, params)
        report.sections.append(
            Section(
                "postal_returned",
                "Post returned: address to fix",
                [*_WHO, "postal_code", "prefecture", "address_line"],
                rows,
                total,
            )
        )
    report.totals = {
        f"{s.key}_count": (s.total if s.total is not None else sum(r.get("prospects", 0) for r in s.rows))
        for s in report.sections
    }
    for s in report.sections:
        if s.key == "overdue" and s.total:
            report.warn(f"{s.total} next action(s) overdue", f"期限切れの次回アクションが {s.total} 件あります")
        if s.key == "unacknowledged" and s.total:
            report.warn(f"{s.total} handoff(s) not acknowledged", f"受理されていない引き渡しが {s.total} 件あります")
    return report
