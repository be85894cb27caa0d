"""Who will hear nothing, and why: the mailable prospects nurture is not mailing.

:func:`silent_prospects` is the one place that answers it; ``nurture send --dry-run`` prints it, and reports (the
``leaks`` report, the weekly digest) call it. It reads only (no row is written) and works on one connection::

    from nurture.plan.silence import silent_prospects
    for s in silent_prospects(conn, campaigns, config, now):
        print(s.email, s.kind, s.reason)

Each :class:`SilentProspect` has a ``kind``:

``unselected``  no campaign selects them; ``reason`` says what stops each campaign (its first unmet condition:
                a segment condition, ``pending next action``, ``customer``, ``language en``), summed up as
                ``category`` (pending next action | customer | language | no segment matches | no campaign).
``exhausted``   every campaign that selects them has no item left for them (and no ``fallback`` continues).
``window``      the send window of every campaign that could still mail them is one the ``[schedule]`` runs never
                reach in their zone (:mod:`nurture.plan.schedule`).
``overdue``     selected, with content left, but not mailed for ``[cadence] silent_after_intervals`` times their
                interval (never mailed: that long since they were added); ``reason`` gives each campaign's
                current decision (monthly cap, cadence gap, outside send hours ...).

Mailable means what the planner means (:func:`nurture.plan.segments.mailable_clauses`, not suppressed); prospects
who are not mailable (unsubscribed, no consent ...) are silent by design and are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.engine import Connection

from nurture.core.config import Config
from nurture.plan import schedule
from nurture.plan.campaigns import Campaign
from nurture.plan.planner import MEMBER_COLUMNS, Decision, Round, campaign_window_reason
from nurture.plan.segments import labeled_campaign_clauses, mailable_clauses
from nurture.store.models import Prospect
from nurture.store.states import PlanOutcome
from nurture.store.suppression import not_suppressed

BATCH = 1000
KINDS = ("unselected", "exhausted", "window", "overdue")


@dataclass(frozen=True)
class SilentProspect:
    """A mailable prospect nurture is not mailing (see the module docstring for ``kind``)."""

    prospect_id: int
    email: str
    kind: str
    category: str
    reason: str
    campaigns: tuple[str, ...] = ()
    last_mailed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "prospect_id": self.prospect_id,
            "email": self.email,
            "kind": self.kind,
            "category": self.category,
            "reason": self.reason,
            "campaigns": list(self.campaigns),
            "last_mailed_at": self.last_mailed_at.isoformat() if self.last_mailed_at else None,
        }


_VALUE_FIELDS = ("temperature", "rank", "stage", "industry", "owner", "score", "company", "title")


def _own_value(label: str, row: Any) -> str:
    """``label`` with the prospect's own value of the field: "industry in ['製造業'] (is 'IT')"."""
    field = label.split(" ", 1)[0]
    if field in _VALUE_FIELDS:
        value = getattr(row, field, None)
        return f"{label} (is {value!r})" if value not in (None, "") else f"{label} (is empty)"
    return label


def _unselected(row: Any, failing: dict[str, list[str]], config: Config) -> SilentProspect:
    """Why no campaign selects ``row``: a reason shared by every campaign (pending next action, customer,
    language) comes first; otherwise each campaign's first unmet segment condition, with the prospect's value."""
    if not failing:
        return SilentProspect(row.id, row.email, "unselected", "no campaign", "no active campaign")
    every = set.intersection(*({_structural(label) for label in labels} for labels in failing.values()))
    if "pending next action" in every:
        category, reason = "pending next action", "pending next action: followed by that action, not by nurture mail"
    elif "customer" in every:
        category = "customer"
        reason = "customer: every campaign leaves customers out (include_customers = true selects them)"
    elif "language" in every or any(
        labels and all(_structural(x) == "language" for x in labels) for labels in failing.values()
    ):
        # Every campaign wants another language, or one would select them but for the language: that is the fix.
        lang = row.language or f"{config.workspace.language} (the workspace default)"
        only = [c for c, labels in failing.items() if all(_structural(x) == "language" for x in labels)]
        wanted = sorted({label for labels in failing.values() for label in labels if label.startswith("language ")})
        category = "language"
        reason = f"language {lang}: no campaign in that language selects them ({', '.join(wanted)})"
        if only:
            reason += f"; {', '.join(only)} would, but for the language"
    else:
        category = "no segment matches"
        reason = "no segment matches: " + "; ".join(
            f"{c}: {_own_value(labels[0], row)}" for c, labels in failing.items()
        )
    return SilentProspect(row.id, row.email, "unselected", category, reason)


def _structural(label: str) -> str:
    return "language" if label.startswith("language ") else label


def _is_exhausted(d: Decision) -> bool:
    return d.outcome == PlanOutcome.SKIPPED and d.exhausted


