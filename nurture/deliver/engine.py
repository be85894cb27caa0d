"""The sending engine behind ``nurture send``: plan who is due and deliver, never losing or repeating a mail.

Two phases, each safe to run in several processes at once (on one machine or many). :func:`send` runs them
together: the senders start first and claim each planned batch as soon as it is committed, so the first mail
leaves at once and planning overlaps sending (it is the same as a planner and a sender started side by side).

**Plan.** For each active campaign, highest priority first, segment members are streamed in keyset batches.
Each member gets a :class:`Decision`: ``send`` (a *pending* delivery row is inserted), ``deferred`` (due, but
not now: the global gap after another campaign's mail, quiet hours, a holiday) or ``skipped`` (not due yet, no
consent, unsubscribed, sequence finished, ...), always with a reason. A delivery is unique per (campaign,
prospect, item): inserting it twice does nothing. Each batch is planned under a lock (``BEGIN IMMEDIATE`` on
SQLite, a transaction-level advisory lock on PostgreSQL) so two planners cannot both decide that one prospect is
due in two campaigns. Pending rows count as "mailed now" for the gap, which is how a prospect due in two
campaigns gets the higher-priority one now and the other later (deferred, never dropped).

**Deliver.** Worker threads (``[throttle] concurrency``) claim batches of pending deliveries: on PostgreSQL
``FOR UPDATE SKIP LOCKED``, on SQLite inside ``BEGIN IMMEDIATE``; a claim is a lease (``claimed_by``,
``lease_until``), renewed while held. A worker's first claim is small and later ones are sized to about
CLAIM_SECONDS of its own pace (fast senders claim more per transaction, throttled ones hold few rows). Each
message is rendered, throttled and handed to the sender; outcomes are committed ``[delivery] record_batch`` at a
time:

=====================  ===========================================================================
outcome                delivery becomes
=====================  ===========================================================================
accepted               ``sent`` (provider id, Message-ID, time)
temporary failure      ``pending`` again, ``next_attempt_at`` after exponential backoff (or the provider's
                       Retry-After / X-RateLimit-Reset); ``failed`` after ``max_attempts``
permanent failure      ``failed`` with the provider's words; a hard bounce also suppresses the address
ambiguous (timeout)    ``unknown``: never resent blindly; a provider webhook (``processed``) settles it
not mailable any more  ``skipped`` with the reason (e.g. unsubscribed between plan and send)
=====================  ===========================================================================

Crash safety: a process killed at any moment leaves its claimed rows ``pending`` under a lease; after the lease
(``[delivery] lease_seconds``) another run takes them. The only window for a repeat is a message the provider
accepted whose ``sent`` record was not yet committed when the process died: at most ``record_batch`` messages
per worker thread (1 = one). The outbox sender names files by delivery id, so even that repeat overwrites
rather than duplicates.

Too many failures in a row (``[delivery] error_budget``) pause the campaign (``campaign_states``) with the
reason; ``nurture resume CAMPAIGN`` lifts the pause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from nurture.compose import links as tracking
from nurture.compose.message import OutgoingMessage, list_id_for, message_id_for, validate
from nurture.compose.rendering import PROSPECT_FIELDS, Renderer, add_tracking_markup, build_context
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import (
    AmbiguousSendError,
    ConfigError,
    NurtureError,
    PermanentSendError,
    SendError,
    TemporarySendError,
)
from nurture.deliver.senders import Sender, make_sender
from nurture.deliver.throttle import Throttle, ThrottleDeferred
from nurture.plan import cadence as calendar
from nurture.plan.campaigns import Campaign, ContentItem
from nurture.plan.segments import mailable_reason, segment_clauses
from nurture.store import db
from nurture.store.models import CampaignState, Delivery, Prospect
from nurture.store.suppression import suppression_reasons
from nurture.track import events

log = logging.getLogger("nurture.deliver.engine")

PLAN_BATCH = 1000
#: A worker claims about CLAIM_SECONDS of work at a time, between CLAIM_MIN and CLAIM_MAX deliveries: fast
#: senders then pay for one claim transaction per ~100 mails, while slow or throttled ones hold few rows that
#: another worker could be sending.
CLAIM_MIN, CLAIM_MAX, CLAIM_SECONDS = 16, 128, 0.25
THROTTLE_MAX_WAIT = 2.0  # seconds a worker waits for one domain before deferring that message
IDLE_WAIT = 30.0  # a run waits this long at most for throttled or briefly deferred mail to become due
PLAN_POLL = 0.05  # while planning goes on, a worker with nothing to claim looks again this often (seconds)
# SQLite's write lock is not fair: a sender waiting for it sleeps and retries, and a planner that starts its next
# batch at once would keep it until the whole plan is done. Pausing this long between batches lets the senders
# claim and record (bench/send.py: the first mail after 0.4 s instead of after the plan).
PLAN_YIELD_SQLITE = 0.02
MAX_BACKOFF = timedelta(hours=6)
#: Deliveries that count as "this prospect was (or is being) mailed" for cadence purposes.
MAILED_STATES = ("sent", "unknown", "pending")
_PLAN_LOCK_KEY = 0x6E757274  # "nurt": the PostgreSQL advisory lock that serialises planning batches


@dataclass(frozen=True)
class Decision:
    """What the planner decided for one segment member of one campaign."""

    campaign: str
    prospect_id: int
    email: str
    outcome: str  # send | deferred | skipped
    reason: str = ""
    item_key: str = ""
    subject: str = ""
    not_before: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "email": self.email, "outcome": self.outcome, "reason": self.reason,
                "item": self.item_key, "not_before": self.not_before.isoformat() if self.not_before else None}


@dataclass
class Outcome:
    """The end of one delivery attempt in the deliver phase."""

    delivery_id: int
    campaign: str
    email: str
    state: str  # sent | deferred | failed | skipped | unknown
    reason: str = ""


@dataclass
class Report:
    """Everything one run did; counters by reason, plus the individual decisions when asked for."""

    planned: int = 0
    sent: int = 0
    deferred: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)
    paused: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False
    # The planner and the deliverers count into one report at the same time (delivery starts while planning
    # goes on): every change goes through this lock.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: Outcome, keep: bool = False) -> None:
        """Add one delivery outcome to the counters (and to ``outcomes`` when ``keep``)."""
        with self._lock:
            if outcome.state == "sent":
                self.sent += 1
            else:
                counter = {"deferred": self.deferred, "failed": self.failed, "skipped": self.skipped,
                           "unknown": self.unknown}[outcome.state]
                counter[_category(outcome.reason)] += 1
            if keep:
                self.outcomes.append(outcome)

    def tally(self, decision: Decision, keep: bool = False) -> None:
        """Add one planning decision to the counters (and to ``decisions`` when ``keep``)."""
        with self._lock:
            if decision.outcome == "send":
                self.planned += 1
            else:
                counter = self.deferred if decision.outcome == "deferred" else self.skipped
                counter[_category(decision.reason)] += 1
            if keep:
                self.decisions.append(decision)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "planned": self.planned, "sent": self.sent,
            "deferred": dict(self.deferred), "skipped": dict(self.skipped), "failed": dict(self.failed),
            "unknown": dict(self.unknown), "paused_campaigns": self.paused, "notes": self.notes,
            "decisions": [d.as_dict() for d in self.decisions],
            "outcomes": [{"delivery": o.delivery_id, "campaign": o.campaign, "email": o.email, "state": o.state,
                          "reason": o.reason} for o in self.outcomes],
        }


def _category(reason: str) -> str:
    """Reasons carry dates and names; the summary counts them by their leading words."""
    if reason.startswith("not due until"):
        return "not due yet"
    return reason.split(":")[0].split(" (")[0].strip()


# ---------------------------------------------------------------------------------------------------- planning

_PROSPECT_COLUMNS = (Prospect.id, Prospect.email, Prospect.name, Prospect.temperature, Prospect.industry,
                     Prospect.time_zone, Prospect.status, Prospect.status_reason, Prospect.consent_basis,
                     Prospect.paused_until, Prospect.frequency_factor)

#: What delivery reads of a prospect: the mailability check and what templates see (rendering.PROSPECT_FIELDS
#: and attributes). Not the whole row: each datetime column costs a conversion per mail on SQLite.
_SEND_COLUMNS = tuple(dict.fromkeys([
    *_PROSPECT_COLUMNS, *(getattr(Prospect, name) for name in PROSPECT_FIELDS), Prospect.attributes]))


def _campaign_window_reason(campaign: Campaign, now: datetime) -> str | None:
    local = now.astimezone(campaign.cadence.zone).date()
    if campaign.cadence.start and local < campaign.cadence.start:
        return f"campaign starts on {campaign.cadence.start.isoformat()}"
    if campaign.cadence.end and local > campaign.cadence.end:
        return f"campaign ended on {campaign.cadence.end.isoformat()}"
    return None


def paused_campaigns(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.campaign: r.paused_reason for r in conn.execute(
            select(CampaignState.campaign, CampaignState.paused_reason).where(CampaignState.paused.is_(True)))}


def _member_batches(engine: Engine, campaign: Campaign, now: datetime) -> Iterator[list[Any]]:
    """Segment members (mailable or not: the dry run says why not) in keyset batches of PLAN_BATCH."""
    clauses = segment_clauses(campaign.segment, now)
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(*_PROSPECT_COLUMNS).where(*clauses, Prospect.id > last)
                                .order_by(Prospect.id).limit(PLAN_BATCH)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


@dataclass
class _History:
    """Delivery history of one planning batch, fetched in two set-based queries."""

    last_any: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    items: dict[int, dict[str, tuple[str, datetime]]] = field(default_factory=dict)
    suppressed: dict[str, str] = field(default_factory=dict)


def _history(conn: Connection, campaign: Campaign, rows: list[Any]) -> _History:
    ids = [r.id for r in rows]
    h = _History()
    when = func.coalesce(Delivery.sent_at, Delivery.created_at)
    latest = (select(Delivery.prospect_id, func.max(when).label("at"))
              .where(Delivery.prospect_id.in_(ids), Delivery.state.in_(MAILED_STATES))
              .group_by(Delivery.prospect_id).subquery())
    for pid, at, name in conn.execute(
            select(latest.c.prospect_id, latest.c.at, Delivery.campaign)
            .join(Delivery, and_(Delivery.prospect_id == latest.c.prospect_id, when == latest.c.at))):
        h.last_any[pid] = (at, name)
    for pid, key, state, at in conn.execute(
            select(Delivery.prospect_id, Delivery.item_key, Delivery.state, when)
            .where(Delivery.campaign == campaign.name, Delivery.prospect_id.in_(ids))):
        h.items.setdefault(pid, {})[key] = (state, at)
    h.suppressed = suppression_reasons(conn, (r.email for r in rows))
    return h


def _next_item(campaign: Campaign, row: Any, received: dict[str, tuple[str, datetime]]) -> ContentItem | str:
    """The item this prospect gets next, or the reason there is none.

    Sequence: the first item in file order not yet received. Pool: the same never-repeat rule, but each
    prospect starts at a different place in the pool (by id), so one send spreads across the items.
    """
    items = [it for it in campaign.items if not it.industries or row.industry in it.industries]
    if not items:
        return f"no item for industry {row.industry or '(none)'}"
    if campaign.content.mode == "pool":
        start = row.id % len(items)
        items = items[start:] + items[:start]
    for item in items:
        if item.key not in received:
            return item
    if campaign.content.when_exhausted == "wait":
        return "content exhausted: waiting for new items"
    return "sequence finished: every item received"


def _fmt(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def decide(config: Config, campaign: Campaign, row: Any, history: _History, now: datetime,
           planned_elsewhere: dict[int, str]) -> Decision:
    """The planner's rule for one member (pure). Order matters: 'not mailable' before 'not due' before
    'due but not now'. ``planned_elsewhere`` holds prospects planned in this dry run by a higher campaign."""
    base = dict(campaign=campaign.name, prospect_id=row.id, email=row.email)
    reason = mailable_reason(row, now, suppression=history.suppressed.get(row.email))
    if reason:
        return Decision(outcome="skipped", reason=reason, **base)
    zone = ZoneInfo(row.time_zone) if row.time_zone else campaign.cadence.zone
    received = history.items.get(row.id, {})
    queued = [k for k, (state, _) in received.items() if state == "pending"]
    if queued:
        return Decision(outcome="skipped", reason=f"already queued: item {queued[0]} waits to be sent", **base)
    factor = row.frequency_factor if row.frequency_factor and row.frequency_factor > 0 else 1.0
    interval = timedelta(days=campaign.cadence.interval_for(row.temperature) * factor)
    # A failed attempt counts for this campaign's interval (no re-mailing right after a refusal), not for the
    # global gap, which is about mail that reached the person.
    mailed = [at for state, at in received.values() if state in MAILED_STATES or state == "failed"]
    if mailed:
        due = max(mailed) + interval
        if now < due:
            return Decision(outcome="skipped", reason=f"not due until {_fmt(due, zone)}", not_before=due, **base)
    cap = campaign.cadence.monthly_cap
    if cap:
        local_now = now.astimezone(zone)
        this_month = sum(1 for at in mailed if (a := at.astimezone(zone)).year == local_now.year
                         and a.month == local_now.month)
        if this_month >= cap:
            return Decision(outcome="deferred", reason=f"monthly cap of {cap} reached", **base)
    gap = timedelta(days=config.cadence.min_gap_days)
    if row.id in planned_elsewhere:
        return Decision(outcome="deferred", reason=f"cadence gap: due in {planned_elsewhere[row.id]} (higher "
                                                   "priority) this run", not_before=now + gap, **base)
    last = history.last_any.get(row.id)
    if last and now < last[0] + gap:
        after = last[0] + gap
        what = "queued now" if last[0] >= now - timedelta(minutes=1) else f"on {_fmt(last[0], zone)}"
        return Decision(outcome="deferred", reason=f"cadence gap: mailed by {last[1]} {what}; next after "
                                                   f"{_fmt(after, zone)}", not_before=after, **base)
    item = _next_item(campaign, row, received)
    if isinstance(item, str):
        return Decision(outcome="skipped", reason=item, **base)
    why_not_now = calendar.is_send_time(now.astimezone(zone), campaign.cadence)
    if why_not_now:
        nxt = calendar.next_send_time(now, campaign.cadence, zone)
        return Decision(outcome="deferred", reason=why_not_now, item_key=item.key, not_before=nxt, **base)
    return Decision(outcome="send", item_key=item.key, subject=item.subject, **base)


def _plan_lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PLAN_LOCK_KEY})


def plan(engine: Engine, config: Config, campaigns: Iterable[Campaign], report: Report, *, dry_run: bool = False,
         limit: int | None = None, keep_decisions: bool = False,
         progress: Callable[[str, int, int], None] | None = None, pause: float = 0.0) -> None:
    """Decide for every segment member of every campaign; insert pending deliveries (not in a dry run), one
    committed batch at a time (deliverers may claim each batch as soon as it is committed).

    ``progress(campaign, members_decided_in_this_batch, planned_so_far)`` is called after each batch; ``pause``
    seconds are slept after each batch (see PLAN_YIELD_SQLITE)."""
    now = clock.now()
    paused = paused_campaigns(engine)
    planned_elsewhere: dict[int, str] = {}
    for campaign in campaigns:
        if campaign.status != "active":
            report.notes.append(f"{campaign.name}: paused in its file (status = \"{campaign.status}\")")
            continue
        if campaign.name in paused:
            report.paused[campaign.name] = paused[campaign.name]
            continue
        window = _campaign_window_reason(campaign, now)
        if window:
            report.notes.append(f"{campaign.name}: {window}")
            continue
        for rows in _member_batches(engine, campaign, now):
            with db.transaction(engine, immediate=True) as session:
                conn = session.connection()
                _plan_lock(conn)
                history = _history(conn, campaign, rows)
                new_rows = []
                for row in rows:
                    decision = decide(config, campaign, row, history, now, planned_elsewhere)
                    if decision.outcome == "send" and limit is not None and report.planned >= limit:
                        decision = Decision(campaign=campaign.name, prospect_id=row.id, email=row.email,
                                            outcome="deferred", reason="--limit reached",
                                            item_key=decision.item_key)
                    if decision.outcome == "send":
                        if dry_run:
                            planned_elsewhere[row.id] = campaign.name
                        else:
                            new_rows.append({
                                "campaign": campaign.name, "prospect_id": row.id, "item_key": decision.item_key,
                                "state": "pending", "error": "", "subject": "", "sender": "", "message_id": "",
                                "provider_message_id": "", "attempts": 0, "claimed_by": "", "lease_until": None,
                                "next_attempt_at": None, "created_at": now, "sent_at": None, "updated_at": now})
                    report.tally(decision, keep=keep_decisions)
                db.insert_rows(conn, Delivery.__table__, new_rows,
                               ignore_conflicts_on=["campaign", "prospect_id", "item_key"])
            if progress:
                progress(campaign.name, len(rows), report.planned)
            if pause:
                time.sleep(pause)


# ---------------------------------------------------------------------------------------------------- delivery

class Deliverer:
    """Claims pending deliveries and sends them with ``concurrency`` worker threads.

    ``planning``, when given, is an event that is set once no more deliveries will be planned in this run:
    until then a worker that finds nothing to claim waits for the next planned batch instead of ending.
    ``stop``, when given, is the event :meth:`stop` sets (a multiprocessing event lets a parent stop it).
    """

    def __init__(self, engine: Engine, config: Config, campaigns: dict[str, Campaign], report: Report, *,
                 sender_factory: Callable[[Config], Sender] = make_sender, throttle: Throttle | None = None,
                 limit: int | None = None, on_outcome: Callable[[Outcome], None] | None = None,
                 keep_outcomes: bool = False, planning: Any = None, stop: Any = None) -> None:
        self.engine = engine
        self.config = config
        self.campaigns = campaigns
        self.report = report
        self.sender_factory = sender_factory
        self.throttle = throttle or Throttle(config.throttle)
        self.limit = limit
        self.on_outcome = on_outcome
        self.keep_outcomes = keep_outcomes
        self._local = threading.local()
        self.worker_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=config.delivery.lease_seconds)
        self._lock = threading.Lock()
        self._claimed_total = 0
        self._failures: Counter = Counter()
        self._paused: set[str] = set(paused_campaigns(engine))
        self._stop = stop if stop is not None else threading.Event()  # another process may set it (forked senders)
        self._errors: list[BaseException] = []
        self._record_statements: dict[frozenset, db.Bulk] = {}  # one prepared UPDATE per shape of outcome
        self._links: tracking.Links | None = None  # made at the first mail (it needs the signing key)
        self.planning = planning
        self._threads: list[threading.Thread] = []

    @property
    def renderer(self) -> Renderer:
        """One renderer per worker thread: compiled templates are cached per thread, nothing is shared."""
        renderer = getattr(self._local, "renderer", None)
        if renderer is None:
            renderer = self._local.renderer = Renderer(self.config.templates_dir)
        return renderer

    # -- claiming ------------------------------------------------------------------------------------------
    # Each worker holds one connection for the whole run and reuses compiled statements: per-message
    # bookkeeping is what separates nurture from a bare smtplib loop (bench/send.py), so it is kept small.
    def _take_budget(self, wanted: int) -> int:
        with self._lock:
            if self.limit is None:
                return wanted
            n = max(0, min(wanted, self.limit - self._claimed_total))
            self._claimed_total += n
            return n

    def claim(self, conn: Connection, worker: str, n: int) -> list[int]:
        """Claim up to ``n`` due pending deliveries of the active campaigns; their ids."""
        names = [c for c in self.campaigns if c not in self._paused]
        if not names or n <= 0:
            return []
        now = clock.now()
        stmt = (select(Delivery.id)
                .where(Delivery.state == "pending", Delivery.campaign.in_(names),
                       or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                       or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                .order_by(Delivery.id).limit(n))
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        with db.begin(conn, immediate=True):
            ids = list(conn.scalars(stmt))
            if ids:
                conn.execute(update(Delivery).where(Delivery.id.in_(ids))
                             .values(claimed_by=worker, lease_until=now + self.lease, updated_at=now))
        return ids

    def _next_due_in(self, conn: Connection) -> float | None:
        """Seconds until the earliest unclaimed pending delivery of these campaigns becomes due, if any.
        Rows other workers hold are theirs to finish and do not count."""
        names = [c for c in self.campaigns if c not in self._paused]
        if not names:
            return None
        now = clock.now()
        first = conn.scalar(select(func.min(Delivery.next_attempt_at))
                            .where(Delivery.state == "pending", Delivery.campaign.in_(names),
                                   Delivery.next_attempt_at > now,
                                   or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)))
        conn.rollback()
        return None if first is None else (first - now).total_seconds()

    def _renew(self, conn: Connection, worker: str, ids: list[int]) -> set[int]:
        """Extend the lease on rows still ours; the ids we still hold."""
        self._flush(conn)
        now = clock.now()
        with db.begin(conn):
            conn.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.claimed_by == worker,
                                                Delivery.state == "pending")
                         .values(lease_until=now + self.lease))
            return set(conn.scalars(select(Delivery.id).where(Delivery.id.in_(ids),
                                                              Delivery.claimed_by == worker)))

    def _release(self, conn: Connection, ids: list[int], worker: str) -> None:
        self._flush(conn)
        if not ids:
            return
        with db.begin(conn):
            conn.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.claimed_by == worker,
                                                Delivery.state == "pending")
                         .values(claimed_by="", lease_until=None))

    # -- one message -------------------------------------------------------------------------------------------
    def _load(self, conn: Connection, ids: list[int]) -> tuple[list[Any], dict[str, str]]:
        """The claimed rows with their prospects, and the suppression reasons of their addresses."""
        rows = conn.execute(
            select(Delivery.id.label("delivery_id"), Delivery.campaign, Delivery.item_key, Delivery.attempts,
                   *_SEND_COLUMNS)
            .join(Prospect, Prospect.id == Delivery.prospect_id)
            .where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()
        suppressed = suppression_reasons(conn, (r.email for r in rows))
        conn.rollback()
        return rows, suppressed

    def _record(self, conn: Connection, worker: str, delivery_id: int, values: dict[str, Any]) -> None:
        """Queue an outcome for this worker's next flush (see :meth:`_flush`)."""
        values = {**values, "claimed_by": "", "lease_until": None, "_id": delivery_id, "_w": worker}
        self._local.records.append(values)
        if len(self._local.records) >= self.config.delivery.record_batch:
            self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        """Write queued outcomes in one transaction, only where the claim is still ours.

        ``[delivery] record_batch`` outcomes are written together: fewer commits, and the crash window for a
        repeat is at most that many messages per worker (1 = every outcome is committed before the next send).
        """
        records = self._local.records
        if not records:
            return
        groups: dict[frozenset, list[dict[str, Any]]] = {}
        now = clock.now()  # updated_at: when the row is written, the same for the whole batch
        for values in records:
            values["updated_at"] = now
            groups.setdefault(frozenset(values), []).append(values)
        with db.begin(conn):
            for keys, rows in groups.items():
                bulk = self._record_statements.get(keys)
                if bulk is None:
                    stmt = (update(Delivery)
                            .where(Delivery.id == bindparam("_id"), Delivery.claimed_by == bindparam("_w"))
                            .values({k: bindparam(k) for k in keys if k not in ("_id", "_w")}))
                    bulk = self._record_statements[keys] = db.Bulk(stmt, conn.dialect, list(keys))
                bulk.run(conn, rows)
        records.clear()

    def _message(self, row: Any, campaign: Campaign, item: ContentItem) -> OutgoingMessage:
        config = self.config
        if self._links is None:
            self._links = tracking.Links(config)
        links = self._links
        urls = links.for_mail(row.delivery_id, row.id)
        context = build_context(config, campaign, item, row, urls)
        track_clicks = campaign.tracking.clicks and config.tracking.click_tracking
        rendered = self.renderer.render(
            item, context,
            rewrite_link=(lambda url, index: links.click(row.delivery_id, index, url)) if track_clicks else None)
        pixel = urls["open_pixel"] if campaign.tracking.opens and config.tracking.open_pixel else None
        honeypot = links.honeypot(row.delivery_id) if config.tracking.honeypot_link else None
        msg = OutgoingMessage(
            delivery_id=row.delivery_id, campaign=campaign.name, to_address=row.email, to_name=row.name or "",
            from_address=campaign.from_address, from_name=campaign.from_name, reply_to=campaign.reply_to,
            subject=rendered.subject, html=add_tracking_markup(rendered.html, open_pixel=pixel, honeypot=honeypot),
            text=rendered.text,
            list_id=list_id_for(campaign.name, campaign.from_address),
            list_unsubscribe=links.list_unsubscribe(row.delivery_id, row.id, unsubscribe_url=urls["unsubscribe"]),
            message_id=message_id_for(row.delivery_id, campaign.name, campaign.from_address))
        validate(msg)  # header injection and bad addresses fail this mail here, not inside the sender
        return msg

    def _outcome(self, outcome: Outcome) -> None:
        with self._lock:
            self.report.count(outcome, keep=self.keep_outcomes)
            if outcome.state == "sent":
                self._failures[outcome.campaign] = 0
        if self.on_outcome:
            self.on_outcome(outcome)
        if outcome.state == "deferred":
            log.info("deferred %s (%s): %s", outcome.email, outcome.campaign, outcome.reason)

    def _pause(self, campaign: str, last_reason: str) -> None:
        if campaign in self._paused:
            return
        self._paused.add(campaign)
        reason = (f"{self.config.delivery.error_budget} delivery failures in a row; last: {last_reason}. "
                  f"Fix the cause, then run `nurture resume {campaign}`")
        self.report.paused[campaign] = reason
        now = clock.now()
        maker = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with db.transaction(self.engine) as session:
            stmt = maker(CampaignState).values(campaign=campaign, paused=True, paused_reason=reason, paused_at=now)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["campaign"], set_={"paused": True, "paused_reason": reason, "paused_at": now}))
        log.warning("campaign %s paused: %s", campaign, reason)

    def _deliver_one(self, conn: Connection, worker: str, sender: Sender, row: Any,
                     suppressed: dict[str, str]) -> None:
        now = clock.now()
        campaign = self.campaigns[row.campaign]
        base = dict(delivery_id=row.delivery_id, campaign=row.campaign, email=row.email)

        def finish(state: str, reason: str, **values: Any) -> None:
            if state in ("skipped", "failed", "unknown"):
                values["state"] = state
            self._record(conn, worker, row.delivery_id, {"error": reason, **values})
            self._outcome(Outcome(state=state, reason=reason, **base))

        if row.campaign in self._paused:
            self._release(conn, [row.delivery_id], worker)
            return
        reason = mailable_reason(row, now, suppression=suppressed.get(row.email))
        if reason:
            return finish("skipped", reason)
        zone = ZoneInfo(row.time_zone) if row.time_zone else campaign.cadence.zone
        why_not_now = calendar.is_send_time(now.astimezone(zone), campaign.cadence)
        if why_not_now:
            later = calendar.next_send_time(now, campaign.cadence, zone)
            if later is None:
                return finish("skipped", f"no send time left in the campaign's calendar ({why_not_now})")
            return finish("deferred", why_not_now, next_attempt_at=later)
        item = next((it for it in campaign.items if it.key == row.item_key), None)
        if item is None:
            return finish("skipped", f"item {row.item_key} is no longer in {campaign.path.name}")
        try:
            msg = self._message(row, campaign, item)
        except NurtureError as exc:  # template or header problems: this mail cannot be built
            reason = f"render: {exc.message}"
            finish("failed", reason)
            self._count_failure(row.campaign, reason)
            return
        try:
            # Wait a little for a slow domain, not long: a worker stuck on one domain would hold back all
            # the others (head-of-line blocking). The message is retried when its domain allows it.
            self.throttle.acquire(msg.to_domain, max_wait=THROTTLE_MAX_WAIT)
        except ThrottleDeferred as exc:
            return finish("deferred", f"throttled: {exc.reason}",
                          next_attempt_at=clock.now() + timedelta(seconds=exc.wait))
        attempts = row.attempts + 1
        # A SenderConfigError (the sender can send nothing: a refused login or API key) is not caught: it ends
        # the run and the worker releases its claims, this row's included.
        sent = dict(attempts=attempts, sender=sender.name, message_id=msg.message_id, subject=msg.subject)
        try:
            result = sender.send(msg)
        except TemporarySendError as exc:
            return self._temporary(conn, worker, row, attempts, exc, base)
        except PermanentSendError as exc:
            finish("failed", f"provider refused: {exc.message}", **sent)
            self._count_failure(row.campaign, f"provider refused: {exc.message}")
            if exc.hard_bounce:
                events.record_event(self.engine, events.NewEvent(
                    type=events.BOUNCED, occurred_at=clock.now(), source=sender.event_source,
                    delivery_id=row.delivery_id, data={"bounce": "hard", "code": exc.code, "message": exc.message}))
            return
        except AmbiguousSendError as exc:
            return finish("unknown", f"unknown: {exc.message} (not resent; a provider webhook settles it)", **sent)
        except SendError as exc:  # a sender raising the base class: treat as temporary, never lose it
            return self._temporary(conn, worker, row, attempts, TemporarySendError(exc.message, exc.code), base)
        self._record(conn, worker, row.delivery_id, {
            **sent, "state": "sent", "sent_at": clock.now(), "error": "",
            "provider_message_id": result.provider_message_id or ""})
        self._outcome(Outcome(state="sent", **base))

    def _count_failure(self, campaign: str, reason: str) -> None:
        with self._lock:
            self._failures[campaign] += 1
            if self._failures[campaign] >= self.config.delivery.error_budget:
                self._pause(campaign, reason)

    def _temporary(self, conn: Connection, worker: str, row: Any, attempts: int, exc: SendError,
                   base: dict[str, Any]) -> None:
        max_attempts = self.config.delivery.max_attempts
        if attempts >= max_attempts:
            reason = f"provider kept deferring: gave up after {attempts} attempts: {exc.message}"
            self._record(conn, worker, row.delivery_id, {"state": "failed", "error": reason, "attempts": attempts})
            self._outcome(Outcome(state="failed", reason=reason, **base))
            self._count_failure(row.campaign, reason)
            return
        backoff = timedelta(seconds=self.config.delivery.retry_base_seconds * 2 ** (attempts - 1))
        if exc.retry_after:
            backoff = max(backoff, timedelta(seconds=exc.retry_after))
        later = clock.now() + min(backoff, MAX_BACKOFF)
        reason = f"provider deferred: {exc.message}"
        self._record(conn, worker, row.delivery_id, {"next_attempt_at": later, "error": reason, "attempts": attempts})
        self._outcome(Outcome(state="deferred", reason=reason, **base))
        self._count_failure(row.campaign, reason)

    # -- workers -----------------------------------------------------------------------------------------------
    def _worker(self, index: int) -> None:
        worker = f"{self.worker_prefix}:{index}"
        held: list[int] = []
        self._local.records = []
        conn = self.engine.connect()
        batch = CLAIM_MIN
        try:
            with self.sender_factory(self.config) as sender:
                while not self._stop.is_set():
                    want = self._take_budget(batch)
                    ids = self.claim(conn, worker, want)
                    if len(ids) < want and self.limit is not None:
                        with self._lock:
                            self._claimed_total -= want - len(ids)
                    if not ids:
                        if self._wait_for_more(conn):
                            continue
                        return
                    held = list(ids)
                    claimed_at = clock.now()
                    started = time.monotonic()
                    rows, suppressed = self._load(conn, ids)
                    for row in rows:
                        if self._stop.is_set():
                            return
                        if clock.now() - claimed_at > self.lease / 2:
                            still = self._renew(conn, worker, held)
                            claimed_at = clock.now()
                            if row.delivery_id not in still:
                                held.remove(row.delivery_id)
                                continue
                        self._deliver_one(conn, worker, sender, row, suppressed)
                        held.remove(row.delivery_id)
                    self._flush(conn)
                    per_mail = (time.monotonic() - started) / len(ids)
                    batch = max(CLAIM_MIN, min(CLAIM_MAX, int(CLAIM_SECONDS / max(per_mail, 1e-6))))
        except BaseException as exc:  # surfaced by run(); our claims are released below
            self._errors.append(exc)
            self._stop.set()
        finally:
            try:
                conn.rollback()
                self._release(conn, held, worker)  # flushes the outcomes queued so far first
            except Exception:  # the database itself failed: the leases expire and the rows are retried
                log.exception("could not release claims; they expire after the lease")
            conn.close()

    def _wait_for_more(self, conn: Connection) -> bool:
        """Nothing claimable now. While planning goes on, wait for its next batch. If a pending delivery
        becomes due within IDLE_WAIT seconds (a throttled domain, a short backoff), sleep until then and say
        so; otherwise the run is over."""
        if self.planning is not None and not self.planning.is_set():
            self.planning.wait(PLAN_POLL)
            return not self._stop.is_set()
        if clock.is_frozen():  # time does not pass: nothing would ever become due
            return False
        due_in = self._next_due_in(conn)
        if due_in is None or due_in > IDLE_WAIT:
            return False
        self._stop.wait(max(due_in, 0.05))
        return not self._stop.is_set()

    def run(self) -> None:
        """Deliver until nothing is claimable (or the limit is reached). Re-raises a worker's error."""
        self.start()
        self.join()

    def start(self) -> None:
        """Start the worker threads and return; :meth:`join` waits for them."""
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"nurture-send-{i}", daemon=True)
                         for i in range(self.config.throttle.concurrency)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Ask the workers to stop after the mail each is sending; their claims are released."""
        self._stop.set()

    def join(self) -> None:
        """Wait until the workers are done. Re-raises a worker's error."""
        try:
            for t in self._threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            for t in self._threads:
                t.join()
            raise
        if self._errors:
            raise self._errors[0]


