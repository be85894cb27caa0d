"""The leaks report's ``silent_why`` section at a million prospects: exact counts per kind in one SQL statement,
and the planner's own account (:func:`nurture.plan.silence.silent_prospects`) only for the rows shown.

:func:`silent_prospects` decides prospect by prospect in Python (about 0.3 ms each: minutes at a million), so the
report asks it only about the first ``limit`` prospects that :func:`classify` finds silent. :func:`classify`
(who, and of which kind; the totals) states the same rules as SQL over every mailable prospect (one join of
prospects and deliveries grouped by prospect) — for each campaign in play, the outcome of
:func:`nurture.plan.planner.decide` in its order (queued; not due; monthly cap; cadence gap; no item for the
industry; content exhausted, continued by its ``fallback`` as ``Round.decide`` does; send time now), then the kinds
of :mod:`nurture.plan.silence` (``exhausted``, ``window``, ``overdue``). The zone-dependent parts (send time now,
windows the schedule reaches, the local month of the monthly cap) are decided in Python once per distinct zone.

The two must agree: tests/report/test_silent_why.py compares who is named, and of which kind, with a full
:func:`silent_prospects` pass over random histories and campaigns (fallbacks, caps, zones, unreached windows). A
change to the planner's rules that is not mirrored here fails that test. Interval comparisons are in days as SQL
numbers: a mail exactly on an interval boundary (to the microsecond) may fall on the other side than in Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, false, func, literal, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from nurture.core.config import Config
from nurture.plan import cadence as calendar
from nurture.plan import schedule
from nurture.plan.campaigns import Campaign
from nurture.plan.planner import campaign_window_reason
from nurture.plan.segments import labeled_campaign_clauses, mailable_clauses
from nurture.plan.silence import SilentProspect, silent_prospects
from nurture.store import db
from nurture.store.models import Delivery, Prospect
from nurture.store.states import MAILED_STATES, DeliveryState
from nurture.store.suppression import not_suppressed

#: The kinds the leaks report lists (``unselected`` is the never_mailed section's business).
KINDS = ("exhausted", "window", "overdue")
_WAIT, _EXHAUSTED, _SEND = 0, 1, 2


def playing(campaigns: Sequence[Campaign], now: datetime) -> list[Campaign]:
    """The campaigns :func:`silent_prospects` judges by: e-mail, active, within their dates."""
    return [
        c for c in campaigns if c.channel == "email" and c.status == "active" and campaign_window_reason(c, now) is None
    ]


def first_rows(
    conn: Connection,
    campaigns: Sequence[Campaign],
    config: Config,
    now: datetime,
    limit: int,
    where: Sequence[ColumnElement[bool]] = (),
    *,
    found: Sequence[tuple[int, str]] | None = None,
) -> list[SilentProspect]:
    """The first ``limit`` silent prospects of :data:`KINDS` (id order) meeting ``where`` (prospect filters), as
    :func:`silent_prospects` words them. The planner is asked only about the first ``limit`` ids of ``found``
    (:func:`classify`'s answer; computed here when not given), so this costs what is shown, not what exists:
    streaming the planner over every prospect until ``limit`` silent ones turned up took ~10 s at a million."""
    found = classify(conn, campaigns, config, now, where) if found is None else found
    ids = [pid for pid, _ in found[:limit]]
    if not ids:
        return []
    return list(islice(silent_prospects(conn, campaigns, config, now, kinds=KINDS, only=ids), limit))


def kind_counts(
    conn: Connection,
    campaigns: Sequence[Campaign],
    config: Config,
    now: datetime,
    where: Sequence[ColumnElement[bool]] = (),
) -> Counter[str]:
    """How many mailable prospects (meeting ``where``) :func:`silent_prospects` would name, per kind of
    :data:`KINDS`."""
    return Counter(kind for _, kind in classify(conn, campaigns, config, now, where))


def classify(
    conn: Connection,
    campaigns: Sequence[Campaign],
    config: Config,
    now: datetime,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[tuple[int, str]]:
    """(prospect id, kind) of every mailable prospect (meeting ``where``) :func:`silent_prospects` would name,
    in id order: one statement, whatever the number of prospects (the silent ones are a few percent of them)."""
    play = playing(campaigns, now)
    if not play:
        return []
    by_name = {c.name: c for c in play}
    engine = conn.engine
    default_zone = config.default_time_zone
    zone = case((func.coalesce(Prospect.time_zone, "") == "", default_zone), else_=Prospect.time_zone)
    language = config.workspace.language
    members = {
        c.name: case((and_(true(), *(clause for _, clause in labeled_campaign_clauses(c, now, language))), 1), else_=0)
        for c in play
    }
    chosen = [*mailable_clauses(now), *where, or_(*(m == 1 for m in members.values())), not_suppressed()]
    # The distinct zones are a handful: what depends on the zone is decided in Python once for each. Those of
    # every prospect (a zone no member has adds a CASE branch that never matches): asking for the members' only
    # evaluated every segment and hashed every address first (1.1 s at a million prospects, for one zone).
    zones = sorted(set(conn.execute(select(zone).distinct()).scalars()))
    runs = schedule.runs_in_week(config, now)
    d = aliased(Delivery)
    when = func.coalesce(d.sent_at, d.created_at)
    factor = case((Prospect.frequency_factor > 0, Prospect.frequency_factor), else_=1.0)
    last_any = func.max(case((d.state.in_(MAILED_STATES), when)))

    def days(column: Any) -> Any:
        return db.days_since(engine, column, now)

    def interval(c: Campaign) -> Any:
        by_temperature = c.cadence.interval_by_temperature
        if not by_temperature:
            return literal(float(c.cadence.interval_days))
        return case(
            *((Prospect.temperature == t, float(v)) for t, v in by_temperature.items()),
            else_=float(c.cadence.interval_days),
        )

    # Step 1, per prospect (grouped by id): what the rules read, as plain columns, so that the rules below
    # read columns instead of repeating aggregates (PostgreSQL evaluated the whole rule twice per prospect).
    columns: list[Any] = [
        Prospect.id.label("pid"),
        zone.label("zone"),
        days(last_any).label("gap"),
        days(func.coalesce(last_any, Prospect.created_at)).label("since"),
    ]
    for i, c in enumerate(play):
        mine = d.campaign == c.name
        tried = d.state.in_([*MAILED_STATES, DeliveryState.FAILED])
        unrestricted = [it.key for it in c.items if not it.industries]
        restricted = [it for it in c.items if it.industries]
        got = or_(
            d.item_key.in_(unrestricted) if unrestricted else false(),
            *(and_(d.item_key == it.key, Prospect.industry.in_(it.industries)) for it in restricted),
        )
        offered: Any = literal(len(unrestricted))
        for it in restricted:
            offered = offered + case((Prospect.industry.in_(it.industries), 1), else_=0)
        columns += [
            members[c.name].label(f"m{i}"),
            func.max(case((and_(mine, d.state == DeliveryState.PENDING), 1), else_=0)).label(f"queued{i}"),
            days(func.max(case((and_(mine, tried), when)))).label(f"last{i}"),
            (interval(c) * factor).label(f"interval{i}"),
            func.sum(case((and_(mine, got), 1), else_=0)).label(f"received{i}"),
            offered.label(f"offered{i}"),
        ]
        if c.cadence.monthly_cap:
            this_month = or_(
                false(), *(and_(zone == z, when >= lo, when < hi) for z in zones for lo, hi in [_local_month(now, z)])
            )
            columns.append(func.sum(case((and_(mine, tried, this_month), 1), else_=0)).label(f"month{i}"))
    g = (
        select(*columns)
        .select_from(Prospect)
        .outerjoin(d, d.prospect_id == Prospect.id)
        .where(*chosen)
        .group_by(Prospect.id)
        .subquery()
    )
    index = {c.name: i for i, c in enumerate(play)}

    def in_zones(names: list[str]) -> ColumnElement[bool]:
        return g.c.zone.in_(names) if names else false()

    def base(c: Campaign) -> Any:
        """:func:`nurture.plan.planner.decide` for one campaign, as _WAIT / _EXHAUSTED / _SEND, in its order."""
        i = index[c.name]
        whens: list[tuple[Any, int]] = [
            (g.c[f"queued{i}"] == 1, _WAIT),
            (g.c[f"last{i}"] < g.c[f"interval{i}"], _WAIT),  # not due (NULL: never mailed here)
        ]
        if c.cadence.monthly_cap:
            whens.append((g.c[f"month{i}"] >= c.cadence.monthly_cap, _WAIT))
        whens += [
            (g.c.gap < config.cadence.min_gap_days, _WAIT),  # the cadence gap after any campaign's mail
            (g.c[f"offered{i}"] == 0, _WAIT),  # no item for their industry: not "exhausted"
            (g.c[f"received{i}"] >= g.c[f"offered{i}"], _EXHAUSTED),
        ]
        send_now = [z for z in zones if calendar.is_send_time(now.astimezone(ZoneInfo(z)), c.cadence) is None]
        return case(*whens, (in_zones(send_now), _SEND), else_=_WAIT)

    def outcome(c: Campaign, seen: tuple[str, ...] = ()) -> Any:
        """``Round.decide``: an exhausted campaign continues in its fallback (a member of it: waits there)."""
        own = base(c)
        nxt = by_name.get(c.fallback) if c.fallback and c.fallback not in (*seen, c.name) else None
        if nxt is None:
            return own
        then = case((g.c[f"m{index[nxt.name]}"] == 1, _WAIT), else_=outcome(nxt, (*seen, c.name)))
        return case((own == _EXHAUSTED, then), else_=own)

    # Step 2: the kinds of nurture.plan.silence._judge from each campaign's outcome.
    decided = {c.name: outcome(c) for c in play}
    member_of = {c.name: g.c[f"m{index[c.name]}"] == 1 for c in play}
    unreached = {c.name: [z for z in zones if not schedule.reaches(c.cadence, z, runs)] for c in play}
    limit = config.cadence.silent_after_intervals
    kind = case(
        (or_(*(and_(member_of[n], o == _SEND) for n, o in decided.items())), None),
        (and_(*(or_(~member_of[n], o == _EXHAUSTED) for n, o in decided.items())), "exhausted"),
        (
            and_(*(or_(~member_of[n], o == _EXHAUSTED, in_zones(unreached[n])) for n, o in decided.items())),
            "window",
        ),
        # Overdue: longer than silent_after_intervals x the shortest interval of the campaigns with content
        # left, i.e. longer than that for any one of them.
        (
            or_(
                *(
                    and_(member_of[n], o != _EXHAUSTED, g.c.since > g.c[f"interval{index[n]}"] * limit)
                    for n, o in decided.items()
                )
            ),
            "overdue",
        ),
        else_=None,
    ).label("kind")
    per_prospect = select(g.c.pid, kind).subquery()
    found = conn.execute(
        select(per_prospect.c.pid, per_prospect.c.kind)
        .where(per_prospect.c.kind.is_not(None))
        .order_by(per_prospect.c.pid)
    )
    return [(int(pid), str(k)) for pid, k in found]


def _local_month(now: datetime, zone: str) -> tuple[datetime, datetime]:
    """The month of ``now`` in ``zone`` as UTC bounds [first instant, first instant of the next month)."""
    tz = ZoneInfo(zone)
    first = now.astimezone(tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first.astimezone(now.tzinfo), nxt.astimezone(now.tzinfo)
