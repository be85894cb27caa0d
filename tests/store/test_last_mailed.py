"""``prospects.last_mailed_at`` (migration 0019) equals the latest ``sent_at`` of the prospect's mailed
deliveries after any sequence of writes to deliveries: inserts in any state, state changes into and out of
sent/unknown, ``sent_at`` changes, a delivery moved to another prospect, deletes, a prospect erased (cascade).
Random sequences on SQLite and PostgreSQL, checked against the definition after every write."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import delete, func, select, update
from webserver import seed_delivery, seed_prospect

from nurture.core import clock
from nurture.store import db
from nurture.store.models import Delivery, Prospect

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
STATES = ["pending", "sent", "unknown", "failed", "deferred", "skipped"]


def _expected(conn) -> dict[int, datetime | None]:
    latest = dict(
        conn.execute(
            select(Delivery.prospect_id, func.max(Delivery.sent_at))
            .where(Delivery.state.in_(["sent", "unknown"]))
            .group_by(Delivery.prospect_id)
        ).all()
    )
    return {pid: latest.get(pid) for pid in conn.execute(select(Prospect.id)).scalars()}


def _stored(conn) -> dict[int, datetime | None]:
    return dict(conn.execute(select(Prospect.id, Prospect.last_mailed_at)).all())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_last_mailed_at_follows_every_write_to_deliveries(db_url, seed):
    rnd = random.Random(seed)
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    with clock.frozen(T0):
        prospects = [seed_prospect(engine, f"p{n}@example.jp") for n in range(8)]
    ids: list[int] = []
    serial = mailed_steps = 0

    def when() -> datetime | None:
        return rnd.choice([None, T0 + timedelta(days=rnd.randint(0, 90), seconds=rnd.randint(0, 86399))])

    for step in range(80):
        op = (
            "erase"
            if rnd.random() < 0.04
            else rnd.choice(["insert"] * 4 + ["state"] * 3 + ["sent_at", "move", "delete"])
        )
        with engine.begin() as conn:
            if op == "insert" or not ids:
                serial += 1
                state = rnd.choice(STATES)
                row = dict(
                    campaign="c",
                    prospect_id=rnd.choice(prospects),
                    item_key=f"i{serial}",
                    state=state,
                    sent_at=when() if state != "pending" else None,
                    created_at=T0,
                    updated_at=T0,
                    subject="s",
                )
                ids.append(conn.execute(Delivery.__table__.insert().returning(Delivery.id), row).scalar_one())
            elif op == "state":
                conn.execute(update(Delivery).where(Delivery.id == rnd.choice(ids)).values(state=rnd.choice(STATES)))
            elif op == "sent_at":
                conn.execute(update(Delivery).where(Delivery.id == rnd.choice(ids)).values(sent_at=when()))
            elif op == "move":
                target = rnd.choice(prospects)
                conn.execute(
                    update(Delivery)
                    .where(Delivery.id == rnd.choice(ids))
                    .values(prospect_id=target, item_key=f"moved{step}")
                )
            elif op == "delete":
                gone = rnd.choice(ids)
                conn.execute(delete(Delivery).where(Delivery.id == gone))
                ids.remove(gone)
            elif op == "erase" and len(prospects) > 4:
                gone = rnd.choice(prospects)
                conn.execute(delete(Delivery).where(Delivery.prospect_id == gone))
                conn.execute(delete(Prospect).where(Prospect.id == gone))
                prospects.remove(gone)
                ids = list(conn.execute(select(Delivery.id)).scalars())
        with engine.connect() as conn:
            expected = _expected(conn)
            assert _stored(conn) == expected, (seed, step, op)
        mailed_steps += any(v is not None for v in expected.values())
    assert mailed_steps > 40  # the comparison above had mailed prospects to check, not only NULLs


def test_migration_fills_last_mailed_at_from_existing_deliveries(db_url):
    """A database that already has mails gets the column filled when it is upgraded (the backfill)."""
    engine = db.engine_for(db_url)
    with engine.begin() as conn:
        command.upgrade(db._alembic_config(conn), "0018")
    with clock.frozen(T0):
        p1, p2, p3 = (seed_prospect(engine, f"p{n}@example.jp") for n in range(3))
        seed_delivery(engine, p1, campaign="c", item_key="a", sent_at=datetime(2026, 1, 10, 3, 0, tzinfo=UTC))
        seed_delivery(engine, p1, campaign="c", item_key="b", sent_at=datetime(2026, 2, 10, 3, 0, tzinfo=UTC))
        seed_delivery(
            engine, p2, campaign="c", item_key="a", state="failed", sent_at=datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert _stored(conn) == {p1: datetime(2026, 2, 10, 3, 0, tzinfo=UTC), p2: None, p3: None}
