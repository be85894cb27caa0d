"""One bad input never stops the others (issue 12, items 3, 9 and 10): long subjects and names through a real SMTP
server (aiosmtpd), a header that cannot be folded, a broken campaign file beside a good one, a template's runtime
error, no campaign at all, and throttling answers that back off without pausing the campaign. Both databases."""

from __future__ import annotations

import email
import email.header
import email.policy
from collections import Counter

from send_workspace import add_prospects, at, deliveries, edit, send, send_api
from sqlalchemy import select, update

from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.core.errors import NurtureError
from nurture.deliver.senders.smtp import SmtpSender
from nurture.store import db
from nurture.store.models import CampaignState, Prospect


def _set(ws, email_address: str, **values) -> None:
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).begin() as conn:
        conn.execute(update(Prospect).where(Prospect.email == email_address).values(**values))


def _header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _display_name(raw_header: str) -> str:
    """The display name of a To/From value decoded as RFC 2047 says (Python's address parser keeps a space
    between adjacent encoded-words in a phrase, which RFC 2047 6.2 says to drop)."""
    phrase = raw_header.replace("\r\n", "").rsplit("<", 1)[0].strip()  # unfolded (RFC 5322 2.2.3)
    words = email.header.decode_header(phrase)
    text = "".join(w.decode(c or "ascii") if isinstance(w, bytes) else w for w, c in words)
    return text.strip().removeprefix('"').removesuffix('"')


def test_long_subjects_and_names_are_folded_and_every_mail_goes_out(ws, db_url, runner, smtp_server):
    """The issue's reproduction: a 1,200-character company name in an ASCII subject made `nurture send` exit 1
    after a few mails, and a 5,000-character name made a 5,004-byte To: line. Now every mail goes out, the
    subject and names are folded within 78 columns (998 is the limit), and they decode back exactly."""
    edit(
        ws / "campaigns" / "alpha.toml",
        'subject = "{{ prospect.company }}様：業界ニュース第1号"',
        'subject = "News for {{ prospect.attributes.division | default(prospect.company) }} this month"',
    )
    long_from = "Sample Works " * 100  # a 1,300-character sender name with spaces: folded at them
    edit(ws / "campaigns" / "alpha.toml", "priority = 10", f'priority = 10\nfrom_name = "{long_from.strip()}"')
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(6)])
    division = "D" * 1200
    # PostgreSQL keeps names to VARCHAR(200); SQLite stores what it is given (how the 5,000 came in).
    long_name = "N" * (5000 if db_url.startswith("sqlite") else 200)
    for i in range(6):
        _set(ws, f"p{i}@example.com", attributes={"division": division})
    _set(ws, "p3@example.com", name=long_name)
    _set(ws, "p4@example.com", name="山田" * 100)
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["sent"] == 6 and report["failed"] == {}
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [f"p{i}@example.com" for i in range(6)]
    for received in smtp_server.messages:
        lines = _header_lines(received.data)
        assert max(len(line) for line in lines) <= 998
        # Only an unbreakable token may pass 78 columns (a SHOULD; 998 is the MUST): a List-Unsubscribe URI, or
        # an ASCII name of one word under 900 characters, sent as is (see compose.message._mailbox).
        long_ok = (b"<http", b"<mailto", b"N" * 100)
        assert all(len(line) <= 78 for line in lines if not any(token in line for token in long_ok))
        msg = email.message_from_bytes(received.data, policy=email.policy.default)
        assert msg["Subject"] == f"News for {division} this month"
        raw = email.message_from_bytes(received.data)
        assert _display_name(raw["From"]) == long_from.strip()
        expected = {"p3@example.com": long_name, "p4@example.com": "山田" * 100}.get(received.rcpt_tos[0])
        if expected:
            assert _display_name(raw["To"]) == expected


def test_a_header_that_cannot_be_folded_fails_that_mail_alone(ws, runner, smtp_server):
    """An address of 302 characters (RFC 5321 allows 254; an unbreakable token) fails its own delivery with
    the reason; the run goes on and the others are sent."""
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(3)])
    long_address = "a" * 290 + "@example.com"
    _set(ws, "p1@example.com", email=long_address)
    result, report = send(runner)
    assert result.exit_code == 1 and report["sent"] == 2  # 1: a mail failed
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["p0@example.com", "p2@example.com"]
    failed = [d for d in deliveries(ws) if d.state == "failed"]
    assert [d.email for d in failed] == [long_address]
    assert "the address is 302 characters long; at most 254" in failed[0].error


class _BrokenForOne(SmtpSender):
    """The real SMTP sender, except that for one recipient something unexpected is raised while the bytes are
    built: a NurtureError that is no SendError, and a plain exception (a sender's own bug)."""

    def send(self, msg):
        if msg.to_address == "odd@example.com":
            raise NurtureError("header Subject: cannot be encoded")
        if msg.to_address == "bug@example.com":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        return super().send(msg)


