"""The handoff notice: mail through a real SMTP server, webhook to a real HTTP server, retries that never lose a
notice, exactly once with two notifier passes at once, escalation after the timeout (fixed clock)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from handoff_seed import T0, a_handed_over_prospect, handoff, parse, seed_event, seed_handoff, with_sections
from servers import free_port
from webserver import make_config, seed_prospect

from nurture.core import clock
from nurture.notify import notices, notify_due

OWNER = "sato@example.co.jp"
BOSS = "boss@example.co.jp"


@pytest.fixture
def setup(engine, db_url, smtp_server, sendgrid_server):
    """A config sending by SMTP to the test server and posting to the webhook stand-in; 佐藤 owns prospects."""
    config = make_config(
        db_url,
        "https://news.example.com",
        delivery={"sender": "smtp"},
        smtp={"host": smtp_server.host, "port": smtp_server.port, "timeout": 5.0},
        identity={"from_address": "nurture@example.co.jp", "from_name": "nurture"},
        handoff={
            "owners": {"佐藤": OWNER},
            "languages": {"Ann": "en"},
            "webhook_url": sendgrid_server.url + "/hooks/T000/B000/secret",
            "escalate_to": BOSS,
            "retry_base_seconds": 30.0,
            "retry_max_seconds": 600.0,
        },
    )
    return config, smtp_server, sendgrid_server


def test_notice_mail_and_webhook_received_by_real_servers(engine, setup):
    config, smtp, hook = setup
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        report = notify_due(engine, config)
    assert report.notified == [hid] and not report.failed

    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received.rcpt_tos == [OWNER]
    msg, text, html = parse(received.data)
    assert str(msg["Subject"]) == "【営業引き継ぎ】山田製作所 山田 太郎 様（ランクAに到達）"
    assert msg["Auto-Submitted"] == "auto-generated"
    for part in (text, html):
        assert "B→A: seminar attended (+20); 7 machine opens ignored" in part
        assert "物流2024年問題への備え" in part  # the mail, with its opens and clicks
        assert "製造部 部長" in part and "taro@yamada.co.jp" in part
        assert "nurture handoffs ack taro@yamada.co.jp" in part
    assert "開封（人／機械） 1/3" in text and "クリック（人／機械） 1/1" in text
    assert "86.0" in text and "属性スコア 30.0" in text and "行動スコア 56.0" in text
    assert "佐藤 さん、次の見込み客を営業に引き継ぎます。ランクAは1時間以内の連絡が目安です。" in text

    assert len(hook.requests) == 1
    request = hook.requests[0]
    assert request.path == "/hooks/T000/B000/secret"
    assert request.headers["Content-Type"].startswith("application/json")
    body = request.json
    assert body["event"] == "handoff" and "山田 太郎" in body["text"] and "rank A" in body["text"]
    facts = body["handoff"]
    assert facts["handoff"]["id"] == hid and facts["handoff"]["reason"] == "rank_A"
    assert facts["prospect"]["email"] == "taro@yamada.co.jp"
    assert facts["score"] == {**facts["score"], "fit_score": 30.0, "engagement_score": 56.0, "score": 86.0, "rank": "A"}
    assert [h["to"] for h in facts["history"]] == ["A", "B"]
    mail = facts["mails"][0]
    assert (mail["opens_human"], mail["opens_machine"], mail["clicks_human"], mail["clicks_machine"]) == (1, 3, 1, 1)

    row = handoff(engine, hid)
    assert row.notified_at == T0 and row.notice_due_at is None and row.notice_attempts == 1 and row.notice_error == ""
    with clock.frozen(T0 + timedelta(seconds=30)):
        assert notify_due(engine, config).notified == []
    assert len(smtp.messages) == 1 and len(hook.requests) == 1


def test_english_owner_and_inquiry_text(engine, setup):
    config, smtp, hook = setup
    with clock.frozen(T0):
        pid = seed_prospect(
            engine, "ann@example.com", owner="Ann", name="Ann Lee", company="Lee Tools", status="unsubscribed"
        )
        event = seed_event(engine, pid, "inquired", "human", data={"text": "Please call me about the seminar."})
        hid = seed_handoff(engine, pid, reason="inquiry", event_id=event, owner="Ann")
        config = with_sections(
            config, handoff={"owners": {"Ann": "ann.owner@example.com"}, "languages": {"Ann": "en"}, "webhook_url": ""}
        )
        assert notify_due(engine, config).notified == [hid]
    msg, text, html = parse(smtp.messages[0].data)
    assert smtp.messages[0].rcpt_tos == ["ann.owner@example.com"]
    assert str(msg["Subject"]) == "Handoff: Ann Lee, Lee Tools (inquiry)"
    assert "Please call me about the seminar." in text and "Please call me about the seminar." in html
    assert "Ann, this prospect is handed over to sales. They asked to be contacted" in text
    assert "No mails sent yet." in text and hook.requests == []
    assert "ann@example.com [unsubscribed (send no mail)]" in text and "unsubscribed (send no mail)" in html


def test_failing_webhook_is_retried_with_backoff_and_delivered_later_mail_sent_once(engine, setup):
    config, smtp, hook = setup
    hook.answer(500, {"error": "down"}, times=2)
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        report = notify_due(engine, config)
    assert report.failed == [hid] and "HTTP 500" in report.errors[hid]
    row = handoff(engine, hid)
    assert row.notified_at is None and row.notice_attempts == 1
    assert row.notice_due_at == T0 + timedelta(seconds=30)  # retry_base_seconds
    assert "sent notice:mail" in row.notice_error and "HTTP 500" in row.notice_error
    assert "secret" not in row.notice_error  # Slack keeps its token in the path: never stored

    with clock.frozen(T0 + timedelta(seconds=29)):  # not due yet
        assert notify_due(engine, config).failed == []
    with clock.frozen(T0 + timedelta(seconds=30)):
        assert notify_due(engine, config).failed == [hid]
    assert handoff(engine, hid).notice_due_at == T0 + timedelta(seconds=30 + 60)  # doubled
    with clock.frozen(T0 + timedelta(seconds=90)):
        assert notify_due(engine, config).notified == [hid]
    row = handoff(engine, hid)
    assert row.notified_at == T0 + timedelta(seconds=90) and row.notice_due_at is None and row.notice_error == ""
    assert row.notice_attempts == 3
    assert len(hook.requests) == 3 and len(smtp.messages) == 1  # the owner got one mail, not three


def test_unreachable_smtp_and_missing_address_wait_until_fixed(engine, setup):
    config, smtp, hook = setup
    dead = with_sections(config, smtp={"port": free_port()}, handoff={"webhook_url": ""})
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        nobody = seed_prospect(engine, "nobody@example.com", owner="")
        orphan = seed_handoff(engine, nobody, created_at=T0)
        report = notify_due(engine, dead)
    assert sorted(report.failed) == sorted([hid, orphan])
    assert "mail to sato@example.co.jp" in handoff(engine, hid).notice_error
    assert "default_owner is not set" in handoff(engine, orphan).notice_error
    # Later, with a working server and a default owner, both go out.
    fixed = with_sections(config, handoff={"webhook_url": "", "default_owner": "sales@example.co.jp"})
    with clock.frozen(T0 + timedelta(minutes=5)):
        assert sorted(notify_due(engine, fixed).notified) == sorted([hid, orphan])
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["sales@example.co.jp", OWNER]


def test_two_notifier_passes_at_once_send_each_notice_exactly_once(engine, setup, monkeypatch):
    config, smtp, hook = setup
    monkeypatch.setattr(notices, "BATCH", 2)  # small claims, so that the two passes interleave
    with clock.frozen(T0):
        ids = []
        for i in range(12):
            pid = seed_prospect(engine, f"p{i}@example.com", owner="佐藤")
            ids.append(seed_handoff(engine, pid, created_at=T0))
        barrier = threading.Barrier(2)
        reports = []

        def run():
            barrier.wait()
            reports.append(notify_due(engine, config))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    notified = [h for r in reports for h in r.notified]
    assert sorted(notified) == sorted(ids)  # every one, by exactly one of the two
    posted = [r.json["handoff"]["handoff"]["id"] for r in hook.requests]
    assert sorted(posted) == sorted(ids)
    assert len(smtp.messages) == 12
    assert all(r.notified for r in reports), [r.notified for r in reports]  # both passes took rows


def test_escalation_once_after_the_timeout_fixed_clock(engine, setup):
    config, smtp, hook = setup
    config = with_sections(config, handoff={"webhook_url": "", "escalate_webhook_url": hook.url + "/esc"})
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        acked_pid = seed_prospect(engine, "acked@example.com", owner="佐藤")
        acked = seed_handoff(engine, acked_pid, created_at=T0)
        notify_due(engine, config)
    assert len(smtp.messages) == 2
    from nurture.notify import decide

    with clock.frozen(T0 + timedelta(minutes=10)):
        decide(engine, "acked@example.com", "acknowledged", by="佐藤")
    with clock.frozen(T0 + timedelta(minutes=59)):
        assert notify_due(engine, config).escalated == []
    with clock.frozen(T0 + timedelta(minutes=60, seconds=5)):
        report = notify_due(engine, config)
    assert report.escalated == [hid] and report.escalations_scheduled == 1
    assert handoff(engine, hid).escalated_at == T0 + timedelta(minutes=60, seconds=5)
    assert handoff(engine, acked).escalated_at is None
    escalation = smtp.messages[2]
    assert escalation.rcpt_tos == [BOSS]
    msg, text, _ = parse(escalation.data)
    assert str(msg["Subject"]).startswith("【未確認のため転送】") and "60 分以内に確認されませんでした" in text
    assert [r.path for r in hook.requests] == ["/esc"] and hook.requests[0].json["event"] == "escalation"
    with clock.frozen(T0 + timedelta(hours=3)):  # once only
        assert notify_due(engine, config).escalated == []
    assert len(smtp.messages) == 3 and len(hook.requests) == 1


def test_escalation_also_when_the_notice_itself_keeps_failing(engine, setup):
    """The owner's address is refused: the notice keeps retrying, and the escalation still goes at the hour."""
    config, smtp, hook = setup
    config = with_sections(config, handoff={"webhook_url": "", "retry_base_seconds": 600.0, "retry_max_seconds": 7200})
    smtp.reject_recipient(OWNER, 550, "5.1.1 User unknown")
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        assert notify_due(engine, config).failed == [hid]
    for minutes in (10, 30, 50):
        with clock.frozen(T0 + timedelta(minutes=minutes)):
            notify_due(engine, config)
    row = handoff(engine, hid)
    assert row.notice_due_at == T0 + timedelta(minutes=60)  # the backoff would say later: the escalation is due
    with clock.frozen(T0 + timedelta(minutes=60)):
        report = notify_due(engine, config)
    assert report.escalated == [hid] and report.failed == [hid]
    assert [m.rcpt_tos for m in smtp.messages] == [[BOSS]]
    row = handoff(engine, hid)
    assert row.notified_at is None and row.notice_due_at is not None and "5.1.1" in row.notice_error


