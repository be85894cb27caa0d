"""Benchmark: `nurture send` end to end (plan + render + throttle + SMTP + record) into a local SMTP server.

Servers: postfix's `smtp-sink` (C; Debian package postfix; started here on 127.0.0.1) and aiosmtpd (Python).
For each server the same messages are also sent by a bare smtplib loop over the same number of connections,
pre-rendered, in the same run: the ratio says what nurture's bookkeeping costs. Two bare loops: one process
with a thread per connection (the loop as the issue states it), and the same loop spread over as many processes
as nurture uses (the stricter comparison: the bare loop gets every core too). Each runs just before and just
after nurture; the ratios use the mean of the two.

    python bench/send.py                       # 100,000 prospects, smtp-sink and aiosmtpd
    python bench/send.py --prospects 20000 --servers smtp-sink
    python bench/send.py --rss 1000000         # peak RSS while planning and sending 1M (takes long)

Targets (issue 4): >= 1,000 msg/s end to end into smtp-sink, >= 0.8 of the bare loop, RSS < 300 MB for 1M.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_smtp_sink(port: int) -> subprocess.Popen:
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(exe).exists():
        raise SystemExit("smtp-sink not found: apt-get install postfix")
    proc = subprocess.Popen(
        [exe, "-u", "nobody", "-4", f"127.0.0.1:{port}", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return proc


def start_aiosmtpd(port: int) -> subprocess.Popen:
    code = (
        "import asyncio, sys\n"
        "from aiosmtpd.controller import Controller\n"
        "class H:\n"
        "    async def handle_DATA(self, server, session, envelope):\n"
        "        return '250 OK'\n"
        f"c = Controller(H(), hostname='127.0.0.1', port={port}); c.start()\n"
        "import time\nwhile True: time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_port(port)
    return proc


def workspace(folder: Path, port: int, concurrency: int, processes: int = 1) -> None:
    from nurture.cli.workspace import open_calendar

    (folder / "campaigns").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "templates", folder / "templates", dirs_exist_ok=True)
    text = open_calendar((REPO / "campaigns" / "mfg-insights.toml").read_text(encoding="utf-8"))
    text = text.replace("monthly_cap = 2", "")
    (folder / "campaigns" / "mfg-insights.toml").write_text(text, encoding="utf-8")
    (folder / "nurture.toml").write_text(
        f"""
