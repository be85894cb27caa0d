"""``nurture prospects consent``, ``nurture consent export`` and ``nurture form snippet`` on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from nurture.cli.main import main
from nurture.people.signup import SignUp, confirm_signup, request_signup
from nurture.store import db

WORDING = "ニュースレターの受け取りに同意します。"


def signed_up(db_url: str, address: str) -> None:
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    asked = request_signup(
        engine,
        SignUp(
            email=address,
            language="ja",
            form_id="site",
            wording=WORDING,
            topics=("製造業DX",),
            ip="192.0.2.7",
            user_agent="Mozilla/5.0 テスト",
            offered=("製造業DX",),
        ),
        confirm_for=timedelta(hours=48),
        resend_after=timedelta(minutes=15),
    )
    assert confirm_signup(engine, asked.pending_id, asked.nonce).outcome == "confirmed"


def test_consent_show_and_export(workspace, db_url, runner):
    signed_up(db_url, "hanako@example.jp")
    shown = runner.invoke(main, ["prospects", "consent", "HANAKO@example.jp"])
    assert shown.exit_code == 0, shown.output
    assert "opt_in" in shown.output and "192.0.2.7" in shown.output and WORDING in shown.output
    assert "製造業DX (yes)" in shown.output
    data = json.loads(runner.invoke(main, ["prospects", "consent", "hanako@example.jp", "--json"]).output)
    assert data["basis"] == "opt_in" and data["records"][0]["confirmed_at"] and data["topics"] == {"製造業DX": True}
    missing = runner.invoke(main, ["prospects", "consent", "nobody@example.jp"])
    assert missing.exit_code != 0 and "error:" in missing.output and "Traceback" not in missing.output
    out = workspace / "consent.csv"
    assert runner.invoke(main, ["consent", "export", "-o", str(out)]).exit_code == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 with a BOM
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(r["email"], r["basis"], r["source"], r["wording"], r["topics"]) for r in rows] == [
        ("hanako@example.jp", "opt_in", "site", WORDING, "製造業DX")
    ]
    lines = runner.invoke(main, ["consent", "export", "--format", "json", "--since", "2000-01-01"]).output
    assert json.loads(lines.splitlines()[0])["ip"] == "192.0.2.7"
    bad = runner.invoke(main, ["consent", "export", "--since", "yesterday"])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output


def test_form_snippet(workspace, runner):
    refused = runner.invoke(main, ["form", "snippet"])
    assert refused.exit_code != 0 and "[subscribe] enabled" in refused.output
    with (workspace / "nurture.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[subscribe]\nenabled = true\nindustries = ["製造業"]\nallowed_origins = ["https://www.corp.jp"]\n')
    (workspace / "campaigns").mkdir()
    (workspace / "templates").mkdir()
    (workspace / "templates" / "t.mjml").write_text("<mjml><mj-body></mj-body></mjml>", encoding="utf-8")
    (workspace / "campaigns" / "a.toml").write_text(
        'name = "a"\nlanguage = "ja"\ntopic = "製造業DX"\n[content]\n[[content.items]]\nkey = "k"\nsubject = "s"\n'
        'template = "t.mjml"\n',
        encoding="utf-8",
    )
    result = runner.invoke(main, ["form", "snippet", "--form-id", "corp", "--lang", "en"])
    assert result.exit_code == 0, result.output
    html = result.output
    assert 'action="https://news.example.com/subscribe"' in html and 'data-nurture-form="corp"' in html
    assert 'value="製造業DX"' in html and 'name="website"' in html and "/subscribe/token?form=" in html
    assert "I agree to receive" in html and '<option value="製造業">' in html