def silent_prospects(
    conn: Connection,
    campaigns: Iterable[Campaign],
    config: Config,
    now: datetime,
    *,
    kinds: Sequence[str] = KINDS,
    only: Sequence[int] | None = None,
) -> Iterator[SilentProspect]:
    """The mailable prospects that ``campaigns`` (the active ones, within their dates) will not mail, in id
    order, each with why; only those of ``kinds``, and only among the ids ``only`` when given (a caller that
    knows whom to ask: the leaks report). Streams in batches of :data:`BATCH`; writes nothing."""
    # E-mail campaigns only: a postal campaign's rhythm and reach are nurture.postal's (``postal run --dry-run``).
    playing = [
        c for c in campaigns if c.channel == "email" and c.status == "active" and campaign_window_reason(c, now) is None
    ]
    by_name = {c.name: c for c in playing}
    labeled = {c.name: labeled_campaign_clauses(c, now, config.workspace.language) for c in playing}
    columns = [
        case((clause, 1), else_=0).label(f"c{ci}_{i}")
        for ci, c in enumerate(playing)
        for i, (_, clause) in enumerate(labeled[c.name])
    ]
    runs = schedule.runs_in_week(config, now)
    reached: dict[tuple[str, str], bool] = {}
    last = 0
    while True:
        rows = conn.execute(
            select(
                *MEMBER_COLUMNS,
                Prospect.language,
                Prospect.created_at,
                Prospect.rank,
                Prospect.stage,
                Prospect.owner,
                Prospect.score,
                Prospect.company,
                Prospect.title,
                *columns,
            )
            .where(
                *mailable_clauses(now),
                not_suppressed(),
                Prospect.id > last,
                *([Prospect.id.in_(only)] if only is not None else []),
            )
            .order_by(Prospect.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        members: dict[str, set[int]] = {c.name: set() for c in playing}
        failing: dict[int, dict[str, list[str]]] = {}
        for row in rows:
            for ci, c in enumerate(playing):
                bits = [row._mapping[f"c{ci}_{i}"] for i in range(len(labeled[c.name]))]
                if all(bits):
                    members[c.name].add(row.id)
                else:
                    failing.setdefault(row.id, {})[c.name] = [
                        labeled[c.name][i][0] for i, bit in enumerate(bits) if not bit
                    ]
        rnd = Round(config, now, by_name, {}, members=members)
        selected = [r for r in rows if any(r.id in m for m in members.values())]
        if selected:
            rnd.load_histories(conn, selected)
        for row in rows:
            mine = [c for c in playing if row.id in members[c.name]]
            if not mine:
                if "unselected" in kinds:
                    yield _unselected(row, failing.get(row.id, {}), config)
                continue
            found = _judge(row, mine, rnd, config, now, runs, reached)
            if found is not None and found.kind in kinds:
                yield found


def _judge(
    row: Any,
    mine: list[Campaign],
    rnd: Round,
    config: Config,
    now: datetime,
    runs: Sequence[datetime],
    reached: dict[tuple[str, str], bool],
) -> SilentProspect | None:
    decisions = [rnd.decide(c, row) for c in mine]
    if any(d.outcome == PlanOutcome.SEND for d in decisions):
        return None
    names = tuple(c.name for c in mine)
    history = rnd.histories.get(mine[0].name) or next(iter(rnd.histories.values()))
    last_mail = history.last_any.get(row.id)
    last_at = last_mail[0] if last_mail else None
    if all(_is_exhausted(d) for d in decisions):
        reason = "content exhausted in " + ", ".join(
            f"{c.name} ({d.reason})" for c, d in zip(mine, decisions, strict=True)
        )
        return SilentProspect(row.id, row.email, "exhausted", "content exhausted", reason, names, last_at)
    zone = row.time_zone or config.default_time_zone
    open_ = [(c, d) for c, d in zip(mine, decisions, strict=True) if not _is_exhausted(d)]
    unreached = []
    for c, _ in open_:
        key = (c.name, zone)
        if key not in reached:
            reached[key] = schedule.reaches(c.cadence, zone, runs)
        if not reached[key]:
            unreached.append(c)
    if len(unreached) == len(open_):
        reason = (
            "send window never reached: "
            + "; ".join(schedule.describe_window(c, zone) for c in unreached)
            + f", but {schedule.describe_schedule(config)} never runs then"
        )
        return SilentProspect(row.id, row.email, "window", "window never reached", reason, names, last_at)
    factor = row.frequency_factor if row.frequency_factor and row.frequency_factor > 0 else 1.0
    promised = min(c.cadence.interval_for(row.temperature) for c, _ in open_) * factor
    limit = timedelta(days=promised * config.cadence.silent_after_intervals)
    since = last_at or row.created_at
    if since is not None and now - since > limit:
        days = (now - since).days
        what = f"not mailed for {days} days" if last_at else f"never mailed in the {days} days since added"
        reason = f"{what} (the cadence promises about every {promised:g} days): " + "; ".join(
            f"{d.campaign}: {d.reason}" for _, d in open_
        )
        return SilentProspect(row.id, row.email, "overdue", _overdue_category(open_), reason, names, last_at)
    return None


def _overdue_category(open_: list[tuple[Campaign, Decision]]) -> str:
    reasons = " ".join(d.reason for _, d in open_)
    for word, category in (
        ("monthly cap", "monthly cap"),
        ("shared", "shared"),
        ("cadence gap", "cadence gap"),
        ("outside send hours", "send window"),
        ("holiday", "holiday"),
        ("not a send day", "send window"),
        ("not due", "not due"),
    ):
        if word in reasons:
            return category
    return "deferred"
