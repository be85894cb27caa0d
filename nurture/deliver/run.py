"""The library's way to send: :func:`send` (what ``nurture send`` runs), plus :func:`pending_count` and
:func:`resume` (what ``nurture resume`` runs).

A run, whoever starts it (the CLI, a script, a bench):

1. **The compliance gate.** :func:`compliance_gate` runs the campaign check
   (:func:`nurture.checks.campaign.check_campaign`) on every active campaign. One with errors -- the sender's
   postal address missing from the footer (特定電子メール法), a sales pitch, a template that does not render
   -- is neither planned nor sent, not even mails planned for it by earlier runs; the report's ``blocked``
   says why. The gate is here, in the library, so that nothing can send around it.
2. **The complaint brake.** :func:`~nurture.deliver.complaints.complaint_gate` pauses an active campaign whose
   spam-complaint rate is above 0.3 % (``nurture resume`` lifts it), as the error budget does.
3. **Plan and deliver at once.** The senders start first and claim each planned batch as soon as it is committed
   (:mod:`nurture.plan.planner`, :mod:`nurture.deliver.worker`), so the first mail leaves at once rather than
   after the whole plan (minutes for a million prospects) and planning overlaps sending. Claims and the
   planning lock keep this exactly as safe as planning first: a run is the same as a planner and a sender
   started side by side.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable

from sqlalchemy import Engine, func, select, update

from nurture.checks.campaign import CampaignReport, check_campaign
from nurture.checks.preflight import require_preflight
from nurture.core import clock
from nurture.core.config import Config
from nurture.deliver.complaints import complaint_gate
from nurture.deliver.processes import SenderProcesses
from nurture.deliver.report import Outcome, Report
from nurture.deliver.senders import Sender, make_sender
from nurture.deliver.throttle import Throttle
from nurture.deliver.worker import Deliverer
from nurture.plan.campaigns import Campaign
from nurture.plan.planner import plan
from nurture.store import db
from nurture.store.models import CampaignState, Delivery
from nurture.store.states import DeliveryState


def compliance_gate(config: Config, campaigns: Iterable[Campaign]) -> dict[str, str]:
    """The active campaigns that ``nurture check`` fails (missing 特定電子メール法 footer, sales pitch, broken
    template), each with the reason to print. Inactive campaigns are not checked: nothing of theirs is sent."""
    blocked = {}
    for campaign in campaigns:
        if campaign.status != "active":
            continue
        report = CampaignReport(campaign.name, str(campaign.path))
        check_campaign(config, campaign, report)
        if report.errors:
            first = next(f.message for f in report.findings if f.severity == "error")
            blocked[campaign.name] = f"`nurture check {campaign.name}` finds {report.errors} error(s), first: {first}"
    return blocked


def send(
    engine: Engine,
    config: Config,
    campaigns: list[Campaign],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    keep_decisions: bool = False,
    keep_outcomes: bool = False,
    sender_factory: Callable[[Config], Sender] = make_sender,
    throttle: Throttle | None = None,
    plan_progress: Callable[[str, int, int], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Report:
    """Send what is due in ``campaigns`` (highest priority first, as
    :func:`nurture.plan.campaigns.load_campaigns` orders them); the run's :class:`Report`.

    Campaigns that fail the campaign check are refused (``Report.blocked``), in a dry run too. ``dry_run``:
    decide only (``keep_decisions`` keeps every decision in the report); nothing is written or sent and no
    tracking secret is needed. ``limit``: at most this many mails. ``plan_progress(campaign, decided, planned)``
    after each planning batch; ``on_outcome(outcome)`` after each delivery attempt, from the sending threads.
    ``sender_factory`` and ``throttle`` replace the configured sender and rates (one process then).
    Raises SenderConfigError when the sender can send nothing (its mails stay pending), ConfigError without a
    tracking secret or when a real sender's setup fails the preflight (:mod:`nurture.checks.preflight`). Postal
    campaigns (``channel = "postal"``) are left out here: ``nurture postal run`` prints them.
    """
    campaigns = [c for c in campaigns if c.channel == "email"]
    report = Report(dry_run=dry_run)
    if not dry_run:
        require_preflight(config)  # a real sender with example values, an unreachable base_url ...: nothing leaves
        config.tracking_secret()  # fail before anything else, with the hint how to set it
    for name, reason in compliance_gate(config, campaigns).items():
        report.campaign_blocked(name, reason)
    allowed = [c for c in campaigns if c.name not in report.blocked]
    # The complaint brake: a campaign above 0.3 % spam complaints is paused before it plans or sends again.
    for name, reason in complaint_gate(
        engine, [c.name for c in allowed if c.status == "active"], clock.now(), dry_run=dry_run
    ).items():
        report.campaign_paused(name, reason)
        if dry_run:
            allowed = [c for c in allowed if c.name != name]
    if dry_run:
        plan(
            engine,
            config,
            allowed,
            report,
            dry_run=True,
            limit=limit,
            keep_decisions=keep_decisions,
            progress=plan_progress,
        )
        return report
    active = {c.name: c for c in allowed if c.status == "active"}
    if config.delivery.processes > 1 and sender_factory is make_sender and throttle is None:
        delivery: Deliverer | SenderProcesses = SenderProcesses(
            config, active, report, limit=limit, on_outcome=on_outcome, keep_outcomes=keep_outcomes
        )
    else:
        delivery = Deliverer(
            engine,
            config,
            active,
            report,
            sender_factory=sender_factory,
            throttle=throttle,
            limit=limit,
            on_outcome=on_outcome,
            keep_outcomes=keep_outcomes,
            planning=threading.Event(),
        )
    delivery.start()
    try:
        plan(
            engine,
            config,
            allowed,
            report,
            limit=limit,
            keep_decisions=keep_decisions,
            progress=plan_progress,
            pause=db.writer_pause(engine),  # SQLite's write lock is not fair: let the senders claim in between
        )
    except BaseException:
        delivery.stop()  # Ctrl-C or a database error while planning: stop after the mails in flight
        delivery.planning.set()
        with contextlib.suppress(BaseException):
            delivery.join()
        raise
    delivery.planning.set()
    delivery.join()
    return report


def pending_count(engine: Engine, campaigns: Iterable[str]) -> int:
    """Deliveries of ``campaigns`` waiting to be sent (planned, deferred or claimed)."""
    with engine.connect() as conn:
        return (
            conn.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.state == DeliveryState.PENDING, Delivery.campaign.in_(list(campaigns)))
            )
            or 0
        )


def resume(engine: Engine, campaign: str) -> bool:
    """Lift a pause set by the error budget; True if there was one."""
    with engine.connect() as conn, db.begin(conn):
        result = conn.execute(
            update(CampaignState)
            .where(CampaignState.campaign == campaign, CampaignState.paused.is_(True))
            .values(paused=False, paused_reason="")
        )
        return result.rowcount > 0