def test_webhook_json_is_slack_compatible(engine, setup):
    config, smtp, hook = setup
    with clock.frozen(T0):
        a_handed_over_prospect(engine)
        notify_due(engine, with_sections(config, handoff={"mail": False}))
    body = json.loads(hook.requests[0].body.decode("utf-8"))
    assert isinstance(body["text"], str) and body["text"].startswith("【営業引き継ぎ】")
    assert smtp.messages == []


def test_the_two_languages_have_the_same_words():
    from nurture.notify.texts import TEXTS

    assert set(TEXTS["ja"]) == set(TEXTS["en"])


def test_a_pass_that_died_after_claiming_loses_only_its_lease(engine, setup):
    config, smtp, hook = setup
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        assert [h for h, _ in notices._claim(engine, 10)] == [hid]  # ... and the process is killed here
    with clock.frozen(T0 + timedelta(seconds=notices.LEASE_SECONDS - 1)):
        assert notify_due(engine, config).notified == []
    with clock.frozen(T0 + timedelta(seconds=notices.LEASE_SECONDS)):
        assert notify_due(engine, config).notified == [hid]
    assert len(smtp.messages) == 1 and len(hook.requests) == 1


def test_a_row_that_breaks_the_pass_is_postponed_and_the_others_go(engine, setup, monkeypatch):
    config, smtp, hook = setup
    real = notices.handoff_facts

    def facts(conn, handoff_id):
        if handoff_id == broken:
            raise RuntimeError("a bug in one row")
        return real(conn, handoff_id)

    monkeypatch.setattr(notices, "handoff_facts", facts)
    with clock.frozen(T0):
        broken = seed_handoff(engine, seed_prospect(engine, "broken@example.com", owner="佐藤"), created_at=T0)
        pid, fine = a_handed_over_prospect(engine)
        report = notify_due(engine, config)
    assert report.notified == [fine] and report.failed == [broken]
    row = handoff(engine, broken)
    assert row.notice_error == "RuntimeError: a bug in one row" and row.notice_attempts == 1
    assert row.notice_due_at == T0 + timedelta(seconds=30) and row.notified_at is None


