"""`nurture demo` — the README's first command — works from a checkout and sends nothing twice."""

from __future__ import annotations

import email
import email.policy

from nurture.cli.main import main


def test_demo_runs_the_main_job_into_the_outbox(tmp_path, monkeypatch, runner):
    monkeypatch.chdir(tmp_path)
    for var in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET", "NURTURE_NOW"):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(main, ["demo", "--dir", "demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 campaigns checked: 3 without errors" in result.output
    mails = sorted((tmp_path / "demo" / "outbox").glob("*.eml"))
    assert len(mails) == 9  # 12 sample prospects: 1 without consent, 2 with a pending next action
    subjects = {str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]) for p in mails}
    assert any("省人化" in s for s in subjects) and any(s.isascii() for s in subjects)
    again = runner.invoke(main, ["demo", "--dir", "demo"], catch_exceptions=False)
    assert again.exit_code == 0 and "sent: 0" in again.output
    assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) == 9
