"""Benchmark of the tracking server: open-pixel and click hits per second, p99 latency, events stored afterwards,
and the time to handle a signed 1,000-event SendGrid webhook batch — on SQLite and on PostgreSQL.

    /work/venv/bin/python bench/track.py                       # SQLite, and PostgreSQL if $NURTURE_BENCH_POSTGRES_URL
    /work/venv/bin/python bench/track.py --db sqlite --duration 10 --connections 64
    /work/venv/bin/python bench/track.py --db postgres --workers 1,4  # uvicorn workers (nurture serve --workers)

The server is the real thing: ``nurture serve`` in its own process (uvicorn, one worker) on a loopback port,
against a fresh database seeded with 1,000 prospects and deliveries. The load generator is ``wrk`` (Debian
package ``wrk``) over keep-alive connections, cycling through distinct signed URLs; without wrk a slower
Python generator (threads + httpx) is used and says so. After the load the server is stopped with SIGTERM
(a clean shutdown flushes its event buffer) and the stored events are counted: every answered hit must be
there (``lost`` = answered - stored must be 0; ``stored`` may exceed ``answered`` by the requests in flight
when the generator stopped, which the server did answer).

Targets (issue 5): >= 2,000 hits/s, p99 < 50 ms, 0 lost events; a 1,000-event webhook batch < 1 s.
With ``--workers 1,4`` each database is measured once per worker count (the 1-worker row is the baseline of the
same run), and the peak resident memory (VmHWM) of the server's processes is printed: the largest one and the
sum over the parent and its workers (issue 16: < 300 MB).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, insert, select, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.core.config import load
from nurture.store import db
from nurture.store.models import Delivery, Event, Prospect

SECRET = "bench-secret-0123456789abcdef"
PROSPECTS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_pair() -> tuple[object, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def seed(url: str) -> list[tuple[int, int]]:
    """1,000 prospects in companies of three, with one sent delivery each (sent an hour ago, so no hit is 'too
    soon')."""
    engine = db.engine_for(url)
    db.upgrade(engine)
    now = clock.now()
    strengths = {
        f"strength_{n}": 0
        for n in ("existing_business", "empathy", "contribution", "multiple_contacts", "decision_maker", "invested")
    }
    prospects = [
        {
            "email": f"p{i}@example.co.jp",
            "name": f"見込み客 {i}",
            # Companies of three, as in bench/score.py. One company for all made every hit rescore the whole
            # list as colleagues of each other (scoring's "several engaged contacts at one company"), and with
            # several workers every batch locked every prospect (session 7: 4 workers stored slower than 1).
            "company": f"株式会社サンプル{i // 3}",
            "title": "",
            "industry": "製造業",
            "temperature": "warm",
            "stage": "MQL",
            "rank": "B",
            "score": 0.0,
            "owner": "",
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
            **strengths,
        }
        for i in range(PROSPECTS)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Prospect), prospects)
        ids = dict(conn.execute(select(Prospect.email, Prospect.id)).all())
        conn.execute(
            insert(Delivery),
            [
                {
                    "campaign": "bench",
                    "prospect_id": ids[p["email"]],
                    "item_key": "2026-11",
                    "state": "sent",
                    "error": "",
                    "subject": "bench",
                    "sender": "sendgrid",
                    "message_id": f"<{i}@bench>",
                    "provider_message_id": f"m{i}",
                    "attempts": 1,
                    "claimed_by": "",
                    "created_at": now,
                    "updated_at": now,
                    "sent_at": now - timedelta(hours=1),
                }
                for i, p in enumerate(prospects)
            ],
        )
        pairs = [(r.id, r.prospect_id) for r in conn.execute(select(Delivery.id, Delivery.prospect_id))]
    return pairs


def count_events(url: str, source: str | None = None) -> int:
    engine = db.engine_for(url)
    stmt = select(func.count()).select_from(Event)
    if source:
        stmt = stmt.where(Event.source == source)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