def test_any_error_while_one_mail_is_built_or_sent_stays_with_that_mail(ws, smtp_server):
    add_prospects(
        ws,
        [
            "ok@example.com,OK,Co,製造業,warm,opt_in",
            "odd@example.com,O,Co,製造業,warm,opt_in",
            "bug@example.com,B,Co,製造業,warm,opt_in",
            "ok2@example.com,OK2,Co,製造業,warm,opt_in",
        ],
    )
    report = send_api(ws, keep_outcomes=True, sender_factory=_BrokenForOne.from_config)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["ok2@example.com", "ok@example.com"]
    states = {o.email: (o.state, o.reason) for o in report.outcomes}
    assert states["odd@example.com"] == ("failed", "render: header Subject: cannot be encoded")
    assert states["bug@example.com"][0] == "unknown"  # whether it left is not known: never resent blindly
    assert "UnicodeEncodeError" in states["bug@example.com"][1]


def test_a_broken_campaign_file_is_skipped_and_the_others_are_sent(ws, runner, smtp_server):
    edit(ws / "campaigns" / "alpha.toml", "priority = 10", "priorty = 10")
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"])
    result = runner.invoke(main, ["send"], catch_exceptions=False)
    assert result.exit_code == 3, result.output  # 3: something was skipped, the rest was sent
    assert 'skipped campaign file: campaigns/alpha.toml:5: unknown key "priorty"' in result.output
    assert "Traceback" not in result.output
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["b@example.com"]
    result, report = send(runner, "--dry-run")
    assert result.exit_code == 3 and any("alpha.toml:5" in line for line in report["broken_campaign_files"])
    result, report = send(runner, "alpha")  # asked for by name: skipped the same way, nothing else sent
    assert result.exit_code == 3 and report["sent"] == 0 and report["broken_campaign_files"]


def test_a_template_runtime_error_is_an_error_line_in_check_and_send(ws, runner, smtp_server):
    """{{ 1 / 0 }} in one campaign's template: `check` and `send` print file:line, no traceback; the other
    campaign is sent."""
    template = ws / "templates" / "t" / "news.mjml"
    (ws / "templates" / "t" / "beta.mjml").write_text(
        template.read_text(encoding="utf-8").replace("業界の動向をお届けします。", "{{ 1 / 0 }}"), encoding="utf-8"
    )
    edit(ws / "campaigns" / "beta.toml", "t/news.mjml", "t/beta.mjml")
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"])
    check = runner.invoke(main, ["check"], catch_exceptions=False)
    assert check.exit_code != 0 and "Traceback" not in check.output
    assert "templates/t/beta.mjml:2: template error: ZeroDivisionError: division by zero" in check.output
    result = runner.invoke(main, ["send"], catch_exceptions=False)
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "campaign beta was not sent" in result.output and "beta.mjml:2: template error" in result.output
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["a@example.com"]


def test_a_misspelt_variable_names_file_line_and_the_nearest_name(ws, runner):
    edit(ws / "templates" / "t" / "news.mjml", "{{ prospect.name }}様", "{{ prospect.nmae }}様")
    add_prospects(ws, ["a@example.com,A,Co,製造業,warm,opt_in"])
    for args in (["check"], ["preview", "alpha"]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code != 0 and "Traceback" not in result.output, args
        assert "t/news.mjml:2: 'dict object' has no attribute 'nmae'" in result.output, result.output
        assert 'did you mean "prospect.name"?' in result.output


def test_send_without_any_campaign_says_so(ws, runner):
    for path in (ws / "campaigns").glob("*.toml"):
        path.unlink()
    for args in (["send"], ["send", "--dry-run"]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 2 and "no campaign to send: campaigns/ has no campaign file" in result.output
        assert "nurture init --samples" in result.output


def test_throttling_answers_back_off_and_never_pause_the_campaign(ws, runner, smtp_server, monkeypatch):
    """8 answers of 451 in a row with error_budget = 5: before, the campaign paused until `nurture resume`.
    Now each mail backs off (retry_base_seconds = 60) and the next run sends them all."""
    add_prospects(ws, [f"a{i}@example.com,A{i},Co,製造業,warm,opt_in" for i in range(8)])
    smtp_server.fail_next(8, 451, "4.7.1 Too many messages, slow down")
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["paused_campaigns"] == {} and report["sent"] == 0 and report["failed"] == {}
    assert report["deferred"] == {"provider deferred": 8}
    assert {(d.state, d.error.split(":")[0]) for d in deliveries(ws)} == {("pending", "provider deferred")}
    cfg = configuration.load(ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        assert conn.scalar(select(CampaignState.paused).where(CampaignState.campaign == "alpha")) is None
    at(monkeypatch, "2026-11-24T01:00:30+00:00")
    result, report = send(runner)
    assert report["sent"] == 0  # backing off: not due before 60 s
    at(monkeypatch, "2026-11-24T01:01:30+00:00")
    result, report = send(runner)
    assert result.exit_code == 0 and report["sent"] == 8
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {f"a{i}@example.com": 1 for i in range(8)}


def test_refusals_still_pause_the_campaign(ws, runner, smtp_server):
    """The error budget still guards against a broken setup: 5 refusals (5xx) in a row pause the campaign."""
    add_prospects(ws, [f"a{i}@example.com,A{i},Co,製造業,warm,opt_in" for i in range(6)])
    smtp_server.fail_next(6, 554, "5.7.1 Message rejected")
    result, report = send(runner)
    assert result.exit_code == 1 and "alpha" in report["paused_campaigns"]
