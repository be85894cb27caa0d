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


def _prospect(pid: int) -> dict[str, object]:
    return dict(
        id=pid,
        email=f"p{pid}@example.jp",
        name="",
        company="",
        industry="製造業",
        temperature="cold",
        rank="C",
        stage="MQL",
        owner="",
        consent_basis="business_card",
        status="active",
        attributes={},
        frequency_factor=1.0,
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_last_mailed_at_follows_every_write_to_deliveries(db_url, seed):
    rnd = random.Random(seed)
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(Prospect.__table__.insert(), [_prospect(pid) for pid in range(1, 9)])
    prospects = list(range(1, 9))
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
    with engine.begin() as conn:
        conn.execute(Prospect.__table__.insert(), [_prospect(1), _prospect(2), _prospect(3)])
        conn.exec_driver_sql(
            "INSERT INTO deliveries (campaign, prospect_id, item_key, state, sent_at, created_at, updated_at, subject,"
            " language, error, sender, message_id, provider_message_id, attempts, claimed_by) VALUES "
            "('c', 1, 'a', 'sent', '2026-01-10 03:00:00', '2026-01-10 03:00:00', '2026-01-10 03:00:00', 's',"
            " 'ja', '', '', '', '', 1, ''),"
            "('c', 1, 'b', 'sent', '2026-02-10 03:00:00', '2026-02-10 03:00:00', '2026-02-10 03:00:00', 's',"
            " 'ja', '', '', '', '', 1, ''),"
            "('c', 2, 'a', 'failed', '2026-03-10 03:00:00', '2026-03-10 03:00:00', '2026-03-10 03:00:00', 's',"
            " 'ja', '', '', '', '', 1, '')"
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert _stored(conn) == {1: datetime(2026, 2, 10, 3, 0, tzinfo=UTC), 2: None, 3: None}
