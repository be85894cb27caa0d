"""``nurture report campaigns``: per campaign and item, what was sent and what people (and machines) did.

Counts (all within the period; every column says whether it is *unique* — distinct prospects — or *total* —
every event):

- ``sent``: deliveries whose ``sent_at`` is in the period (state sent or unknown); ``failed`` likewise;
- ``delivered``, ``deferred``, ``bounced``: provider events, unique prospects;
- opens and clicks by label: ``*_human_unique`` / ``*_human_total``, ``*_machine_total`` (scanners, image
  prefetchers), ``*_unknown_total`` (e.g. Gmail's image proxy);
- ``est_human_open_rate``: of the mails sent in the period, those a person opened / those that arrived (sent
  minus bounced; delivery events are missing with SMTP, so ``delivered`` alone would undercount).
  An *estimate*: Apple's and Gmail's proxies hide some people, and those opens are in ``unknown``/``machine``;
- ``unsubscribed``, ``complaints`` (unique) and ``complaint_rate`` = complaints / sent, judged ``warning``
  from 0.1 % and ``alarm`` from 0.3 % (the sending engine pauses a campaign above 0.3 %);
- ``rank_moves``: moves of the ranks report whose events include this item.

Set-based: one GROUP BY over deliveries, one scan of the period's events (GROUPING SETS on PostgreSQL: by item, by
campaign, per link, per day), one join for the opened mails, one for the moves. On PostgreSQL the event scan runs on
a second connection beside the others (each is one core's work; the machine has more).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, exists, func, literal_column, select, tuple_

from nurture.report import ranks
from nurture.report.model import Chart, Params, Report, Section, as_date, rate, week_start, weeks_between
from nurture.store.models import Delivery, Event
from nurture.store.states import DeliveryState

WARNING_RATE = 0.001
ALARM_RATE = 0.003
_TYPES = ("delivered", "deferred", "bounced", "opened", "clicked", "unsubscribed", "complained")
COLUMNS = [
    "campaign",
    "item",
    "sent",
    "failed",
    "delivered",
    "deferred",
    "bounced",
    "opens_human_unique",
    "opens_human_total",
    "opens_machine_total",
    "opens_unknown_total",
    "est_human_open_rate",
    "clicks_human_unique",
    "clicks_human_total",
    "clicks_machine_total",
    "unsubscribed",
    "complaints",
    "complaint_rate",
    "complaint_level",
    "rank_moves",
]

BRIEF = [
    "campaign",
    "item",
    "sent",
    "opens_human_unique",
    "opens_human_total",
    "opens_machine_total",
    "est_human_open_rate",
    "clicks_human_unique",
    "clicks_human_total",
    "clicks_machine_total",
    "unsubscribed",
    "complaints",
    "complaint_rate",
    "rank_moves",
]


def complaint_level(complaints: int, sent: int) -> str:
    """``ok``, ``warning`` (>= 0.1 %) or ``alarm`` (>= 0.3 %) for a complaint count over sent mails."""
    r = complaints / sent if sent else (1.0 if complaints else 0.0)
    return "alarm" if r >= ALARM_RATE and complaints else "warning" if r >= WARNING_RATE and complaints else "ok"


def _period_events(params: Params, types: tuple[str, ...]) -> list[Any]:
    return [
        Event.type.in_(types),
        Event.occurred_at >= params.since,
        Event.occurred_at < params.until,
        Event.campaign != "",
        *([Event.campaign.in_(params.campaigns)] if params.campaigns else []),
    ]


def _add_count(c: Counter[str], kind: str, label: str, total: int, unique: int) -> None:
    if kind in ("opened", "clicked"):
        prefix = "opens" if kind == "opened" else "clicks"
        c[f"{prefix}_{label}_total"] += total
        c[f"{prefix}_{label}_unique"] += unique
    else:
        name = {"complained": "complaints"}.get(kind, kind)
        c[name] += unique  # one per prospect: a retried webhook or a second complaint is one person


def _event_counts(engine: Engine, params: Params, by_item: bool) -> dict[tuple[str, str], Counter[str]]:
    keys = [Event.campaign, Event.item_key] if by_item else [Event.campaign]
    query = (
        select(*keys, Event.type, Event.label, func.count(), func.count(Event.prospect_id.distinct()))
        .where(*_period_events(params, _TYPES))
        .group_by(*keys, Event.type, Event.label)
    )
    out: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    with engine.connect() as conn:
        for r in conn.execute(query):
            _add_count(out[(r[0], r[1] if by_item else "")], str(r[-4]), str(r[-3]), int(r[-2]), int(r[-1]))
    return out


_Links = dict[str, list[dict[str, Any]]]
_Daily = list[tuple[str, str, str, Any, int]]


def _links_query(params: Params) -> Any:
    """Top links: clicks by people (machine clicks are scanners testing every link)."""
    return (
        select(Event.campaign, Event.url, func.count(), func.count(Event.prospect_id.distinct()))
        .where(*_period_events(params, ("clicked",)), Event.label != "machine")
        .group_by(Event.campaign, Event.url)
    )


def _daily_query(params: Params) -> Any:
    day = func.date(Event.occurred_at)
    return (
        select(Event.campaign, Event.type, Event.label, day, func.count())
        .where(*_period_events(params, ("opened", "clicked")))
        .group_by(Event.campaign, Event.type, Event.label, day)
    )


def _event_scan(
    engine: Engine, params: Params
) -> tuple[dict[tuple[str, str], Counter[str]], dict[tuple[str, str], Counter[str]], _Links, _Daily]:
    """The period's events counted four ways: per (campaign, item) and per campaign (by type and label; totals and
    unique prospects), per (campaign, URL) for the human and unknown clicks, per (campaign, type, label, day).

    On PostgreSQL one scan with GROUPING SETS (the period's events are ~8 % of a 10M-row table without an index
    that covers them: each separate GROUP BY re-read all of it); elsewhere one GROUP BY per view."""
    if engine.dialect.name != "postgresql":
        links: _Links = defaultdict(list)
        with engine.connect() as conn:
            for c, url, total, unique in conn.execute(_links_query(params)):
                links[c].append({"campaign": c, "url": url, "clicks_unique": unique, "clicks_total": total})
            daily: _Daily = [tuple(r) for r in conn.execute(_daily_query(params))]
        return _event_counts(engine, params, True), _event_counts(engine, params, False), links, daily
    day = func.date(Event.occurred_at)
    human = Event.label != literal_column("'machine'")  # a literal: a bind parameter would not match in GROUP BY
    c_, i_, t_, l_ = Event.campaign, Event.item_key, Event.type, Event.label
    query = (
        select(
            c_,
            i_,
            t_,
            l_,
            Event.url,
            day,
            human,
            func.count(),
            func.count(Event.prospect_id.distinct()),
            func.grouping(i_, Event.url, day, human),
        )
        .where(*_period_events(params, _TYPES))
        .group_by(
            func.grouping_sets(
                tuple_(c_, i_, t_, l_), tuple_(c_, t_, l_), tuple_(c_, t_, Event.url, human), tuple_(c_, t_, l_, day)
            )
        )
    )
    per_item: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    per_campaign: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    links = defaultdict(list)
    daily = []
    with engine.connect() as conn:
        # Each grouping set sorts the period's events (770k rows at 10M events) again: at the reports' 48 MB
        # the later sorts spilled ~120 MB to disk. This statement only.
        conn.exec_driver_sql("SET LOCAL work_mem = '160MB'")
        rows = conn.execute(query).all()
    # grouping() bits, left to right: item, url, day, human (1 = not a key of that row's set).
    for c, item, kind, label, url, d, is_human, total, unique, g in rows:
        if g == 0b0111:
            _add_count(per_item[(c, item)], kind, label, total, unique)
        elif g == 0b1111:
            _add_count(per_campaign[(c, "")], kind, label, total, unique)
        elif g == 0b1010:
            if kind == "clicked" and is_human:
                links[c].append({"campaign": c, "url": url, "clicks_unique": unique, "clicks_total": total})
        elif g == 0b1101 and kind in ("opened", "clicked"):
            daily.append((c, kind, label, d, total))
    return per_item, per_campaign, links, daily


def _sent_counts(engine: Engine, params: Params, by_item: bool) -> dict[tuple[str, str], dict[str, int]]:
    keys = [Delivery.campaign, Delivery.item_key] if by_item else [Delivery.campaign]
    query = (
        select(*keys, Delivery.state, func.count())
        .where(
            Delivery.sent_at >= params.since,
            Delivery.sent_at < params.until,
            Delivery.state.in_([DeliveryState.SENT, DeliveryState.UNKNOWN, DeliveryState.FAILED]),
        )
        .group_by(*keys, Delivery.state)
    )
    if params.campaigns:
        query = query.where(Delivery.campaign.in_(params.campaigns))
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(Counter)
    with engine.connect() as conn:
        for r in conn.execute(query):
            key = (r[0], r[1] if by_item else "")
            out[key]["failed" if r[-2] == DeliveryState.FAILED else "sent"] += int(r[-1])
    return out


def _openers(engine: Engine, params: Params, by_item: bool) -> dict[tuple[str, str], int]:
    """Mails sent in the period that a person opened (at any time up to ``until``): the open rate's numerator, so
    that the rate is over the same mails as its denominator (opens of older mails would push it past 100 %)."""
    keys = [Delivery.campaign, Delivery.item_key] if by_item else [Delivery.campaign]
    # A semi-join (each mail once, however often it was opened): a join then count(DISTINCT) sorted every open.
    # Literals, not bind parameters: the partial index ix_events_human_opens (one index-only probe per mail) is
    # usable only where PostgreSQL can see the values match its WHERE, prepared (generic) plans included.
    opened = exists().where(
        Event.delivery_id == Delivery.id,
        Event.type == literal_column("'opened'"),
        Event.label == literal_column("'human'"),
        Event.occurred_at < params.until,
    )
    query = (
        select(*keys, func.count())
        .where(Delivery.sent_at >= params.since, Delivery.sent_at < params.until, opened)
        .group_by(*keys)
    )
    if params.campaigns:
        query = query.where(Delivery.campaign.in_(params.campaigns))
    with engine.connect() as conn:
        return {(str(r[0]), str(r[1]) if by_item else ""): int(r[-1]) for r in conn.execute(query)}


def _row(campaign: str, item: str, sent: dict[str, int], ev: dict[str, int], moves: int) -> dict[str, Any]:
    row: dict[str, Any] = {"campaign": campaign, "item": item}
    row["sent"] = sent.get("sent", 0)
    row["failed"] = sent.get("failed", 0)
    for k in ("delivered", "deferred", "bounced"):
        row[k] = ev.get(k, 0)
    row["opens_human_unique"] = ev.get("opens_human_unique", 0)
    row["opens_human_total"] = ev.get("opens_human_total", 0)
    row["opens_machine_total"] = ev.get("opens_machine_total", 0)
    row["opens_unknown_total"] = ev.get("opens_unknown_total", 0)
    row["est_human_open_rate"] = rate(sent.get("opened", 0), max(row["sent"] - row["bounced"], row["delivered"]))
    row["clicks_human_unique"] = ev.get("clicks_human_unique", 0)
    row["clicks_human_total"] = ev.get("clicks_human_total", 0)
    row["clicks_machine_total"] = ev.get("clicks_machine_total", 0)
    row["unsubscribed"] = ev.get("unsubscribed", 0)
    row["complaints"] = ev.get("complaints", 0)
    row["complaint_rate"] = rate(row["complaints"], row["sent"])
    row["complaint_level"] = complaint_level(row["complaints"], row["sent"])
    row["rank_moves"] = moves
    return row


def build(engine: Engine, params: Params) -> Report:
    report = Report("campaigns", "Campaign health", params)
    if engine.dialect.name == "postgresql":
        # Two connections: the event scan's grouping (one core: sorts by each grouping set) beside the moves'
        # event lookups and the delivery counts (one core: index probes). Sequential, the report took the sum of
        # the two, 4.5-5.5 s at a million prospects with the second core idle for most of it.
        with ThreadPoolExecutor(max_workers=1) as pool:
            scan = pool.submit(_event_scan, engine, params)
            per_item, per_campaign = ranks.move_counts(engine, params)
            sent_i = _sent_counts(engine, params, True)
            opened = _openers(engine, params, True)
            ev_i, ev_c, links, daily = scan.result()
    else:
        per_item, per_campaign = ranks.move_counts(engine, params)
        ev_i, ev_c, links, daily = _event_scan(engine, params)
        sent_i = _sent_counts(engine, params, True)
        opened = _openers(engine, params, True)
    for key, n in opened.items():
        sent_i[key]["opened"] = n
    # Deliveries belong to one item each: per-campaign sent / opened mails are sums of the items'. Unique
    # prospects are not (one person opens several items), so those take their own GROUP BY.
    sent_c: dict[tuple[str, str], dict[str, int]] = defaultdict(Counter)
    for (c, _), counts in sent_i.items():
        for k, n in counts.items():
            sent_c[(c, "")][k] += n
    rows = [
        _row(c, i, sent_i.get((c, i), {}), ev_i.get((c, i), {}), per_item.get((c, i), 0))
        for c, i in sorted(set(sent_i) | set(ev_i))
    ]
    totals = [
        _row(c, "", sent_c.get((c, ""), {}), ev_c.get((c, ""), {}), per_campaign.get((c, ""), 0))
        for c, _ in sorted(set(sent_c) | set(ev_c))
    ]
    report.sections.append(Section("rows", "Per campaign and item", COLUMNS, rows, brief=BRIEF))
    report.sections.append(Section("campaigns", "Per campaign (unique across its items)", COLUMNS, totals, brief=BRIEF))
    for t in totals:
        if t["complaint_level"] != "ok":
            share = f"{t['complaint_rate'] or 0:.2%} ({t['complaints']} / {t['sent']})"
            alarm = t["complaint_level"] == "alarm"
            report.warn(
                f"{t['campaign']}: complaint rate {share} — {t['complaint_level']}"
                + (": sending pauses above 0.3 %" if alarm else ""),
                f"{t['campaign']}：苦情率 {share} — {'警報' if alarm else '注意'}"
                + ("（0.3 % を超えると送信を一時停止します）" if alarm else ""),
            )
    top = [
        link
        for c in sorted(links)
        for link in sorted(links[c], key=lambda r: (-r["clicks_unique"], -r["clicks_total"], r["url"]))[:5]
    ]
    report.sections.append(
        Section(
            "top_links",
            "Top links (human and unknown clicks)",
            ["campaign", "url", "clicks_unique", "clicks_total"],
            top,
        )
    )
    weeks = weeks_between(params.since, params.until)
    index = {w: n for n, w in enumerate(weeks)}
    x = [w.isoformat() for w in weeks]
    by_label: dict[str, list[float | None]] = {k: [0] * len(weeks) for k in ("human", "machine", "unknown")}
    per_campaign_series: dict[tuple[str, str], list[float | None]] = {}
    weekly: Counter[tuple[str, str, str, Any]] = Counter()
    for c, kind, label, day, n in daily:
        w = index.get(week_start(as_date(day)))
        if w is None:
            continue
        weekly[(c, kind, label, weeks[w])] += n
        if kind == "opened":
            by_label[label][w] = (by_label[label][w] or 0) + n
        if label != "machine":
            series = per_campaign_series.setdefault((c, kind), [0] * len(weeks))
            series[w] = (series[w] or 0) + n
    report.sections.append(
        Section(
            "weekly",
            "Opens and clicks per week",
            ["week", "campaign", "type", "label", "count"],
            [
                {"week": w, "campaign": c, "type": k, "label": lab, "count": n}
                for (c, k, lab, w), n in sorted(weekly.items(), key=lambda kv: (kv[0][3], kv[0][:3]))
            ],
        )
    )
    report.charts.append(
        Chart("opens_by_label", "Opens per week: human vs machine", "stacked", x, list(by_label.items()))
    )
    report.charts.append(
        Chart(
            "per_campaign",
            "Opens and clicks per week per campaign (people, not machines)",
            "line",
            x,
            [(f"{c} {'opens' if k == 'opened' else 'clicks'}", v) for (c, k), v in sorted(per_campaign_series.items())],
        )
    )
    report.totals = {"sent": sum(t["sent"] for t in totals), "complaints": sum(t["complaints"] for t in totals)}
    return report
