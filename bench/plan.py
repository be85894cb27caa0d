"""Benchmark: a planning run costs what is due (issue 16, item 1). The indexed planner (nurture.plan.due) beside
the full scan, on the same prospects in the same run.

Generates N prospects inside the database (``INSERT ... SELECT``: generate_series on PostgreSQL, a recursive CTE on
SQLite), all selected by bench/send.py's campaign, then measures with a fixed clock:

1. planning everyone, all due: the full scan (baseline), then, the deliveries removed, the indexed planner (which
   also stores every prospect's next_plan_at);
2. the senders' work stands in: every pending row is marked sent;
3. the no-op run, nobody due: the indexed planner, then the full scan (baseline);
4. the same no-op as ``nurture send`` in a fresh process (what cron pays), beside ``nurture send`` on an empty
   database (Python start, imports, campaign check: the part that does not depend on the prospects).

Wall seconds and this process's CPU seconds are printed for each, with the load average.

    python bench/plan.py --prospects 100000                                  # SQLite
    python bench/plan.py --prospects 1000000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

On PostgreSQL the data lives in schema ``bench_plan_<N>`` (dropped at the end unless ``--keep``).
Targets: no-op < 1 s at 1M, planning 1M all due < 10 s, both on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: A Tuesday 10:00 in Tokyo, inside the bench campaign's send days and hours.
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)

_COLUMNS = (
    "email, name, company, title, industry, temperature, stage, rank, score, fit_score, engagement_score, "
    "company_key, owner, next_action, time_zone, language, attributes, strength_existing_business, strength_empathy, "
    "strength_contribution, strength_multiple_contacts, strength_decision_maker, strength_invested, consent_basis, "
    "consent_source, status, status_reason, postal_code, prefecture, address_line, building, department, "
    "postal_status, frequency_factor, created_at, updated_at"
)


def _values(i: str, created: str) -> str:
    return (
        f"'user' || {i} || '@corp' || ({i} % 500) || '.example.co.jp', '山田 ' || {i}, '株式会社サンプル', '部長', "
        f"'製造業', 'warm', 'MQL', 'C', 0, 0, 0, '', '佐藤', '', '', 'ja', '{{}}', 0, 0, 0, 0, 0, 0, "
        f"'business_card', 'bench', 'active', '', '', '', '', '', '', '', 1.0, {created}, {created}"
    )


def generate(engine, n: int) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            created = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
            conn.execute(
                text(
                    f"INSERT INTO prospects ({_COLUMNS}) SELECT {_values('g', created)} FROM generate_series(0, :n) g"
                ),
                {"n": n - 1},
            )
            conn.execute(text("ANALYZE prospects"))
        else:
            created = "'2026-01-01 00:00:00.000000'"
            conn.execute(
                text(
                    "WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g < :last) "
                    f"INSERT INTO prospects ({_COLUMNS}) SELECT {_values('g', created)} FROM s"
                ),
                {"last": n - 1},
            )


def timed(label: str, fn, baseline: dict | None = None) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    out = {"what": label, "wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}
    if isinstance(result, int):
        out["planned"] = result
    print(out, flush=True)
    return out


class Sink:
    """The planner's report, reduced to what the bench prints."""

    def __init__(self) -> None:
        self.decided = 0
        self.not_due = 0

    def tally(self, decision, keep: bool = False) -> None:
        self.decided += 1

    def note(self, text: str) -> None:
        pass

    def campaign_paused(self, campaign: str, reason: str) -> None:
        pass

    def waiting(self, count: int) -> None:
        self.not_due += count


def explain(engine, postgres: bool) -> None:
    """The plan of the no-op run's one query (PostgreSQL)."""
    from sqlalchemy import text

    if not postgres:
        return
    with engine.connect() as conn:
        lines = conn.execute(
            text(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM prospects WHERE next_plan_at IS NULL OR next_plan_at <= :now"
            ),
            {"now": NOW},
        ).scalars()
        print("\n".join(lines))


