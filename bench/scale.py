"""The scale-out figures in one run (issue 16, item 3): every PostgreSQL benchmark at the size given, one after
the other on the same machine and server, each beside its own bare baseline, with its peak RSS.

    python bench/scale.py                                  # 1M prospects / 10M events (needs PostgreSQL)
    python bench/scale.py --prospects 100000 --only plan senders
    python bench/scale.py --list                           # the steps and the commands they run

Steps (each is a bench script of its own, runnable alone; this runs them and collects what they print):

- ``reports``: bench/report.py generates the history inside PostgreSQL once (``INSERT ... SELECT
  generate_series``: the rows are made by the server, nothing crosses the wire, faster than COPY from a client)
  and times each report against ``count(*)`` of the period's events;
- ``plan``: bench/plan.py, the no-op run (nobody due) and planning everyone, indexed planner beside the full scan;
- ``score``: bench/score.py, the full recompute and one event applied online beside recording without scoring;
- ``senders``: bench/senders.py, 1 and 2 `nurture send` processes into smtp-sink beside the bare smtplib loop with
  the same processes;
- ``track``: bench/track.py, tracking hits/s with 1 and 4 uvicorn workers (wrk).

Peak RSS is the largest resident set of the step's process tree as ``/usr/bin/time`` reports it for the step's
own process (each bench prints the RSS of the processes it starts where that matters; target < 300 MB).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def steps(args: argparse.Namespace) -> dict[str, list[str]]:
    n, events, url = args.prospects, args.prospects * 10, args.url
    return {
        "reports": ["report.py", "--prospects", str(n), "--events", str(events), "--keep", "--url", url],
        "plan": ["plan.py", "--prospects", str(n), "--postgres", url],
        "score": ["score.py", "--database", url, "--prospects", str(n), "--events", str(events)],
        "senders": ["senders.py", "--prospects", str(min(n, args.send)), "--url", url],
        "track": ["track.py", "--db", "postgres", "--workers", "1,4", "--duration", "10"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prospects", type=int, default=1_000_000, help="prospects (events: ten times as many)")
    parser.add_argument("--send", type=int, default=100_000, help="prospects mailed by the senders step")
    parser.add_argument("--url", default=os.environ.get("NURTURE_TEST_POSTGRES_URL", ""))
    parser.add_argument("--only", nargs="*", help="run only these steps")
    parser.add_argument("--list", action="store_true", help="print the steps and their commands, run nothing")
    args = parser.parse_args()
    plan = steps(args)
    chosen = args.only or list(plan)
    unknown = sorted(set(chosen) - set(plan))
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)}: choose from {', '.join(plan)}")
    if args.list:
        for name in chosen:
            print(f"{name:8} python bench/{' '.join(plan[name])}")
        return
    if not args.url.startswith("postgresql"):
        raise SystemExit("a PostgreSQL URL is needed: --url or NURTURE_TEST_POSTGRES_URL")
    timer = shutil.which("time") or "/usr/bin/time"
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"python {sys.version.split()[0]}; load {os.getloadavg()[0]:.1f}; {args.prospects:,} prospects",
        flush=True,
    )
    summary = []
    for name in chosen:
        command = [timer, "-f", "peak RSS %M kB, %e s wall, %U s user", sys.executable, str(BENCH / plan[name][0])]
        command += plan[name][1:]
        print(f"\n== {name}: python bench/{' '.join(plan[name])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=BENCH.parent, stderr=subprocess.PIPE, text=True)
        tail = done.stderr.strip().splitlines()
        usage = next((line for line in reversed(tail) if line.startswith("peak RSS")), "")
        if done.returncode:
            print("\n".join(tail[-20:]), file=sys.stderr)
        print(f"-- {name}: exit {done.returncode}; {usage}; load {os.getloadavg()[0]:.1f}", flush=True)
        summary.append((name, done.returncode, time.perf_counter() - start, usage))
    print("\nsummary:")
    for name, code, seconds, usage in summary:
        print(f"  {name:8} {'ok' if code == 0 else f'FAILED ({code})':12} {seconds:7.0f} s   {usage}")


if __name__ == "__main__":
    main()
