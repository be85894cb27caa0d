"""Incremental equals recompute: random event streams recorded in batches at random instants, under random rule
sets; every prospect's stored score is what a recompute from the events gives at the instant it was scored, and
a full recompute at the end changes nothing it should not."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scoring_support import mail, prospect
from sqlalchemy import select

from nurture import score
from nurture.core import clock
from nurture.score import engine as engine_module
from nurture.score.rules import EventRule, Labels, Rules, Thresholds
from nurture.store.models import Prospect
from nurture.track import record_events
from nurture.track.vocabulary import NewEvent

T0 = datetime(2026, 6, 1, tzinfo=UTC)
TYPES = ["opened", "clicked", "seminar_attended", "replied", "unsubscribed", "signed_up", "bounced", "inquired"]
LABELS = [("human", 0.9), ("human", 0.5), ("machine", 0.95), ("unknown", 0.5)]
_run = itertools.count()

event_st = st.tuples(
    st.integers(0, 3),  # prospect
    st.sampled_from(TYPES),
    st.sampled_from(LABELS),
    st.integers(0, 2),  # mail
    st.integers(-2000, 60),  # minutes from the batch's instant
)
batch_st = st.tuples(st.integers(0, 20 * 24 * 60), st.lists(event_st, min_size=1, max_size=6))
rules_st = st.builds(
    lambda hl, cap, per_mail, unknown, a, b, colleague: dataclasses.replace(
        Rules(version="prop"),
        events={
            **Rules().events,
            "opened": EventRule(points=2, half_life_days=hl, cap=cap, cap_days=7, per_mail=per_mail),
            "clicked": EventRule(points=7, half_life_days=hl * 2, cap=cap, cap_days=7, per_mail=per_mail),
        },
        labels=Labels(unknown=unknown),
        thresholds=Thresholds(rank_a=a + b, rank_b=b, hot=b, warm=b / 2, sql=a + b + 5),
        fit=dataclasses.replace(Rules().fit, colleague_points=colleague, colleague_engaged_at=8),
    ),
    st.sampled_from([0, 1, 14]),
    st.integers(0, 3),
    st.integers(0, 2),
    st.sampled_from([0.0, 0.3]),
    st.integers(5, 30),
    st.integers(3, 20),
    st.sampled_from([0, 5]),
)

FIELDS = ("fit_score", "engagement_score", "score", "rank", "temperature", "stage", "company_key")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rules_st, batches=st.lists(batch_st, min_size=1, max_size=6))
def test_incremental_equals_recompute(engine, rules, batches):
    score.configure(rules=rules)
    run = next(_run)
    try:
        with clock.frozen(T0):
            pids = [
                prospect(engine, f"p{i}.{run}@firm{run}.example.jp", company=f"会社{run}" if i < 3 else "")
                for i in range(4)
            ]
            mails = {
                (p, m): mail(engine, p, item=f"{run}-{m}", sent_at=T0 - timedelta(days=30))
                for p in pids
                for m in range(3)
            }
        seq = itertools.count()
        for offset, events in sorted(batches, key=lambda b: b[0]):
            at = T0 + timedelta(minutes=offset)
            with clock.frozen(at):
                record_events(
                    engine,
                    [
                        NewEvent(
                            type=kind,
                            occurred_at=at + timedelta(minutes=minutes, seconds=next(seq) * 7),
                            source="test",
                            delivery_id=mails[(pids[p], m)] if kind in ("opened", "clicked") else None,
                            prospect_id=pids[p],
                            label=label,
                            confidence=confidence,
                            rule="prop",
                            url=f"https://example.jp/{m}",
                            data={"bounce": "soft"} if kind == "bounced" else {},
                        )
                        for p, kind, (label, confidence), m, minutes in events
                    ],
                )
            _check(engine, rules, pids)
        # A recompute at the last instant equals scoring each prospect from scratch there.
        last = T0 + timedelta(minutes=max(b[0] for b in batches))
        with clock.frozen(last):
            if engine.dialect.name == "postgresql":  # the set-based recompute equals the model, event for event
                with engine.connect() as conn:
                    by_sql = engine_module.all_engagements_sql(conn, rules, last)
                    by_model = engine_module.all_engagements(conn, rules, last)
                for pid in pids:
                    want = by_model[pid].total if pid in by_model and by_model[pid].counted else None
                    got = by_sql[pid].total if pid in by_sql else None
                    assert (got is None) == (want is None), pid
                    if want is not None:
                        assert got == pytest.approx(want, abs=1e-5), pid
            score.recompute(engine, rules, cause="rules")
            with engine.connect() as conn:
                fresh = score.score_all(conn, rules, last)
                for r in conn.execute(select(Prospect.__table__).where(Prospect.id.in_(pids))):
                    assert r.score == pytest.approx(fresh[r.id].total, abs=1e-5)
                    assert (r.rank, r.temperature, r.stage) == (
                        fresh[r.id].rank,
                        fresh[r.id].temperature,
                        fresh[r.id].stage,
                    )
    finally:
        score.configure()


def _check(engine, rules, pids):
    """Each prospect's stored score is the recompute at the instant it was scored."""
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(Prospect.__table__).where(Prospect.id.in_(pids)))}
        for pid, r in stored.items():
            if r.scored_at is None:
                assert (r.score, r.rank) == (0, "C")
                continue
            expected = score.score_all(conn, rules, r.scored_at)[pid]
            got = {f: getattr(r, f) for f in FIELDS}
            want = {
                "fit_score": expected.fit,
                "engagement_score": expected.engagement.total,
                "score": expected.total,
                "rank": expected.rank,
                "temperature": expected.temperature,
                "stage": expected.stage,
                "company_key": expected.company_key,
            }
            for f in FIELDS:
                if isinstance(want[f], float):
                    assert got[f] == pytest.approx(want[f], abs=1e-5), (pid, f)
                else:
                    assert got[f] == want[f], (pid, f)
