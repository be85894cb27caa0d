"""The planner: who is due now, in which campaign, with which item, and why not everyone else.

For each active campaign, highest priority first, segment members are streamed in keyset batches of
:data:`PLAN_BATCH`. Each member gets a :class:`Decision` from :func:`decide`: ``send`` (a *pending* delivery row
is inserted), ``deferred`` (due, but not now: the global gap after another campaign's mail, quiet hours, a
holiday) or ``skipped`` (not due yet, no consent, unsubscribed, sequence finished, ...), always with a reason. A
delivery is unique per (campaign, prospect, item): inserting it twice does nothing. Each batch is planned under
a lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-level advisory lock on PostgreSQL) so two planners cannot
both decide that one prospect is due in two campaigns. Pending rows count as "mailed now" for the gap, which is
how a prospect due in two campaigns gets the higher-priority one now and the other later (deferred, never
dropped). Each batch is committed on its own, so senders may claim it at once (:mod:`nurture.deliver`).

A real run (:func:`plan` without ``dry_run``/``limit``) looks only at the prospects who may be due: those whose
stored lower bound ``next_plan_at`` has come (:mod:`nurture.plan.due`), a batch of them at a time, every campaign
deciding for its members among them in priority order; each prospect's new bound is stored with the batch.

The planner sends nothing and knows nothing of sending: it writes pending rows and tells a :class:`PlanSink`
what it decided (the sending run's report is one). It does not run the campaign check either: the caller passes
only the campaigns it may send (:func:`nurture.deliver.send` runs the check first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, case, func, select, true
from sqlalchemy.engine import Connection

from nurture.core import clock
from nurture.core.config import Config
from nurture.plan import cadence as calendar
from nurture.plan import due
from nurture.plan.campaigns import Campaign, ContentItem
from nurture.plan.segments import campaign_clauses, mailable_reason
from nurture.plan.share import Contender, Mailed, choose
from nurture.store import db
from nurture.store.models import CampaignState, Delivery, Prospect
from nurture.store.sql import among
from nurture.store.states import MAILED_STATES, DeliveryState, PlanOutcome
from nurture.store.suppression import suppression_reasons

PLAN_BATCH = 1000
_DELIVERIES = Delivery.metadata.tables[Delivery.__tablename__]

#: What the planner reads of each segment member: what :func:`decide` and ``mailable_reason`` need.
MEMBER_COLUMNS = (
    Prospect.id,
    Prospect.email,
    Prospect.name,
    Prospect.temperature,
    Prospect.industry,
    Prospect.time_zone,
    Prospect.status,
    Prospect.status_reason,
    Prospect.consent_basis,
    Prospect.paused_until,
    Prospect.frequency_factor,
)


@dataclass(frozen=True)
class Decision:
    """What the planner decided for one segment member of one campaign."""

    campaign: str
    prospect_id: int
    email: str
    outcome: PlanOutcome
    reason: str = ""
    item_key: str = ""
    subject: str = ""
    not_before: datetime | None = None
    #: The campaign whose content ran out, when this decision is for its ``fallback`` campaign.
    via: str = ""
    #: Nothing left to send to this prospect here (its fallback's content too, when ``via`` is set).
    exhausted: bool = False
    #: For a send, or a mail already queued: the earliest next mail of ``campaign`` (the queued mail leaves now or
    #: later, and the interval follows it). With ``not_before``, what :func:`recheck_at` reads.
    next_due: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "via": self.via or None,
            "email": self.email,
            "outcome": self.outcome,
            "reason": self.reason,
            "item": self.item_key,
            "not_before": self.not_before.isoformat() if self.not_before else None,
        }


class PlanSink(Protocol):
    """What :func:`plan` tells its caller. ``nurture.deliver.Report`` is one; the planner and the senders
    report into it at the same time, so its methods must be thread-safe."""

    def tally(self, decision: Decision, keep: bool = False) -> None:
        """One decision (kept in full when ``keep``, else only counted)."""

    def note(self, text: str) -> None:
        """A campaign left out of the plan for a reason of its own file (paused there, outside its dates)."""

    def campaign_paused(self, campaign: str, reason: str) -> None:
        """A campaign left out because the error budget paused it (``nurture resume`` lifts it)."""

    def waiting(self, count: int) -> None:
        """How many prospects the run did not look at because nothing can be due for them yet
        (:mod:`nurture.plan.due`)."""


def paused_campaigns(engine: Engine) -> dict[str, str]:
    """Campaigns the error budget paused, with the reason recorded then."""
    with engine.connect() as conn:
        return {
            r.campaign: r.paused_reason
            for r in conn.execute(
                select(CampaignState.campaign, CampaignState.paused_reason).where(CampaignState.paused.is_(True))
            )
        }


def campaign_window_reason(campaign: Campaign, now: datetime) -> str | None:
    local = now.astimezone(campaign.cadence.zone).date()
    if campaign.cadence.start and local < campaign.cadence.start:
        return f"campaign starts on {campaign.cadence.start.isoformat()}"
    if campaign.cadence.end and local > campaign.cadence.end:
        return f"campaign ended on {campaign.cadence.end.isoformat()}"
    return None


def _member_batches(engine: Engine, selection: Any) -> Iterator[Sequence[Any]]:
    """Members of a campaign's ``selection`` (:func:`selections`; mailable or not: the dry run says why not) in
    keyset batches of PLAN_BATCH."""
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(*MEMBER_COLUMNS).where(selection, Prospect.id > last).order_by(Prospect.id).limit(PLAN_BATCH)
            ).all()
        if rows:
            yield rows
        if len(rows) < PLAN_BATCH:  # a short batch is the last one: no query for an empty one
            return
        last = rows[-1].id


@dataclass
class History:
    """The delivery history :func:`decide` needs for one batch of members of one campaign.

    ``last_any``: per prospect, the latest mail of any campaign (when, which campaign) among MAILED_STATES;
    ``items``: per prospect, this campaign's deliveries by item key (state, when); ``suppressed``: the
    suppression reason by address.
    """

    last_any: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    items: dict[int, dict[str, tuple[str, datetime]]] = field(default_factory=dict)
    suppressed: dict[str, str] = field(default_factory=dict)


def history_of(conn: Connection, campaign: Campaign, rows: Sequence[Any]) -> History:
    """The :class:`History` of these members, in two set-based queries (and one suppression lookup)."""
    ids = [r.id for r in rows]
    h = History()
    when = func.coalesce(Delivery.sent_at, Delivery.created_at)
    latest = (
        select(Delivery.prospect_id, func.max(when).label("at"))
        .where(Delivery.prospect_id.in_(ids), Delivery.state.in_(MAILED_STATES))
        .group_by(Delivery.prospect_id)
        .subquery()
    )
    for pid, at, name in conn.execute(
        select(latest.c.prospect_id, latest.c.at, Delivery.campaign).join(
            Delivery, and_(Delivery.prospect_id == latest.c.prospect_id, when == latest.c.at)
        )
    ):
        h.last_any[pid] = (at, name)
    h.items = _items_of(conn, [campaign.name], ids).get(campaign.name, {})
    h.suppressed = suppression_reasons(conn, (r.email for r in rows))
    return h


def _items_of(
    conn: Connection, campaigns: Sequence[str], ids: Sequence[int]
) -> dict[str, dict[int, dict[str, tuple[str, datetime]]]]:
    """Per campaign, per prospect, the deliveries by item key: (state, when)."""
    when = func.coalesce(Delivery.sent_at, Delivery.created_at)
    items: dict[str, dict[int, dict[str, tuple[str, datetime]]]] = {}
    if not campaigns:
        return items
    for name, pid, key, state, at in conn.execute(
        select(Delivery.campaign, Delivery.prospect_id, Delivery.item_key, Delivery.state, when).where(
            Delivery.campaign.in_(campaigns), among(conn.dialect, Delivery.prospect_id, ids)
        )
    ):
        items.setdefault(name, {}).setdefault(pid, {})[key] = (state, at)
    return items


def items_in_order(campaign: Campaign, row: Any) -> list[ContentItem]:
    """The items ``row`` (a prospect with ``id`` and ``industry``) may get, in the order they are offered.

    Sequence: file order. Pool: the same never-repeat rule, but each prospect starts at a different place in the
    pool (by id), so one send spreads across the items. Items limited to other industries are left out. Shared
    by e-mail and post (nurture.postal.due).
    """
    items = [it for it in campaign.items if not it.industries or row.industry in it.industries]
    if campaign.content.mode == "pool" and items:
        start = row.id % len(items)
        items = items[start:] + items[:start]
    return items


def _next_item(campaign: Campaign, row: Any, received: dict[str, tuple[str, datetime]]) -> ContentItem | str:
    """The item this prospect gets next (the first of :func:`items_in_order` not yet received), or the reason
    there is none."""
    items = items_in_order(campaign, row)
    if not items:
        return f"no item for industry {row.industry or '(none)'}"
    for item in items:
        if item.key not in received:
            return item
    if campaign.content.when_exhausted == "wait":
        return "content exhausted: waiting for new items"
    return "sequence finished: every item received"


def _fmt(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def decide(
    config: Config, campaign: Campaign, row: Any, history: History, now: datetime, planned_elsewhere: dict[int, str]
) -> Decision:
    """The planner's rule for one member (pure). Order matters: 'not mailable' before 'not due' before
    'due but not now'. ``planned_elsewhere`` holds prospects planned in this dry run by a higher campaign."""
    base = dict(campaign=campaign.name, prospect_id=row.id, email=row.email)
    reason = mailable_reason(row, now, suppression=history.suppressed.get(row.email))
    if reason:
        return Decision(outcome=PlanOutcome.SKIPPED, reason=reason, **base)
    # A prospect without a zone lives in the workspace's zone, not the campaign's (an English campaign's New York
    # calendar says nothing about where a prospect whose zone was never recorded reads their mail).
    zone = ZoneInfo(row.time_zone or config.default_time_zone)
    received = history.items.get(row.id, {})
    interval = interval_of(campaign, row)
    queued = [k for k, (state, _) in received.items() if state == DeliveryState.PENDING]
    if queued:
        return Decision(
            outcome=PlanOutcome.SKIPPED,
            reason=f"already queued: item {queued[0]} waits to be sent",
            next_due=now + interval,
            **base,
        )
    # A failed attempt counts for this campaign's interval (no re-mailing right after a refusal), not for the
    # global gap, which is about mail that reached the person.
    mailed = [at for state, at in received.values() if state in MAILED_STATES or state == DeliveryState.FAILED]
    if mailed:
        due = max(mailed) + interval
        if now < due:
            return Decision(
                outcome=PlanOutcome.SKIPPED, reason=f"not due until {_fmt(due, zone)}", not_before=due, **base
            )
    cap = campaign.cadence.monthly_cap
    if cap:
        local_now = now.astimezone(zone)
        this_month = sum(
            1 for at in mailed if (a := at.astimezone(zone)).year == local_now.year and a.month == local_now.month
        )
        if this_month >= cap:
            first = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            next_month = (first + timedelta(days=32)).replace(day=1)
            return Decision(
                outcome=PlanOutcome.DEFERRED,
                reason=f"monthly cap of {cap} reached",
                not_before=next_month.astimezone(now.tzinfo),
                **base,
            )
    gap = timedelta(days=config.cadence.min_gap_days)
    if row.id in planned_elsewhere:
        return Decision(
            outcome=PlanOutcome.DEFERRED,
            reason=f"cadence gap: due in {planned_elsewhere[row.id]} this run (planned first)",
            not_before=now + gap,
            **base,
        )
    last = history.last_any.get(row.id)
    if last and now < last[0] + gap:
        after = last[0] + gap
        what = "queued now" if last[0] >= now - timedelta(minutes=1) else f"on {_fmt(last[0], zone)}"
        return Decision(
            outcome=PlanOutcome.DEFERRED,
            reason=f"cadence gap: mailed by {last[1]} {what}; next after {_fmt(after, zone)}",
            not_before=after,
            **base,
        )
    item = _next_item(campaign, row, received)
    if isinstance(item, str):
        return Decision(outcome=PlanOutcome.SKIPPED, reason=item, exhausted=item.startswith(EXHAUSTED), **base)
    why_not_now = calendar.is_send_time(now.astimezone(zone), campaign.cadence)
    if why_not_now:
        nxt = calendar.next_send_time(now, campaign.cadence, zone)
        return Decision(outcome=PlanOutcome.DEFERRED, reason=why_not_now, item_key=item.key, not_before=nxt, **base)
    return Decision(outcome=PlanOutcome.SEND, item_key=item.key, subject=item.subject, next_due=now + interval, **base)


def interval_of(campaign: Campaign, row: Any) -> timedelta:
    """The campaign's interval for this prospect: by temperature, times their frequency factor (preferences)."""
    factor = row.frequency_factor if row.frequency_factor and row.frequency_factor > 0 else 1.0
    return timedelta(days=campaign.cadence.interval_for(row.temperature) * factor)


