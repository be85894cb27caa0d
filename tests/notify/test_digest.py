"""The weekly digest: each owner's leaks, handoffs and moves up, mailed through a real SMTP server in the owner's
language; --dry-run prints; both languages rendered in headless Chromium (screenshots kept as artifacts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import date, timedelta
from html import escape
from pathlib import Path

import pytest
from handoff_seed import T0, a_handed_over_prospect, parse, seed_change, seed_handoff
from webserver import make_config, seed_prospect

from nurture.cli.main import main
from nurture.core import clock
from nurture.notify import render, run_digest
from nurture.notify.facts import handoff_facts
from nurture.report.owner_digest import owner_digest

NOW = T0 + timedelta(days=7)  # the Monday after
HANDOFF = {
    "owners": {"佐藤": "sato@example.co.jp", "Ann": "ann@example.com"},
    "languages": {"Ann": "en"},
    "default_owner": "sales@example.co.jp",
}


def a_week(engine, owner: str, tag: str) -> dict[str, int]:
    """One owner's week: a silent prospect, an overdue action, handoffs, a move up, a move down, an old move."""
    ids = {}
    with clock.frozen(T0 - timedelta(days=90)):
        ids["silent"] = seed_prospect(
            engine,
            f"silent-{tag}@example.com",
            owner=owner,
            name=f"沈黙 {tag}",
            company="静か工業",
            last_contact_at=NOW - timedelta(days=45),
        )
        ids["never"] = seed_prospect(engine, f"never-{tag}@example.com", owner=owner, name=f"未接触 {tag}")
        ids["recent"] = seed_prospect(
            engine, f"recent-{tag}@example.com", owner=owner, last_contact_at=NOW - timedelta(days=3)
        )
        ids["overdue"] = seed_prospect(
            engine,
            f"overdue-{tag}@example.com",
            owner=owner,
            name=f"期限 {tag}",
            last_contact_at=NOW,
            next_action="見積りの前提を電話で確認",
            next_action_due=date(2026, 11, 20),
        )
        ids["due_today"] = seed_prospect(
            engine, f"today-{tag}@example.com", owner=owner, last_contact_at=NOW, next_action_due=date(2026, 11, 23)
        )
        ids["hot"] = seed_prospect(
            engine,
            f"hot-{tag}@example.com",
            owner=owner,
            name=f"熱心 {tag}",
            company="熱田精機",
            rank="A",
            stage="SQL",
            temperature="hot",
            score=88.0,
            last_contact_at=NOW,
        )
        ids["cooled"] = seed_prospect(engine, f"cooled-{tag}@example.com", owner=owner, last_contact_at=NOW)
        ids["old_open"] = seed_prospect(engine, f"oldopen-{tag}@example.com", owner=owner, last_contact_at=NOW)
    seed_change(
        engine, ids["hot"], "rank", "C", "B", NOW - timedelta(days=5), 'C→B: 2 human clicks on "物流2024年問題" (+12)'
    )
    seed_change(engine, ids["hot"], "rank", "B", "A", NOW - timedelta(days=2), "B→A: seminar attended (+20)")
    seed_change(engine, ids["hot"], "stage", "MQL", "SQL", NOW - timedelta(days=2), "MQL→SQL: total 88 ≥ 80")
    seed_change(engine, ids["cooled"], "temperature", "warm", "cold", NOW - timedelta(days=1), "warm→cold: decay")
    seed_change(engine, ids["silent"], "rank", "C", "B", NOW - timedelta(days=20), "too old for this week")
    seed_handoff(engine, ids["hot"], created_at=NOW - timedelta(days=2), owner=owner)
    seed_handoff(engine, ids["old_open"], created_at=NOW - timedelta(days=12), owner=owner)
    seed_handoff(
        engine, ids["recent"], created_at=NOW - timedelta(days=4), owner=owner, state="acknowledged", reason="inquiry"
    )
    return ids


