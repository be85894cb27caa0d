"""Several senders on one PostgreSQL (issue 16, item 2): 1 and 2 `nurture send` processes, each in a folder of
its own with its own nurture.toml (as on separate machines; only the database is shared), into postfix's
smtp-sink, against the bare smtplib loop given the same number of processes, in the same run.

Each sender is `[delivery] processes = 1`, `[throttle] concurrency = 1` (one SMTP connection): the figure is what
one more sender adds, not what one sender's forked workers do (bench/send.py measures that). The run counts from
starting the processes (interpreter start included) until the last one exits; afterwards the database must say
every prospect was sent exactly once (the bench stops with an error otherwise).

    python bench/senders.py --prospects 50000          # needs NURTURE_TEST_POSTGRES_URL (or --url)

Targets: two senders >= 1.7x one where the MTA is not the bottleneck; each >= 0.8 of the bare loop with the same
processes. On a 2-core machine smtp-sink and PostgreSQL take CPU from the same two cores as the senders: the bare
loop's own 1 -> 2 process gain, printed beside, says how much room the machine has at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

# bench/send.py: the same workspace, prospects and bare loop
from send import (
    bare_loop,
    free_port,
    load_prospects,
    platform_cpu,
    prerender,
    start_smtp_sink,
    workspace,
)


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def host_folder(root: Path, name: str, url: str, port: int) -> Path:
    folder = root / name
    workspace(folder, port, concurrency=1, processes=1)
    config = folder / "nurture.toml"
    text_ = config.read_text(encoding="utf-8")
    config.write_text(text_.replace(f'url = "sqlite:///{folder / "bench.db"}"', f'url = "{url}"'), encoding="utf-8")
    return folder


def run_senders(folders: list[Path]) -> tuple[float, list[dict]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nurture", "send", "--json"],
            cwd=f,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    outs = [p.communicate() for p in procs]
    seconds = time.perf_counter() - t0
    for p, (_out, err) in zip(procs, outs, strict=True):
        if p.returncode:
            raise SystemExit(f"nurture send exited {p.returncode}: {err[-2000:]}")
    return seconds, [json.loads(out) for out, _ in outs]


def bare(folder: Path, port: int, n: int, processes: int) -> float:
    messages = prerender(folder, n)
    return len(messages) / bare_loop(port, messages, connections=processes, processes=processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prospects", type=int, default=50_000)
    parser.add_argument("--senders", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--url", default=os.environ.get("NURTURE_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    if not args.url.startswith("postgresql"):
        raise SystemExit("a PostgreSQL URL is needed: --url or NURTURE_TEST_POSTGRES_URL")
    print(f"machine: {os.cpu_count()} cores, {platform_cpu()}; python {sys.version.split()[0]}")
    port = free_port()
    sink = start_smtp_sink(port)
    admin = create_engine(args.url)
    rates: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for k in args.senders:
                schema = f"bench_senders_{uuid.uuid4().hex[:8]}"
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                url = schema_url(args.url, schema)
                try:
                    folders = [host_folder(root / schema, f"host{i}", url, port) for i in range(k)]
                    load_prospects(url, args.prospects)
                    before = bare(folders[0], port, min(args.prospects, 20_000), k)
                    seconds, reports = run_senders(folders)
                    after = bare(folders[0], port, min(args.prospects, 20_000), k)
                    engine = create_engine(url)
                    with engine.connect() as conn:
                        sent, rows, per_prospect = conn.execute(
                            text(
                                "SELECT count(*) FILTER (WHERE state = 'sent'), count(*),"
                                " (SELECT max(c) FROM (SELECT count(*) AS c FROM deliveries GROUP BY prospect_id) x)"
                                " FROM deliveries"
                            )
                        ).one()
                    engine.dispose()
                    if sent != args.prospects or rows != args.prospects or per_prospect != 1:
                        raise SystemExit(f"{k} senders: {sent} sent of {args.prospects}, {rows} rows: lost or doubled")
                    rate = args.prospects / seconds
                    rates[k] = rate
                    base = (before + after) / 2
                    split = ", ".join(f"{r['sent']:,}" for r in reports)
                    print(
                        f"{k} sender(s): {args.prospects:,} sent exactly once in {seconds:.1f} s = {rate:,.0f} msg/s "
                        f"(per sender: {split}); bare loop, {k} process(es): {before:,.0f} before, {after:,.0f} "
                        f"after; nurture / bare = {rate / base:.2f}",
                        flush=True,
                    )
                    rates[-k] = base
                finally:
                    with admin.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        sink.terminate()
        sink.wait()
        admin.dispose()
    if 1 in rates and 2 in rates:
        print(
            f"two senders / one: {rates[2] / rates[1]:.2f}x (target >= 1.7x); "
            f"the bare loop's own 2 / 1 process gain on this machine: {rates[-2] / rates[-1]:.2f}x"
        )


if __name__ == "__main__":
    main()
