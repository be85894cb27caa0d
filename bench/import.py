"""Benchmark: `nurture prospects import` of generated rows into a fresh SQLite (or --database URL) database.

Prints rows/s and the peak RSS of the importing process for two file sizes, so memory growth with the file
shows. Each size runs in its own subprocess (peak RSS is per process). Target (issue 2): >= 20,000 rows/s on
SQLite, memory that does not grow with the file.

    python bench/import.py                 # 20k and 100k rows, SQLite
    python bench/import.py --rows 100000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INDUSTRIES = ["製造業", "物流", "建設業", "小売業", "IT", "医療", "manufacturing", "logistics"]
TEMPS = ["ホット", "ウォーム", "コールド", "hot", "warm", "cold"]
CONSENT = ["名刺交換", "オプトイン", "", "existing_relationship"]


def generate(path: Path, rows: int, encoding: str) -> None:
    rnd = random.Random(42)
    with path.open("w", encoding=encoding, newline="") as fh:
        fh.write("メールアドレス,氏名,会社名,役職,業種,温度感,最終接触日,次回アクション,担当者,同意,タグ,備考\r\n")
        for i in range(rows):
            fh.write(
                f"user{i}@example{i % 97}.co.jp,山田 太郎{i},株式会社サンプル{i % 5000},部長,"
                f"{rnd.choice(INDUSTRIES)},{rnd.choice(TEMPS)},2026/{rnd.randint(1, 12)}/{rnd.randint(1, 28)},"
                f",佐藤,{rnd.choice(CONSENT)},展示会2026,メモ{i}\r\n"
            )


def child(path: str, url: str) -> None:
    from nurture.people.prospects import import_file
    from nurture.store import db

    engine = db.engine_for(url)
    db.upgrade(engine)
    start = time.perf_counter()
    summary = import_file(engine, path)
    elapsed = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"created": summary.created, "rejected": len(summary.rejected), "seconds": elapsed, "rss_mb": rss_mb}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file per run)")
    parser.add_argument("--encoding", default="cp932")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            csv_path = Path(tmp) / f"p{n}.csv"
            generate(csv_path, n, args.encoding)
            url = args.database or f"sqlite:///{Path(tmp) / f'bench{n}.db'}"
            if args.database and url.startswith("postgresql"):
                from sqlalchemy import create_engine, text

                with create_engine(url).begin() as conn:
                    conn.execute(
                        text(
                            "DROP TABLE IF EXISTS prospect_tags, events, deliveries, campaign_states, "
                            "suppressions, prospects, alembic_version CASCADE"
                        )
                    )
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(csv_path), url], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout)
            rate = result["created"] / result["seconds"]
            print(
                f"{n:>8,} rows ({args.encoding}, {csv_path.stat().st_size / 1e6:.1f} MB) into "
                f"{url.split(':')[0]}: {result['seconds']:.2f} s, {rate:,.0f} rows/s, peak RSS "
                f"{result['rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
