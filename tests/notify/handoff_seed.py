"""Stand-ins for scoring in notify tests: Handoff and ScoreChange rows, events and configs, inserted directly."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session
from webserver import seed_delivery, seed_prospect

from nurture.core import clock
from nurture.core.config import Config
from nurture.store.models import Event, Handoff, ScoreChange

T0 = datetime.fromisoformat("2026-11-16T01:00:00+00:00")  # Monday 10:00 in Tokyo


def seed_change(
    engine: Engine, prospect_id: int, field: str, old: str, new: str, at: datetime, explanation: str, **values: Any
) -> int:
    row = {
        "prospect_id": prospect_id,
        "field": field,
        "old": old,
        "new": new,
        "at": at,
        "cause": "events",
        "score_before": values.pop("score_before", 40.0),
        "score_after": values.pop("score_after", 82.0),
        "event_ids": [],
        "rules": ["click", "seminar"],
        "explanation": explanation,
        "details": {},
        **values,
    }
    with engine.begin() as conn:
        return conn.execute(insert(ScoreChange).values(row).returning(ScoreChange.id)).scalar_one()


def seed_handoff(
    engine: Engine,
    prospect_id: int,
    *,
    reason: str = "rank_A",
    created_at: datetime | None = None,
    owner: str = "",
    change_id: int | None = None,
    event_id: int | None = None,
    **values: Any,
) -> int:
    """A handoff as scoring makes it: notice due at once."""
    created = created_at or clock.now()
    row = {
        "prospect_id": prospect_id,
        "reason": reason,
        "change_id": change_id,
        "event_id": event_id,
        "owner": owner,
        "state": "open",
        "created_at": created,
        "notice_due_at": created,
        "notice_attempts": 0,
        "notice_error": "",
        "decided_by": "",
        "verdict_reason": "",
        **values,
    }
    with engine.begin() as conn:
        return conn.execute(insert(Handoff).values(row).returning(Handoff.id)).scalar_one()


def seed_event(
    engine: Engine,
    prospect_id: int,
    kind: str,
    label: str,
    *,
    delivery_id: int | None = None,
    at: datetime | None = None,
    data: dict | None = None,
) -> int:
    at = at or clock.now()
    row = {
        "type": kind,
        "prospect_id": prospect_id,
        "delivery_id": delivery_id,
        "campaign": "mfg-insights" if delivery_id else "",
        "item_key": "2026-11" if delivery_id else "",
        "occurred_at": at,
        "recorded_at": at,
        "source": "pixel",
        "label": label,
        "confidence": 0.9 if label == "human" else 0.1,
        "rule": "",
        "url": "",
        "user_agent": "",
        "ip": "",
        "data": data or {},
    }
    with engine.begin() as conn:
        return conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()


def handoff(engine: Engine, handoff_id: int) -> Any:
    with engine.connect() as conn:
        return Session(conn).execute(select(Handoff).where(Handoff.id == handoff_id)).scalar_one()


def with_sections(config: Config, **sections: dict[str, Any]) -> Config:
    return dataclasses.replace(
        config, **{name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    )


def parse(data: bytes) -> tuple[Any, str, str]:
    """(message, text part, html part) of received MIME bytes."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return msg, text, html


def a_handed_over_prospect(engine, *, owner="佐藤", email="taro@yamada.co.jp", language=""):
    pid = seed_prospect(
        engine,
        email,
        owner=owner,
        rank="A",
        stage="SQL",
        temperature="hot",
        score=86.0,
        fit_score=30.0,
        engagement_score=56.0,
        title="製造部 部長",
        language=language,
    )
    seed_change(engine, pid, "rank", "C", "B", T0 - timedelta(days=9), 'C→B: 2 human clicks on "物流2024年問題" (+12)')
    change = seed_change(
        engine, pid, "rank", "B", "A", T0 - timedelta(minutes=1), "B→A: seminar attended (+20); 7 machine opens ignored"
    )
    delivery = seed_delivery(engine, pid, subject="物流2024年問題への備え")
    seed_event(engine, pid, "opened", "human", delivery_id=delivery)
    for _ in range(3):
        seed_event(engine, pid, "opened", "machine", delivery_id=delivery)
    seed_event(engine, pid, "clicked", "human", delivery_id=delivery)
    seed_event(engine, pid, "clicked", "machine", delivery_id=delivery)
    return pid, seed_handoff(engine, pid, change_id=change, owner=owner, created_at=T0)
