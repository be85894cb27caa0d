"""Benchmark: a campaign segment over a large prospect table, as one SQL select.

Fills a fresh database with N generated prospects (1% suppressed, 10% tagged, a few with next actions), then
times the sample campaign's segment (temperature, industry, stage, last contact, tags) streamed with
``yield_per``, and the same select without the suppression test, to show what the per-row address hash costs
(native ``sha256()`` on PostgreSQL, a registered Python function on SQLite). Prints figures; asserts nothing.

    python bench/segments.py                       # 1,000,000 prospects, SQLite file in a temp folder
    python bench/segments.py --count 200000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from nurture.core.tomlschema import Problems
from nurture.plan.segments import Segment, mailable_clauses, parse_segment, segment_clauses, segment_select
from nurture.store import db
from nurture.store.models import Prospect, ProspectTag, Suppression, email_hash

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
INDUSTRIES = ["製造業", "物流", "建設業", "小売業", "IT", "manufacturing"]
TEMPERATURES = ["hot", "warm", "cold", "cold"]
SEGMENT = {
    "temperature": {"in": ["warm", "cold"]},
    "industry": {"in": ["製造業", "manufacturing"]},
    "stage": {"not_in": ["lost"]},
    "last_contact": {"older_than": 30},
    "tags": {"has_none": ["do-not-nurture"]},
}


def fill(engine, count: int) -> float:  # type: ignore[no-untyped-def]
    rnd = random.Random(7)
    start = time.perf_counter()
    batch = 20_000
    with engine.begin() as conn:
        for first in range(0, count, batch):
            rows = []
            for i in range(first, min(first + batch, count)):
                rows.append(
                    dict(
                        id=i + 1,
                        email=f"user{i}@example{i % 97}.co.jp",
                        name="",
                        company="",
                        title="",
                        industry=rnd.choice(INDUSTRIES),
                        temperature=rnd.choice(TEMPERATURES),
                        stage="MQL",
                        rank="C",
                        score=float(rnd.randint(0, 100)),
                        owner="",
                        last_contact_at=NOW - timedelta(days=rnd.randint(0, 700)),
                        next_action="見積り" if i % 50 == 0 else "",
                        next_action_due=None,
                        time_zone="",
                        language="ja",
                        attributes={},
                        consent_basis="business_card",
                        consent_source="",
                        status="active",
                        status_reason="",
                        frequency_factor=1.0,
                        created_at=NOW,
                        updated_at=NOW,
                        paused_until=None,
                        strength_existing_business=0,
                        strength_empathy=0,
                        strength_contribution=0,
                        strength_multiple_contacts=0,
                        strength_decision_maker=0,
                        strength_invested=0,
                    )
                )
            conn.execute(insert(Prospect), rows)
            conn.execute(
                insert(ProspectTag),
                [{"prospect_id": r["id"], "tag": "do-not-nurture"} for r in rows if r["id"] % 10 == 0],
            )
            conn.execute(
                insert(Suppression),
                [
                    {
                        "email_hash": email_hash(r["email"]),
                        "reason": "unsubscribed",
                        "source": "bench",
                        "created_at": NOW,
                    }
                    for r in rows
                    if r["id"] % 100 == 7
                ],
            )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


def stream(engine, statement) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    n = 0
    with engine.connect() as conn:
        for partition in conn.execution_options(yield_per=10_000).scalars(statement).partitions():
            n += len(partition)
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = db.engine_for(url)
        db.upgrade(engine)
        with engine.connect() as conn:
            if conn.scalar(select(Prospect.id).limit(1)) is not None:
                raise SystemExit(f"{url} already holds prospects; give an empty database")
        problems = Problems(None)
        segment = parse_segment(SEGMENT, problems)
        problems.raise_if_any()
        print(f"database: {engine.dialect.name}, prospects: {args.count:,}")
        print(f"fill: {fill(engine, args.count):.1f} s")
        full = segment_select(segment, NOW)
        bare = select(Prospect.id).where(*mailable_clauses(NOW), *segment_clauses(segment, NOW))
        everyone = segment_select(Segment(include_customers=True, include_pending_next_action=True), NOW)
        for label, statement in (
            ("segment (as sent)", full),
            ("segment without suppression test", bare),
            ("all mailable", everyone),
        ):
            n, seconds = stream(engine, statement)
            print(f"{label:<34} {n:>9,} ids in {seconds:6.2f} s  ({args.count / seconds:>12,.0f} prospects/s scanned)")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        db.dispose_all()


if __name__ == "__main__":
    main()
