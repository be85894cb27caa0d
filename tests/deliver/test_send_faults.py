"""Faults a production sender survives (issue 16, item 4): short, seeded, real processes and servers.

- ``kill -9`` of a sender at random points (while it starts and plans, mid-run), then a rerun after the lease:
  nothing is lost, and repeats stay within the documented window (nurture.deliver.worker: at most
  ``[delivery] record_batch`` mails per worker thread per kill).
- An SMTP server that answers half of its MAIL, RCPT and DATA commands with 4xx: every mail is delivered in the
  end, each once.
- The database connection dropped mid-send (``pg_terminate_backend`` from another connection): the run ends with
  a clear error and no traceback, and the next run finishes the work.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from send_workspace import TUESDAY_10_JST, add_prospects, deliveries, edit, send_api, write_config
from sqlalchemy import create_engine, func, select, text

from nurture.core import config as configuration
from nurture.store import db
from nurture.store.models import Delivery


def _env(ws: Path, now: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_NOW"] = now
    env["NURTURE_CONFIG"] = str(ws / "nurture.toml")
    return env


def _spawn(ws: Path, now: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nurture", "send", "--json"],
        cwd=ws,
        env=_env(ws, now),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _later(iso: str, minutes: float) -> str:
    return (datetime.fromisoformat(iso) + timedelta(minutes=minutes)).isoformat()


def _received(smtp_server) -> Counter[str]:
    """Mails the server got the dot of, by recipient (answered at once, late or never)."""
    with smtp_server.lock:
        return Counter(m.rcpt_tos[0] for m in smtp_server.messages + smtp_server.stalled)


@pytest.mark.parametrize("seed", [16])
def test_kill_9_at_random_points_then_a_rerun_loses_nothing(ws, db_url, smtp_server, seed):
    """Two kills at seeded random points (the first may land before any mail, while planning), then a rerun
    once the dead runs' leases (30 s here) have expired: every prospect has its mail, every delivery is sent,
    and the repeats are at most kills x [throttle] concurrency (2) x [delivery] record_batch."""
    rng = random.Random(seed)
    record_batch = rng.choice([1, 4])
    write_config(ws, db_url, smtp_server.port, record_batch=record_batch)
    n = 30
    add_prospects(ws, [f"k{i}@example.com,K{i},Co,製造業,warm,opt_in" for i in range(n)])
    smtp_server.stall_next(3 * n, 0.03)  # a slow server: each kill lands mid-run
    now, kills = TUESDAY_10_JST, 0
    for point in (rng.randrange(0, n // 3), rng.randrange(n // 3, n - 2)):
        before = sum(_received(smtp_server).values())
        proc = _spawn(ws, now)
        deadline = time.monotonic() + 30
        if point == 0:  # while it starts, loads the campaigns and plans
            time.sleep(rng.uniform(0.3, 1.2))
        while sum(_received(smtp_server).values()) < before + point and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        kills += proc.returncode == -signal.SIGKILL
        now = _later(now, 1)  # past the killed run's leases
    assert kills == 2, "both kills must land before the run ends"
    assert len(_received(smtp_server)) < n, "the kills must land mid-run"
    rerun = _spawn(ws, now)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    counts = _received(smtp_server)
    assert set(counts) == {f"k{i}@example.com" for i in range(n)}, "every prospect got its mail"
    repeats = sum(c - 1 for c in counts.values())
    assert repeats <= kills * 2 * record_batch, f"{repeats} repeats: more than the documented window"
    assert {d.state for d in deliveries(ws)} == {"sent"} and len(deliveries(ws)) == n


FLAKY_CAMPAIGN = """\
name = "flaky"
description = "every day, every hour: only the relay decides when a mail leaves"
language = "ja"
status = "active"
priority = 10

[segment]
industry = { in = ["製造業"] }

[cadence]
interval_days = 14
send_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
send_hours = [0, 24]
time_zone = "Asia/Tokyo"
skip_japanese_holidays = false

[content]
mode = "sequence"