def test_owner_digest_rows(engine):
    a_week(engine, "佐藤", "s")
    a_week(engine, "Ann", "a")  # someone else's: never in 佐藤's digest
    with engine.connect() as conn:
        d = owner_digest(conn, "佐藤", since=NOW - timedelta(days=7), until=NOW, no_contact_days=30)
    assert [r["email"] for r in d.not_contacted] == ["never-s@example.com", "silent-s@example.com"]
    assert d.not_contacted[1]["days_silent"] == 45
    assert [(r["email"], r["days_overdue"]) for r in d.overdue_actions] == [("overdue-s@example.com", 3)]
    assert [r["email"] for r in d.open_handoffs] == ["oldopen-s@example.com", "hot-s@example.com"]
    assert [r["new"] for r in d.open_handoffs] == [False, True]
    assert [(r["email"], r["state"]) for r in d.new_handoffs] == [
        ("recent-s@example.com", "acknowledged"),
        ("hot-s@example.com", "open"),
    ]
    assert [r["email"] for r in d.moved_up] == ["hot-s@example.com"]
    moves = {(m["field"], m["from"], m["to"]) for m in d.moved_up[0]["moves"]}
    assert moves == {("rank", "C", "A"), ("stage", "MQL", "SQL")}  # C→B→A in the week reads C→A
    assert d.counts == {"not_contacted": 2, "overdue_actions": 1, "open_handoffs": 2, "new_handoffs": 2, "moved_up": 1}
    with engine.connect() as conn:  # a limit shortens the lists, never the counts
        short = owner_digest(conn, "佐藤", since=NOW - timedelta(days=7), until=NOW, no_contact_days=30, limit=1)
    assert short.counts == d.counts and len(short.not_contacted) == len(short.open_handoffs) == 1
    assert short.not_contacted[0]["email"] == "never-s@example.com"


def test_digest_mailed_to_each_owner_in_their_language(engine, db_url, smtp_server):
    a_week(engine, "佐藤", "s")
    a_week(engine, "Ann", "a")
    with clock.frozen(T0 - timedelta(days=1)):
        seed_prospect(engine, "orphan@example.com", next_action_due=date(2026, 11, 1), last_contact_at=NOW)
    config = make_config(
        db_url,
        "https://news.example.com",
        delivery={"sender": "smtp"},
        smtp={"host": smtp_server.host, "port": smtp_server.port},
        handoff=HANDOFF,
        identity={"from_address": "nurture@example.co.jp"},
    )
    with clock.frozen(NOW):
        mails = run_digest(engine, config)
    assert {m.owner: m.status for m in mails} == {"": "sent", "Ann": "sent", "佐藤": "sent"}
    got = {m.rcpt_tos[0]: parse(m.data) for m in smtp_server.messages}
    assert set(got) == {"sato@example.co.jp", "ann@example.com", "sales@example.co.jp"}

    msg, text, html = got["sato@example.co.jp"]
    assert str(msg["Subject"]) == "【週次ダイジェスト】佐藤 さんの見込み客（2026-11-16〜2026-11-23）"
    for part in (text, html):
        assert "未確認の引き継ぎ" in part and "oldopen-s@example.com" in part
        assert "B→A: seminar attended (+20)" in part and "MQL→SQL: total 88 ≥ 80" in part
        assert "見積りの前提を電話で確認" in part and "30日以上接触のない見込み客" in part
        assert "silent-s@example.com" in part and "a@example.com" not in part.replace("-s@example.com", "")
        assert "cooled-s@example.com" not in part  # moved down, not up
    assert "overdue-s@example.com" in text and "(+3日)" in text and "12日" in text  # open 12 days, not 288 h

    msg, text, html = got["ann@example.com"]
    assert str(msg["Subject"]) == "Weekly digest for Ann (2026-11-16 to 2026-11-23)"
    assert "Handoffs not acknowledged" in text and "Prospects who moved up this week" in text
    assert "Not contacted for 30+ days" in html and "hot-a@example.com" in html

    msg, text, _ = got["sales@example.co.jp"]
    assert "orphan@example.com" in text and "hot-s" not in text
    assert str(msg["Subject"]) == "【週次ダイジェスト】担当者未設定の見込み客（2026-11-16〜2026-11-23）"


