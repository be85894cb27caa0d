"""The set-based recompute (PostgreSQL) and the Python one (SQLite) give the same output for the same data: the
same random prospects (companies of up to three, titles, sizes, strengths) and events (opens and clicks of
mails with every label, seminars, replies, unsubscribes), recomputed under changed rules on both databases."""

from __future__ import annotations

import dataclasses
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from scoring_support import mail, prospect
from sqlalchemy import create_engine, select, text

from nurture import score
from nurture.core import clock
from nurture.score.rules import EventRule, Rules, Thresholds
from nurture.store import db
from nurture.store.models import Handoff, Prospect, ScoreChange
from nurture.track import record, record_events
from nurture.track.vocabulary import NewEvent

T0 = datetime(2026, 9, 1, tzinfo=UTC)
LABELS = [("human", 0.9), ("human", 0.5), ("machine", 0.95), ("unknown", 0.5)]
KINDS = ["opened", "opened", "clicked", "seminar_attended", "replied", "unsubscribed", "sent"]
RULES = dataclasses.replace(
    Rules(version="cross"),
    events={**Rules().events, "opened": EventRule(points=2, half_life_days=7, cap=2, cap_days=7, per_mail=1)},
    thresholds=Thresholds(rank_a=40, rank_b=20, hot=15, warm=6, sql=50),
)


def _fill(engine):
    rng = random.Random(20261202)
    with clock.frozen(T0):
        pids = [
            prospect(
                engine,
                f"p{i}@firm{i // 3}.example.jp",
                company=f"会社{i // 3}" if i % 4 else "",
                title=rng.choice(["部長", "課長", "CEO", "", "主任"]),
                industry=rng.choice(["製造業", "物流", "", "IT"]),
                attributes={"employees": rng.choice([5, 50, 500, "1,200名"])} if i % 2 else {},
                strength_empathy=rng.randrange(4),
                language=rng.choice(["ja", "en"]),
            )
            for i in range(30)
        ]
        mails = {(p, m): mail(engine, p, item=f"i{m}", sent_at=T0) for p in pids for m in range(2)}
    events = []
    for n in range(260):
        p = rng.choice(pids[:-2])  # the last two have no events (the decay pass skips them on both paths)
        kind = rng.choice(KINDS)
        label, confidence = rng.choice(LABELS)
        events.append(
            NewEvent(
                type=kind,
                occurred_at=T0 + timedelta(minutes=rng.randrange(40 * 24 * 60)),
                source="test",
                prospect_id=p,
                delivery_id=mails[(p, rng.randrange(2))] if kind in ("opened", "clicked") else None,
                label=label,
                confidence=confidence,
                rule="test",
                dedup_key=f"cross:{n}",
            )
        )
    # Recorded without scoring: the recompute alone decides (and the tallies stay unused).
    record.remove_listener(score.on_events)
    try:
        record_events(engine, events)
    finally:
        record.add_listener(score.on_events)


def _scores(engine):
    with engine.connect() as conn:
        emails = dict(conn.execute(select(Prospect.id, Prospect.email)).all())
        scores = {
            r.email: (round(r.score, 5), round(r.engagement_score, 5), r.rank, r.temperature, r.stage, r.company_key)
            for r in conn.execute(select(Prospect.__table__))
        }
        history = sorted(
            (
                emails[h.prospect_id],
                h.field,
                h.old,
                h.new,
                h.cause,
                h.explanation,
                h.rules,
                h.event_ids,
                round(h.score_after, 5),
                sorted(h.details["fit"].items()),
                h.details["rules_digest"],
            )
            for h in conn.execute(select(ScoreChange.__table__).where(ScoreChange.cause != "events"))
        )
        handoffs = sorted(
            (emails[h.prospect_id], h.reason, h.owner, h.state) for h in conn.execute(select(Handoff.__table__))
        )
        return scores, history, handoffs


@pytest.mark.postgres
def test_postgresql_recompute_equals_the_python_one(tmp_path):
    if not os.environ.get("NURTURE_TEST_POSTGRES_URL"):
        pytest.skip("PostgreSQL: set NURTURE_TEST_POSTGRES_URL to run")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(os.environ["NURTURE_TEST_POSTGRES_URL"])
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    pg_url = f"{os.environ['NURTURE_TEST_POSTGRES_URL']}?options=-csearch_path%3D{schema}"
    try:
        out = []
        for url in (f"sqlite:///{tmp_path / 'cross.db'}", pg_url):
            engine = db.engine_for(url)
            db.upgrade(engine)
            _fill(engine)
            with clock.frozen(T0 + timedelta(days=45)):
                dry = score.recompute(engine, RULES, cause="rules", dry_run=True)
                done = score.recompute(engine, RULES, cause="rules")
            with clock.frozen(T0 + timedelta(days=60)):
                decay = score.recompute(engine, RULES, cause="decay")
            summaries = [
                (s.prospects, s.updated, s.handoffs, sorted((c.email, c.field, c.old, c.new) for c in s.changes))
                for s in (dry, done, decay)
            ]
            out.append((_scores(engine), summaries))
            engine.dispose()
            db._engines.pop(url, None)
        (sqlite_scores, sqlite_summaries), (pg_scores, pg_summaries) = out
        assert pg_scores == sqlite_scores
        assert pg_summaries == sqlite_summaries
        assert pg_scores[1] and pg_scores[2]  # history explained, handoffs made
        assert len({v[2] for v in pg_scores[0].values()}) > 1  # the data moves ranks (the comparison is not empty)
        assert pg_summaries[1][3] and pg_summaries[2][1]  # the rules pass changed ranks, the decay pass wrote
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
