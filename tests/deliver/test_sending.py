"""`nurture send` end to end: real SMTP (aiosmtpd) and SendGrid stand-in servers, a fixed clock, both databases.

The workspace (``ws``) and its helpers are in send_workspace.py; the times used are explained there.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from send_workspace import TUESDAY_10_JST, add_prospects, at, deliveries, send, send_api, write_config
from sqlalchemy import select

from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.store import db
from nurture.store.models import Prospect, Suppression


def test_send_delivers_exactly_one_mail_per_due_prospect(ws, runner, smtp_server):
    add_prospects(
        ws,
        [
            "a@example.com,山田 太郎,山田製作所,製造業,warm,名刺交換",
            "b@example.com,鈴木 花子,鈴木化成,製造業,cold,opt_in",
            "c@example.com,No Consent,X,製造業,cold,",
            "d@example.jp,髙橋 次郎,㈱髙橋金属,製造業,hot,existing_relationship",
        ],
    )
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["sent"] == 3 and report["skipped"] == {"no consent on record": 1}
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["a@example.com", "b@example.com", "d@example.jp"]
    for received in smtp_server.messages:
        msg = email.message_from_bytes(received.data, policy=email.policy.default)
        for header in ("From", "To", "Subject", "Date", "Message-ID"):
            assert len(msg.get_all(header)) == 1, header
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "<https://t.example.co.jp/u/" in msg["List-Unsubscribe"]
        assert msg["List-Id"] == "<alpha.example.co.jp>"
        assert msg.get_content_type() == "multipart/alternative"
        assert "様：業界ニュース第1号" in str(msg["Subject"])
        html = msg.get_body(("html",)).get_content()
        assert "https://t.example.co.jp/c/" in html and "https://example.org/report" not in html  # tracked
        assert "https://t.example.co.jp/o/" in html  # open pixel
        assert b"\r\n" in received.data
    subject = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)["Subject"]
    assert subject.endswith("様：業界ニュース第1号")
    # Each delivery carries its campaign's language: the tracking server's pages speak it without the campaign file.
    assert {d.language for d in deliveries(ws)} == {"ja"}
    # Run again at once: nobody is due, nobody is looked at (nurture.plan.due); nothing is sent twice.
    result, report = send(runner)
    assert report["sent"] == 0 and len(smtp_server.messages) == 3
    assert report["skipped"] == {} and report["not_due"] == 4
    dry = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    assert "not due until 2026-12-08 10:00" in dry
    # Two weeks later the next item of the sequence goes out.
    at(monkeypatch := pytest.MonkeyPatch(), "2026-12-08T01:00:00+00:00")
    try:
        result, report = send(runner)
    finally:
        monkeypatch.undo()
    assert report["sent"] == 3, report
    assert sorted(d.item_key for d in deliveries(ws) if d.state == "sent") == ["alpha-1"] * 3 + ["alpha-2"] * 3


def test_dry_run_lists_reasons_and_writes_nothing(ws, runner, smtp_server):
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "c@example.com,C,Co,製造業,cold,"])
    result = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "would send  alpha" in result.output and "a@example.com" in result.output
    assert "no consent on record" in result.output
    assert deliveries(ws) == [] and smtp_server.messages == []


def test_cadence_across_two_campaigns_defers_never_drops(ws, runner, smtp_server, monkeypatch):
    add_prospects(ws, ["both@example.com,Both,Co,both,warm,opt_in"])
    result, report = send(runner)
    assert report["sent"] == 1 and deliveries(ws)[0].campaign == "alpha"  # higher priority first
    assert list(report["deferred"]) == ["cadence gap"]
    at(monkeypatch, "2026-12-01T01:00:00+00:00")  # 7 days later: still inside the 10-day global gap
    result, report = send(runner)  # not looked at: nothing can be due before the gap ends (nurture.plan.due)
    assert report["sent"] == 0 and report["deferred"] == {} and report["not_due"] == 1
    assert "cadence gap" in runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    at(monkeypatch, "2026-12-04T01:00:00+00:00")  # 10 days later (Friday): beta's turn; alpha not due (14 d)
    result, report = send(runner)
    assert report["sent"] == 1
    assert [(d.campaign, d.item_key) for d in deliveries(ws)] == [("alpha", "alpha-1"), ("beta", "beta-1")]
    assert len(smtp_server.messages) == 2


def test_quiet_hours_weekends_and_japanese_holidays(ws, runner, smtp_server, monkeypatch):
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in"])
    at(monkeypatch, "2026-11-23T01:00:00+00:00")  # Monday 10:00 JST, 勤労感謝の日
    result, report = send(runner)
    assert report["sent"] == 0 and report["deferred"] == {"holiday": 1}
    assert "勤労感謝の日" in runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    # Before the next send time a run does not look at them (nurture.plan.due); the dry run still says why.
    at(monkeypatch, "2026-11-23T23:30:00+00:00")  # Tuesday 08:30 JST
    result, report = send(runner)
    assert report["sent"] == 0 and report["not_due"] == 1
    assert "send hours" in runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    at(monkeypatch, "2026-11-28T01:00:00+00:00")  # Saturday (the dry run: the real clock never runs backwards)
    assert "not a send day" in runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    at(monkeypatch, "2026-11-24T00:00:00+00:00")  # Tuesday 09:00 JST
    result, report = send(runner)
    assert report["sent"] == 1 and len(smtp_server.messages) == 1


def test_temporary_failures_are_retried_later_never_lost(ws, runner, smtp_server, monkeypatch):
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,製造業,warm,opt_in"])
    smtp_server.fail_next(2, 451, "4.3.0 Try again later")
    result, report = send(runner)
    assert report["sent"] == 0 and sum(report["deferred"].values()) == 2
    assert all(d.state == "pending" and "451" in d.error for d in deliveries(ws))
    result, report = send(runner)  # backoff not over: nothing is claimed, nothing re-planned
    assert report["sent"] == 0 and len(deliveries(ws)) == 2
    at(monkeypatch, "2026-11-24T01:05:00+00:00")
    result, report = send(runner)
    assert report["sent"] == 2
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {"a@example.com": 1, "b@example.com": 1}


def test_permanent_failure_and_hard_bounce_suppresses(ws, runner, smtp_server):
    add_prospects(ws, ["gone@example.com,Gone,Co,製造業,warm,opt_in", "ok@example.com,OK,Co,製造業,warm,opt_in"])
    smtp_server.reject_recipient("gone@example.com", 550, "5.1.1 User unknown")
    result, report = send(runner)
    assert result.exit_code == 1  # failures make the run exit non-zero
    assert report["sent"] == 1 and sum(report["failed"].values()) == 1
    failed = next(d for d in deliveries(ws) if d.state == "failed")
    assert "5.1.1 User unknown" in failed.error
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        assert conn.scalar(select(Prospect.status).where(Prospect.email == "gone@example.com")) == "bounced"
        assert conn.scalar(select(Suppression.reason)) == "bounced"


def test_error_budget_pauses_the_campaign(ws, runner, smtp_server):
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(8)])
    smtp_server.fail_next(5, 554, "5.7.1 Rejected by policy")
    result, report = send(runner)
    assert result.exit_code == 1
    assert "alpha" in report["paused_campaigns"] and "nurture resume alpha" in report["paused_campaigns"]["alpha"]
    assert sum(report["failed"].values()) == 5
    left = [d for d in deliveries(ws) if d.state == "pending"]
    assert left, "deliveries after the pause stay pending, not failed"
    result, report = send(runner)
    assert report["sent"] == 0 and "alpha" in report["paused_campaigns"]
    assert runner.invoke(main, ["resume", "alpha"]).exit_code == 0
    result, report = send(runner)
    assert report["sent"] == len(left)


def test_unsubscribed_between_plan_and_send_is_skipped(ws, runner, smtp_server):
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in"])
    cfg = configuration.load(ws / "nurture.toml")
    engine = db.engine_for(cfg.database_url)
    from nurture.deliver import Report
    from nurture.plan.campaigns import load_campaigns
    from nurture.plan.planner import plan

    plan(engine, cfg, load_campaigns(cfg), Report())
    with engine.begin() as conn:
        conn.execute(Prospect.__table__.update().values(status="unsubscribed"))
    result, out = send(runner)
    assert out["sent"] == 0 and list(out["skipped"]) == ["unsubscribed"]
    assert smtp_server.messages == []


def test_sendgrid_sender_end_to_end(ws, db_url, runner, sendgrid_server, monkeypatch):
    write_config(
        ws, db_url, 25, extra=f'[sendgrid]\napi_key = "SG.test"\nhost = "{sendgrid_server.url}"\ntimeout = 2.0\n'
    )
    text = (ws / "nurture.toml").read_text(encoding="utf-8").replace('sender = "smtp"', 'sender = "sendgrid"')
    (ws / "nurture.toml").write_text(text, encoding="utf-8")
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,製造業,warm,opt_in"])
    # Epoch seconds on the send's own clock (NURTURE_NOW): the sender waits reset - clock.now(), not the wall clock.
    sendgrid_server.answer_rate_limited(int(datetime.fromisoformat(TUESDAY_10_JST).timestamp()) + 120)
    result, report = send(runner)
    assert report["sent"] == 1 and sum(report["deferred"].values()) == 1
    sent = [d for d in deliveries(ws) if d.state == "sent"]
    body = sendgrid_server.requests[-1].json
    assert body["custom_args"]["nurture_delivery_id"] and body["categories"] == ["alpha"]
    assert sent and all(d.state in ("sent", "pending") for d in deliveries(ws))
    at(monkeypatch, "2026-11-24T01:10:00+00:00")
    result, report = send(runner)
    assert report["sent"] == 1 and all(d.state == "sent" for d in deliveries(ws))
    to = Counter(
        r.json["personalizations"][0]["to"][0]["email"]
        for r in sendgrid_server.requests
        if r.json and "personalizations" in r.json
    )
    assert to == {"a@example.com": 2, "b@example.com": 1} or to == {"a@example.com": 1, "b@example.com": 2}


def test_sendgrid_timeout_is_recorded_as_unknown_not_resent(ws, db_url, runner, sendgrid_server, monkeypatch):
    write_config(
        ws, db_url, 25, extra=f'[sendgrid]\napi_key = "SG.test"\nhost = "{sendgrid_server.url}"\ntimeout = 0.5\n'
    )
    text = (ws / "nurture.toml").read_text(encoding="utf-8").replace('sender = "smtp"', 'sender = "sendgrid"')
    (ws / "nurture.toml").write_text(text, encoding="utf-8")
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in"])
    sendgrid_server.answer_slowly(2.0)
    result, report = send(runner)
    assert report["sent"] == 0 and sum(report["unknown"].values()) == 1
    at(monkeypatch, "2026-11-25T01:10:00+00:00")
    result, report = send(runner)
    assert report["sent"] == 0 and len(sendgrid_server.requests) == 1  # never resent blindly


# ----------------------------------------------------------------------------------- processes: crash, race


def _env(ws: Path, now: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_NOW"] = now
    env["NURTURE_CONFIG"] = str(ws / "nurture.toml")
    return env


def _spawn(ws: Path, now: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nurture", "send", "--json", *args],
        cwd=ws,
        env=_env(ws, now),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_concurrent_senders_never_send_twice(ws, smtp_server):
    n = 60
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,{'製造業' if i % 2 else '物流'},warm,opt_in" for i in range(n)])
    procs = [_spawn(ws, TUESDAY_10_JST) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    sent = [json.loads(out)["sent"] for out, _ in outputs]
    assert sum(sent) == n
    counts = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert len(counts) == n and set(counts.values()) == {1}
    assert all(d.state == "sent" for d in deliveries(ws))


@pytest.mark.slow
@pytest.mark.parametrize("record_batch", [1, 8])
def test_killed_sender_loses_nothing_and_repeats_at_most_the_in_flight(ws, db_url, smtp_server, record_batch):
    """kill -9 mid-run, rerun after the lease: every prospect gets its mail; repeats are bounded by the
    documented window, [throttle] concurrency x [delivery] record_batch (2 x 1 or 2 x 8 here)."""
    write_config(ws, db_url, smtp_server.port, record_batch=record_batch)
    n = 40
    add_prospects(ws, [f"k{i}@example.com,K{i},Co,製造業,warm,opt_in" for i in range(n)])
    smtp_server.stall_next(n, 0.15)  # slow server: the kill lands mid-run
    proc = _spawn(ws, TUESDAY_10_JST)
    deadline = time.monotonic() + 30
    while len(smtp_server.stalled) < 8 and time.monotonic() < deadline:  # stalled: got the dot, answers late
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = len(smtp_server.stalled)
    assert 0 < before < n, "the kill must land mid-run"
    # Rerun after the dead process's lease (30 s in this config) has expired.
    later = (datetime.fromisoformat(TUESDAY_10_JST) + timedelta(minutes=2)).isoformat()
    rerun = _spawn(ws, later)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    counts = Counter(m.rcpt_tos[0] for m in smtp_server.messages + smtp_server.stalled)
    assert len(counts) == n, "every prospect got its mail"
    repeats = sum(c - 1 for c in counts.values())
    assert repeats <= 2 * record_batch, f"{repeats} repeats: more than the documented in-flight window"
    assert all(d.state == "sent" for d in deliveries(ws))


def test_campaign_failing_check_is_not_sent(ws, runner, smtp_server):
    """A mail without the sender's postal address (特定電子メール法) or with a sales pitch never leaves."""
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"])
    template = ws / "templates" / "t" / "news.mjml"
    (ws / "templates" / "t" / "pitch.mjml").write_text(
        template.read_text(encoding="utf-8").replace(
            "業界の動向をお届けします。", "今なら期間限定で月額9,800円、無料デモをお申し込みください。"
        ),
        encoding="utf-8",
    )
    beta = ws / "campaigns" / "beta.toml"
    beta.write_text(beta.read_text(encoding="utf-8").replace("t/news.mjml", "t/pitch.mjml"), encoding="utf-8")
    result, report = send(runner)
    assert result.exit_code == 3  # a campaign was skipped; the other was sent
    assert list(report["blocked_campaigns"]) == ["beta"] and "nurture check beta" in report["blocked_campaigns"]["beta"]
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["a@example.com"]


