"""The complaint brake: a campaign whose readers mark it as spam too often is paused before it sends again.

Mailbox providers start filtering a sender at a spam-complaint rate of about 0.3 % (Gmail's and Yahoo's bulk
sender rules, 2024); above it every campaign of the domain suffers. :func:`complaint_gate` runs at the start of
each ``nurture send``: for every active campaign it counts, over the last :data:`WINDOW_DAYS` days (or since the
campaign was last paused, so that ``nurture resume`` gives it a fresh start), the prospects who complained about
it and the mails it sent; above :data:`PAUSE_RATE` it pauses the campaign in ``campaign_states`` exactly as the
error budget does (``nurture resume`` lifts it). The reports show the same rate (``nurture report campaigns``:
warning from 0.1 %, alarm from 0.3 %).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from nurture.store import db
from nurture.store.models import CampaignState, Delivery, Event
from nurture.store.states import DeliveryState

log = logging.getLogger(__name__)

PAUSE_RATE = 0.003
WINDOW_DAYS = 30


def complaint_rates(engine: Engine, campaigns: Iterable[str], now: datetime) -> dict[str, tuple[int, int]]:
    """Per campaign: (prospects who complained, mails sent) in the window (one count per campaign: a few)."""
    names = list(campaigns)
    if not names:
        return {}
    start = now - timedelta(days=WINDOW_DAYS)
    with engine.connect() as conn:
        since = {name: start for name in names}
        for name, paused_at in conn.execute(
            select(CampaignState.campaign, CampaignState.paused_at).where(
                CampaignState.campaign.in_(names), CampaignState.paused_at.is_not(None)
            )
        ):
            if paused_at is not None:  # what came after the pause
                since[name] = max(start, paused_at + timedelta(microseconds=1))
        earliest = min(since.values())
        complaints = conn.execute(
            select(Event.campaign, Event.occurred_at, Event.prospect_id).where(
                Event.type == "complained", Event.campaign.in_(names), Event.occurred_at >= earliest
            )
        ).all()
        counted = {
            name: conn.scalar(
                select(func.count()).where(
                    Delivery.campaign == name,
                    Delivery.state.in_([DeliveryState.SENT, DeliveryState.UNKNOWN]),
                    Delivery.sent_at >= since[name],
                )
            )
            or 0
            for name in names
        }
    people: dict[str, set[int | None]] = {name: set() for name in names}
    for name, at, pid in complaints:
        if at >= since[name]:
            people[name].add(pid)
    return {name: (len(people[name]), counted.get(name, 0)) for name in names}


def complaint_gate(engine: Engine, campaigns: Iterable[str], now: datetime, *, dry_run: bool = False) -> dict[str, str]:
    """Pause (unless ``dry_run``) every campaign of ``campaigns`` whose complaint rate is above
    :data:`PAUSE_RATE`; returns those campaigns with the reason."""
    paused = {}
    for name, (complained, sent) in complaint_rates(engine, campaigns, now).items():
        if not complained or complained <= PAUSE_RATE * sent:
            continue
        reason = (
            f"complaint rate {complained / sent if sent else 1:.2%} ({complained} complaint(s) for {sent} mail(s) "
            f"in {WINDOW_DAYS} days) is above {PAUSE_RATE:.1%}: mailbox providers start filtering at this rate. "
            f"Check who complained (`nurture report campaigns --campaign {name}`), then `nurture resume {name}`"
        )
        paused[name] = reason
        if dry_run:
            continue
        with db.transaction(engine) as session:
            stmt = db.insert_for(engine, CampaignState.__table__).values(
                campaign=name, paused=True, paused_reason=reason, paused_at=now
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["campaign"], set_={"paused": True, "paused_reason": reason, "paused_at": now}
                )
            )
        log.warning("campaign %s paused: %s", name, reason)
    return paused