def recheck_at(decision: Decision, now: datetime) -> datetime:
    """When ``decision`` can change by the clock alone (:mod:`nurture.plan.due`): its ``not_before`` (not due
    until, the gap, quiet hours, the monthly cap), the next mail after a send or a queued mail, else never (not
    mailable, sequence finished, no item: only a change of the prospect or of the rules undoes those). A
    deferral without a time (``--limit``) is looked at again next run."""
    if decision.not_before is not None:
        return decision.not_before
    if decision.next_due is not None:
        return decision.next_due
    return due.NEVER if decision.outcome == PlanOutcome.SKIPPED else now


#: Reasons of :func:`decide` that mean "this campaign has nothing left for this prospect" (a ``fallback`` continues).
EXHAUSTED = ("content exhausted", "sequence finished")


def is_exhausted(decision: Decision) -> bool:
    return decision.outcome == PlanOutcome.SKIPPED and decision.exhausted


def mailed_by_campaign(conn: Connection, ids: Sequence[int], now: datetime) -> dict[int, dict[str, Mailed]]:
    """Per prospect and campaign: the latest mail and the mails of the last share.WINDOW_DAYS (for sharing)."""
    from nurture.plan.share import WINDOW_DAYS

    when = func.coalesce(Delivery.sent_at, Delivery.created_at)
    since = now - timedelta(days=WINDOW_DAYS)
    out: dict[int, dict[str, Mailed]] = {}
    for pid, name, last, recent in conn.execute(
        select(
            Delivery.prospect_id,
            Delivery.campaign,
            func.max(when),
            func.sum(case((when >= since, 1), else_=0)),
        )
        .where(among(conn.dialect, Delivery.prospect_id, ids), Delivery.state.in_(MAILED_STATES))
        .group_by(Delivery.prospect_id, Delivery.campaign)
    ):
        out.setdefault(pid, {})[name] = Mailed(last, int(recent or 0))
    return out