[[content.items]]
key = "flaky-1"
subject = "{{ prospect.company }}様：業界ニュース"
template = "t/news.mjml"
vars = { title = "第1号" }
"""


def test_a_relay_failing_half_its_commands_with_4xx_delivers_everything_in_the_end(
    ws, db_url, smtp_server, monkeypatch
):
    """Half of MAIL FROM, RCPT TO and DATA answered 451 (seeded): each run delivers what gets through and
    defers the rest with backoff; rerun as each retry falls due, everything arrives, each mail once."""
    (ws / "campaigns" / "beta.toml").unlink()
    (ws / "campaigns" / "alpha.toml").write_text(FLAKY_CAMPAIGN, encoding="utf-8")
    write_config(ws, db_url, smtp_server.port, record_batch=4)
    edit(ws / "nurture.toml", "retry_base_seconds = 60", "retry_base_seconds = 1\nmax_attempts = 100")
    edit(ws / "nurture.toml", "error_budget = 5", "error_budget = 100000")  # a flaky relay is not a broken one
    n = 12
    add_prospects(ws, [f"f{i}@example.com,F{i},Co,製造業,warm,opt_in" for i in range(n)])
    smtp_server.flaky(0.5, seed=16)
    now = datetime.fromisoformat(TUESDAY_10_JST)
    runs = 0
    while runs < 200:
        monkeypatch.setenv("NURTURE_NOW", now.isoformat())
        report = send_api(ws)
        runs += 1
        assert not report.failed and not report.paused, (report.failed, report.paused)
        if {d.state for d in deliveries(ws)} == {"sent"}:
            break
        now = _next_retry(ws) or now
    counts = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert set(counts) == {f"f{i}@example.com" for i in range(n)} and set(counts.values()) == {1}
    assert smtp_server.refused > n, "the relay did refuse about half of its commands"
    assert runs > 3, "several runs were needed"


def _next_retry(ws: Path) -> datetime | None:
    """When the last pending retry falls due (every pending mail is due then)."""
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        due = conn.scalar(select(func.max(Delivery.next_attempt_at)).where(Delivery.state == "pending"))
    return None if due is None else due.replace(tzinfo=UTC) if due.tzinfo is None else due


@pytest.mark.postgres
def test_database_connection_dropped_mid_send_is_a_clear_error_and_the_next_run_finishes(ws, db_url, smtp_server):
    """``pg_terminate_backend`` on every connection of a running `nurture send`: it stops with one clear
    ``error:`` line (no traceback) and a non-zero exit; the rerun after the lease sends the rest, repeating at
    most the mails whose outcome was not yet written (concurrency x record_batch)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    name = f"nurture_fault_{uuid.uuid4().hex[:8]}"
    url = f"{db_url}&application_name={name}"
    write_config(ws, url, smtp_server.port, record_batch=1)
    n = 30
    add_prospects(ws, [f"d{i}@example.com,D{i},Co,製造業,warm,opt_in" for i in range(n)])
    smtp_server.stall_next(n, 0.05)
    proc = _spawn(ws, TUESDAY_10_JST)
    deadline = time.monotonic() + 30
    while sum(_received(smtp_server).values()) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    admin = create_engine(os.environ["NURTURE_TEST_POSTGRES_URL"])
    try:
        with admin.connect() as conn:
            killed = conn.scalar(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name},
            )
    finally:
        admin.dispose()
    out, err = proc.communicate(timeout=60)
    assert killed >= 1
    assert proc.returncode not in (0, None) and proc.returncode > 0, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert "error:" in err and "database" in err, err
    assert len(_received(smtp_server)) < n, "the drop must land mid-run"
    rerun = _spawn(ws, _later(TUESDAY_10_JST, 1))
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    counts = _received(smtp_server)
    assert set(counts) == {f"d{i}@example.com" for i in range(n)}
    assert sum(c - 1 for c in counts.values()) <= 2 * 1
    assert {d.state for d in deliveries(ws)} == {"sent"}
    assert json.loads(out)["sent"] >= 1


def test_send_with_json_logs_ends_with_a_summary_line(ws, db_url, smtp_server):
    """`nurture --log-format json send` (what the systemd units run): stderr is JSON lines only, the last one
    the run's figures, for the log collector."""
    if db_url.startswith("postgresql"):
        pytest.skip("the log format does not depend on the database: one subprocess run is enough")
    add_prospects(ws, ["j1@example.com,J1,Co,製造業,warm,opt_in", "j2@example.com,J2,Co,物流,warm,opt_in"])
    proc = subprocess.run(
        [sys.executable, "-m", "nurture", "--log-format", "json", "send"],
        cwd=ws,
        env=_env(ws, TUESDAY_10_JST),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    summary = [e for e in lines if e["message"] == "send finished"]
    assert len(summary) == 1 and summary[0]["sent"] == 2 and summary[0]["failed"] == 0
    assert summary[0]["logger"] == "nurture.send" and summary[0]["level"] == "info"
    assert "sent: 2" in proc.stdout
