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
    # four weeks of engagement through the tracking server: people, mail gateways and prefetching told apart
    assert "24 tracking hits over 4 weeks: 17 opens and 7 clicks" in result.output
    assert "seminar.csv (utf-8): recorded 2" in result.output
    assert "$ nurture report ranks" in result.output and "Rank, temperature and stage moves" in result.output
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'nurture.db'}")
    with engine.connect() as conn:
        labels = dict(
            conn.execute(
                text("SELECT label, count(*) FROM events WHERE type IN ('opened','clicked') GROUP BY label")
            ).all()
        )
    engine.dispose()
    assert labels == {"human": 14, "machine": 10}
    pages = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "demo" / "reports").glob("*.html")}
    assert set(pages) == {
        f"{k}.html" for k in ("ranks", "campaigns", "leaks", "conversion", "referrals", "handoffs", "content")
    }
    assert "週ごとの開封：人と機械" in pages["campaigns.html"] and "<svg" in pages["campaigns.html"]
    again = runner.invoke(main, ["demo", "--dir", "demo"], catch_exceptions=False)
    assert again.exit_code == 0 and "sent: 0" in again.output
    assert "engagement already simulated" in again.output
    assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) == 9


def test_the_readme_tour_starts_in_an_empty_folder(tmp_path, monkeypatch, runner):
    """`nurture init --samples` in an empty folder: nurture.toml (the commented example), the sample campaigns
    and templates, the database; `check` passes. Existing files are kept on a second run."""
    monkeypatch.chdir(tmp_path)
    for var in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET", "NURTURE_NOW"):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 2 and "nurture init --samples" in result.output
    result = runner.invoke(main, ["init", "--samples"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote nurture.toml from config.example.toml" in result.output
    assert sorted(p.name for p in (tmp_path / "campaigns").glob("*.toml")) == [
        "mfg-insights.toml",
        "postal-quarterly.toml",
        "saas-ops-digest.toml",
    ]
    assert (tmp_path / "templates" / "_partials" / "footer.mjml").exists() and (tmp_path / "nurture.db").exists()
    check = runner.invoke(main, ["check"], catch_exceptions=False)
    assert check.exit_code == 0 and "3 campaigns checked: 3 without errors" in check.output
    (tmp_path / "campaigns" / "mfg-insights.toml").write_text("# mine\n", encoding="utf-8")
    again = runner.invoke(main, ["init", "--samples"], catch_exceptions=False)
    assert again.exit_code == 0 and "already here" in again.output
    assert (tmp_path / "campaigns" / "mfg-insights.toml").read_text(encoding="utf-8") == "# mine\n"
    plain = runner.invoke(main, ["init"], catch_exceptions=False)  # not a terminal: no question asked
    assert plain.exit_code == 0 and "up to date" in plain.output