@dataclass
class Round:
    """What the planner knows about one batch of prospects across every campaign in play, so that one member's
    decision can look at their other campaigns: whose turn it is (``[cadence] share``) and where they continue
    when a campaign's content runs out (``fallback``).

    ``members``: per campaign, the ids of the batch it selects; ``histories``: per campaign, :class:`History`;
    ``mailed``: per prospect, per campaign, :class:`Mailed` (only when the policy needs it)."""

    config: Config
    now: datetime
    campaigns: dict[str, Campaign]
    planned_elsewhere: dict[int, str]
    members: dict[str, set[int]] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)
    mailed: dict[int, dict[str, Mailed]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        conn: Connection,
        config: Config,
        campaigns: dict[str, Campaign],
        rows: Sequence[Any],
        now: datetime,
        planned_elsewhere: dict[int, str],
        *,
        selected_by: str | None = None,
        selects: dict[str, Any] | None = None,
    ) -> Round:
        """The round of ``rows``; ``selected_by``: the campaign whose segment query produced them (all members).
        Four set-based queries whatever the number of campaigns: memberships, mails per campaign, items,
        suppressions. ``selects``: per campaign, its selection as one SQL condition (:func:`selections`; built
        here when not given)."""
        r = cls(config, now, campaigns, planned_elsewhere)
        ids = [row.id for row in rows]
        if selected_by is not None:
            r.members[selected_by] = set(ids)
        sharing = config.cadence.share != "priority" and len(campaigns) > 1
        others = [c for n, c in campaigns.items() if n != selected_by]
        if others and (sharing or any(c.fallback for c in campaigns.values())):
            selects = selects or selections(config, campaigns.values(), now)
            flags = [case((selects[c.name], 1), else_=0).label(f"m{i}") for i, c in enumerate(others)]
            for found in conn.execute(select(Prospect.id, *flags).where(Prospect.id.in_(ids))):
                for i, c in enumerate(others):
                    if found._mapping[f"m{i}"]:
                        r.members.setdefault(c.name, set()).add(found.id)
        r.load_histories(conn, rows)
        return r

    def load_histories(self, conn: Connection, rows: Sequence[Any]) -> None:
        """The :class:`History` of each campaign selecting any of ``rows`` (and of fallback campaigns, which
        continue for prospects outside their segment), and :attr:`mailed`: one query each for the mails per
        campaign, the items and the suppressions."""
        ids = [r.id for r in rows]
        fallbacks = {c.fallback for c in self.campaigns.values() if c.fallback}
        names = [n for n in self.campaigns if n in fallbacks or self.members.get(n)]
        self.mailed = mailed_by_campaign(conn, ids, self.now)
        last_any: dict[int, tuple[datetime, str]] = {}
        for pid, per in self.mailed.items():
            for name, m in per.items():
                if m.last is not None and (pid not in last_any or m.last > last_any[pid][0]):
                    last_any[pid] = (m.last, name)
        suppressed = suppression_reasons(conn, (r.email for r in rows))
        items = _items_of(conn, names, ids)
        for name in names:
            self.histories[name] = History(last_any=last_any, items=items.get(name, {}), suppressed=suppressed)

    def queued(self, campaign: str, prospect_id: int, item_key: str) -> None:
        """A mail this round queued: later decisions of the round see it as the pending row it becomes (what
        the next batch would read back from the database)."""
        mailed = self.mailed.setdefault(prospect_id, {})
        before = mailed.get(campaign)
        mailed[campaign] = Mailed(self.now, (before.recent if before else 0) + 1)
        for history in self.histories.values():  # one shared ``last_any``; the items of ``campaign`` only
            history.last_any[prospect_id] = (self.now, campaign)
        if campaign in self.histories:
            self.histories[campaign].items.setdefault(prospect_id, {})[item_key] = (DeliveryState.PENDING, self.now)

    def decide(self, campaign: Campaign, row: Any, seen: tuple[str, ...] = ()) -> Decision:
        """:func:`decide` for ``campaign``; where its content has run out and it names a ``fallback`` the prospect
        is not selected by anyway, the fallback's decision (``via`` the exhausted campaign)."""
        history = self.histories.get(campaign.name) or History()
        decision = decide(self.config, campaign, row, history, self.now, self.planned_elsewhere)
        nxt = self.campaigns.get(campaign.fallback) if campaign.fallback else None
        if not is_exhausted(decision) or not campaign.fallback or campaign.fallback in seen + (campaign.name,):
            return decision
        if nxt is None:
            return replace(decision, reason=f"{decision.reason}; fallback {campaign.fallback} is not running")
        if row.id in self.members.get(nxt.name, ()):
            return replace(decision, reason=f"{decision.reason}; continues in {nxt.name}", exhausted=False)
        if nxt.name not in self.histories:
            return decision  # not loaded: cannot happen when Round.load saw the fallback
        after = self.decide(nxt, row, seen + (campaign.name,))
        if after.outcome == PlanOutcome.SEND:
            return replace(after, via=seen[0] if seen else campaign.name)
        return replace(
            after,
            via=seen[0] if seen else campaign.name,
            reason=f"{campaign.name}: {decision.reason}; fallback {after.campaign}: {after.reason}",
        )

    def final(self, campaign: Campaign, row: Any) -> Decision:
        """:meth:`decide`, then sharing: when other campaigns would mail this prospect now too, only the one
        whose turn it is (:func:`nurture.plan.share.choose`) sends; the others are deferred by the gap."""
        decision = self.decide(campaign, row)
        if decision.outcome != PlanOutcome.SEND or self.config.cadence.share == "priority":
            return decision
        contenders = {decision.campaign: decision}
        for name, other in self.campaigns.items():
            if name == campaign.name or row.id not in self.members.get(name, ()):
                continue
            theirs = self.decide(other, row)
            if theirs.outcome == PlanOutcome.SEND and theirs.campaign not in contenders:
                contenders[theirs.campaign] = theirs
        if len(contenders) == 1:
            return decision
        policy = self.config.cadence.share
        turn = choose(
            policy,
            [
                Contender(n, self.campaigns[n].priority, self.campaigns[n].weight)
                for n in contenders
                if n in self.campaigns
            ],
            self.mailed.get(row.id, {}),
        )
        if turn == decision.campaign:
            return decision
        gap = timedelta(days=self.config.cadence.min_gap_days)
        return Decision(
            campaign=campaign.name,
            prospect_id=row.id,
            email=row.email,
            outcome=PlanOutcome.DEFERRED,
            reason=f"shared: {turn}'s turn this time ({policy}); this one after the "
            f"{self.config.cadence.min_gap_days:g}-day gap",
            item_key=decision.item_key,
            not_before=self.now + gap,
        )