def test_mail_sent_is_opened_clicked_and_unsubscribed_over_http(ws, db_url, runner, smtp_server, monkeypatch):
    """The whole loop: nurture send -> the mail's pixel, tracked link and RFC 8058 one-click unsubscribe over
    real HTTP -> events recorded -> the next nurture send mails that prospect nothing."""
    import re

    import httpx
    from webserver import LiveServer

    from nurture.store.models import Event
    from nurture.web.app import create_app

    add_prospects(ws, ["stay@example.com,Stay,Co,製造業,warm,opt_in", "leave@example.com,Leave,Co,製造業,warm,opt_in"])

    def app_for(base_url: str):
        text = (ws / "nurture.toml").read_text(encoding="utf-8")
        (ws / "nurture.toml").write_text(text.replace("https://t.example.co.jp", base_url), encoding="utf-8")
        return create_app(configuration.load(ws / "nurture.toml"), flush_interval=0.05)

    with LiveServer(app_for) as server:
        result, report = send(runner)
        assert report["sent"] == 2
        mails = {
            m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp_server.messages
        }
        leave = mails["leave@example.com"]
        html = leave.get_body(("html",)).get_content()
        pixel = re.search(r'<img src="([^"]+/o/[^"]+)"', html).group(1)
        click = re.search(r'href="([^"]+/c/[^"]+)"', html).group(1)
        unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", leave["List-Unsubscribe"]).group(1)
        assert pixel.startswith(server.url) and click.startswith(server.url)
        with httpx.Client(headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0"}) as http:
            assert http.get(pixel).headers["content-type"] == "image/gif"
            redirect = http.get(click)
            assert (
                redirect.status_code in (302, 303, 307) and redirect.headers["location"] == "https://example.org/report"
            )
            page = http.get(unsubscribe)
            assert page.status_code == 200 and "<form" in page.text  # a GET never unsubscribes
            one_click = http.post(
                unsubscribe,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert one_click.status_code == 200 and "location" not in one_click.headers
    engine = db.engine_for(db_url)
    with engine.connect() as conn:
        types = Counter(conn.execute(select(Event.type)).scalars())
        assert types["opened"] == 1 and types["clicked"] == 1 and types["unsubscribed"] == 1
        assert conn.scalar(select(Prospect.status).where(Prospect.email == "leave@example.com")) == "unsubscribed"
    at(monkeypatch, "2026-12-08T01:00:00+00:00")  # two weeks later: the next item is due
    result, report = send(runner)
    assert report["sent"] == 1
    assert [m.rcpt_tos[0] for m in smtp_server.messages[2:]] == ["stay@example.com"]
    dry = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    assert "leave@example.com" in dry and "unsubscribed" in dry


def test_sender_processes_share_the_work_without_repeats(ws, db_url, runner, smtp_server):
    """[delivery] processes = 2: forked sender processes claim from the same table; each mail goes out once
    and the parent's report adds up what the children did."""
    text = (ws / "nurture.toml").read_text(encoding="utf-8")
    (ws / "nurture.toml").write_text(
        text.replace('sender = "smtp"', 'sender = "smtp"\nprocesses = 2'), encoding="utf-8"
    )
    n = 30
    add_prospects(ws, [f"m{i}@example.com,M{i},Co,製造業,warm,opt_in" for i in range(n)])
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["sent"] == n
    counts = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert len(counts) == n and set(counts.values()) == {1}


def test_claims_start_small_and_grow_for_a_fast_sender(ws, runner, smtp_server, monkeypatch):
    """A worker's first claim is small (a short run is shared between workers); when mails go out fast, the next
    claims grow toward CLAIM_MAX (fewer claim transactions per mail), never beyond it. Every mail once."""
    from nurture.deliver import worker

    sizes: dict[str, list[int]] = {}  # per worker, the sizes of the claims that got rows
    claim = worker.Deliverer.claim

    def recording_claim(self, conn, name, n):
        ids = claim(self, conn, name, n)
        if ids:
            sizes.setdefault(name, []).append(n)
        return ids

    monkeypatch.setattr(worker.Deliverer, "claim", recording_claim)
    monkeypatch.setattr(worker, "CLAIM_SECONDS", 10.0)  # any sender here is "fast" for this test
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(400)])
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["sent"] == 400
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(f"p{i}@example.com" for i in range(400))
    assert [claims[0] for claims in sizes.values()] == [worker.CLAIM_MIN] * len(sizes)  # each starts small
    assert max(max(claims) for claims in sizes.values()) == worker.CLAIM_MAX


