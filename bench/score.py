"""Benchmark of scoring: the full recompute (``nurture score``) and one event applied online, against a bare
baseline in the same run (recording the same events with no scoring listener).

    /work/venv/bin/python bench/score.py                                    # SQLite, 100k prospects / 1M events
    /work/venv/bin/python bench/score.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --prospects 1000000 --events 10000000

A fresh database (a SQLite file, or a fresh schema on PostgreSQL) is migrated and filled fast with set-based
inserts: prospects in companies of three, events spread over 180 days (opens and clicks labelled human /
machine / unknown, seminars, replies, unsubscribes). Then:

- ``recompute (first)``: every prospect scored from its events and written (everyone changes);
- ``recompute (again)``: the decay pass's steady state a minute later (only what decayed is written);
- ``hits``: 250-open batches where every recipient already has ``--hits`` hits, with and without scoring;
- ``online``: record_events of one human click for a prospect, with and without the scoring listener; the
  difference is what scoring adds to recording one event (median and p99 of ``--online`` calls), the first time
  (no stored tally: a fold) and again (the tally; the steady state), apart for calls that moved a field.

Targets (issue 10): PostgreSQL recompute of 1M prospects / 10M events < 60 s; one event < 1 ms added.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert, text

from nurture import score
from nurture.core import clock
from nurture.store import db
from nurture.store.models import Event, Prospect
from nurture.track import record, record_events
from nurture.track.vocabulary import NewEvent

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KINDS = [
    ("opened", "machine", 0.9),
    ("opened", "human", 0.7),
    ("opened", "unknown", 0.5),
    ("clicked", "human", 0.7),
    ("clicked", "machine", 0.9),
    ("opened", "machine", 0.9),
    ("sent", "unknown", 0.5),
    ("seminar_attended", "unknown", 0.5),
    ("replied", "unknown", 0.5),
    ("unsubscribed", "unknown", 0.5),
]
WEIGHTS = [30, 20, 10, 12, 8, 10, 8, 1, 0.7, 0.3]


def fill(engine, prospects: int, events: int, chunk: int = 50_000) -> None:
    rng = random.Random(7)
    industries = ["製造業", "物流", "小売", "IT", ""]
    titles = ["部長", "課長", "代表取締役", "manager", "", "主任"]
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(0, prospects, chunk):
            rows = [
                {
                    "email": f"p{i}@firm{i // 3}.example.jp",
                    "name": "",
                    "company": f"会社{i // 3}",
                    "title": titles[i % len(titles)],
                    "industry": industries[i % len(industries)],
                    "temperature": "cold",
                    "stage": "MQL",
                    "rank": "C",
                    "score": 0.0,
                    "owner": "",
                    "next_action": "",
                    "time_zone": "",
                    "language": "ja" if i % 2 else "en",
                    "attributes": {},
                    "consent_basis": "business_card",
                    "consent_source": "bench",
                    "status": "active",
                    "status_reason": "",
                    "frequency_factor": 1.0,
                    "created_at": NOW,
                    "updated_at": NOW,
                    "strength_existing_business": 0,
                    "strength_empathy": i % 4,
                    "strength_contribution": 0,
                    "strength_multiple_contacts": 0,
                    "strength_decision_maker": i % 3,
                    "strength_invested": 0,
                }
                for i in range(start, min(prospects, start + chunk))
            ]
            conn.execute(insert(Prospect), rows)
        first = conn.execute(text("select min(id) from prospects")).scalar_one()
    print(f"  filled {prospects:,} prospects in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    done = 0
    while done < events:
        n = min(chunk, events - done)
        kinds = rng.choices(KINDS, WEIGHTS, k=n)
        rows = [
            {
                "type": kind,
                "prospect_id": first + rng.randrange(prospects),
                "delivery_id": None,
                "campaign": "bench",
                "item_key": "2026-11",
                "occurred_at": NOW - timedelta(seconds=rng.randrange(180 * 86400)),
                "recorded_at": NOW,
                "source": "bench",
                "label": label,
                "confidence": confidence,
                "rule": "bench",
                "url": "",
                "user_agent": "",
                "ip": "",
                "dedup_key": None,
                "data": {},
            }
            for kind, label, confidence in kinds
        ]
        with engine.begin() as conn:
            conn.execute(insert(Event), rows)
        done += n
        if done % 1_000_000 == 0 or done == events:
            print(f"  filled {done:,} events ({time.perf_counter() - t0:.0f} s)", flush=True)


def online(engine, prospects: int, calls: int) -> None:
    """One human click each for ``calls`` prospects of distinct companies (so no round sees another's events):
    a bare round (no listener) on one half of the companies; with scoring on the other half twice: first (no
    stored tally yet, as after a rules change: all the prospect's and colleagues' events are folded) and again
    (the steady state: the event is added to the tally). Calls that changed a rank, temperature or stage (and so
    wrote explained history, which reads the prospect's events) are reported apart."""
    with engine.connect() as conn:
        first = conn.execute(text("select min(id) from prospects")).scalar_one()
    rng = random.Random(11)
    companies = rng.sample(range(prospects // 3), 2 * calls)
    bare_ids = [first + 3 * c + rng.randrange(3) for c in companies[:calls]]
    scored_ids = [first + 3 * c + rng.randrange(3) for c in companies[calls:]]
    cpus: dict[str, float] = {}

    def changes() -> int:
        with engine.connect() as conn:
            return conn.execute(text("select max(id) from score_changes")).scalar_one()

    def run(label: str, ids: list[int], minutes: int) -> list[float]:
        times, moved = [], []
        cpu0 = time.process_time()
        for pid in ids:
            e = NewEvent(
                "clicked",
                clock.now() - timedelta(minutes=minutes),
                "bench",
                prospect_id=pid,
                label="human",
                confidence=0.7,
                rule="bench",
            )
            before = changes() if label != "bare" else 0
            t0 = time.perf_counter()
            record_events(engine, [e])
            took = (time.perf_counter() - t0) * 1000
            times.append(took)
            if label != "bare" and changes() != before:
                moved.append(took)
        cpu = cpus[label] = (time.process_time() - cpu0) * 1000 / len(ids)  # includes the changes() reads
        times.sort()
        still = sorted(set(times) - set(moved))
        print(
            f"  {label:<6} median {statistics.median(times):7.3f} ms   p99 {times[int(len(times) * 0.99)]:7.3f} ms"
            f"   CPU {cpu:6.3f} ms/event"
            + (
                f"   {len(moved)} moved a field (median {statistics.median(moved):.3f} ms), "
                f"{len(still)} did not (median {statistics.median(still):.3f} ms)"
                if moved and still
                else ""
            ),
            flush=True,
        )
        return times

    record.remove_listener(score.on_events)
    run("bare", bare_ids[: calls // 5], 6)  # warm-up: connections, caches
    bare = run("bare", bare_ids, 5)
    record.add_listener(score.on_events)
    cold = run("first", scored_ids, 5)
    warm = run("again", scored_ids, 4)
    for label, times in (("first (fold)", cold), ("again (tally)", warm)):
        print(
            f"  => scoring adds {statistics.median(times) - statistics.median(bare):.3f} ms per event, {label} "
            f"(median wall; target < 1 ms)",
            flush=True,
        )
    print("     (CPU figures of the scored rounds include one max(id) of score_changes before and after each call)")


def hit_batches(engine, history: int, rounds: int = 8) -> None:
    """Batches of 250 human opens, one per recipient, where every recipient already has ``history`` hits (as
    when the same people open every 10 s): record_events with and without the listener, alternating. Without
    the tally each scored batch reread and refolded every recipient's hits."""
    with clock.frozen(NOW):
        with engine.begin() as conn:
            first = conn.execute(text("select max(id) from prospects")).scalar_one() + 1
            conn.execute(
                insert(Prospect),
                [
                    {
                        "email": f"hits{i}@hits{i // 3}.example.jp",
                        "company": f"ヒット{i // 3}",
                        "created_at": NOW,
                        "updated_at": NOW,
                        "consent_basis": "business_card",
                        "attributes": {},
                    }
                    for i in range(250)
                ],
            )
        pids = list(range(first, first + 250))
    at = NOW + timedelta(hours=1)

    def batch() -> list[NewEvent]:
        return [
            NewEvent("opened", at, "bench", prospect_id=p, label="human", confidence=0.9, rule="bench") for p in pids
        ]

    record.remove_listener(score.on_events)
    for _ in range(history):
        record_events(engine, batch())
        at += timedelta(seconds=10)
    record.add_listener(score.on_events)
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for n in range(2 * rounds + 1):
        scoring = n % 2 == 0  # the first scored batch folds everyone (no tally yet): not counted
        (record.add_listener if scoring else record.remove_listener)(score.on_events)
        with clock.frozen(at):
            c0 = time.process_time()
            record_events(engine, batch())
            if n:
                cpu[scoring].append((time.process_time() - c0) * 1000)
        at += timedelta(seconds=10)
        if not scoring:  # the tallies no longer hold every hit: one scored batch folds them again, not counted
            record.add_listener(score.on_events)
            with clock.frozen(at):
                record_events(engine, batch())
            at += timedelta(seconds=10)
    record.add_listener(score.on_events)
    on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(
        f"  250-open batch, {history} earlier hits each: CPU median {on:.1f} ms with scoring, {off:.1f} ms without"
        f" => {(on - off) / 250:.3f} ms per event added",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file); PostgreSQL: a new schema")
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--online", type=int, default=500, help="single-event calls per online round")
    parser.add_argument("--hits", type=int, default=200, help="earlier hits per recipient in the batch round (0: skip)")
    parser.add_argument(
        "--colleague-points",
        type=float,
        help="override [fit] colleague_points (0: no colleague groups, so one event rescores one prospect)",
    )
    args = parser.parse_args()
    if args.online and args.prospects // 3 < 2 * args.online:
        # online() takes one prospect from each of 2 x --online distinct companies of three
        parser.error(f"--online {args.online} needs at least {6 * args.online:,} --prospects")
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='nurture-bench-')}/score.db"
    schema = None
    if url.startswith("postgresql"):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    print(
        f"scoring bench: {args.prospects:,} prospects / {args.events:,} events on {url.split(':')[0]}; "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs (shared, busy)"
    )
    engine = db.engine_for(url)
    try:
        db.upgrade(engine)
        fill(engine, args.prospects, args.events)
        rules = score.configure()
        if args.colleague_points is not None:
            fit = dataclasses.replace(rules.fit, colleague_points=args.colleague_points)
            rules = score.configure(rules=dataclasses.replace(rules, fit=fit))
        with clock.frozen(NOW):
            t0, c0 = time.perf_counter(), time.process_time()
            first = score.recompute(engine, rules, cause="rules")
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"  recompute (first)   {took:7.1f} s (CPU {cpu:.1f} s)  {first.prospects:,} prospects, "
                f"{first.updated:,} written, {len(first.changes):,} rank/stage changes, {first.handoffs:,} handoffs"
            )
        with clock.frozen(NOW + timedelta(minutes=10)):
            t0, c0 = time.perf_counter(), time.process_time()
            again = score.recompute(engine, rules, cause="decay")
            print(
                f"  recompute (decay, 10 min later) {time.perf_counter() - t0:7.1f} s (CPU "
                f"{time.process_time() - c0:.1f} s)  {again.updated:,} written"
            )
        with clock.frozen(NOW + timedelta(minutes=20)):
            online(engine, args.prospects, args.online)
        if args.hits:
            hit_batches(engine, args.hits)
    finally:
        engine.dispose()
        if schema:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    sys.exit(main())