def selections(config: Config, campaigns: Iterable[Campaign], now: datetime) -> dict[str, Any]:
    """Per campaign, who it selects as one SQL condition (built once per run: building them costs more than
    running them)."""
    return {c.name: and_(true(), *campaign_clauses(c, now, config.workspace.language)) for c in campaigns}


def in_play(engine: Engine, campaigns: Iterable[Campaign], sink: PlanSink, now: datetime) -> list[Campaign]:
    """The campaigns that may plan now (active in their file, not paused by the error budget, within their
    dates); the sink is told why each other one is left out."""
    paused = paused_campaigns(engine)
    chosen = []
    for campaign in campaigns:
        if campaign.status != "active":
            sink.note(f'{campaign.name}: paused in its file (status = "{campaign.status}")')
            continue
        if campaign.name in paused:
            sink.campaign_paused(campaign.name, paused[campaign.name])
            continue
        window = campaign_window_reason(campaign, now)
        if window:
            sink.note(f"{campaign.name}: {window}")
            continue
        chosen.append(campaign)
    return chosen


def plan(
    engine: Engine,
    config: Config,
    campaigns: Iterable[Campaign],
    sink: PlanSink,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    keep_decisions: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    pause: float = 0.0,
    full_scan: bool = False,
) -> int:
    """Decide for every segment member of every campaign who may be due; insert pending deliveries (not in a
    dry run), one committed batch at a time (senders may claim each batch as soon as it is committed). Returns
    how many deliveries were planned (``send`` decisions; at most ``limit``).

    A real run looks only at the prospects whose stored ``next_plan_at`` has come (:mod:`nurture.plan.due`;
    ``sink.waiting`` is told how many others there are) and stores the new bounds. A dry run, a run with a
    ``limit`` (which takes campaigns in priority order over all their members) and ``full_scan`` (the reference
    the tests and bench/plan.py compare with) decide every member and leave the stored bounds alone.

    ``progress(campaign, members_decided_in_this_batch, planned_so_far)`` is called after each batch; ``pause``
    seconds are slept after each batch that queued mail (SQLite: lets waiting senders take the write lock)."""
    now = clock.now()
    playing = in_play(engine, campaigns, sink, now)
    if dry_run or full_scan or limit is not None:
        return _plan_all(
            engine,
            config,
            playing,
            sink,
            now,
            dry_run=dry_run,
            limit=limit,
            keep=keep_decisions,
            progress=progress,
            pause=pause,
        )
    return _plan_due(engine, config, playing, sink, now, keep=keep_decisions, progress=progress, pause=pause)