class Server:
    """``nurture serve`` in a subprocess with its own nurture.toml."""

    def __init__(self, workdir: Path, url: str, public_key: str, workers: int = 1) -> None:
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (workdir / "nurture.toml").write_text(
            f'[database]\nurl = "{url}"\n\n[tracking]\nsecret = "{SECRET}"\nbase_url = "{self.base}"\n\n'
            f'[sendgrid]\nwebhook_public_key = "{public_key}"\n',
            encoding="utf-8",
        )
        self.workdir = workdir
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nurture", "serve", "--port", str(self.port), "--log-level", "info"]
            + (["--workers", str(self.workers)] if self.workers > 1 else []),
            cwd=self.workdir,
            env=env,
            stderr=self.log.open("wb"),  # uvicorn's lines: one "Application startup complete." per worker
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200 and self._ready():
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("nurture serve did not start")

    def _ready(self) -> bool:
        """Every worker has started (they import and build the app on their own after the first one answers;
        measuring before would time their start-up)."""
        return self.log.read_bytes().count(b"Application startup complete") >= self.workers

    def _tree(self) -> list[int]:
        """The server's pid and its descendants (uvicorn's workers), from /proc."""
        assert self.proc is not None
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo.extend(int(c) for c in task.read_text().split())
        return pids

    def peak_rss_mb(self) -> tuple[float, float]:
        """(largest, sum) of VmHWM over the server's processes, in MB."""
        peaks = []
        for pid in self._tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return (max(peaks, default=0.0), sum(peaks))

    def stop(self) -> float:
        """Stop the server cleanly; the seconds its shutdown took. Shutdown flushes the event buffers, so when the
        load outran the database writer this is the backlog draining (printed: hits answered faster than they
        can be stored are not a sustainable rate)."""
        assert self.proc is not None
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)  # uvicorn's clean shutdown: lifespan end flushes the event buffer
        self.proc.wait(600)
        return time.perf_counter() - start


def run_wrk(paths: list[str], base: str, duration: float, connections: int, threads: int) -> dict:
    """Returns requests, errors (non-2xx/3xx and socket errors), rps, p50/p99 ms."""
    script = Path(tempfile.mkdtemp()) / "paths.lua"
    lua_paths = ",\n".join(json.dumps(p) for p in paths)
    script.write_text(f"""
paths = {{ {lua_paths} }}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %f %f %f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99),
    latency.max))
end
""")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "-s",
            str(script),
            "--timeout",
            "5s",
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(row for row in out.splitlines() if row.startswith("RESULT"))
    requests, micros, errors, p50, p99, pmax = line.split()[1:]
    return {
        "requests": int(requests),
        "errors": int(errors),
        "rps": int(requests) / (int(micros) / 1e6),
        "p50_ms": float(p50) / 1000,
        "p99_ms": float(p99) / 1000,
        "max_ms": float(pmax) / 1000,
    }


def run_python(paths: list[str], base: str, duration: float, connections: int) -> dict:
    """Fallback load generator: ``connections`` threads, each with a keep-alive httpx client."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker(offset: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=5) as c:
            i = offset
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = c.get(paths[i % len(paths)])
                mine.append(time.perf_counter() - t)
                if r.status_code >= 400:
                    with lock:
                        errors[0] += 1
                i += connections
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def drain(base: str, timeout: float = 60) -> None:
    """Wait until the server's event buffer is empty (``/healthz`` reports ``pending_events``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and httpx.get(base + "/healthz", timeout=5).json()["pending_events"]:
        time.sleep(0.05)


