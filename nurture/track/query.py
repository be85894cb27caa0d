"""Reading the event log back (``nurture events list``). Read-only: nothing here writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, Table, select

from nurture.store.models import Base, Event, Prospect


def list_events(
    engine: Engine, *, prospect_id: int | None = None, types: Iterable[str] = (), limit: int = 100
) -> list[dict[str, Any]]:
    """The newest ``limit`` events first (of one prospect, of some types), as plain dicts: every ``events`` column
    plus ``email``, the prospect's address; instants as ISO 8601 strings."""
    events: Table = Base.metadata.tables[Event.__tablename__]
    prospects: Table = Base.metadata.tables[Prospect.__tablename__]
    stmt = select(events, prospects.c.email.label("email")).select_from(
        events.outerjoin(prospects, prospects.c.id == events.c.prospect_id)
    )
    if prospect_id is not None:
        stmt = stmt.where(events.c.prospect_id == prospect_id)
    wanted = list(types)
    if wanted:
        stmt = stmt.where(events.c.type.in_(wanted))
    stmt = stmt.order_by(events.c.occurred_at.desc(), events.c.id.desc()).limit(limit)
    out = []
    with engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            item = dict(row)
            for key in ("occurred_at", "recorded_at", "relabeled_at"):
                item[key] = item[key].isoformat() if item[key] else None
            out.append(item)
    return out
