"""The running tally (online scoring's O(1) path) equals the fold of every event: random event streams, split
into a prefix folded at once and batches added one by one, under random caps, per-mail limits and label
weights. Where the tally declines an event (out of order, a click it cannot take back opens for) the online path
folds the events instead, so only its answers need to be right."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scoring_support import mail, prospect
from sqlalchemy import select

from nurture import score
from nurture.core import clock
from nurture.score import engine as engine_module
from nurture.score import model
from nurture.score.model import EventFact
from nurture.score.rules import EventRule, Labels, Rules
from nurture.store.models import Prospect
from nurture.track import record, record_events
from nurture.track.vocabulary import NewEvent

T0 = datetime(2026, 6, 1, tzinfo=UTC)
LABELS = [("human", 0.9), ("human", 0.5), ("machine", 0.95), ("unknown", 0.5)]


def _rules(hl: int, cap: int, cap_days: int, per_mail: int, unknown: float) -> Rules:
    return dataclasses.replace(
        Rules(version="tally"),
        events={
            **Rules().events,
            "opened": EventRule(points=2, half_life_days=hl, cap=cap, cap_days=cap_days, per_mail=per_mail),
            "clicked": EventRule(points=7, half_life_days=hl * 2, cap=cap, cap_days=cap_days, per_mail=per_mail),
        },
        labels=Labels(unknown=unknown),
    )


rules_st = st.builds(
    _rules,
    st.sampled_from([0, 1, 14]),
    st.integers(0, 3),
    st.integers(1, 3),
    st.integers(0, 2),
    st.sampled_from([0.0, 0.3]),
)
event_st = st.tuples(
    st.sampled_from(["opened", "opened", "clicked", "seminar_attended", "replied", "unsubscribed", "sent"]),
    st.sampled_from(LABELS),
    st.sampled_from([None, 1, 2, 3]),
    st.integers(0, 6 * 24 * 60),  # minutes after T0
)


def _facts(raw):
    return [
        EventFact(i + 1, kind, T0 + timedelta(minutes=m), label, conf, mail if kind in ("opened", "clicked") else None)
        for i, (kind, (label, conf), mail, m) in enumerate(raw)
    ]


def _open_periods(t: model.Tally, rules: Rules) -> dict[str, tuple[int, int, int]]:
    """The tally's cap periods that the day of its last event is still in."""
    day = t.last[0] // 86_400_000_000
    return {k: v for k, v in t.caps.items() if v[0] == day // rules.events[k].cap_days}


@settings(max_examples=100, deadline=None)
@given(
    rules=rules_st, raw=st.lists(event_st, min_size=4, max_size=25), split=st.integers(0, 25), step=st.integers(1, 4)
)
@example(
    rules=_rules(1, 1, 1, 0, 0.0),
    raw=[
        ("opened", ("human", 0.9), None, 0),
        ("opened", ("human", 0.9), None, 0),
        ("opened", ("human", 0.9), 1, 1440),
        ("clicked", ("human", 0.9), 1, 1440),
    ],
    split=0,
    step=1,
)
def test_tally_equals_the_fold(rules, raw, split, step):
    # Tracking records events as they happen: ids in time order (ties too), as the online path sees them.
    events = _facts(sorted(raw, key=lambda r: r[3]))
    head, tail = events[:split], events[split:]
    t = model.tally(head, rules)
    assert model.Tally.loads(t.dumps(), rules) == t
    seen = list(head)
    for start in range(0, len(tail), step):
        batch = tail[start : start + step]
        seen += batch
        advanced = model.advance(t, batch, rules)
        if advanced is None:
            t = model.tally(seen, rules)  # what the online path does
            continue
        t = model.Tally.loads(advanced.dumps(), rules)
        whole = model.tally(seen, rules)
        assert (t.events, t.counted, t.last) == (whole.events, whole.counted, whole.last)
        # Only the cap periods still open can change what a later event counts (events come in time order): when
        # a click takes back the only opens of the current period, the tally drops the period, while the fold still
        # shows the period before it (found by hypothesis: two opens one day, an open and its click the next).
        now_caps, whole_caps = _open_periods(t, rules), _open_periods(whole, rules)
        assert {k: v[:2] for k, v in now_caps.items()} == {k: v[:2] for k, v in whole_caps.items()}
        # Capped events only ever decline a take-back, so the tally may count more of them (opens a click later
        # proved), never fewer.
        assert all(now_caps[k][2] >= v[2] for k, v in whole_caps.items())
        assert t.mails.keys() == whole.mails.keys()
        for at in (max(e.occurred_at for e in seen), T0 + timedelta(days=9)):
            fold = model.engagement(seen, rules, at)
            assert t.value(at, rules) == pytest.approx(fold.total, abs=1e-6)
            assert (t.counted > 0) == any(c.why == "counted" for c in fold.counted)


def test_a_tally_of_other_rules_or_garbage_is_not_used():
    rules = Rules()
    t = model.tally(_facts([("clicked", ("human", 0.9), 1, 5)]), rules)
    other = dataclasses.replace(rules, version="other")
    assert model.Tally.loads(t.dumps(), other) is None
    assert model.Tally.loads("{not json", rules) is None
    assert model.Tally.loads("", rules) is None
    assert t.value(T0, rules) is None  # before its last event: fold instead
    late = EventFact(0, "clicked", T0, "human", 0.9)
    assert model.advance(t, [late], rules) is None  # recorded after, happened before: fold instead


def test_a_click_takes_back_its_mails_counted_opens():
    rules = Rules()
    events = _facts(
        [
            ("opened", ("human", 0.9), 1, 0),
            ("opened", ("human", 0.9), 2, 1),
            ("clicked", ("human", 0.9), 1, 5),
        ]
    )
    t = model.advance(model.tally(events[:2], rules), events[2:], rules)
    assert t is not None and t.mails[1].opens == [] and t.counted == 2
    at = T0 + timedelta(days=1)
    assert t.value(at, rules) == pytest.approx(model.engagement(events, rules, at).total, abs=1e-9)
    # With the open cap's period full (an open capped), freeing its slot would change what counted: declined.
    capped = dataclasses.replace(rules, events={**rules.events, "opened": EventRule(points=1, cap=1, cap_days=30)})
    t = model.tally(events[:2], capped)
    assert t.caps["opened"][2] == 1
    assert model.advance(t, events[2:], capped) is None


def test_online_scoring_adds_in_order_events_to_the_stored_tally(engine, monkeypatch):
    """Through the event door: after each prospect's first event (a fold), in-order events are added to the
    stored tally without reading events (unless a field moves: the history names them), and every stored score
    stays what a recompute gives at its instant; an event recorded while no scoring listened is noticed."""
    score.configure(rules=Rules(version="tally"))
    folded: list[int] = []
    real = engine_module._online_engagements

    def spy(conn, rows, new, rules, at, refold):
        out = real(conn, rows, new, rules, at, refold)
        folded.extend(out[2])
        return out

    monkeypatch.setattr(engine_module, "_online_engagements", spy)
    try:
        with clock.frozen(T0):
            pids = [
                prospect(engine, f"t{i}@firm.example.jp", company="株式会社タリー" if i < 3 else "") for i in range(4)
            ]
            mails = [mail(engine, p, item=f"t{p}", sent_at=T0) for p in pids]
        rng = random.Random(5)
        for step in range(40):
            at = T0 + timedelta(hours=step * 7)
            i = rng.randrange(4)
            kind = rng.choice(["opened", "opened", "clicked", "replied"])
            with clock.frozen(at):
                record_events(
                    engine,
                    [
                        NewEvent(
                            kind,
                            at - timedelta(minutes=1),
                            "test",
                            prospect_id=pids[i],
                            delivery_id=mails[i] if kind != "replied" else None,
                            label="human",
                            confidence=0.9,
                            rule="test",
                        )
                    ],
                )
            _check(engine, pids)
        first_folds = len(set(folded))
        assert first_folds <= 4 and len(folded) < 20, folded  # the rest came from the tallies
        # Recorded while nobody scored: the tally no longer holds all events, so the next one folds.
        record.remove_listener(score.on_events)
        try:
            with clock.frozen(T0 + timedelta(days=13)):
                record_events(engine, [NewEvent("replied", clock.now(), "test", prospect_id=pids[3], label="human")])
        finally:
            record.add_listener(score.on_events)
        folded.clear()
        with clock.frozen(T0 + timedelta(days=14)):
            record_events(engine, [NewEvent("replied", clock.now(), "test", prospect_id=pids[3], label="human")])
        assert folded == [pids[3]]
        _check(engine, pids)
    finally:
        score.configure()


def _check(engine, pids):
    with engine.connect() as conn:
        for r in conn.execute(select(Prospect.__table__).where(Prospect.id.in_(pids))):
            if r.scored_at is None:
                continue
            want = score.score_all(conn, score.current_rules(), r.scored_at)[r.id]
            assert r.engagement_score == pytest.approx(want.engagement.total, abs=1e-6)
            assert r.score == pytest.approx(want.total, abs=1e-6)
            assert (r.rank, r.temperature, r.stage) == (want.rank, want.temperature, want.stage)
