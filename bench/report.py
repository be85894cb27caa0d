"""Each report over a large generated history on PostgreSQL (target: 1M prospects / 10M events, < 5 s a report).

Generates the data inside PostgreSQL (``INSERT ... SELECT generate_series``: the client sends no rows) in its
own schema, once (``--keep`` reuses it on the next run): prospects spread over 5 industries, 20 owners and three
years of entry; two deliveries per prospect of the sample campaigns (mfg-insights for 製造業, saas-ops-digest
for the others) over the last year; opens, clicks and provider events with human / machine / unknown labels over
the last year (so a 4-week report reads ~1/13 of them); score changes naming 3 events each; handoffs; wins and
referrals. The events are stored in time order, as tracking appends them in production (``--random-order``
scatters a period's events over the whole table: every period scan then reads all of it). Then times each
report (JSON build, the default 4-week period; conversion: 24 months) against a bare baseline in the same run:
``SELECT count(*)`` over the period's events.

Run: /work/venv/bin/python bench/report.py [--prospects 1000000] [--events 10000000] [--keep] [--random-order]
[--schema COPY] (needs NURTURE_TEST_POSTGRES_URL or --url; the machine is shared: say so with the figures). A
kept schema is brought to the current migrations first (an index added since is built then, not timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from nurture.core import clock
from nurture.core import config as configuration
from nurture.plan.campaigns import load_campaigns
from nurture.report import KINDS, Params, build
from nurture.report.render import to_json
from nurture.store import db

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
YEAR = 365 * 86400


def generate(conn, prospects: int, events: int, time_ordered: bool) -> None:
    now = NOW.isoformat()
    steps = [
        (
            "prospects",
            f"""INSERT INTO prospects (id, email, name, company, title, industry, temperature, stage, rank, score,
            fit_score, engagement_score, owner, last_contact_at, next_action, next_action_due, time_zone, language,
            attributes, strength_existing_business, strength_empathy, strength_contribution,
            strength_multiple_contacts, strength_decision_maker, strength_invested, consent_basis, consent_source,
            status, status_reason, frequency_factor, created_at, updated_at)
            SELECT i, 'p' || i || '@bench.example.jp', 'P' || i, 'Co ' || (i % 50000), '',
              (ARRAY['製造業','IT','物流','小売','建設'])[1 + i % 5],
              (ARRAY['cold','cold','warm','hot'])[1 + i % 4],
              CASE WHEN i % 97 = 0 THEN 'customer' WHEN i % 53 = 0 THEN 'SQL' ELSE 'MQL' END,
              (ARRAY['C','C','C','B','A'])[1 + (i / 7) % 5], 0, 0, 0, 'owner' || (i % 20),
              CASE WHEN i % 3 = 0 THEN NULL ELSE timestamptz '{now}' - (i % 700) * interval '1 day' END,
              CASE WHEN i % 20 = 0 THEN 'call back' ELSE '' END,
              CASE WHEN i % 20 = 0 THEN (timestamptz '{now}' + ((i % 60) - 30) * interval '1 day')::date END,
              '', '', '{{}}'::jsonb, 0, 0, 0, 0, 0, 0,
              CASE WHEN i % 20 = 7 THEN 'unknown' ELSE 'business_card' END, '',
              CASE WHEN i % 50 = 0 THEN 'unsubscribed' ELSE 'active' END, '', 1.0,
              timestamptz '{now}' - (i % 1095) * interval '1 day', timestamptz '{now}'
            FROM generate_series(1, {prospects}) AS i""",
        ),
        (
            "deliveries",
            f"""INSERT INTO deliveries (id, campaign, prospect_id, item_key, language, state, error, subject, sender,
            message_id, provider_message_id, attempts, claimed_by, created_at, sent_at, updated_at)
            SELECT d, CASE WHEN p % 5 = 0 THEN 'mfg-insights' ELSE 'saas-ops-digest' END, p,
              CASE WHEN p % 5 = 0 THEN (ARRAY['labor-shortage','logistics-2024'])[j]
                   ELSE (ARRAY['on-call','postmortems'])[j] END,
              'ja', 'sent', '', 's', 'outbox', '', '', 1, '', ts, ts, ts
            FROM (SELECT 2 * (p - 1) + j AS d, p, j,
                    timestamptz '{now}' - ((p::bigint * 7919 + j * 104729) % {YEAR}) * interval '1 second' AS ts
                  FROM generate_series(1, {prospects}) AS p, generate_series(1, 2) AS j) s""",
        ),
        (
            "events",
            f"""INSERT INTO events (id, type, prospect_id, delivery_id, campaign, item_key, occurred_at, recorded_at,
            source, label, confidence, rule, url, user_agent, ip, data)
            SELECT i, t, p, d, c, CASE WHEN c = 'mfg-insights' THEN (ARRAY['labor-shortage','logistics-2024'])[j]
                                       ELSE (ARRAY['on-call','postmortems'])[j] END,
              ts, ts, 'pixel', l, 0.8, '', CASE WHEN t = 'clicked' THEN 'https://example.jp/' || (i % 7) ELSE '' END,
              '', '', '{{}}'::jsonb
            FROM (SELECT i, 1 + i % {prospects} AS p, 1 + (i / {prospects}) % 2 AS j,
                    2 * (i % {prospects}) + 1 + (i / {prospects}) % 2 AS d,
                    CASE WHEN (1 + i % {prospects}) % 5 = 0 THEN 'mfg-insights' ELSE 'saas-ops-digest' END AS c,
                    (ARRAY['opened','opened','opened','opened','clicked','clicked','delivered','delivered',
                           'deferred','unsubscribed'])[1 + i % 10] AS t,
                    (ARRAY['human','human','machine','unknown','human'])[1 + (i / 10) % 5] AS l,
                    timestamptz '{now}' - ((i::bigint * 2654435761) % {YEAR}) * interval '1 second' AS ts
                  FROM generate_series(1, {events}) AS i) s
            {"ORDER BY ts" if time_ordered else ""}""",
        ),
        (
            "won / referred",
            f"""INSERT INTO events (id, type, prospect_id, occurred_at, recorded_at, source, label, confidence, rule,
            url, user_agent, ip, data, campaign, item_key)
            SELECT {events} + i, CASE WHEN i % 5 = 0 THEN 'referred' ELSE 'won' END, 1 + (i * 97) % {prospects},
              timestamptz '{now}' - (i % 700) * interval '1 day', timestamptz '{now}', 'import', 'unknown', 0.5, '',
              '', '', '', jsonb_build_object('amount', 100000 + i, 'term', CASE WHEN i % 3 = 0 THEN 'short'
              ELSE 'long' END), '', ''
            FROM generate_series(1, {max(prospects // 100, 10)}) AS i""",
        ),
        (
            "score_changes",
            f"""INSERT INTO score_changes (id, prospect_id, field, old, new, at, cause, score_before, score_after,
            event_ids, rules, explanation, details)
            SELECT i, 1 + (i * 31) % {prospects}, CASE WHEN i % 3 = 0 THEN 'temperature' ELSE 'rank' END,
              CASE WHEN i % 3 = 0 THEN 'cold' ELSE 'C' END, CASE WHEN i % 3 = 0 THEN 'warm' ELSE 'B' END,
              timestamptz '{now}' - ((i::bigint * 7919) % {YEAR}) * interval '1 second', 'events', 10, 30,
              jsonb_build_array(1 + (i * 3) % {events}, 1 + (i * 3 + 1) % {events}, 1 + (i * 3 + 2) % {events}),
              '["human_click"]'::jsonb, 'C→B: 2 human clicks (+12)', '{{}}'::jsonb
            FROM generate_series(1, {max(prospects // 2, 10)}) AS i""",
        ),
        (
            "handoffs",
            f"""INSERT INTO handoffs (id, prospect_id, reason, owner, state, created_at, notice_attempts, notice_error,
            decided_at, decided_by, verdict_reason)
            SELECT i, 1 + (i * 131) % {prospects}, (ARRAY['rank_A','stage_SQL','inquiry'])[1 + i % 3],
              'owner' || (i % 20), (ARRAY['open','acknowledged','acknowledged','rejected'])[1 + i % 4],
              timestamptz '{now}' - ((i::bigint * 7919) % {YEAR}) * interval '1 second', 0, '',
              CASE WHEN i % 4 > 0 THEN timestamptz '{now}' - ((i::bigint * 7919) % {YEAR}) * interval '1 second'
                + (i % 72) * interval '1 hour' END, '', CASE WHEN i % 4 = 3 THEN 'not a buyer' ELSE '' END
            FROM generate_series(1, {max(prospects // 50, 10)}) AS i""",
        ),
    ]
    # Generated rows are consistent by construction: skip the per-row foreign-key triggers (superuser only; the
    # bench's server is a local trust one) — they are most of the insert time.
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    # The secondary indexes are built after the rows, not row by row during the insert: maintaining seven indexes
    # on events while 10M rows arrive in time order (their ids, and so every index but the time ones, in random
    # order) took 32 minutes on a loaded machine; a sorted build takes a fraction of that.
    later = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename IN ('prospects', 'deliveries', 'events', 'score_changes', 'handoffs') "
            "AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)"
        )
    ).all()
    for name, _ in later:
        conn.execute(text(f'DROP INDEX "{name}"'))
    conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
    for name, sql in steps:
        start = time.perf_counter()
        conn.execute(text(sql))
        print(f"  generated {name}: {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    for _, definition in later:
        conn.execute(text(definition))
    print(f"  indexes ({len(later)}) built: {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    conn.execute(text("ANALYZE prospects, deliveries, events, score_changes, handoffs"))  # this schema's only
    print(f"  ANALYZE: {time.perf_counter() - start:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--url", default=os.environ.get("NURTURE_TEST_POSTGRES_URL", ""))
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the generated schema")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--schema", default="", help="run on this existing schema (e.g. a copy of a generated one) instead"
    )
    parser.add_argument(
        "--random-order",
        action="store_true",
        help="store the events in random time order (default: in time order, as tracking appends them)",
    )
    args = parser.parse_args()
    if not args.url.startswith("postgresql"):
        raise SystemExit("a PostgreSQL URL is needed: --url or NURTURE_TEST_POSTGRES_URL")
    schema = args.schema or f"bench_report_{args.prospects}_{args.events}{'' if args.random_order else '_t'}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        exists = conn.scalar(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema})
        if not exists:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.url}{'&' if '?' in args.url else '?'}options=-csearch_path%3D{schema}"
    engine = db.engine_for(url)
    db.upgrade(engine)  # a kept schema gets the migrations made since (e.g. 0016's index) before it is timed
    if not exists:
        print(f"generating {args.prospects:,} prospects, {args.events:,} events in schema {schema}", flush=True)
        start = time.perf_counter()
        with engine.begin() as conn:
            generate(conn, args.prospects, args.events, not args.random_order)
        print(f"  total generation: {time.perf_counter() - start:.1f} s", flush=True)
    folder = REPO
    (folder / ".bench-report.toml").write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    try:
        config = configuration.load(str(folder / ".bench-report.toml"))
        old = os.getcwd()
        os.chdir(folder)
        try:
            defs = load_campaigns(config)
        finally:
            os.chdir(old)
        with clock.frozen(NOW):
            since = NOW - timedelta(days=28)
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                with engine.connect() as conn:
                    n = conn.scalar(
                        text("SELECT count(*) FROM events WHERE occurred_at >= :a AND occurred_at < :b"),
                        {"a": since, "b": NOW},
                    )
                times.append(time.perf_counter() - start)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"load average {load} on {os.cpu_count()} CPUs (wall times stretch with it; cpu = this process)")
            print(f"baseline: count(*) of the period's {n:,} events: {statistics.median(times):.2f} s")
            for kind in KINDS:
                days = 730 if kind == "conversion" else 28
                params = Params(since=NOW - timedelta(days=days), until=NOW)
                times, cpu = [], []
                for _ in range(args.rounds):
                    start, started = time.perf_counter(), time.process_time()
                    report = build(kind, engine, params, config, defs)
                    to_json(report)  # what `nurture report KIND --json` prints
                    times.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - started)
                rows = {s.key: s.total if s.total is not None else len(s.rows) for s in report.sections}
                verdict = "ok" if statistics.median(times) < 5 else "OVER 5 s"
                print(
                    f"{kind:11} median {statistics.median(times):6.2f} s  worst {max(times):6.2f} s  "
                    f"cpu {statistics.median(cpu):5.2f} s  {verdict}  {rows}"
                )
    finally:
        (folder / ".bench-report.toml").unlink(missing_ok=True)
        db._engines.pop(url, None)
        engine.dispose()
        if not args.keep and not args.schema:  # a schema named by --schema is never dropped
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