def _pending_row(campaign: Campaign, prospect_id: int, item_key: str, now: datetime) -> dict[str, Any]:
    return {
        "campaign": campaign.name,
        "prospect_id": prospect_id,
        "item_key": item_key,
        "state": DeliveryState.PENDING,
        "error": "",
        "subject": "",
        "sender": "",
        "message_id": "",
        "provider_message_id": "",
        "attempts": 0,
        "claimed_by": "",
        "lease_until": None,
        "next_attempt_at": None,
        "created_at": now,
        "sent_at": None,
        "updated_at": now,
        "language": campaign.language,
    }


def _plan_all(
    engine: Engine,
    config: Config,
    playing: list[Campaign],
    sink: PlanSink,
    now: datetime,
    *,
    dry_run: bool,
    limit: int | None,
    keep: bool,
    progress: Callable[[str, int, int], None] | None,
    pause: float,
) -> int:
    """Every member of each campaign in turn, highest priority first (the full scan)."""
    by_name = {c.name: c for c in playing}
    selects = selections(config, playing, now)
    planned_elsewhere: dict[int, str] = {}
    planned = 0
    for campaign in playing:
        for rows in _member_batches(engine, selects[campaign.name]):
            with db.transaction(engine, immediate=True) as session:
                conn = session.connection()
                db.plan_lock(conn)
                rnd = Round.load(
                    conn, config, by_name, rows, now, planned_elsewhere, selected_by=campaign.name, selects=selects
                )
                new_rows = []
                for row in rows:
                    decision = rnd.final(campaign, row)
                    if decision.outcome == PlanOutcome.SEND and limit is not None and planned >= limit:
                        decision = replace(decision, outcome=PlanOutcome.DEFERRED, reason="--limit reached")
                    if decision.outcome == PlanOutcome.SEND:
                        planned += 1
                        target = by_name[decision.campaign]
                        if dry_run:
                            planned_elsewhere[row.id] = target.name
                        else:
                            new_rows.append(_pending_row(target, row.id, decision.item_key, now))
                    sink.tally(decision, keep=keep)
                db.insert_rows(conn, _DELIVERIES, new_rows, ignore_conflicts_on=["campaign", "prospect_id", "item_key"])
            if progress:
                progress(campaign.name, len(rows), planned)
            if pause and new_rows:  # only a batch that queued mail gives the senders something to claim
                time.sleep(pause)
    return planned


