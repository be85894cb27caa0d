"""Benchmark: what sharing and "explain everyone" cost the planner (issue 18).

Fills a fresh database with N generated prospects (bench/segments.py's generator: six industries, four
temperatures), writes three overlapping campaigns (製造業, 製造業 + manufacturing, everyone warm or cold; one with a
fallback), then times, in the same run:

- a dry-run plan with ``[cadence] share = "priority"`` (the baseline: no look at the other campaigns),
- the same with ``"round-robin"`` and ``"weights"`` (each batch also loads every other campaign's membership),
- ``nurture.plan.silence.silent_prospects`` over everyone (what ``send --dry-run`` adds).

Prints figures; asserts nothing.

    python bench/cadence.py                     # 50,000 prospects, SQLite file in a temp folder
    python bench/cadence.py --count 20000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from segments import NOW, fill

from nurture.core import clock
from nurture.core.config import Config
from nurture.deliver.report import Report
from nurture.plan.campaigns import load_campaign
from nurture.plan.planner import plan
from nurture.plan.silence import silent_prospects
from nurture.store import db

CAMPAIGN = """name = "{name}"
language = "ja"
priority = {priority}
{extra}
[segment]
{segment}
[cadence]
send_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
send_hours = [0, 24]
[content]
mode = "pool"
[[content.items]]
key = "{name}-1"
subject = "s"
template = "t.mjml"
[[content.items]]
key = "{name}-2"
subject = "s"
template = "t.mjml"
"""


def campaigns(folder: Path, config: Config) -> list:  # type: ignore[type-arg]
    (folder / "templates").mkdir()
    (folder / "templates" / "t.mjml").write_text("<mjml></mjml>", encoding="utf-8")
    specs = [
        ("mfg", 10, 'industry = { in = ["製造業"] }', 'fallback = "all"'),
        ("mfg-en", 5, 'industry = { in = ["製造業", "manufacturing"] }', ""),
        ("all", 1, 'temperature = { in = ["warm", "cold"] }', ""),
    ]
    out = []
    for name, priority, segment, extra in specs:
        path = folder / f"{name}.toml"
        path.write_text(CAMPAIGN.format(name=name, priority=priority, segment=segment, extra=extra), encoding="utf-8")
        out.append(load_campaign(path, config))
    return out


def timed(label: str, fn, baseline: float | None = None) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    n = fn()
    took = time.perf_counter() - start
    extra = f"  ({took / baseline:.2f}x the baseline)" if baseline else ""
    print(f"{label:42} {took:7.2f} s  {n:>9,}{extra}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.database or f"sqlite:///{folder / 'bench.db'}"
        engine = db.engine_for(url)
        db.upgrade(engine)
        fill(engine, args.count)
        base = dataclasses.replace(Config(), root=folder)
        chosen = campaigns(folder, base)
        print(f"{args.count:,} prospects, 3 campaigns, {url.split(':')[0]}; figures: seconds, decisions or rows")
        with clock.frozen(NOW):

            def run(share: str):  # type: ignore[no-untyped-def]
                config = dataclasses.replace(base, cadence=dataclasses.replace(base.cadence, share=share))
                report = Report(dry_run=True)
                plan(engine, config, chosen, report, dry_run=True)
                return sum(report.deferred.values()) + sum(report.skipped.values()) + report.planned

            baseline = timed("dry-run plan, share = priority (baseline)", lambda: run("priority"))
            timed("dry-run plan, share = round-robin", lambda: run("round-robin"), baseline)
            timed("dry-run plan, share = weights", lambda: run("weights"), baseline)

            def silence() -> int:
                with engine.connect() as conn:
                    return sum(1 for _ in silent_prospects(conn, chosen, base, NOW))

            timed("silent_prospects (everyone accounted for)", silence, baseline)


if __name__ == "__main__":
    main()
