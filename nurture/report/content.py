"""``nurture report content``: will a years-long nurture go silent? Weeks of unsent content per segment member.

For each active campaign (definitions from :mod:`nurture.plan`), each mailable member of its segment has
``items left`` = the items meant for their industry minus the items already mailed or queued to them; at the
cadence's interval for their temperature (times their frequency factor) that is ``weeks left``. Per campaign and
temperature: members, how many have nothing left (``dry_now``), how many run dry within 8 weeks, the minimum and
median weeks left. A campaign with members running dry within 8 weeks is a warning: add items to the pool or
sequence (or set ``when_exhausted``). One statement per campaign: the members joined to their mails of it, counted
per member, then grouped.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, and_, func, select

from nurture.plan.campaigns import Campaign
from nurture.plan.segments import segment_select
from nurture.report.model import Chart, Params, Report, Section
from nurture.store.models import Delivery, Prospect
from nurture.store.states import MAILED_STATES

HORIZON_WEEKS = 8


def build(engine: Engine, params: Params, campaigns: list[Campaign]) -> Report:
    now = params.until
    report = Report("content", "Content runway", params)
    rows: list[dict[str, Any]] = []
    dist: list[dict[str, Any]] = []
    for c in campaigns:
        if c.status != "active" or (params.campaigns and c.name not in params.campaigns):
            continue
        # The members' mails of this campaign, counted per member (the campaign's unique index on (campaign,
        # prospect_id, item_key) finds them): counting every recipient's mails first grouped all of them (600k
        # at a million prospects) to keep the members' (150k).
        members = segment_select(c, now).subquery()
        mailed = and_(
            Delivery.prospect_id == Prospect.id, Delivery.campaign == c.name, Delivery.state.in_(MAILED_STATES)
        )
        per_member = (
            select(
                Prospect.industry,
                Prospect.temperature,
                Prospect.frequency_factor,
                func.count(Delivery.id).label("n"),
            )
            .join(members, members.c.id == Prospect.id)
            .outerjoin(Delivery, mailed)
            .group_by(Prospect.id)
        )
        if params.industries:
            per_member = per_member.where(Prospect.industry.in_(params.industries))
        if params.owners:
            per_member = per_member.where(Prospect.owner.in_(params.owners))
        m = per_member.subquery()
        q = select(m.c.industry, m.c.temperature, m.c.frequency_factor, m.c.n, func.count()).group_by(
            m.c.industry, m.c.temperature, m.c.frequency_factor, m.c.n
        )
        per_temp: dict[str, list[tuple[float, int]]] = defaultdict(list)
        with engine.connect() as conn:
            for industry, temp, factor, got, count in conn.execute(q):
                items = sum(1 for it in c.items if not it.industries or industry in it.industries)
                left = max(0, items - int(got))
                weeks = left * c.cadence.interval_for(temp) * (factor if factor and factor > 0 else 1.0) / 7
                per_temp[temp].append((round(weeks, 1), count))
        for temp in sorted(
            per_temp, key=lambda t: ("hot", "warm", "cold").index(t) if t in ("hot", "warm", "cold") else 9
        ):
            pairs = per_temp[temp]
            members_n = sum(k for _, k in pairs)
            expanded = sorted(pairs)
            # median over members without expanding a million values: walk the sorted (weeks, count) pairs
            half, seen, med = members_n / 2, 0, 0.0
            for w, k in expanded:
                seen += k
                if seen >= half:
                    med = w
                    break
            row = {
                "campaign": c.name,
                "mode": c.content.mode,
                "when_exhausted": c.content.when_exhausted,
                "temperature": temp,
                "interval_days": c.cadence.interval_for(temp),
                "items": len(c.items),
                "members": members_n,
                "dry_now": sum(k for w, k in pairs if w == 0),
                "dry_within_8_weeks": sum(k for w, k in pairs if 0 < w <= HORIZON_WEEKS),
                "min_weeks_left": expanded[0][0] if expanded else None,
                "median_weeks_left": med,
            }
            rows.append(row)
            buckets: dict[int, int] = defaultdict(int)
            for w, k in pairs:
                buckets[int(w)] += k
            dist.extend(
                {"campaign": c.name, "temperature": temp, "weeks_left": b, "members": k}
                for b, k in sorted(buckets.items())
            )
            if row["dry_now"] or row["dry_within_8_weeks"]:
                report.warn(
                    f"{c.name} ({temp}): {row['dry_now']} member(s) have no unsent item, "
                    f"{row['dry_within_8_weeks']} run dry within {HORIZON_WEEKS} weeks — "
                    f"add items to the {c.content.mode}",
                    f"{c.name}（{temp}）：未送信コンテンツが残っていない対象者 {row['dry_now']} 件、"
                    f"{HORIZON_WEEKS} 週以内に尽きる対象者 {row['dry_within_8_weeks']} 件"
                    " — コンテンツを追加してください",
                )
    cols = [
        "campaign",
        "mode",
        "temperature",
        "interval_days",
        "items",
        "members",
        "dry_now",
        "dry_within_8_weeks",
        "min_weeks_left",
        "median_weeks_left",
    ]
    report.sections.append(Section("campaigns", "Weeks of unsent content per member", cols, rows))
    report.sections.append(
        Section("distribution", "Members by weeks left", ["campaign", "temperature", "weeks_left", "members"], dist)
    )
    horizon = max((d["weeks_left"] for d in dist), default=0)
    xs = list(range(0, horizon + 1))
    series: dict[str, list[float | None]] = {}
    for d in dist:
        values = series.setdefault(d["campaign"], [0] * len(xs))
        values[d["weeks_left"]] = (values[d["weeks_left"]] or 0) + d["members"]
    report.charts.append(
        Chart("runway", "Members by weeks of content left", "stacked", [str(x) for x in xs], list(series.items()))
    )
    report.totals = {
        "members": sum(r["members"] for r in rows),
        "running_dry": sum(r["dry_now"] + r["dry_within_8_weeks"] for r in rows),
    }
    return report
