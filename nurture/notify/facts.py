"""What a handoff notice says, read from the store in a handful of queries: the prospect, the parts of the score,
the explained history (``score_changes``), the inquiry text when there is one, and the mails with their opens and
clicks, human and machine counted apart.

:func:`handoff_facts` returns plain dicts and lists (JSON-ready apart from datetimes), the same value the mail
templates and the webhook payload are made from, so the two never tell different stories.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select
from sqlalchemy.orm import Session

from nurture.store.models import Delivery, Event, Handoff, Prospect, ScoreChange
from nurture.track import vocabulary as v

#: At most this many history rows and mails go into one notice (newest first); the counts say how many in all.
HISTORY_LIMIT = 20
MAILS_LIMIT = 20

PROSPECT_FIELDS = (
    "email",
    "name",
    "company",
    "title",
    "industry",
    "owner",
    "language",
    "last_contact_at",
    "next_action",
    "next_action_due",
    "consent_basis",
    "status",
    "status_reason",
    "created_at",
)
SCORE_FIELDS = ("fit_score", "engagement_score", "score", "rank", "temperature", "stage", "scored_at")
COUNTS = ("opens_human", "opens_machine", "opens_unknown", "clicks_human", "clicks_machine", "clicks_unknown")
STRENGTHS = ("existing_business", "empathy", "contribution", "multiple_contacts", "decision_maker", "invested")


def handoff_facts(conn: Connection, handoff_id: int) -> dict[str, Any] | None:
    """Everything a notice about handoff ``handoff_id`` shows, or None if the handoff (or its prospect) is gone."""
    row = (
        Session(conn)
        .execute(
            select(Handoff, Prospect).join(Prospect, Prospect.id == Handoff.prospect_id).where(Handoff.id == handoff_id)
        )
        .first()
    )
    if row is None:
        return None
    h, p = row
    prospect = {name: getattr(p, name) for name in PROSPECT_FIELDS}
    prospect["attributes"] = dict(p.attributes or {})
    prospect["strengths"] = {name: getattr(p, f"strength_{name}") for name in STRENGTHS}
    score = {name: getattr(p, name) for name in SCORE_FIELDS}
    for name in ("fit_score", "engagement_score", "score"):
        score[name] = round(float(score[name] or 0.0), 1)

    history = [
        {
            "field": c.field,
            "from": c.old,
            "to": c.new,
            "at": c.at,
            "cause": c.cause,
            "score_before": round(float(c.score_before or 0.0), 1),
            "score_after": round(float(c.score_after or 0.0), 1),
            "rules": list(c.rules or []),
            "explanation": c.explanation,
        }
        for c in Session(conn)
        .execute(
            select(ScoreChange)
            .where(ScoreChange.prospect_id == p.id)
            .order_by(ScoreChange.at.desc(), ScoreChange.id.desc())
            .limit(HISTORY_LIMIT)
        )
        .scalars()
    ]
    history_total = conn.execute(
        select(func.count()).select_from(ScoreChange).where(ScoreChange.prospect_id == p.id)
    ).scalar_one()

    inquiry = ""
    if h.event_id is not None:
        data = conn.execute(select(Event.data).where(Event.id == h.event_id)).scalar_one_or_none()
        if isinstance(data, dict):
            inquiry = str(data.get("text") or "")

    mails, totals = _mails(conn, p.id)
    return {
        "handoff": {
            "id": h.id,
            "reason": h.reason,
            "state": h.state,
            "owner": h.owner or p.owner,
            "created_at": h.created_at,
            "notified_at": h.notified_at,
            "escalated_at": h.escalated_at,
            "decided_at": h.decided_at,
            "decided_by": h.decided_by,
            "verdict_reason": h.verdict_reason,
        },
        "prospect": prospect,
        "score": score,
        "history": history,
        "history_total": history_total,
        "inquiry": inquiry,
        "mails": mails,
        "totals": totals,
    }


def _mails(conn: Connection, prospect_id: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The prospect's mails (newest first) with opens and clicks per label, and the totals over all events
    (offline events such as a seminar are counted too, under their own type)."""

    def n(kind: str, label: str) -> Any:
        return func.sum(case(((Event.type == kind) & (Event.label == label), 1), else_=0))

    per_delivery = {
        r.delivery_id: r
        for r in conn.execute(
            select(
                Event.delivery_id,
                n(v.OPENED, "human").label("opens_human"),
                n(v.OPENED, "machine").label("opens_machine"),
                n(v.OPENED, "unknown").label("opens_unknown"),
                n(v.CLICKED, "human").label("clicks_human"),
                n(v.CLICKED, "machine").label("clicks_machine"),
                n(v.CLICKED, "unknown").label("clicks_unknown"),
            )
            .where(Event.prospect_id == prospect_id, Event.delivery_id.is_not(None))
            .group_by(Event.delivery_id)
        ).all()
    }
    mails = []
    for d in (
        Session(conn)
        .execute(
            select(Delivery)
            .where(Delivery.prospect_id == prospect_id)
            .order_by(Delivery.sent_at.desc().nulls_last(), Delivery.id.desc())
            .limit(MAILS_LIMIT)
        )
        .scalars()
    ):
        counts = per_delivery.get(d.id)
        mail: dict[str, Any] = {
            "campaign": d.campaign,
            "item": d.item_key,
            "subject": d.subject,
            "state": d.state,
            "sent_at": d.sent_at,
        }
        for key in COUNTS:
            mail[key] = int(getattr(counts, key) or 0) if counts is not None else 0
        mails.append(mail)

    totals: dict[str, int] = {}
    for kind, label, count in conn.execute(
        select(Event.type, Event.label, func.count())
        .where(Event.prospect_id == prospect_id)
        .group_by(Event.type, Event.label)
    ).all():
        totals[f"{kind}_{label}"] = int(count)
    totals["mails"] = conn.execute(
        select(func.count()).select_from(Delivery).where(Delivery.prospect_id == prospect_id)
    ).scalar_one()
    return mails, totals