def test_digest_cli_dry_run_and_json(runner, workspace):
    with (workspace / "nurture.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[handoff]\nowners = { "佐藤" = "sato@example.co.jp" }\n\n[delivery]\nsender = "memory"\n')
    assert runner.invoke(main, ["init"]).exit_code == 0
    from nurture.core import config as configuration
    from nurture.deliver.senders import memory
    from nurture.store import db

    engine = db.engine_for(configuration.load().database_url)
    a_week(engine, "佐藤", "s")
    memory.clear()
    with clock.frozen(NOW):
        dry = runner.invoke(main, ["digest", "--dry-run", "--owner", "佐藤"])
        assert dry.exit_code == 0, dry.output
        assert "To: sato@example.co.jp" in dry.output and "Subject: 【週次ダイジェスト】" in dry.output
        assert "熱心 s" in dry.output and memory.outbox == []
        data = json.loads(runner.invoke(main, ["digest", "--dry-run", "--json"]).output)
        assert [d["owner"] for d in data] == ["佐藤"] and data[0]["digest"]["counts"]["moved_up"] == 1
        sent = runner.invoke(main, ["digest"])
    assert sent.exit_code == 0, sent.output
    assert [m.message.to_address for m in memory.outbox] == ["sato@example.co.jp"]
    memory.clear()


def test_owner_without_address_fails_alone(engine, db_url):
    from nurture.deliver.senders import memory

    a_week(engine, "佐藤", "s")
    a_week(engine, "鈴木", "z")  # no address for 鈴木, no default owner
    config = make_config(
        db_url, "https://x.example", delivery={"sender": "memory"}, handoff={"owners": {"佐藤": "sato@example.co.jp"}}
    )
    memory.clear()
    with clock.frozen(NOW):
        mails = {m.owner: m for m in run_digest(engine, config)}
    assert mails["佐藤"].status == "sent" and mails["鈴木"].status == "failed"
    assert 'no address for owner "鈴木"' in mails["鈴木"].detail
    assert [m.message.to_address for m in memory.outbox] == ["sato@example.co.jp"]
    memory.clear()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_digest_and_notice_render_in_headless_chromium(engine, db_url, tmp_path):
    """The digests and the notice (ja, en) as a person sees them; the screenshot (and the HTML) go to
    $NURTURE_ARTIFACTS when set (path printed)."""
    a_week(engine, "佐藤", "s")
    a_week(engine, "Ann", "a")
    config = make_config(db_url, "https://x.example", delivery={"sender": "memory"}, handoff=HANDOFF)
    with clock.frozen(NOW):
        mails = {m.owner: m for m in run_digest(engine, config, dry_run=True)}
    with clock.frozen(T0):
        _, hid = a_handed_over_prospect(engine, email="yamada@example.co.jp")
        with engine.connect() as conn:
            facts = handoff_facts(conn, hid)
    pages = {"digest-ja": mails["佐藤"].rendered.html, "digest-en": mails["Ann"].rendered.html}
    for language in ("ja", "en"):
        pages[f"notice-{language}"] = render.notice(
            facts, language=language, time_zone="Asia/Tokyo", owner="佐藤", escalation=False, ack_minutes=60
        ).html
    # One browser start for all four mails (each start costs seconds on a busy machine): a page of iframes.
    frames = "".join(
        f'<iframe title="{name}" srcdoc="{escape(html)}" style="width:760px;height:1600px;border:0"></iframe>'
        for name, html in pages.items()
    )
    page = tmp_path / "mails.html"
    page.write_text(f"<!DOCTYPE html><html><body style='margin:0;display:flex'>{frames}</body></html>", "utf-8")
    shot = tmp_path / "mails.png"
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")
    try:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                f"--user-data-dir={profile}",
                "--window-size=3040,1600",
                "--hide-scrollbars",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\nscreenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50000
    keep = os.environ.get("NURTURE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
        for name, html in pages.items():
            (Path(keep) / f"{name}.html").write_text(html, encoding="utf-8")


def test_the_digest_names_who_hears_nothing_and_why(engine, db_url):
    """Issue 18: a prospect whose campaign has run out of content is in the owner's digest with the reason."""
    from nurture.store.models import Delivery

    with clock.frozen(T0 - timedelta(days=60)):
        pid = seed_prospect(engine, "quiet@example.co.jp", owner="佐藤", language="ja")
    keys = [
        "labor-shortage",
        "logistics-2024",
        "energy-saving",
        "quality-records",
        "subsidies",
        "bcp",
        "heat-illness",
    ]
    at = NOW - timedelta(days=45)  # all seven items, long enough ago for no cap or gap to be the reason
    with engine.begin() as conn:
        conn.execute(
            Delivery.__table__.insert(),
            [
                dict(
                    campaign="mfg-insights",
                    prospect_id=pid,
                    item_key=k,
                    state="sent",
                    sent_at=at,
                    created_at=at,
                    updated_at=at,
                    subject="s",
                )
                for k in keys
            ],
        )
    repo = Path(__file__).resolve().parents[2]
    config = make_config(db_url, "https://news.example.com", root=repo, handoff=HANDOFF)
    with clock.frozen(NOW):
        mails = run_digest(engine, config, owner="佐藤", dry_run=True, include_empty=True)
    (mail,) = mails
    silent = mail.data["silent"]
    assert [(s["email"], s["kind"]) for s in silent] == [("quiet@example.co.jp", "exhausted")]
    assert "mfg-insights" in silent[0]["reason"] and mail.data["counts"]["silent"] == 1
    assert mail.rendered is not None and "送れるのに届いていない" in mail.rendered.html
