"""`nurture events list` shows times in [cadence] time_zone: an event imported as 2026/11/28 (Tokyo) reads
2026-11-28 00:00, not 2026-11-27T15:00:00."""

from __future__ import annotations

from nurture.cli.main import main


def test_event_times_are_shown_in_the_configured_zone(workspace, runner):
    assert runner.invoke(main, ["init"]).exit_code == 0
    people = "メールアドレス,氏名,同意\ntaro@example.co.jp,山田 太郎,名刺交換\n"
    (workspace / "list.csv").write_text(people, encoding="utf-8")
    assert runner.invoke(main, ["prospects", "import", "list.csv"]).exit_code == 0
    (workspace / "ev.csv").write_text(
        "メールアドレス,種別,日付,タイトル\ntaro@example.co.jp,セミナー参加,2026/11/28,DXセミナー\n", encoding="utf-8"
    )
    assert runner.invoke(main, ["events", "import", "ev.csv"]).exit_code == 0
    result = runner.invoke(main, ["events", "list"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2026-11-28 00:00" in result.output and "2026-11-27" not in result.output
    assert "Asia/Tokyo" in result.output  # the zone is said once
