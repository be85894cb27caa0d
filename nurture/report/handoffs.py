"""``nurture report handoffs``: how good the handoff threshold is.

Handoffs created in the period (by :mod:`nurture.score`, decided in ``nurture handoffs``): per reason (rank_A,
stage_SQL, inquiry) how many, acknowledged (accepted by sales), rejected, still open, the acceptance rate
(acknowledged / decided) and the median hours to a decision; the rejection reasons sales gave; per week.
Many rejections for ``rank_A`` mean the threshold is too low; slow acknowledgement, that owners need the digest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from nurture.report.model import Chart, Params, Report, Section, limited, rate, week_start, weeks_between
from nurture.store.models import Handoff, Prospect


def build(engine: Engine, params: Params) -> Report:
    zone = ZoneInfo(params.time_zone)
    report = Report("handoffs", "Handoffs to sales", params)
    q = (
        select(
            Prospect.email,
            Prospect.company,
            Handoff.owner,
            Handoff.reason,
            Handoff.state,
            Handoff.created_at,
            Handoff.decided_at,
            Handoff.decided_by,
            Handoff.verdict_reason,
            Handoff.escalated_at,
        )
        .join(Prospect, Prospect.id == Handoff.prospect_id)
        .where(Handoff.created_at >= params.since, Handoff.created_at < params.until)
        .order_by(Handoff.created_at.desc(), Handoff.id.desc())
    )
    if params.owners:
        q = q.where(Handoff.owner.in_(params.owners))
    if params.industries:
        q = q.where(Prospect.industry.in_(params.industries))
    with engine.connect() as conn:
        data = [dict(r._mapping) for r in conn.execute(q)]
    by: dict[str, Counter[str]] = defaultdict(Counter)
    hours: dict[str, list[float]] = defaultdict(list)
    reasons: Counter[tuple[str, str]] = Counter()
    weeks = weeks_between(params.since, params.until)
    index = {w: n for n, w in enumerate(weeks)}
    weekly = {k: [0.0] * len(weeks) for k in ("acknowledged", "rejected", "open")}
    for h in data:
        h["hours_to_decision"] = (
            round((h["decided_at"] - h["created_at"]).total_seconds() / 3600, 1) if h["decided_at"] else None
        )
        c = by[h["reason"]]
        c["handoffs"] += 1
        c[h["state"]] += 1
        c["escalated"] += h["escalated_at"] is not None
        if h["hours_to_decision"] is not None:
            hours[h["reason"]].append(h["hours_to_decision"])
        if h["state"] == "rejected":
            reasons[(h["reason"], h["verdict_reason"] or "(no reason given)")] += 1
        w = index.get(week_start(h["created_at"].astimezone(zone).date()))
        if w is not None and h["state"] in weekly:
            weekly[h["state"]][w] += 1
    rows = []
    for reason in sorted(by):
        c = by[reason]
        rows.append(
            {
                "reason": reason,
                "handoffs": c["handoffs"],
                "acknowledged": c["acknowledged"],
                "rejected": c["rejected"],
                "open": c["open"],
                "escalated": c["escalated"],
                "acceptance_rate": rate(c["acknowledged"], c["acknowledged"] + c["rejected"]),
                "median_hours_to_decision": median(hours[reason]) if hours[reason] else None,
            }
        )
    report.sections.append(
        Section(
            "by_reason",
            "Per reason",
            [
                "reason",
                "handoffs",
                "acknowledged",
                "rejected",
                "open",
                "escalated",
                "acceptance_rate",
                "median_hours_to_decision",
            ],
            rows,
        )
    )
    report.sections.append(
        Section(
            "rejections",
            "Why sales rejected",
            ["reason", "verdict_reason", "count"],
            [
                {"reason": a, "verdict_reason": b, "count": n}
                for (a, b), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        )
    )
    shown, total = limited(data, params.limit)
    report.sections.append(
        Section(
            "handoffs",
            "Handoffs (newest first)",
            ["created_at", "email", "company", "owner", "reason", "state", "hours_to_decision", "verdict_reason"],
            [{k: v for k, v in h.items() if k != "decided_by"} | {"decided_by": h["decided_by"]} for h in shown],
            total,
        )
    )
    all_hours = [x for v in hours.values() for x in v]
    acknowledged = sum(c["acknowledged"] for c in by.values())
    rejected = sum(c["rejected"] for c in by.values())
    report.totals = {
        "handoffs_total": len(data),
        "acknowledged": acknowledged,
        "rejected": rejected,
        "open": sum(c["open"] for c in by.values()),
        "acceptance_rate": rate(acknowledged, acknowledged + rejected),
        "median_hours_to_decision": median(all_hours) if all_hours else None,
    }
    report.charts.append(
        Chart(
            "weekly",
            "Handoffs per week by outcome",
            "stacked",
            [w.isoformat() for w in weeks],
            [(k, list(v)) for k, v in weekly.items()],
        )
    )
    return report
