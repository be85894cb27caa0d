"""The library's send(), whoever calls it: the compliance gate, configuration errors against one mail's failures,
and a sender that can send nothing. Real SMTP (aiosmtpd) and SendGrid stand-in servers, both databases."""

from __future__ import annotations

from collections import Counter

from send_workspace import add_prospects, at, deliveries, edit, send, send_api
from sqlalchemy import select, update

from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.deliver import run
from nurture.store import db
from nurture.store.models import CampaignState, Event, Prospect

PITCH = "今なら期間限定で月額9,800円、無料デモをお申し込みください。"


def _pitch_in_beta(ws) -> None:
    """beta's template gets a sales pitch (the information-only check refuses it); alpha stays clean."""
    template = ws / "templates" / "t" / "news.mjml"
    (ws / "templates" / "t" / "pitch.mjml").write_text(
        template.read_text(encoding="utf-8").replace("業界の動向をお届けします。", PITCH), encoding="utf-8"
    )
    edit(ws / "campaigns" / "beta.toml", "t/news.mjml", "t/pitch.mjml")


def _set(ws, email: str, **values) -> None:
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).begin() as conn:
        conn.execute(update(Prospect).where(Prospect.email == email).values(**values))


def test_the_gate_is_in_the_library_not_the_cli(ws, smtp_server):
    """A script calling nurture.deliver.send() cannot go around the campaign check: the failing campaign is
    neither planned nor sent, the report says why, and the good campaign of the same call goes out."""
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"])
    _pitch_in_beta(ws)
    report = send_api(ws)
    assert list(report.blocked) == ["beta"] and "nurture check beta" in report.blocked["beta"]
    assert 'urgency "今なら"' in report.blocked["beta"]  # the first finding, in the check's words
    assert report.sent == report.planned == 1
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["a@example.com"]
    assert [d.campaign for d in deliveries(ws)] == ["alpha"]  # nothing even planned for beta
    assert report.as_dict()["blocked_campaigns"] == report.blocked


def test_mails_planned_before_a_campaign_broke_are_held_too(ws, smtp_server, monkeypatch):
    """The gate holds back a campaign's pending mails from earlier runs as well, not only new plans."""
    add_prospects(ws, ["b@example.com,B,Co,物流,warm,opt_in"])
    smtp_server.fail_next(1, 451, "4.3.0 Try again later")
    send_api(ws)
    assert [d.state for d in deliveries(ws)] == ["pending"]  # deferred: retried by a later run
    _pitch_in_beta(ws)
    at(monkeypatch, "2026-11-24T01:05:00+00:00")  # the retry is due
    report = send_api(ws)
    assert "beta" in report.blocked and report.sent == 0 and smtp_server.messages == []
    assert [d.state for d in deliveries(ws)] == ["pending"]


def test_a_dry_run_reports_blocked_campaigns_and_plans_only_the_others(ws, runner, smtp_server):
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"])
    _pitch_in_beta(ws)
    report = send_api(ws, dry_run=True, keep_decisions=True)
    assert list(report.blocked) == ["beta"]
    assert [(d.campaign, d.outcome) for d in report.decisions] == [("alpha", "send")]
    result = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 3 and "campaign beta was not sent" in result.output  # 3: a campaign skipped
    assert "would send  alpha" in result.output and deliveries(ws) == [] and smtp_server.messages == []