def send(engine: Engine, config: Config, campaigns: list[Campaign], *, dry_run: bool = False,
         limit: int | None = None, keep_decisions: bool = False, keep_outcomes: bool = False,
         sender_factory: Callable[[Config], Sender] = make_sender, throttle: Throttle | None = None,
         plan_progress: Callable[[str, int, int], None] | None = None,
         on_outcome: Callable[[Outcome], None] | None = None) -> Report:
    """Plan and deliver (or, with ``dry_run``, only decide). Returns the run's :class:`Report`.

    Delivery starts before planning: the senders claim each planned batch as soon as it is committed, so the
    first mail leaves at once rather than after the whole plan (minutes for a million prospects), and the
    planner's work overlaps the senders'. Claims and the planning lock keep this exactly as safe as planning
    first: a run is the same as a planner and a sender started together.
    """
    report = Report(dry_run=dry_run)
    if dry_run:
        plan(engine, config, campaigns, report, dry_run=True, limit=limit, keep_decisions=keep_decisions,
             progress=plan_progress)
        return report
    config.tracking_secret()  # fail before planning anything, with the hint how to set it
    active = {c.name: c for c in campaigns if c.status == "active"}
    if config.delivery.processes > 1 and sender_factory is make_sender and throttle is None:
        delivery: Deliverer | SenderProcesses = SenderProcesses(
            config, active, report, limit=limit, on_outcome=on_outcome, keep_outcomes=keep_outcomes)
    else:
        delivery = Deliverer(engine, config, active, report, sender_factory=sender_factory, throttle=throttle,
                             limit=limit, on_outcome=on_outcome, keep_outcomes=keep_outcomes,
                             planning=threading.Event())
    delivery.start()
    try:
        plan(engine, config, campaigns, report, limit=limit, keep_decisions=keep_decisions, progress=plan_progress,
             pause=PLAN_YIELD_SQLITE if engine.dialect.name == "sqlite" else 0.0)
    except BaseException:
        delivery.stop()  # Ctrl-C or a database error while planning: stop after the mails in flight
        delivery.planning.set()
        with contextlib.suppress(BaseException):
            delivery.join()
        raise
    delivery.planning.set()
    delivery.join()
    return report


