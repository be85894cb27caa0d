"""`nurture send --dry-run` accounts for everyone (issue 12 item 8, issue 18): the mailable prospects no campaign
selects (with the reason), the silent ones, and the schedule's blind spots; a campaign's language selects; a
prospect without a zone or language gets the workspace's, not the campaign's. Both databases."""

from __future__ import annotations

import json
from pathlib import Path

from cadence_workspace import IMPORTED, make, memory

from nurture.cli.main import main
from nurture.core import clock
from nurture.core import config as configuration
from nurture.people.prospects import import_file
from nurture.store import db

TUESDAY_10_JST = "2027-01-05T01:00:00+00:00"


def add(folder: Path, header: str, rows: list[str]) -> None:
    csv = folder / "more.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = configuration.load(folder / "nurture.toml")
    with clock.frozen(IMPORTED):
        summary = import_file(db.engine_for(cfg.database_url), csv)
    assert not summary.rejected, summary.rejected


def dry_run(runner, monkeypatch, folder: Path, now: str = TUESDAY_10_JST) -> dict:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("NURTURE_NOW", now)
    result = runner.invoke(main, ["send", "--dry-run", "--json"], catch_exceptions=False)
    assert result.output.startswith("{"), result.output
    return json.loads(result.output)


def test_dry_run_explains_everyone_no_campaign_selects(tmp_path, db_url, runner, monkeypatch):
    make(tmp_path, db_url)
    add(
        tmp_path,
        "email,name,industry,temperature,consent,language,next_action,stage",
        [
            "jp-nolang@kaisha.co.jp,言語なし,IT,warm,opt_in,,,",  # the issue-12 newcomer case
            "todo@kaisha.co.jp,次回あり,製造業,warm,opt_in,ja,見積送付,",
            "buyer@kaisha.co.jp,顧客,製造業,warm,opt_in,ja,,customer",
            "chef@restaurant.com,Chef,飲食,warm,opt_in,en,,",
            "nobody@example.co.jp,同意なし,製造業,warm,,ja,,",  # not mailable: not listed at all
        ],
    )
    data = dry_run(runner, monkeypatch, tmp_path)
    rows = {r["email"]: r for r in data["unselected"]}
    assert set(rows) == {"jp-nolang@kaisha.co.jp", "todo@kaisha.co.jp", "buyer@kaisha.co.jp", "chef@restaurant.com"}
    assert rows["jp-nolang@kaisha.co.jp"]["category"] == "language"
    assert "language ja (the workspace default)" in rows["jp-nolang@kaisha.co.jp"]["reason"]
    assert rows["todo@kaisha.co.jp"]["category"] == "pending next action"
    assert rows["buyer@kaisha.co.jp"]["category"] == "customer"
    assert rows["chef@restaurant.com"]["category"] == "no segment matches"
    assert "ops-en: industry in ['IT'] (is '飲食')" in rows["chef@restaurant.com"]["reason"]
    assert data["unselected_counts"] == {
        "language": 1,
        "pending next action": 1,
        "customer": 1,
        "no segment matches": 1,
    }
    # The English campaign plans only English readers; the .co.jp prospect without a language is not deferred by
    # New York hours in it (issue 12's newcomer finding).
    planned = {(d["campaign"], d["email"]) for d in data["decisions"]}
    assert not any(e == "jp-nolang@kaisha.co.jp" for _, e in planned)
    assert {e for c, e in planned if c == "ops-en"} == {f"ops{i}@ops{i}.com" for i in range(3)}
    assert data["silent"] == [] and data["schedule_warnings"] == []

    # The workspace language decides: with [workspace] language = "en" the same prospect is English.
    with (tmp_path / "nurture.toml").open("a", encoding="utf-8") as f:
        f.write('[workspace]\nlanguage = "en"\n')
    data = dry_run(runner, monkeypatch, tmp_path)
    assert "jp-nolang@kaisha.co.jp" not in {r["email"] for r in data["unselected"]}
    assert ("ops-en", "jp-nolang@kaisha.co.jp") in {(d["campaign"], d["email"]) for d in data["decisions"]}

    # The text output counts them.
    monkeypatch.setenv("NURTURE_NOW", TUESDAY_10_JST)
    out = runner.invoke(main, ["send", "--dry-run"], catch_exceptions=False).output
    assert "not selected by any campaign: " in out and "pending next action" in out


def test_a_schedule_in_tokyo_hours_is_warned_and_its_new_york_prospects_named(tmp_path, db_url, runner, monkeypatch):
    make(tmp_path, db_url, extra_config='[schedule]\ncron = "*/15 9-18 * * 1-5"\n')
    add(tmp_path, "email,name,industry,temperature,consent,language", ["gast@firma.de,Gast,製造業,warm,opt_in,ja"])
    data = dry_run(runner, monkeypatch, tmp_path)
    kinds = {(w["kind"], w["campaign"], w["zone"], w["prospects"]) for w in data["schedule_warnings"]}
    assert ("window", "ops-en", "America/New_York", 3) in kinds
    assert ("zone", None, "Asia/Tokyo", 1) in kinds  # a .de address without a zone, mailed in Tokyo hours
    silent = {s["email"]: s for s in data["silent"]}
    assert {e for e, s in silent.items() if s["kind"] == "window"} == {f"ops{i}@ops{i}.com" for i in range(3)}
    assert "America/New_York" in silent["ops0@ops0.com"]["reason"]

    monkeypatch.setenv("NURTURE_NOW", TUESDAY_10_JST)
    check = runner.invoke(main, ["check"], catch_exceptions=False).output
    assert "warning: 3 prospects in America/New_York never mailed: ops-en sends 9-16" in check
    assert '"*/15 9-18 * * 1-5"' in check


def test_zone_less_prospects_are_judged_in_the_workspace_zone_not_the_campaigns(tmp_path, db_url, runner, monkeypatch):
    memory.clear()
    make(tmp_path, db_url)
    add(tmp_path, "email,name,industry,temperature,consent,language", ["dev@startup.com,Dev,IT,warm,opt_in,en"])
    # 10:00 in Tokyo is 20:00 in New York: the zone-less English reader is in Tokyo (the workspace zone) and is
    # mailed now; the New York prospects wait for their own morning.
    data = dry_run(runner, monkeypatch, tmp_path)
    by_email = {d["email"]: d for d in data["decisions"] if d["campaign"] == "ops-en"}
    assert by_email["dev@startup.com"]["outcome"] == "send"
    assert by_email["ops0@ops0.com"]["outcome"] == "deferred"
    assert "America/New_York" in by_email["ops0@ops0.com"]["reason"]

    # And the real run (memory sender) agrees: the delivery re-checks the window in the same zone.
    result = runner.invoke(main, ["send", "--json"], catch_exceptions=False)
    report = json.loads(result.output)
    to = [m.message.to_address for m in memory.outbox]
    assert report["sent"] >= 1 and any("dev@startup.com" in t for t in to), to
    assert not any("@ops" in t for t in to), to
