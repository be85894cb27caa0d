"""Helpers of the scoring tests: prospects, deliveries and events on either database."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from webserver import CHROME, seed_delivery, seed_prospect

from nurture import score
from nurture.core import clock
from nurture.score.rules import Rules, Thresholds
from nurture.store.models import Handoff, Prospect, ScoreChange
from nurture.track import record_events
from nurture.track.vocabulary import NewEvent


def rules(**thresholds: Any) -> Rules:
    return dataclasses.replace(Rules(version="test"), thresholds=Thresholds(**thresholds))


def prospect(engine: Engine, email: str, **values: Any) -> int:
    values.setdefault("rank", "C")
    values.setdefault("temperature", "cold")
    values.setdefault("company", "")
    values.setdefault("industry", "")
    return seed_prospect(engine, email, **values)


def mail(engine: Engine, pid: int, item: str = "2026-11", subject: str = "物流2024年問題", **kw: Any) -> int:
    return seed_delivery(engine, pid, item_key=item, subject=subject, **kw)


def event(
    kind: str, *, pid: int | None = None, did: int | None = None, at: datetime | None = None, **kw: Any
) -> NewEvent:
    kw.setdefault("source", "test")
    return NewEvent(type=kind, occurred_at=at or clock.now(), prospect_id=pid, delivery_id=did, **kw)


_spacing = itertools.count(1)


def human(kind: str, **kw: Any) -> NewEvent:
    """A human hit; without ``at``, a few minutes before now, each a minute apart (a person does not click two
    links within a second: the burst rule would call that a scanner)."""
    kw.setdefault("at", clock.now() - timedelta(minutes=60 - next(_spacing) % 50))
    return event(kind, label="human", confidence=0.9, rule="test_human", user_agent=CHROME, **kw)


def machine(kind: str, **kw: Any) -> NewEvent:
    return event(kind, label="machine", confidence=0.95, rule="test_machine", **kw)


def record(engine: Engine, *events: NewEvent) -> None:
    record_events(engine, list(events))


def row(engine: Engine, pid: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Prospect.__table__).where(Prospect.id == pid)).one()


def state(engine: Engine, pid: int) -> tuple[str, str, str]:
    with engine.connect() as conn:
        r = conn.execute(select(Prospect.rank, Prospect.temperature, Prospect.stage).where(Prospect.id == pid)).one()
    return (r.rank, r.temperature, r.stage)


def changes(engine: Engine, pid: int, field: str | None = None) -> list[Any]:
    stmt = select(ScoreChange.__table__).where(ScoreChange.prospect_id == pid).order_by(ScoreChange.id)
    if field:
        stmt = stmt.where(ScoreChange.field == field)
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def handoffs(engine: Engine, pid: int | None = None) -> list[Any]:
    stmt = select(Handoff.__table__).order_by(Handoff.id)
    if pid is not None:
        stmt = stmt.where(Handoff.prospect_id == pid)
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def later(days: float = 0, **kw: float) -> datetime:
    return clock.now() + timedelta(days=days, **kw)


__all__ = ["score"]
