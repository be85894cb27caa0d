"""Benchmark: `nurture prospects export` (CSV in CP932 and UTF-8, and .xlsx) of N prospects from SQLite, against a
bare baseline in the same run: one SELECT of the same table written with csv.writer, no defusing, no tags, no
encoding checks. Also the suppression-list load (`nurture suppressions import`) of N plain addresses.

    python bench/export.py                # 20,000 prospects
    python bench/export.py --rows 100000
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

HERE = Path(__file__).parent


def _generator():  # bench/import.py's file generator, so both benches load the same list
    spec = importlib.util.spec_from_file_location("bench_import", HERE / "import.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()

    from nurture.people.export import export_prospects
    from nurture.people.operator import import_suppressions
    from nurture.people.prospects import import_file
    from nurture.store import db
    from nurture.store.models import Prospect

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "list.csv"
        _generator()(source, args.rows, "cp932")
        engine = db.engine_for(f"sqlite:///{root / 'bench.db'}")
        db.upgrade(engine)
        import_file(engine, source)

        start = time.perf_counter()
        with engine.connect() as conn, (root / "bare.csv").open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            for row in conn.execute(select(Prospect.__table__).order_by(Prospect.email)):
                writer.writerow(row)
        bare = time.perf_counter() - start
        print(f"{args.rows:>8,} prospects, bare SELECT + csv.writer: {bare:.2f} s ({args.rows / bare:,.0f} rows/s)")

        for fmt, encoding in (("csv", "utf-8-sig"), ("csv", "cp932"), ("xlsx", "utf-8-sig")):
            out = root / f"out-{encoding}.{fmt}"
            start = time.perf_counter()
            summary = export_prospects(engine, out, format=fmt, encoding=encoding)
            took = time.perf_counter() - start
            print(
                f"{summary.rows:>8,} prospects, export {fmt} {encoding if fmt == 'csv' else ''}: {took:.2f} s "
                f"({summary.rows / took:,.0f} rows/s, {took / bare:.1f}x bare), {out.stat().st_size / 1e6:.1f} MB"
            )

        start = time.perf_counter()
        summary_rt = import_file(engine, root / "out-cp932.csv", dry_run=True)
        took = time.perf_counter() - start
        print(
            f"{args.rows:>8,} rows re-imported (dry run): {took:.2f} s, unchanged {summary_rt.unchanged:,}, "
            f"updated {summary_rt.updated:,}"
        )

        plain = root / "unsubscribes.txt"
        plain.write_text("".join(f"gone{i}@example{i % 97}.jp\n" for i in range(args.rows)), encoding="utf-8")
        start = time.perf_counter()
        result, _ = import_suppressions(engine, plain)
        took = time.perf_counter() - start
        print(f"{result.new:>8,} addresses loaded by suppressions import: {took:.2f} s ({result.new / took:,.0f}/s)")


if __name__ == "__main__":
    main()
