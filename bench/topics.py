"""Benchmark: what a campaign ``topic`` costs segment selection (issue 13), against the same segment without it.

Fills a fresh database like ``bench/segments.py`` (N prospects), then gives 30% of them topic choices (one or two
of three topics, from the sign-up form) and 5% a refusal of the benchmarked topic (the preferences page). Streams
the sample segment's ids without a topic (the baseline) and with ``topic = "製造業DX"`` in the same run. Prints
figures; asserts nothing.

    python bench/topics.py                         # 200,000 prospects, SQLite file in a temp folder
    python bench/topics.py --count 200000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
from pathlib import Path

from sqlalchemy import insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segments as base  # bench/ is not a package: its folder is on sys.path above

from nurture.core.tomlschema import Problems
from nurture.plan.segments import parse_segment, segment_select
from nurture.store import db
from nurture.store.models import Prospect, ProspectTopic

TOPICS = ["製造業DX", "セミナー案内", "補助金"]


def add_topics(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(11)
    rows = []
    for pid in range(1, count + 1):
        roll = rnd.random()
        if roll < 0.30:
            for topic in rnd.sample(TOPICS, rnd.choice((1, 2))):
                rows.append(dict(prospect_id=pid, topic=topic, subscribed=True, changed_at=base.NOW, source="bench"))
        elif roll < 0.35:
            rows.append(dict(prospect_id=pid, topic=TOPICS[0], subscribed=False, changed_at=base.NOW, source="bench"))
    with engine.begin() as conn:
        for first in range(0, len(rows), 20_000):
            conn.execute(insert(ProspectTopic), rows[first : first + 20_000])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
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
        segment = parse_segment(base.SEGMENT, problems)
        problems.raise_if_any()
        print(f"database: {engine.dialect.name}, prospects: {args.count:,}")
        print(f"fill: {base.fill(engine, args.count):.1f} s")
        add_topics(engine, args.count)
        with_topic = dataclasses.replace(segment, topic=TOPICS[0])
        for label, seg in (("segment, no topic (baseline)", segment), (f"segment, topic {TOPICS[0]}", with_topic)):
            best = min((base.stream(engine, segment_select(seg, base.NOW)) for _ in range(3)), key=lambda r: r[1])
            n, seconds = best
            print(f"{label:<34} {n:>9,} ids in {seconds:6.2f} s  ({args.count / seconds:>12,.0f} prospects/s scanned)")
        db.dispose_all()


if __name__ == "__main__":
    main()