def test_a_template_gone_after_the_check_stops_its_campaign_for_this_run(ws, smtp_server, monkeypatch):
    """A configuration error found while sending is the campaign's, not each mail's: the campaign stops for
    this run with the reason, its mails stay pending untouched, the error budget is not charged (5 here, with
    8 mails), and the other campaign goes on. Restored, the next run sends the held mails."""
    template = ws / "templates" / "t" / "news.mjml"
    (ws / "templates" / "t" / "beta.mjml").write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
    edit(ws / "campaigns" / "beta.toml", "t/news.mjml", "t/beta.mjml")
    add_prospects(
        ws, [f"a{i}@example.com,A{i},Co,製造業,warm,opt_in" for i in range(8)] + ["b@example.com,B,Co,物流,warm,opt_in"]
    )
    kept = template.read_text(encoding="utf-8")
    gate = run.compliance_gate

    def gate_then_remove_the_template(config, campaigns):
        blocked = gate(config, campaigns)
        template.unlink()  # someone deletes it between the check and the send
        return blocked

    monkeypatch.setattr(run, "compliance_gate", gate_then_remove_the_template)
    report = send_api(ws)
    assert "alpha" in report.blocked and "template not found" in report.blocked["alpha"]
    assert "stay pending" in report.blocked["alpha"]
    assert report.paused == {} and not report.failed
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["b@example.com"]
    alpha = [d for d in deliveries(ws) if d.campaign == "alpha"]
    assert len(alpha) == 8 and {(d.state, d.error) for d in alpha} == {("pending", "")}
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        assert conn.scalar(select(CampaignState.paused).where(CampaignState.campaign == "alpha")) is None
    monkeypatch.setattr(run, "compliance_gate", gate)
    template.write_text(kept, encoding="utf-8")
    report = send_api(ws)
    assert report.sent == 8 and report.blocked == {}
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {
        **{f"a{i}@example.com": 1 for i in range(8)},
        "b@example.com": 1,
    }


def test_a_mail_that_its_prospects_data_breaks_fails_alone(ws, smtp_server):
    """One prospect's data cannot build its mail (a line break in a header, an attribute of the wrong shape):
    that mail fails with the reason, the campaign goes on, and nothing is blamed on the campaign's files."""
    template = ws / "templates" / "t" / "news.mjml"
    edit(
        template,
        "業界の動向をお届けします。",
        "業界の動向をお届けします。{% if prospect.attributes.plan is defined %}{{ prospect.attributes.plan.tier }}"
        "{% endif %}",
    )
    add_prospects(
        ws,
        [
            "ok@example.com,OK,Co,製造業,warm,opt_in",
            "crlf@example.com,CRLF,Co,製造業,warm,opt_in",
            "shape@example.com,Shape,Co,製造業,warm,opt_in",
        ],
    )
    _set(ws, "crlf@example.com", company="Evil\r\nBcc: victim@example.org")
    _set(ws, "shape@example.com", attributes={"plan": "gold"})  # a string has no .tier
    report = send_api(ws, keep_outcomes=True)
    assert report.blocked == {} and report.paused == {}
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["ok@example.com"]
    failed = {o.email: o.reason for o in report.outcomes if o.state == "failed"}
    assert set(failed) == {"crlf@example.com", "shape@example.com"}
    assert "line break" in failed["crlf@example.com"] and "tier" in failed["shape@example.com"]
    assert all(reason.startswith("render: ") for reason in failed.values())
    assert report.failed == Counter({"render": 2})


def test_a_refused_api_key_stops_the_run_and_keeps_every_mail_pending(ws, db_url, runner, sendgrid_server):
    """SendGrid's 401 would refuse every mail: the run stops at the first, nothing is failed or counted against
    the error budget, and the CLI prints SendGrid's words with the hint. With the key fixed, all go out."""
    edit(ws / "nurture.toml", 'sender = "smtp"', 'sender = "sendgrid"')
    edit(ws / "nurture.toml", "concurrency = 2", "concurrency = 1")  # one request in flight: exactly one 401
    (ws / "nurture.toml").write_text(
        (ws / "nurture.toml").read_text(encoding="utf-8")
        + f'[sendgrid]\napi_key = "SG.revoked"\nhost = "{sendgrid_server.url}"\n',
        encoding="utf-8",
    )
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(3)])
    sendgrid_server.answer_error(401, "The provided authorization grant is invalid, expired, or revoked")
    result = runner.invoke(main, ["send"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "sendgrid sender cannot send: SendGrid refused the API key" in result.output
    assert "hint: check SENDGRID_API_KEY" in result.output and "stay pending" in result.output
    assert [(d.state, d.error) for d in deliveries(ws)] == [("pending", "")] * 3
    result, report = send(runner)
    assert result.exit_code == 0 and report["sent"] == 3 and report["paused_campaigns"] == {}
    assert len(sendgrid_server.requests) == 4


def test_the_hard_bounce_event_names_the_senders_source(ws, runner, smtp_server):
    add_prospects(ws, ["gone@example.com,Gone,Co,製造業,warm,opt_in"])
    smtp_server.reject_recipient("gone@example.com", 550, "5.1.1 User unknown")
    send(runner)
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        assert conn.execute(select(Event.type, Event.source)).all() == [("bounced", "smtp")]