def _share(config: Config, processes: int) -> Config:
    """The configuration one of ``processes`` sender processes runs with: every rate split evenly, so that
    together they keep the configured limits (each process throttles on its own)."""
    t = config.throttle
    split = dataclasses.replace(
        t, per_second=t.per_second / processes,
        per_hour=-(-t.per_hour // processes) if t.per_hour else 0,
        per_day=-(-t.per_day // processes) if t.per_day else 0,
        default_domain_per_second=t.default_domain_per_second / processes,
        domains={d: r / processes for d, r in t.domains.items()},
        warmup=dataclasses.replace(t.warmup, start_per_day=max(1, t.warmup.start_per_day // processes)))
    return dataclasses.replace(config, throttle=split)


def _deliver_child(config: Config, campaigns: dict[str, Campaign], limit: int | None, queue: Any,
                   planning: Any, stop: Any) -> None:
    """A sender process: its own engine and Deliverer; outcomes and the final counts go back on ``queue``."""
    db.dispose_all()  # connections inherited over fork belong to the parent
    report = Report()
    error = None
    try:
        engine = db.engine_for(config.database_url)
        batch: list[Outcome] = []
        lock = threading.Lock()  # worker threads report concurrently

        def forward(outcome: Outcome) -> None:  # in batches: one pickle per 50 outcomes, not per outcome
            with lock:
                batch.append(outcome)
                if len(batch) >= 50:
                    queue.put(("outcomes", list(batch)))
                    batch.clear()

        Deliverer(engine, config, campaigns, report, limit=limit, on_outcome=forward, planning=planning,
                  stop=stop).run()
        if batch:
            queue.put(("outcomes", list(batch)))
    except BaseException as exc:  # reported to the parent, which raises it
        error = exc if isinstance(exc, NurtureError) else NurtureError(f"{type(exc).__name__}: {exc}")
    queue.put(("done", {"paused": report.paused}, error))


class SenderProcesses:
    """Delivery by ``[delivery] processes`` forked sender processes (Python renders under one lock per
    process; processes use every core). They share the work through the same claims as separate runs; their
    outcomes come back over a queue, read by a thread of this process, into ``report``.

    Same interface as :class:`Deliverer`: ``start()``, ``planning`` (set it when no more will be planned),
    ``stop()``, ``join()``. The processes are forked in ``start()``, before the caller plans, so they inherit no
    planning state.
    """

    def __init__(self, config: Config, campaigns: dict[str, Campaign], report: Report, *,
                 limit: int | None = None, on_outcome: Callable[[Outcome], None] | None = None,
                 keep_outcomes: bool = False) -> None:
        import multiprocessing

        if config.delivery.sender == "memory":
            raise ConfigError(f"{config.source}: [delivery] sender = \"memory\" keeps mails in this process, "
                              f"but processes = {config.delivery.processes} would send from others",
                              hint="set [delivery] processes = 1 with the memory sender")
        self.n = config.delivery.processes
        self.ctx = multiprocessing.get_context("fork")
        self.config, self.campaigns, self.report = config, campaigns, report
        self.limit, self.on_outcome, self.keep_outcomes = limit, on_outcome, keep_outcomes
        self.planning = self.ctx.Event()
        self._stopping = self.ctx.Event()
        self._queue = self.ctx.Queue()
        self._procs: list[Any] = []
        self._reader: threading.Thread | None = None
        self._done = 0
        self._errors: list[BaseException] = []

    def start(self) -> None:
        shared = _share(self.config, self.n)
        db.dispose_all()
        share = None if self.limit is None else -(-self.limit // self.n)
        self._procs = [self.ctx.Process(target=_deliver_child,
                                        args=(shared, self.campaigns, share, self._queue, self.planning,
                                              self._stopping),
                                        daemon=True) for _ in range(self.n)]
        for proc in self._procs:
            proc.start()
        self._reader = threading.Thread(target=self._read, name="nurture-send-outcomes", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Ask every sender process to stop after the mails in flight; their claims are released."""
        self._stopping.set()

    def _read(self) -> None:
        while self._done < self.n:
            try:
                message = self._queue.get(timeout=1.0)
            except Exception:  # queue.Empty: check that the children still live
                if not any(p.is_alive() for p in self._procs):
                    break
                continue
            if message[0] == "outcomes":
                for outcome in message[1]:
                    self.report.count(outcome, keep=self.keep_outcomes)
                    if self.on_outcome:
                        self.on_outcome(outcome)
            else:
                self._done += 1
                self.report.paused.update(message[1]["paused"])
                if message[2] is not None:
                    self._errors.append(message[2])

    def join(self) -> None:
        """Wait for every process and its outcomes. Raises the first error a process reported."""
        assert self._reader is not None
        while self._reader.is_alive():
            self._reader.join(0.2)
        for proc in self._procs:
            proc.join()
        if self._errors:
            raise self._errors[0]
        if any(p.exitcode for p in self._procs) and self._done < self.n:
            raise NurtureError("a sender process died; its claims are retried by the next run after the lease")


def deliver_in_processes(config: Config, campaigns: dict[str, Campaign], report: Report, *,
                         limit: int | None = None, on_outcome: Callable[[Outcome], None] | None = None,
                         keep_outcomes: bool = False) -> None:
    """Deliver what is already planned with :class:`SenderProcesses` and wait for them."""
    processes = SenderProcesses(config, campaigns, report, limit=limit, on_outcome=on_outcome,
                                keep_outcomes=keep_outcomes)
    processes.planning.set()
    processes.start()
    processes.join()


def pending_count(engine: Engine, campaigns: Iterable[str]) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Delivery)
                           .where(Delivery.state == "pending", Delivery.campaign.in_(list(campaigns)))) or 0


def resume(engine: Engine, campaign: str) -> bool:
    """Lift a pause set by the error budget; True if there was one."""
    with db.transaction(engine) as session:
        result = session.execute(update(CampaignState).where(CampaignState.campaign == campaign,
                                                             CampaignState.paused.is_(True))
                                 .values(paused=False, paused_reason=""))
        return result.rowcount > 0