def test_sending_starts_while_planning_goes_on(ws, smtp_server, monkeypatch):
    """The senders claim each planned batch as soon as it is committed: the first mail leaves before the
    plan is done (SQLite: the planner pauses between batches so that the senders get the write lock)."""
    from nurture.plan import planner

    monkeypatch.setattr(planner, "PLAN_BATCH", 50)
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(600)])
    batches_done: list[int] = []
    at_first_mail: list[int] = []

    def planned(campaign, n, so_far):
        batches_done.append(so_far)

    def outcome(o):
        if not at_first_mail:
            at_first_mail.append(len(batches_done))

    report = send_api(ws, plan_progress=planned, on_outcome=outcome)
    assert report.sent == report.planned == 600 and len(smtp_server.messages) == 600
    assert len({m.rcpt_tos[0] for m in smtp_server.messages}) == 600
    assert at_first_mail[0] < len(batches_done) - 2, (at_first_mail, len(batches_done))


@pytest.mark.parametrize("processes", [1, 2])
def test_an_error_while_planning_stops_the_senders(ws, smtp_server, monkeypatch, processes):
    """A failure in the middle of planning ends the run with that error; the senders (threads, or forked
    processes) stop, no thread is left behind, and what was sent is recorded, so the next run picks up the rest."""
    import threading

    from nurture.plan import planner

    text = (ws / "nurture.toml").read_text(encoding="utf-8")
    (ws / "nurture.toml").write_text(
        text.replace('sender = "smtp"', f'sender = "smtp"\nprocesses = {processes}'), encoding="utf-8"
    )
    monkeypatch.setattr(planner, "PLAN_BATCH", 50)
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(300)])
    decide, calls = planner.decide, []

    def failing_decide(*args, **kw):
        calls.append(1)
        if len(calls) == 120:
            raise RuntimeError("database went away")
        return decide(*args, **kw)

    monkeypatch.setattr(planner, "decide", failing_decide)
    with pytest.raises(RuntimeError, match="database went away"):
        send_api(ws)
    assert not [t for t in threading.enumerate() if t.name.startswith("nurture-send")]
    sent_before = {m.rcpt_tos[0] for m in smtp_server.messages}
    assert len(sent_before) == len(smtp_server.messages) <= 100  # at most the two committed batches
    monkeypatch.setattr(planner, "decide", decide)
    report = send_api(ws)
    assert {m.rcpt_tos[0] for m in smtp_server.messages} == {f"p{i}@example.com" for i in range(300)}
    assert len(smtp_server.messages) == 300 and report.sent == 300 - len(sent_before)
