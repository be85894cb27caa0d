"""``nurture report conversion``: long-term conversion by cohort (SEEDS 001).

A cohort is the month (or quarter, ``--by quarter``) a prospect entered nurture (``prospects.created_at``, in
the report's time zone); ``--since``/``--until`` select the cohorts (default: the last 24 months — conversion is
slow). A win is a ``won`` event (``nurture prospects won``); ``won_short_term`` counts wins of prospects who had a
pending next action at the time (followed by that action), ``won_long_term`` those without (won by being
remembered: what nurture is for). ``curve`` is the cumulative conversion of each cohort by months since entry.

Prospects are counted per day of entry in SQL (at most a few hundred rows), wins are few: both scale.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from nurture.report.model import Chart, Params, Report, Section, as_date, rate
from nurture.store.models import Event, Prospect


def cohort_of(day: date, by: str) -> str:
    if by == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


def _months(a: date, b: date) -> int:
    return max(0, (b.year - a.year) * 12 + b.month - a.month)


def build(engine: Engine, params: Params) -> Report:
    zone = ZoneInfo(params.time_zone)
    report = Report("conversion", f"Long-term conversion by {params.by}", params)
    where = [Prospect.created_at >= params.since, Prospect.created_at < params.until]
    if params.industries:
        where.append(Prospect.industry.in_(params.industries))
    if params.owners:
        where.append(Prospect.owner.in_(params.owners))
    entered: Counter[str] = Counter()
    with engine.connect() as conn:
        # Days in UTC from SQL; a prospect entering near midnight may land in the neighbouring cohort at a month
        # edge: counted by the day, not the instant, so that the GROUP BY stays small at a million prospects.
        for day, n in conn.execute(
            select(func.date(Prospect.created_at), func.count()).where(*where).group_by(func.date(Prospect.created_at))
        ):
            entered[cohort_of(as_date(day), params.by)] += n
        wins = conn.execute(
            select(Prospect.id, Prospect.created_at, Event.occurred_at, Event.data)
            .join(Event, Event.prospect_id == Prospect.id)
            .where(*where, Event.type == "won")
            .order_by(Event.occurred_at)
        ).all()
    first: dict[int, tuple[datetime, datetime, dict[str, Any]]] = {}
    amounts: dict[int, float] = defaultdict(float)
    for pid, created, at, data in wins:
        first.setdefault(pid, (created, at, data or {}))
        amounts[pid] += float((data or {}).get("amount") or 0)
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"won": 0, "short": 0, "long": 0, "amount": 0.0, "days": [], "months": []}
    )
    for pid, (created, at, data) in first.items():
        c = cohort_of(created.astimezone(zone).date(), params.by)
        p = per[c]
        p["won"] += 1
        p["short" if data.get("term") == "short" else "long"] += 1
        p["amount"] += amounts[pid]
        p["days"].append((at - created).days)
        p["months"].append(_months(created.astimezone(zone).date(), at.astimezone(zone).date()))
    end = params.until.astimezone(zone).date()
    rows = []
    horizon = 0
    curves: list[tuple[str, list[float | None]]] = []
    for c in sorted(set(entered) | set(per)):
        p, n = per[c], entered[c]
        rows.append(
            {
                "cohort": c,
                "prospects": n,
                "won": p["won"],
                "conversion_rate": rate(p["won"], n),
                "won_short_term": p["short"],
                "won_long_term": p["long"],
                "amount": round(p["amount"], 2),
                "median_days_to_win": median(p["days"]) if p["days"] else None,
            }
        )
        year, rest = c.split("-")
        start = date(int(year), int(rest[1:]) * 3 - 2 if rest.startswith("Q") else int(rest), 1)
        age = _months(start, end)
        horizon = max(horizon, age)
        months = Counter(p["months"])
        cum, curve = 0, []
        for m in range(age + 1):
            cum += months[m]
            curve.append(round(100 * cum / n, 2) if n else None)
        curves.append((c, curve))
    report.sections.append(
        Section(
            "cohorts",
            "Conversion by cohort",
            [
                "cohort",
                "prospects",
                "won",
                "conversion_rate",
                "won_short_term",
                "won_long_term",
                "amount",
                "median_days_to_win",
            ],
            rows,
        )
    )
    report.sections.append(
        Section(
            "curves",
            "Cumulative conversion (%) by months since entry",
            ["cohort", "months_since_entry", "cumulative_rate_percent"],
            [
                {"cohort": c, "months_since_entry": m, "cumulative_rate_percent": v}
                for c, curve in curves
                for m, v in enumerate(curve)
            ],
        )
    )
    total_n, total_won = sum(entered.values()), sum(p["won"] for p in per.values())
    report.totals = {
        "prospects": total_n,
        "won": total_won,
        "conversion_rate": rate(total_won, total_n),
        "won_short_term": sum(p["short"] for p in per.values()),
        "won_long_term": sum(p["long"] for p in per.values()),
        "amount": round(sum(p["amount"] for p in per.values()), 2),
    }
    report.charts.append(
        Chart(
            "cohort_curves",
            "Cumulative conversion by months since entry (%)",
            "line",
            [str(m) for m in range(horizon + 1)],
            [(c, curve + [None] * (horizon + 1 - len(curve))) for c, curve in curves],
            percent=True,
        )
    )
    return report