def cli_send(folder: Path) -> float:
    """Wall seconds of ``nurture send`` in a fresh process (clock fixed at NOW)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NURTURE_NOW": NOW.isoformat()}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nurture", "send", "--json"], cwd=folder, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nurture send failed:\n{proc.stdout}\n{proc.stderr}")
    return round(took, 3)


#: The triggers of migration 0014 on the tables written while sending and tracking.
TRIGGERS = (("prospects", "trg_prospects_plan_stale"), ("deliveries", "trg_deliveries_plan_stale"))


def trigger_cost(engine, n: int) -> None:
    """What the triggers add to the writes of tracking (scoring moves score and temperature) and sending (pending
    -> sent, pending -> failed): the same statements over ``n`` rows with the triggers, then without, each on
    rows whose next_plan_at is set (the trigger's dearest case: it has a bound to reset)."""
    from sqlalchemy import bindparam, text, update

    from nurture.store.models import Delivery, Prospect

    postgresql = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        ids = list(conn.scalars(text("SELECT id FROM prospects ORDER BY id LIMIT :n"), {"n": n}))
        saved = {
            name: conn.scalar(
                text(
                    "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = :t AND tgrelid = CAST(:r AS regclass)"
                    if postgresql
                    else "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :t"
                ),
                {"t": name, "r": table},
            )
            for table, name in TRIGGERS
        }
    score = update(Prospect).where(Prospect.id == bindparam("pid")).values(score=bindparam("s"), temperature="hot")
    state = update(Delivery).where(Delivery.prospect_id == bindparam("pid")).values(state=bindparam("st"))
    for label in ("with triggers", "without triggers", "with triggers", "without triggers"):  # twice, interleaved
        for what, stmt, params in (
            ("tracking: score + temperature", score, [{"pid": i, "s": 50.0} for i in ids]),
            ("sending: pending -> sent", state, [{"pid": i, "st": "sent"} for i in ids]),
            ("sending: sent -> failed", state, [{"pid": i, "st": "failed"} for i in ids]),
        ):
            with engine.begin() as conn:  # the state before: bounds stored, cold prospects, pending mail
                conn.execute(
                    update(Prospect).where(Prospect.id <= ids[-1]).values(next_plan_at=NOW, temperature="warm")
                )
                if what.startswith("sending: pending"):
                    conn.execute(update(Delivery).where(Delivery.prospect_id <= ids[-1]).values(state="pending"))
            timed(f"{what}, {n} rows, {label}", lambda stmt=stmt, params=params: _run(engine, stmt, params))
        with engine.begin() as conn:
            for table, name in TRIGGERS:
                if label == "with triggers":
                    conn.execute(text(f"DROP TRIGGER {name}" + (f" ON {table}" if postgresql else "")))
                else:
                    conn.execute(text(saved[name]))


def _run(engine, stmt, params) -> None:
    with engine.begin() as conn:
        conn.execute(stmt, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (default: a SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the indexed all-due run into FILE")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the full scans (they take minutes at 1M; see 100k)"
    )
    parser.add_argument(
        "--noop-only",
        action="store_true",
        help="only the no-op run: the bounds a run would store are written with one UPDATE (now + 14 days)",
    )
    args = parser.parse_args()

    import send as sendbench
    from sqlalchemy import create_engine, text, update

    from nurture.core import clock
    from nurture.core import config as configuration
    from nurture.plan.campaigns import load_campaigns
    from nurture.plan.planner import plan
    from nurture.store import db
    from nurture.store.models import Delivery, Prospect

    print({"load": os.getloadavg(), "prospects": args.prospects, "db": "postgresql" if args.postgres else "sqlite"})
    folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    sendbench.workspace(folder, port=sendbench.free_port(), concurrency=1)
    schema = f"bench_plan_{args.prospects}"
    admin = None
    if args.postgres:
        admin = create_engine(args.postgres)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{folder / 'bench.db'}"
    config_file = folder / "nurture.toml"
    # send.workspace's rates are above today's config bounds; a planning bench sends nothing: the memory sender.
    config_file.write_text(
        config_file.read_text(encoding="utf-8")
        .replace(f'url = "sqlite:///{folder / "bench.db"}"', f'url = "{url}"')
        .replace("= 1000000", "= 100000")
        .replace('sender = "smtp"', 'sender = "memory"')
    )
    cfg = configuration.load(config_file)
    campaigns = load_campaigns(cfg)
    engine = db.engine_for(url)
    try:
        db.upgrade(engine)
        empty = cli_send(folder)
        timed("generate prospects", lambda: generate(engine, args.prospects))

        def analyze() -> None:
            if args.postgres:
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE prospects"))
                    conn.execute(text("ANALYZE deliveries"))

        if args.noop_only:
            from nurture.plan import due

            with clock.frozen(NOW), engine.begin() as conn:
                due.start(conn, cfg, campaigns, NOW)
                conn.execute(update(Prospect).values(next_plan_at=NOW + timedelta(days=14)))
            analyze()
            for when in ("right after the bounds were written", "after VACUUM (autovacuum's work)"):
                sink = Sink()
                with clock.frozen(NOW):
                    timed(f"nobody due: indexed, {when}", lambda sink=sink: plan(engine, cfg, campaigns, sink))
                print({"not_due": sink.not_due, "decided": sink.decided})
                explain(engine, args.postgres)
                if args.postgres:
                    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                        conn.execute(text("VACUUM ANALYZE prospects"))
            return
        with clock.frozen(NOW):
            if not args.no_baseline:
                timed("all due: full scan (baseline)", lambda: plan(engine, cfg, campaigns, Sink(), full_scan=True))
            with engine.begin() as conn:  # TRUNCATE on PostgreSQL: a DELETE would leave 1M dead rows to scan
                conn.execute(text("TRUNCATE deliveries CASCADE") if args.postgres else Delivery.__table__.delete())
                conn.execute(update(Prospect).values(next_plan_at=None))
            if args.postgres:
                # The reset above rewrote every prospect row; a real first run follows an import, whose rows have
                # no dead versions behind them. Without this VACUUM the indexed run took 18.7 s instead of 8.8 s
                # at 100k (session 7), measuring the bench's own UPDATE.
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM prospects"))
            analyze()
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            timed("all due: indexed", lambda: plan(engine, cfg, campaigns, Sink()))
            if args.profile:
                profiler.disable()
                profiler.dump_stats(args.profile)
            with engine.begin() as conn:
                conn.execute(update(Delivery).values(state="sent", sent_at=NOW))
            analyze()
            sink = Sink()
            timed("nobody due: indexed", lambda: plan(engine, cfg, campaigns, sink))
            print({"not_due": sink.not_due, "decided": sink.decided})
            explain(engine, args.postgres)
            if not args.no_baseline:
                timed("nobody due: full scan (baseline)", lambda: plan(engine, cfg, campaigns, Sink(), full_scan=True))
        print({"what": "nobody due: `nurture send` in a new process", "wall_s": cli_send(folder)})
        trigger_cost(engine, min(10_000, args.prospects))
        print({"what": "`nurture send` on an empty database (fixed cost)", "wall_s": empty})
    finally:
        engine.dispose()
        if admin is not None:
            if not args.keep:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