def _plan_due(
    engine: Engine,
    config: Config,
    playing: list[Campaign],
    sink: PlanSink,
    now: datetime,
    *,
    keep: bool,
    progress: Callable[[str, int, int], None] | None,
    pause: float,
) -> int:
    """The prospects who may be due (:mod:`nurture.plan.due`), a batch at a time; in each batch every campaign in
    turn, highest priority first, decides for its members among them (so a prospect due in two campaigns gets
    the higher one now and the other after the gap, as in the full scan), then each prospect's new bound is
    stored with the batch's pending rows, in one transaction."""
    by_name = {c.name: c for c in playing}
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        db.plan_lock(conn)
        due.start(conn, config, playing, now)
        ids = due.due_ids(conn, now)
        sink.waiting(due.waiting(conn, now, len(ids)) if playing else 0)
        # The first run on a fresh database: deliveries was analyzed empty (or never), so PostgreSQL plans the
        # batches' history lookups as if it stayed tiny, through the campaign or state index, testing each row
        # read against the batch's 1,000 ids (120 ms a batch at 15k rows, and growing; 3 ms with statistics).
        # One ANALYZE once the run has queued a few batches gives it the real numbers.
        stale = len(ids) > 2 * PLAN_BATCH and db.statistics_stale(conn, "deliveries")
    if not ids:
        return 0  # the no-op run: not even the segment clauses are built
    selects = selections(config, playing, now)
    # Per campaign, whether it selects the row: one query fetches the batch and every membership.
    flags = [case((selects[c.name], 1), else_=0).label(f"m{i}") for i, c in enumerate(playing)]
    planned = 0
    for start in range(0, len(ids), PLAN_BATCH):
        chunk = ids[start : start + PLAN_BATCH]
        with db.transaction(engine, immediate=True) as session:
            conn = session.connection()
            db.plan_lock(conn)
            stmt = (
                select(*MEMBER_COLUMNS, Prospect.last_contact_at, *flags)
                .where(Prospect.id.between(chunk[0], chunk[-1]), due.due_clause(now))
                .order_by(Prospect.id)
            )
            if conn.dialect.name == "postgresql":
                # Rows another transaction is changing wait for the next run: their reset of next_plan_at must
                # not be overwritten by a bound computed from what they were before.
                stmt = stmt.with_for_update(skip_locked=True, key_share=True, of=Prospect)
            rows = conn.execute(stmt).all()
            members = {c.name: {r.id for r in rows if r[len(MEMBER_COLUMNS) + 1 + i]} for i, c in enumerate(playing)}
            rnd = Round(config, now, by_name, {}, members=members)
            looked = [r for r in rows if any(r.id in m for m in members.values())]
            if looked:
                rnd.load_histories(conn, looked)
            bounds = {r.id: due.membership_changes_at(playing, r, now) for r in rows}
            new_rows = []
            for campaign in playing:
                mine = members[campaign.name]
                for row in looked:
                    if row.id not in mine:
                        continue
                    decision = rnd.final(campaign, row)
                    if decision.outcome == PlanOutcome.SEND:
                        planned += 1
                        target = by_name[decision.campaign]
                        new_rows.append(_pending_row(target, row.id, decision.item_key, now))
                        rnd.queued(target.name, row.id, decision.item_key)
                    bounds[row.id] = min(bounds[row.id], recheck_at(decision, now))
                    sink.tally(decision, keep=keep)
            db.insert_columns(conn, _DELIVERIES, new_rows, ignore_conflicts_on=["campaign", "prospect_id", "item_key"])
            due.store(conn, bounds)
        if stale and planned >= 2 * PLAN_BATCH:
            db.analyze(engine, "deliveries")
            stale = False
        if progress:
            progress("due prospects", len(rows), planned)
        if pause and new_rows:
            time.sleep(pause)
    return planned
