"""The command line: `nurture events import` scores (the CLI wires the rules file), `nurture score` recomputes
and `--dry-run --rules` lists who would cross without writing, `nurture prospects show` explains; the periodic
decay job of `nurture serve`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from scoring_support import changes, handoffs, prospect, row, state

from nurture import score
from nurture.cli.main import main
from nurture.core import clock
from nurture.core import config as configuration
from nurture.store import db
from nurture.track import record_events
from nurture.track.vocabulary import NewEvent
from nurture.web.periodic import jobs_for

NOW = "2026-11-10T09:00:00+00:00"


@pytest.fixture
def ws(workspace, db_url, monkeypatch, runner):
    monkeypatch.setenv("NURTURE_NOW", NOW)
    assert runner.invoke(main, ["init"]).exit_code == 0
    (workspace / "scoring.toml").write_text(
        'version = "v1"\n[thresholds]\nrank_a = 45\nrank_b = 15\nsql = 60\n', encoding="utf-8"
    )
    yield workspace
    score.configure()


def test_import_scores_with_the_rules_file_and_show_explains(ws, runner, db_url):
    engine = db.engine_for(db_url)
    with clock.frozen(datetime(2026, 11, 1, tzinfo=UTC)):
        pid = prospect(engine, "sato@example.co.jp", language="ja", industry="物流")
    (ws / "offline.csv").write_text(
        "email,種別,日付,タイトル\nsato@example.co.jp,セミナー参加,2026-11-05 14:00,物流セミナー\n", encoding="utf-8"
    )
    result = runner.invoke(main, ["events", "import", "offline.csv"])
    assert result.exit_code == 0, result.output
    assert state(engine, pid)[:2] == ("B", "warm")  # 15 (物流) + 20 (seminar, 5 days old)
    (c,) = changes(engine, pid, "rank")
    assert c.details["rules_version"] == "v1"  # the workspace's scoring.toml, wired by the CLI
    assert c.explanation.startswith("C→B: セミナー参加 (+19.") and c.event_ids
    show = runner.invoke(main, ["prospects", "show", "sato@example.co.jp"])
    assert "engagement seminar_attended" in show.output and "[events] rank: C→B: セミナー参加" in show.output


def test_score_dry_run_lists_who_would_cross_and_writes_nothing(ws, runner, db_url):
    engine = db.engine_for(db_url)
    with clock.frozen(datetime(2026, 11, 1, tzinfo=UTC)):
        a = prospect(engine, "a@example.co.jp", industry="製造業", title="部長")  # fit 27
        b = prospect(engine, "b@example.co.jp", language="en")
    result = runner.invoke(main, ["score", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counts"] == {"rank C→B": 1} and data["changes"][0]["email"] == "a@example.co.jp"
    assert state(engine, a)[0] == "B" and changes(engine, a, "rank")[0].cause == "rules"
    (ws / "new.toml").write_text('version = "v2"\n[thresholds]\nrank_a = 20\nrank_b = 10\n', encoding="utf-8")
    before = row(engine, a)
    result = runner.invoke(main, ["score", "--dry-run", "--rules", "new.toml"])
    assert result.exit_code == 0, result.output
    assert "rank B→A: 1" in result.output and "a@example.co.jp" in result.output and "nothing written" in result.output
    assert row(engine, a) == before and handoffs(engine) == []
    result = runner.invoke(main, ["score", "--dry-run", "--rules", "new.toml", "--json"])
    assert json.loads(result.output)["changes"] == [
        {"email": "a@example.co.jp", "field": "rank", "old": "B", "new": "A", "score_before": 27.0, "score_after": 27.0}
    ]
    result = runner.invoke(main, ["score", "--rules", "new.toml"])
    assert result.exit_code == 0 and "1 handoff(s)" in result.output
    assert [h.reason for h in handoffs(engine, a)] == ["rank_A"]
    show = runner.invoke(main, ["prospects", "show", "a@example.co.jp"])
    assert show.exit_code == 0, show.output
    assert "fit  industry:製造" in show.output and "[rules] rank: B→A: recomputed with rules v2" in show.output
    data = json.loads(runner.invoke(main, ["prospects", "show", "a@example.co.jp", "--json"]).output)
    assert data["scoring"]["stored"]["rank"] == "A" and len(data["scoring"]["history"]) == 2
    assert data["scoring"]["fit_parts"] == {"industry:製造": 15.0, "title:部長": 12.0}
    assert state(engine, b)[0] == "C"


def test_a_bad_rules_file_is_an_error_with_file_and_line(ws, runner):
    (ws / "scoring.toml").write_text("[thresholds]\nrank_a = 10\nrank_b = 20\n", encoding="utf-8")
    result = runner.invoke(main, ["score"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "scoring.toml:1: rank_a must be >= rank_b" in result.output
    assert "Traceback" not in result.output


def test_serve_runs_the_decay_pass(ws, db_url):
    (ws / "scoring.toml").write_text(
        'version = "fast"\n[thresholds]\nrank_b = 15\n[events.seminar_attended]\npoints = 20\nhalf_life_days = 1\n',
        encoding="utf-8",
    )
    config = configuration.load(ws / "nurture.toml")
    (job,) = [j for j in jobs_for(config) if j.name == "score-decay"]
    assert job.interval == 600
    engine = db.engine_for(db_url)
    score.configure(config)
    with clock.frozen(datetime(2026, 11, 1, tzinfo=UTC)):
        pid = prospect(engine, "decay@example.co.jp", language="en")
        record_events(engine, [NewEvent("seminar_attended", clock.now(), "import", prospect_id=pid)])
    assert state(engine, pid)[0] == "B"
    job.run(engine, config)  # at NURTURE_NOW, 9 days later: 20 points halved 9 times
    assert state(engine, pid)[0] == "C"
    last = changes(engine, pid, "rank")[-1]
    assert last.cause == "decay" and last.explanation.startswith("B→C: decay over time (score 20.0 → 0.0)")