def test_slack_format_posts_only_text_and_blocks(engine, setup):
    config, smtp, hook = setup
    with clock.frozen(T0):
        a_handed_over_prospect(engine)
        notify_due(engine, with_sections(config, handoff={"mail": False, "webhook_format": "slack"}))
    body = hook.requests[0].json
    assert set(body) == {"text", "blocks"}
    assert body["blocks"][0]["text"]["text"].startswith("【営業引き継ぎ】")
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*ランク*\nA / hot / SQL" in fields and "*会社*\n山田製作所" in fields


def test_turning_escalation_on_does_not_flood_the_fallback_with_old_handoffs(engine, setup):
    config, smtp, hook = setup
    quiet = with_sections(config, handoff={"webhook_url": "", "escalate_to": ""})
    with clock.frozen(T0):
        old = seed_handoff(engine, seed_prospect(engine, "old@example.com", owner="佐藤"), created_at=T0)
        notify_due(engine, quiet)
    with clock.frozen(T0 + timedelta(days=8)):
        recent = seed_handoff(engine, seed_prospect(engine, "new@example.com", owner="佐藤"), created_at=T0)
        fresh = seed_handoff(
            engine, seed_prospect(engine, "fresh@example.com", owner="佐藤"), created_at=T0 + timedelta(days=8)
        )
        notify_due(engine, quiet)
    with clock.frozen(T0 + timedelta(days=8, hours=2)):  # now escalation is configured
        report = notify_due(engine, with_sections(config, handoff={"webhook_url": ""}))
    assert report.escalated == [fresh]
    assert handoff(engine, old).escalated_at is None and handoff(engine, recent).escalated_at is None
    assert [m.rcpt_tos for m in smtp.messages].count([BOSS]) == 1


def test_a_channel_sent_before_a_crash_is_not_sent_again(engine, setup, monkeypatch):
    """The mail went, then the pass broke before recording (the webhook step raised): the retry posts the
    webhook and does not mail the owner a second time."""
    config, smtp, hook = setup
    real = notices.post_webhook
    calls = []

    def post(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the process died here")
        return real(*args, **kwargs)

    monkeypatch.setattr(notices, "post_webhook", post)
    with clock.frozen(T0):
        pid, hid = a_handed_over_prospect(engine)
        assert notify_due(engine, config).failed == [hid]
    assert len(smtp.messages) == 1 and "sent notice:mail" in handoff(engine, hid).notice_error
    with clock.frozen(T0 + timedelta(minutes=1)):
        assert notify_due(engine, config).notified == [hid]
    assert len(smtp.messages) == 1 and len(hook.requests) == 1