def webhook_batch(base: str, private: object, pairs: list[tuple[int, int]]) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    kinds = ("processed", "delivered", "open", "click", "deferred")
    now = int(time.time())
    batch = [
        {
            "email": f"p{i % PROSPECTS}@example.co.jp",
            "timestamp": now - 60 + i % 60,
            "event": kinds[i % len(kinds)],
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": f"m{i % PROSPECTS}.filterdrecv-bench.{i}.0",
            "nurture_delivery_id": str(pairs[i % len(pairs)][0]),
            "useragent": "Mozilla/5.0 (Windows NT 10.0)",
            "ip": "198.51.100.7",
            "url": "https://example.co.jp/a" if kinds[i % len(kinds)] == "click" else "",
        }
        for i in range(1000)
    ]
    body = json.dumps(batch).encode()
    times = []
    with httpx.Client(timeout=30) as c:
        for attempt in range(3):  # first: all new; then replays (all duplicates)
            ts = str(int(time.time()))
            sig = base64.b64encode(private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()  # type: ignore[attr-defined]
            t = time.perf_counter()
            r = c.post(
                base + "/webhooks/sendgrid",
                content=body,
                headers={"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": ts},
            )
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            if attempt == 0:
                assert r.json()["inserted"] == 1000, r.json()
    return {"first_s": times[0], "replay_s": max(times[1:])}


def bench(name: str, url: str, args: argparse.Namespace, workers: int = 1) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"nurture-bench-{name}-"))
    pairs = seed(url)
    private, public = key_pair()
    server = Server(workdir, url, public, workers)
    config = load(workdir / "nurture.toml")
    config = type(config)(
        **{
            **config.__dict__,
            "tracking": type(config.tracking)(**{**config.tracking.__dict__, "base_url": server.base}),
        }
    )
    opens = [tracking.urls_for(config, d, p)["open_pixel"].removeprefix(server.base) for d, p in pairs]
    clicks = [
        tracking.click_url(config, d, k, f"https://example.co.jp/article/{k}").removeprefix(server.base)
        for d, _ in pairs
        for k in range(2)
    ]
    server.start()
    results = {}
    try:
        for label, paths in (("open pixel", opens), ("click", clicks)):
            if shutil.which("wrk") and args.generator == "wrk":
                results[label] = run_wrk(paths, server.base, args.duration, args.connections, args.threads)
            else:
                results[label] = run_python(paths, server.base, args.duration, min(args.connections, 32))
        drain(server.base)  # the webhook is timed on its own, not queued behind the hits' backlog
        results["webhook"] = webhook_batch(server.base, private, pairs)
        results["rss"] = server.peak_rss_mb()
    finally:
        drained = server.stop()
    answered = sum(results[k]["requests"] - results[k]["errors"] for k in ("open pixel", "click"))
    stored = count_events(url, "pixel") + count_events(url, "link")
    results["stored"] = {"answered": answered, "stored": stored, "lost": max(0, answered - stored), "drain_s": drained}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per endpoint (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the CPU to the server)")
    parser.add_argument("--generator", choices=["wrk", "python"], default="wrk")
    parser.add_argument("--workers", default="1", help="uvicorn worker counts to measure, e.g. 1,4 (default 1)")
    parser.add_argument(
        "--prospects", type=int, default=PROSPECTS, help="recipients the hits are spread over (default 1000)"
    )
    args = parser.parse_args()
    globals()["PROSPECTS"] = args.prospects  # read by seed() and the webhook batch
    worker_counts = [int(w) for w in args.workers.split(",")]
    pg = os.environ.get("NURTURE_BENCH_POSTGRES_URL") or os.environ.get("NURTURE_TEST_POSTGRES_URL")
    targets = []
    if args.db in ("sqlite", "both"):
        targets.append(("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='nurture-bench-')}/bench.db", None))
    if args.db in ("postgres", "both"):
        if not pg:
            print("PostgreSQL: skipped (set NURTURE_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1/test)")
        else:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(pg)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in pg else "?"
            targets.append(("postgres", f"{pg}{sep}options=-csearch_path%3D{schema}", (admin, schema)))
    generator = "wrk" if shutil.which("wrk") and args.generator == "wrk" else "python (httpx threads)"
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPU(s), {platform.platform()}, "
        f"Python {platform.python_version()}; load generator: {generator}, {args.connections} connections, "
        f"{args.duration:.0f} s per endpoint"
    )
    ok = True
    for name, url, cleanup in targets:
        for workers in worker_counts:
            if cleanup and workers != worker_counts[0]:  # a fresh schema per run: the events start from zero
                admin, schema = cleanup
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            elif not cleanup and workers != worker_counts[0]:
                url = f"sqlite:///{tempfile.mkdtemp(prefix='nurture-bench-')}/bench.db"
            db.dispose_all()
            try:
                results = bench(name, url, args, workers)
            finally:
                db.dispose_all()
            ok &= report(f"{name}/{workers}w" if len(worker_counts) > 1 else name, results)
        if cleanup:
            admin, schema = cleanup
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    sys.exit(0 if ok else 1)


def report(name: str, r: dict) -> bool:
    """Print one run's lines; whether it met the targets."""
    ok = True
    for label in ("open pixel", "click"):
        x = r[label]
        good = x["rps"] >= 2000 and x["p99_ms"] < 50 and x["errors"] == 0
        ok &= good
        print(
            f"{name:<9} {label:<11} {x['rps']:8,.0f} hits/s  p50 {x['p50_ms']:6.2f} ms  p99 {x['p99_ms']:6.2f} ms"
            f"  max {x['max_ms']:7.2f} ms  requests {x['requests']:,}  errors {x['errors']}"
            f"  {'OK' if good else 'MISSED TARGET'}"
        )
    s = r["stored"]
    ok &= s["lost"] == 0
    print(
        f"{name:<9} events      answered {s['answered']:,}  stored {s['stored']:,}  lost {s['lost']}"
        f"  {'OK' if s['lost'] == 0 else 'LOST EVENTS'}; shutdown (buffers flushed) took {s['drain_s']:.1f} s"
    )
    w = r["webhook"]
    ok &= w["first_s"] < 1
    print(
        f"{name:<9} webhook     1,000-event signed batch {w['first_s'] * 1000:6.0f} ms (new), "
        f"{w['replay_s'] * 1000:6.0f} ms (replayed, all duplicates)  {'OK' if w['first_s'] < 1 else 'SLOW'}"
    )
    largest, total = r["rss"]
    print(f"{name:<9} memory      peak RSS {largest:6.0f} MB largest process, {total:6.0f} MB all processes")
    return ok


if __name__ == "__main__":
    main()
