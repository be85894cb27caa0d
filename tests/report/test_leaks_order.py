"""The leaks report's "not contacted" list: exactly the first ``limit`` candidates in the documented order
(hottest, best ranked, longest without contact, id), however the candidates fall into (temperature, rank) buckets.
The report counts per bucket and sorts only the buckets it needs; this compares it with a plain Python sort over
random prospects and mails, for limits inside one bucket, across buckets and beyond every candidate."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import report_history as history

from nurture.core import clock
from nurture.core import config as configuration
from nurture.report import Params, build
from nurture.store import db
from nurture.store.models import Delivery, Prospect

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
TEMPERATURES = {"hot": 0, "warm": 1, "cold": 2}
RANKS = {"A": 0, "B": 1, "C": 2}


@pytest.mark.parametrize("seed", [1, 2])
def test_not_contacted_is_the_first_rows_in_order_and_counts_every_candidate(workspace, db_url, seed):
    rnd = random.Random(seed)
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    prospects, deliveries = [], []
    for pid in range(1, 121):
        contact = rnd.choice([None, NOW - timedelta(days=rnd.randint(1, 400), minutes=rnd.randint(0, 999))])
        prospects.append(
            history._p(
                pid,
                f"p{pid}@example.jp",
                # Skewed so that some buckets are empty and others large.
                temperature=rnd.choice(["hot", "warm", "cold", "cold", "cold"]),
                rank=rnd.choice(["A", "B", "C", "C"]),
                status=rnd.choice(["active"] * 9 + ["unsubscribed"]),
                last_contact_at=contact,
            )
        )
        for n in range(rnd.choice([0, 0, 1, 2])):
            at = NOW - timedelta(days=rnd.randint(1, 200))
            deliveries.append(
                dict(
                    campaign="mfg-insights",
                    prospect_id=pid,
                    item_key=f"item-{n}",
                    state=rnd.choice(["sent", "sent", "failed", "unknown"]),
                    sent_at=at,
                    created_at=at,
                    updated_at=at,
                    subject="s",
                )
            )
    with engine.begin() as conn:
        conn.execute(Prospect.__table__.insert(), prospects)
        if deliveries:
            conn.execute(Delivery.__table__.insert(), deliveries)
    cutoff = NOW - timedelta(days=90)
    last: dict[int, datetime] = {}
    for d in deliveries:
        if d["state"] in ("sent", "unknown"):
            last[d["prospect_id"]] = max(last.get(d["prospect_id"], d["sent_at"]), d["sent_at"])
    recent = {d["prospect_id"] for d in deliveries if d["state"] in ("sent", "unknown") and d["sent_at"] >= cutoff}
    candidates = [
        p
        for p in prospects
        if p["status"] == "active"
        and (p["last_contact_at"] is None or p["last_contact_at"] < cutoff)
        and p["id"] not in recent
    ]
    candidates.sort(
        key=lambda p: (
            TEMPERATURES[p["temperature"]],
            RANKS[p["rank"]],
            p["last_contact_at"] is not None,  # NULLS FIRST: never contacted comes first
            p["last_contact_at"] or NOW,
            p["id"],
        )
    )
    config = configuration.load(None)
    for limit in (1, 3, 7, 20, 55, 500):
        with clock.frozen(NOW):
            report = build("leaks", engine, Params(since=NOW - timedelta(days=28), until=NOW, limit=limit), config, [])
        (section,) = [s for s in report.sections if s.key == "not_contacted"]
        assert section.total == len(candidates)
        assert [r["email"] for r in section.rows] == [p["email"] for p in candidates[:limit]], limit
        # Their last mail: prospects.last_mailed_at, which the triggers of 0019 keep from the deliveries.
        assert [r["last_mail_at"] for r in section.rows] == [last.get(p["id"]) for p in candidates[:limit]], limit