[database]
url = "sqlite:///{folder / "bench.db"}"
[identity]
organization = "株式会社ベンチ"
from_name = "ベンチ ニュース"
from_address = "news@bench.example.co.jp"
postal_address = "東京都千代田区1-1"
inquiry = "info@bench.example.co.jp"
[delivery]
sender = "smtp"
preflight = false
processes = {processes}
[smtp]
host = "127.0.0.1"
port = {port}
messages_per_connection = 100000
[throttle]
per_second = 100000
default_domain_per_second = 0
concurrency = {concurrency}
[tracking]
base_url = "https://t.bench.example.co.jp"
secret = "bench-secret-0123456789abcdef"
""",
        encoding="utf-8",
    )


def load_prospects(url: str, n: int) -> None:
    from sqlalchemy import insert

    from nurture.store import db
    from nurture.store.models import Prospect

    engine = db.engine_for(url)
    db.upgrade(engine)
    now = datetime.now(UTC)
    base = {
        "company": "株式会社サンプル",
        "title": "部長",
        "industry": "製造業",
        "temperature": "warm",
        "stage": "MQL",
        "rank": "C",
        "score": 0.0,
        "owner": "佐藤",
        "next_action": "",
        "time_zone": "",
        "language": "ja",
        "attributes": {},
        "consent_basis": "business_card",
        "consent_source": "bench",
        "status": "active",
        "status_reason": "",
        "frequency_factor": 1.0,
        "created_at": now,
        "updated_at": now,
        **{
            f"strength_{s}": 0
            for s in ("existing_business", "empathy", "contribution", "multiple_contacts", "decision_maker", "invested")
        },
    }
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            conn.execute(
                insert(Prospect),
                [
                    {**base, "email": f"user{i}@corp{i % 500}.example.co.jp", "name": f"山田 太郎{i}"}
                    for i in range(start, min(n, start + 10_000))
                ],
            )


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_nurture(folder: Path, phases: bool = False) -> dict:
    """One `nurture send` in this process; returns timings and peak RSS.

    Default: ``deliver.send`` as the command runs it (delivery starts while planning goes on). With
    ``phases``: the compliance gate and the plan, then delivery, timed apart (the deliver-only rate)."""
    from nurture import deliver
    from nurture.core import config as configuration
    from nurture.plan.campaigns import load_campaigns
    from nurture.plan.planner import plan
    from nurture.store import db

    cfg = configuration.load(folder / "nurture.toml")
    engine = db.engine_for(cfg.database_url)
    campaigns = load_campaigns(cfg)
    peak = [rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    if phases:
        report = deliver.Report()
        blocked = deliver.compliance_gate(cfg, campaigns)
        allowed = [c for c in campaigns if c.name not in blocked]
        plan(engine, cfg, allowed, report)
        marks["planned"] = time.perf_counter()
        active = {c.name: c for c in allowed}
        if cfg.delivery.processes > 1:
            deliver.deliver_in_processes(cfg, active, report)
        else:
            deliver.Deliverer(engine, cfg, active, report).run()
    else:

        def planned(campaign: str, n: int, so_far: int) -> None:
            marks["planned"] = time.perf_counter()

        def outcome(o: object) -> None:
            marks.setdefault("first_mail", time.perf_counter())

        report = deliver.send(engine, cfg, campaigns, plan_progress=planned, on_outcome=outcome)
    t2 = time.perf_counter()
    stop.set()
    peak[0] = max(peak[0], rss_mb())
    from sqlalchemy import func, select

    from nurture.store.models import Delivery
    from nurture.store.states import DeliveryState

    with engine.connect() as conn:  # what the database says, not what the report counted
        sent_rows, attempts = conn.execute(
            select(func.count(), func.sum(Delivery.attempts)).where(Delivery.state == DeliveryState.SENT)
        ).one()
    return {
        "planned": report.planned,
        "sent": report.sent,
        "failed": sum(report.failed.values()),
        "sent_rows": sent_rows,
        "attempts": attempts,
        "total_s": t2 - t0,
        "plan_s": marks["planned"] - t0,
        "first_mail_s": marks.get("first_mail", t2) - t0,
        "deliver_s": t2 - marks["planned"] if phases else None,
        "peak_rss_mb": peak[0],
    }


def prerender(folder: Path, n: int) -> list[tuple[str, bytes]]:
    """The same mails as nurture sends, built ahead of time by the sending loop's own
    :class:`nurture.deliver.MessageBuilder` (template, tracked links, open pixel, honeypot, headers) and
    ``build_mime``."""
    from types import SimpleNamespace

    from nurture.compose.message import build_mime
    from nurture.core import config as configuration
    from nurture.deliver import MessageBuilder
    from nurture.plan.campaigns import load_campaigns

    cfg = configuration.load(folder / "nurture.toml")
    campaign = load_campaigns(cfg)[0]
    item = campaign.items[0]
    builder = MessageBuilder(cfg)
    out = []
    for i in range(n):
        prospect = SimpleNamespace(
            id=i + 1,
            email=f"user{i}@corp{i % 500}.example.co.jp",
            name=f"山田 太郎{i}",
            company="株式会社サンプル",
            industry="製造業",
            temperature="warm",
            attributes={},
        )
        out.append((prospect.email, build_mime(builder.build(i + 1, prospect, campaign, item))))
    return out


def bare_loop(port: int, messages: list[tuple[str, bytes]], connections: int, processes: int = 1) -> float:
    """smtplib over ``connections`` connections (threads), spread over ``processes`` forked processes,
    pre-rendered messages; seconds from the start signal until the last message is accepted."""
    per_process = connections // processes

    def work(chunk: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for rcpt, data in chunk:
                smtp.sendmail("news@bench.example.co.jp", [rcpt], data)

    def run_threads(share: list[tuple[str, bytes]]) -> None:
        threads = [threading.Thread(target=work, args=(share[i::per_process],)) for i in range(per_process)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    if processes == 1:
        t0 = time.perf_counter()
        run_threads(messages)
        return time.perf_counter() - t0
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()

    def child_process(share: list[tuple[str, bytes]]) -> None:
        go.wait()
        run_threads(share)

    procs = [ctx.Process(target=child_process, args=(messages[i::processes],)) for i in range(processes)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # every child forked and waiting
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    folder = Path(args.child)
    if args.mode in ("nurture", "phases"):
        print(json.dumps(run_nurture(folder, phases=args.mode == "phases")))
    else:
        messages = prerender(folder, args.n)
        seconds = bare_loop(args.port, messages, args.concurrency, args.processes)
        print(json.dumps({"sent": len(messages), "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--servers", nargs="*", default=["smtp-sink", "aiosmtpd"])
    # 4 x 1: on this 2-core machine the fastest way for nurture to use 4 connections (bench/RESULTS.md has
    # the other shapes); the bare loops get the same 4 connections.
    parser.add_argument("--concurrency", type=int, default=1, help="threads (and SMTP connections) per process")
    parser.add_argument("--processes", type=int, default=4, help="sender processes ([delivery] processes)")
    parser.add_argument("--rss", type=int, metavar="N", help="only measure peak RSS for N prospects (smtp-sink)")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="plan, then deliver, timed apart (the deliver-only rate), instead of `nurture send`'s overlapped run",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    servers = ["smtp-sink"] if args.rss else args.servers
    n = args.rss or args.prospects
    if args.rss:
        args.processes = 1  # one process does everything, so its own peak RSS is the whole figure
    print(f"machine: {os.cpu_count()} cores, {platform_cpu()}; python {sys.version.split()[0]}")
    for server in servers:
        port = free_port()
        proc = start_smtp_sink(port) if server == "smtp-sink" else start_aiosmtpd(port)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                workspace(folder, port, args.concurrency, args.processes)
                t0 = time.perf_counter()
                load_prospects(f"sqlite:///{folder / 'bench.db'}", n)
                print(f"[{server}] loaded {n:,} prospects in {time.perf_counter() - t0:.1f} s")
                connections = args.concurrency * args.processes

                def bare(processes: int = 1, port: int = port, connections: int = connections) -> float:
                    # pre-rendered messages are held in memory: a sample of 20,000 is enough
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            tmp,
                            "--mode",
                            "bare",
                            "--n",
                            str(min(n, 20_000)),
                            "--port",
                            str(port),
                            "--concurrency",
                            str(connections),
                            "--processes",
                            str(processes),
                        ],
                        capture_output=True,
                        text=True,
                    )
                    if out.returncode:
                        raise SystemExit(out.stderr)
                    b = json.loads(out.stdout)
                    return b["sent"] / b["seconds"]

                # The bare loops run just before and just after nurture and the ratios use their means: this
                # machine's speed drifts by 10-20 % over minutes, which one baseline run would put in a ratio.
                # Two baselines: the bare loop as the issue states it (one process, threads for the
                # connections), and the same loop spread over as many processes as nurture uses.
                several = args.processes > 1 and not args.rss
                before = None if args.rss else bare()
                before_p = bare(args.processes) if several else None
                out = subprocess.run(
                    [sys.executable, __file__, "--child", tmp, "--mode", "phases" if args.phases else "nurture"],
                    capture_output=True,
                    text=True,
                )
                if out.returncode:
                    raise SystemExit(out.stderr)
                r = json.loads(out.stdout)
                e2e_rate = r["sent"] / r["total_s"]
                deliver_rate = r["sent"] / r["deliver_s"] if r["deliver_s"] else None
                print(f"[{server}] deliveries sent in the database: {r['sent_rows']:,} with {r['attempts']:,} attempts")
                if args.phases:
                    print(
                        f"[{server}] nurture send, plan then deliver: {r['sent']:,} sent, {r['failed']} failed; "
                        f"plan {r['plan_s']:.1f} s ({r['planned'] / r['plan_s']:,.0f}/s), deliver "
                        f"{r['deliver_s']:.1f} s ({deliver_rate:,.0f} msg/s), end to end {e2e_rate:,.0f} msg/s; "
                        f"peak RSS {r['peak_rss_mb']:.0f} MB"
                    )
                else:
                    print(
                        f"[{server}] nurture send: {r['sent']:,} sent, {r['failed']} failed in {r['total_s']:.1f} s "
                        f"= {e2e_rate:,.0f} msg/s end to end; first mail after {r['first_mail_s']:.2f} s, planning "
                        f"done after {r['plan_s']:.1f} s ({r['planned'] / r['plan_s']:,.0f}/s while sending); "
                        f"peak RSS {r['peak_rss_mb']:.0f} MB"
                    )
                if args.rss:
                    continue
                after_p = bare(args.processes) if several else None
                after = bare()
                for label, b0, b1 in (("1 process", before, after), (f"{args.processes} processes", before_p, after_p)):
                    if b0 is None:
                        continue
                    rate = (b0 + b1) / 2
                    deliver = f"nurture deliver / bare = {deliver_rate / rate:.2f}, " if deliver_rate else ""
                    print(
                        f"[{server}] bare smtplib loop, {label}, {connections} connections, pre-rendered: "
                        f"{b0:,.0f} before and {b1:,.0f} msg/s after; {deliver}"
                        f"nurture end to end / bare = {e2e_rate / rate:.2f}"
                    )
        finally:
            proc.terminate()
            proc.wait()


def platform_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
