"""Who gets the next postal issue of a campaign, and why the others do not (pure rules over one query each).

A segment member is due when, in this order:
- they may be reached by post: not erased; not opted out of post (``postal_status``); no returned mail on
  record; and, when ``[postal] email_optout_stops_post`` (the default), not unsubscribed from or complaining
  about e-mail either (e-mail bounces do not stop post: the street address may be fine);
- not paused by their own request (preferences page);
- their address is complete (郵便番号, 都道府県, 住所);
- they are not in a printed batch of this campaign that is not yet marked mailed;
- this campaign's interval (``[postal] interval_days``, or the campaign's ``[cadence] interval_days``, times
  their frequency factor) has passed since their last issue;
- an item is left that they have not received (sequence or pool order, as for e-mail).

Consent: 特定電子メール法 governs e-mail; post to a business address needs no opt-in, but every opt-out above is
honoured. E-mail and post share one history (``deliveries``), so the e-mail planner's global gap
(``[cadence] min_gap_days``) keeps e-mail away for those days after an issue is mailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from nurture.core.config import Config
from nurture.people.addresses import is_complete
from nurture.plan.campaigns import Campaign, ContentItem
from nurture.plan.planner import items_in_order
from nurture.plan.segments import campaign_clauses
from nurture.postal.labels import Address
from nurture.store.models import Delivery, PostalBatch, PostalRecipient, Prospect
from nurture.store.states import MAILED_STATES

_COLUMNS = (
    Prospect.id,
    Prospect.email,
    Prospect.name,
    Prospect.company,
    Prospect.title,
    Prospect.department,
    Prospect.industry,
    Prospect.postal_code,
    Prospect.prefecture,
    Prospect.address_line,
    Prospect.building,
    Prospect.status,
    Prospect.postal_status,
    Prospect.paused_until,
    Prospect.frequency_factor,
    Prospect.temperature,
)


@dataclass(frozen=True)
class PostalDecision:
    """One segment member: ``item`` is the issue they get (None: not now, ``reason`` says why)."""

    prospect_id: int
    email: str
    address: Address
    item: ContentItem | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "prospect_id": self.prospect_id,
            "email": self.email,
            "due": self.item is not None,
            "item": self.item.key if self.item else None,
            "reason": self.reason,
            "address": self.address.as_dict(),
        }


def _address(row: Any) -> Address:
    return Address(
        postal_code=row.postal_code,
        prefecture=row.prefecture,
        address_line=row.address_line,
        building=row.building,
        company=row.company,
        department=row.department,
        title=row.title,
        name=row.name,
    )


def postal_decisions(engine: Engine, config: Config, campaign: Campaign, now: datetime) -> list[PostalDecision]:
    """A decision for every member of the campaign's segment, in prospect id order (three queries). Members are
    chosen as for e-mail: the segment, the topic, and the campaign's language (a prospect without one reads the
    workspace's), so an English reader is not sent the Japanese issue."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(*_COLUMNS).where(*campaign_clauses(campaign, now, config.workspace.language)).order_by(Prospect.id)
        ).all()
        received: dict[int, dict[str, datetime]] = {}
        when = func.coalesce(Delivery.sent_at, Delivery.created_at)
        for pid, key, at in conn.execute(
            select(Delivery.prospect_id, Delivery.item_key, when).where(
                Delivery.campaign == campaign.name, Delivery.state.in_(MAILED_STATES)
            )
        ):
            received.setdefault(pid, {})[key] = at
        waiting = dict(
            conn.execute(
                select(PostalRecipient.prospect_id, PostalBatch.id)
                .join(PostalBatch, PostalBatch.id == PostalRecipient.batch_id)
                .where(PostalBatch.campaign == campaign.name, PostalBatch.mailed_on.is_(None))
            ).all()
        )
    return [_decide(config, campaign, row, received.get(row.id, {}), waiting.get(row.id), now) for row in rows]


def _decide(
    config: Config, campaign: Campaign, row: Any, received: dict[str, datetime], batch: int | None, now: datetime
) -> PostalDecision:
    address = _address(row)

    def no(reason: str) -> PostalDecision:
        return PostalDecision(row.id, row.email, address, None, reason)

    if row.status == "erased":
        return no("erased on request")
    if row.postal_status == "opted_out":
        return no("asked for no post")
    if row.postal_status == "returned":
        return no("returned mail on record (address unknown): import the corrected address, which clears it")
    if row.status in ("unsubscribed", "complained") and config.postal.email_optout_stops_post:
        return no(f"{row.status} from e-mail ([postal] email_optout_stops_post)")
    if row.paused_until is not None and row.paused_until > now:
        return no(f"paused by the prospect until {row.paused_until.date().isoformat()}")
    if not is_complete(row.postal_code, row.prefecture, row.address_line):
        missing = [
            label
            for label, value in (
                ("郵便番号", row.postal_code),
                ("都道府県", row.prefecture),
                ("住所", row.address_line),
            )
            if not value.strip()
        ]
        return no(f"address incomplete: no {', '.join(missing)}")
    if batch is not None:
        return no(f"in batch {batch}, printed but not yet marked mailed (nurture postal mailed {batch})")
    factor = row.frequency_factor if row.frequency_factor and row.frequency_factor > 0 else 1.0
    if received:
        due = max(received.values()) + timedelta(days=campaign.cadence.interval_for(row.temperature) * factor)
        if now < due:
            return no(f"not due until {due.astimezone(campaign.cadence.zone).date().isoformat()}")
    items = items_in_order(campaign, row)
    item = next((it for it in items if it.key not in received), None)
    if item is None:
        return no("every issue received" if items else "no issue for this industry")
    return PostalDecision(row.id, row.email, address, item)
