"""``nurture report KIND`` from a fixed history (tests/report/history.py): exact rows, the same rows in every
format, the documented JSON shapes; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
import report_history as history
from openpyxl import load_workbook

from nurture.cli.main import main
from nurture.core import clock
from nurture.report.render import cell
from nurture.store import db
from nurture.store.models import Delivery, Prospect

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


@pytest.fixture
def ws(workspace, db_url):
    history.copy_campaigns(workspace)
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    history.load(engine)
    with clock.frozen(history.NOW):
        yield workspace


def run(runner, *args):
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def report_json(runner, kind, *args):
    return json.loads(run(runner, "report", kind, "--json", *args))


def pick(rows, *keys):
    return [{k: r[k] for k in keys} for r in rows]


def test_ranks_lists_each_move_with_its_events_human_and_machine_apart(ws, runner):
    data = report_json(runner, "ranks")
    assert pick(data["moves"], "email", "field", "from", "to", "human_events", "machine_events") == [
        {
            "email": "taro@mfg.example.jp",
            "field": "rank",
            "from": "B",
            "to": "A",
            "human_events": 2,
            "machine_events": 0,
        },
        {
            "email": "taro@mfg.example.jp",
            "field": "temperature",
            "from": "cold",
            "to": "warm",
            "human_events": 1,
            "machine_events": 0,
        },
        {
            "email": "bob@ops.example.com",
            "field": "rank",
            "from": "B",
            "to": "C",
            "human_events": 0,
            "machine_events": 0,
        },
        {
            "email": "taro@mfg.example.jp",
            "field": "rank",
            "from": "C",
            "to": "B",
            "human_events": 2,
            "machine_events": 3,
        },
    ]
    first_move = data["moves"][-1]
    assert first_move["at"] == "2026-02-10T11:01:00+00:00"
    assert first_move["explanation"].startswith("C→B: 1 human click")
    assert [(e["type"], e["label"], e["campaign"], e["item"]) for e in first_move["events"]] == [
        ("opened", "machine", "mfg-insights", "labor-shortage"),
        ("opened", "human", "mfg-insights", "labor-shortage"),
        ("clicked", "human", "mfg-insights", "labor-shortage"),
        ("clicked", "machine", "mfg-insights", "labor-shortage"),
        ("clicked", "machine", "mfg-insights", "labor-shortage"),
    ]
    assert data["transitions"] == [
        {"field": "rank", "from": "B", "to": "A", "count": 1},
        {"field": "rank", "from": "B", "to": "C", "count": 1},
        {"field": "rank", "from": "C", "to": "B", "count": 1},
        {"field": "temperature", "from": "cold", "to": "warm", "count": 1},
    ]
    assert data["items"] == [
        {
            "campaign": "mfg-insights",
            "item": "labor-shortage",
            "moves": 2,
            "moves_up": 2,
            "human_events": 3,
            "machine_events": 3,
        }
    ]
    assert (data["moves_total"], data["up"], data["down"], data["events_machine"]) == (4, 3, 1, 3)
    # filters: an owner, a campaign (moves whose events came from it)
    assert {m["email"] for m in report_json(runner, "ranks", "--owner", "Smith")["moves"]} == {"bob@ops.example.com"}
    assert len(report_json(runner, "ranks", "--campaign", "mfg-insights")["moves"]) == 2
    # the move before the period is not in it, and is with an earlier --since
    assert len(report_json(runner, "ranks", "--since", "2025-12-01")["moves"]) == 5


def test_ranks_lists_the_newest_moves_up_to_the_default_cap_and_counts_them_all(ws, runner, monkeypatch):
    everything = report_json(runner, "ranks")
    monkeypatch.setattr("nurture.report.ranks.LIST_LIMIT", 2)  # 1,000 in use: a month at 1M prospects has ~40k
    capped = report_json(runner, "ranks")
    assert capped["moves"] == everything["moves"][:2]  # the newest two
    assert capped["moves_total"] == everything["moves_total"] == 4
    assert (capped["transitions"], capped["items"]) == (everything["transitions"], everything["items"])
    assert len(report_json(runner, "ranks", "--limit", "3")["moves"]) == 3  # --limit still wins


CAMPAIGN_ROW = {
    "campaign": "mfg-insights",
    "item": "labor-shortage",
    "sent": 3,
    "failed": 0,
    "delivered": 2,
    "deferred": 0,
    "bounced": 0,
    "opens_human_unique": 3,
    "opens_human_total": 4,
    "opens_machine_total": 1,
    "opens_unknown_total": 1,
    "est_human_open_rate": 1.0,
    "clicks_human_unique": 1,
    "clicks_human_total": 1,
    "clicks_machine_total": 2,
    "unsubscribed": 0,
    "complaints": 1,
    "complaint_rate": 0.3333,
    "complaint_level": "alarm",
    "rank_moves": 2,
}


def test_campaigns_counts_unique_and_total_humans_and_machines(ws, runner):
    data = report_json(runner, "campaigns")
    assert data["rows"] == [CAMPAIGN_ROW]
    assert data["campaigns"] == [CAMPAIGN_ROW | {"item": ""}]
    assert data["top_links"] == [
        {"campaign": "mfg-insights", "url": "https://example.jp/a", "clicks_unique": 1, "clicks_total": 1}
    ]
    assert "alarm" in data["warnings"][0]
    assert report_json(runner, "campaigns", "--campaign", "saas-ops-digest")["rows"] == []


def test_post_that_came_back_is_a_leak(ws, runner, db_url):
    assert report_json(runner, "leaks")["postal_returned"] == []
    engine = db.engine_for(db_url)
    with engine.begin() as conn:
        conn.execute(
            Prospect.__table__.update()
            .where(Prospect.email == "client@mfg.example.jp")
            .values(postal_status="returned", postal_code="100-0005", prefecture="東京都", address_line="千代田区1-1")
        )
    data = report_json(runner, "leaks")
    assert pick(data["postal_returned"], "email", "postal_code", "prefecture") == [
        {"email": "client@mfg.example.jp", "postal_code": "100-0005", "prefecture": "東京都"}
    ]


def test_leaks_say_why_a_mailable_prospect_hears_nothing(ws, runner, db_url):
    """Issue 18: someone whose content has run out is named with the campaign (nurture.plan.silence)."""
    assert report_json(runner, "leaks")["silent_why"] == []
    engine = db.engine_for(db_url)
    keys = ["postmortems", "slos", "backups", "email-authentication", "patch-priorities"]
    at = history.NOW - timedelta(days=60)
    with engine.begin() as conn:
        # An English reader (without a language, the workspace's ja applies and the English campaign skips them).
        conn.execute(Prospect.__table__.update().where(Prospect.id == 3).values(language="en"))
        conn.execute(
            Delivery.__table__.insert(),
            [
                dict(
                    campaign="saas-ops-digest",
                    prospect_id=3,
                    item_key=key,
                    state="sent",
                    sent_at=at,
                    created_at=at,
                    updated_at=at,
                    subject="s",
                )
                for key in keys
            ],
        )
    data = report_json(runner, "leaks")
    (row,) = [r for r in data["silent_why"] if r["email"] == "bob@ops.example.com"]
    assert row["kind"] == "exhausted" and "saas-ops-digest" in row["reason"] + row["campaigns"]


def test_leaks_finds_each_kind_of_leak(ws, runner):
    data = report_json(runner, "leaks")
    assert [r["email"] for r in data["not_contacted"]] == ["noconsent@mfg.example.jp"]
    assert pick(data["overdue"], "email", "next_action_due", "days_overdue") == [
        {"email": "client@mfg.example.jp", "next_action_due": "2026-02-20", "days_overdue": 10}
    ]
    assert data["never_mailed"] == [{"reason": "no consent", "prospects": 1}]
    assert pick(data["silent"], "email", "campaign", "promised_days") == [
        {"email": "bob@ops.example.com", "campaign": "saas-ops-digest", "promised_days": 37.0}
    ]
    assert pick(data["unacknowledged"], "email", "reason", "days_open") == [
        {"email": "bob@ops.example.com", "reason": "rank_A", "days_open": 19.1}
    ]
    assert report_json(runner, "leaks", "--owner", "Smith")["overdue"] == []


def test_conversion_by_cohort_short_and_long_term(ws, runner):
    data = report_json(runner, "conversion")
    assert data["cohorts"] == [
        {
            "cohort": "2025-10",
            "prospects": 3,
            "won": 1,
            "conversion_rate": 0.3333,
            "won_short_term": 1,
            "won_long_term": 0,
            "amount": 1200000.0,
            "median_days_to_win": 144,
        },
        {
            "cohort": "2025-12",
            "prospects": 2,
            "won": 0,
            "conversion_rate": 0.0,
            "won_short_term": 0,
            "won_long_term": 0,
            "amount": 0.0,
            "median_days_to_win": None,
        },
    ]
    curve = [r["cumulative_rate_percent"] for r in data["curves"] if r["cohort"] == "2025-10"]
    assert curve == [0.0, 0.0, 0.0, 0.0, 33.33, 33.33]
    assert [r["cohort"] for r in report_json(runner, "conversion", "--by", "quarter")["cohorts"]] == ["2025-Q4"]


def test_referrals_kpi(ws, runner):
    data = report_json(runner, "referrals", "--target-rate", "0.2")
    assert pick(data["clients"], "email", "deliveries", "referrals", "referral_rate") == [
        {"email": "client@mfg.example.jp", "deliveries": 1, "referrals": 1, "referral_rate": 1.0}
    ]
    assert data["kpi"] == [
        {
            "clients": 1,
            "deliveries_per_client": 1.0,
            "target_rate": 0.2,
            "kpi_expected": 0.2,
            "kpi_actual": 1,
            "referral_rate": 1.0,
        }
    ]


def test_handoffs_acceptance_and_time_to_decision(ws, runner):
    data = report_json(runner, "handoffs")
    assert data["by_reason"] == [
        {
            "reason": "inquiry",
            "handoffs": 1,
            "acknowledged": 0,
            "rejected": 1,
            "open": 0,
            "escalated": 0,
            "acceptance_rate": 0.0,
            "median_hours_to_decision": 24.0,
        },
        {
            "reason": "rank_A",
            "handoffs": 2,
            "acknowledged": 1,
            "rejected": 0,
            "open": 1,
            "escalated": 1,
            "acceptance_rate": 1.0,
            "median_hours_to_decision": 5.0,
        },
    ]
    assert data["rejections"] == [{"reason": "inquiry", "verdict_reason": "学生からの問い合わせ", "count": 1}]
    assert (data["acknowledged"], data["rejected"], data["open"]) == (1, 1, 1)


def test_content_runway_per_campaign_and_temperature(ws, runner):
    data = report_json(runner, "content")
    postal = [r for r in data["campaigns"] if r["campaign"] == "postal-quarterly"]
    assert postal and all(r["members"] == 1 for r in postal)  # the sample postal campaign: one quarterly issue
    data["campaigns"] = [r for r in data["campaigns"] if r["campaign"] != "postal-quarterly"]
    assert pick(data["campaigns"], "campaign", "temperature", "members", "dry_now", "min_weeks_left") == [
        {"campaign": "mfg-insights", "temperature": "warm", "members": 1, "dry_now": 0, "min_weeks_left": 12.0},
        {"campaign": "mfg-insights", "temperature": "cold", "members": 1, "dry_now": 0, "min_weeks_left": 24.0},
        {"campaign": "saas-ops-digest", "temperature": "cold", "members": 1, "dry_now": 0, "min_weeks_left": 21.4},
    ]
    assert data["warnings"] == []


def test_content_warns_when_a_sequence_runs_dry(ws, runner, db_url):
    from sqlalchemy import insert

    from nurture.store.models import Delivery

    keys = ["logistics-2024", "energy-saving", "quality-records", "subsidies", "bcp"]
    with db.engine_for(db_url).begin() as conn:  # taro (warm, 14 days) has one item left: 2 weeks
        for n, key in enumerate(keys):
            at = history.T0.replace(day=1 + n)
            conn.execute(
                insert(Delivery).values(
                    campaign="mfg-insights",
                    prospect_id=1,
                    item_key=key,
                    state="sent",
                    sent_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
    data = report_json(runner, "content", "--campaign", "mfg-insights")
    assert data["campaigns"][0]["dry_within_8_weeks"] == 1 and data["campaigns"][0]["min_weeks_left"] == 2.0
    assert data["warnings"] and "mfg-insights (warm)" in data["warnings"][0]


@pytest.mark.parametrize("kind", ["ranks", "campaigns", "leaks", "conversion", "referrals", "handoffs", "content"])
def test_every_format_carries_the_same_rows(ws, runner, kind, tmp_path):
    data = report_json(runner, kind)
    first = next(k for k, v in data.items() if isinstance(v, list) and k not in ("warnings",))
    rows = data[first]
    text = run(runner, "report", kind, "--format", "csv")
    assert text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(text[1:])))
    assert len(table) == len(rows)
    for got, want in zip(table, rows, strict=True):
        for key, value in want.items():
            if (
                key in got
                and not isinstance(value, (list, dict))
                and value is not None
                and "_at" not in key
                and key != "at"
            ):
                assert got[key] == cell(value), (key, got, want)
    out = tmp_path / f"{kind}.xlsx"
    run(runner, "report", kind, "--format", "xlsx", "--out", str(out))
    sheet = load_workbook(out)[first]
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == len(rows) + 1
    header = list(values[0])
    for got, want in zip(values[1:], rows, strict=True):
        for key in header:
            if isinstance(want.get(key), (int, str)) and not key.endswith("_at") and key != "at":
                value = got[header.index(key)]
                assert ("" if value is None else value) == want[key], (key, got, want)  # Excel keeps no ""
    page = run(runner, "report", kind, "--format", "html", "--language", "en")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http://" not in page.split("<svg")[0]
    for want in rows[:5]:
        for key in ("email", "campaign", "cohort", "reason"):
            if isinstance(want.get(key), str) and want[key]:
                assert want[key] in page
    terminal = run(runner, "report", kind)
    for want in rows[:5]:
        for key in ("email", "campaign", "cohort", "reason"):
            if isinstance(want.get(key), str) and want[key]:
                assert want[key] in terminal


SHAPES = {
    "ranks": {
        "moves": ["email", "field", "from", "to", "at", "explanation", "events"],
        "transitions": ["field", "from", "to", "count"],
        "items": ["campaign", "item", "moves"],
    },
    "campaigns": {
        "rows": [
            "campaign",
            "item",
            "sent",
            "opens_human_unique",
            "opens_human_total",
            "opens_machine_total",
            "clicks_human_unique",
            "clicks_human_total",
            "clicks_machine_total",
            "unsubscribed",
            "complaints",
        ],
        "campaigns": ["campaign", "sent"],
        "top_links": ["campaign", "url"],
    },
    "leaks": {
        "not_contacted": ["email"],
        "overdue": ["email", "next_action_due"],
        "never_mailed": ["reason", "prospects"],
        "silent": ["email", "campaign"],
        "unacknowledged": ["email", "reason", "created_at"],
    },
    "conversion": {
        "cohorts": ["cohort", "prospects", "won", "conversion_rate", "won_short_term", "won_long_term"],
        "curves": ["cohort", "months_since_entry", "cumulative_rate_percent"],
    },
    "referrals": {
        "kpi": ["clients", "deliveries_per_client", "kpi_expected", "kpi_actual"],
        "clients": ["email", "deliveries", "referrals", "referral_rate"],
    },
    "handoffs": {
        "by_reason": ["reason", "acknowledged", "rejected", "acceptance_rate", "median_hours_to_decision"],
        "rejections": ["reason", "verdict_reason", "count"],
        "handoffs": ["email", "reason", "state"],
    },
    "content": {
        "campaigns": ["campaign", "temperature", "members", "dry_now", "dry_within_8_weeks"],
        "distribution": ["campaign", "weeks_left", "members"],
    },
}


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_json_shape_is_the_documented_one(ws, runner, kind):
    data = report_json(runner, kind)
    assert {"kind", "since", "until", "filters", "warnings"} <= set(data)
    docs = DOCS.read_text(encoding="utf-8")
    assert f"### {kind}" in docs
    for section, keys in SHAPES[kind].items():
        assert isinstance(data[section], list) and data[section], section
        assert set(keys) <= set(data[section][0]), (section, set(keys) - set(data[section][0]))
        assert f"`{section}`" in docs
        for key in keys:
            assert f"`{key}`" in docs, key
    if kind == "ranks":
        assert set(data["moves"][-1]["events"][0]) >= {"type", "label", "campaign", "item"}


def test_bad_input_is_a_clear_error(ws, runner):
    result = runner.invoke(main, ["report", "ranks", "--since", "yesterday"])
    assert result.exit_code == 1 and "error: --since 'yesterday' is not a date" in result.output
    result = runner.invoke(main, ["report", "ranks", "--since", "2026-03-01", "--until", "2026-02-01"])
    assert result.exit_code == 1 and "is not before" in result.output
    result = runner.invoke(main, ["report", "ranks", "--format", "csv", "--section", "nope"])
    assert result.exit_code == 1 and "sections: moves, transitions, items" in result.output


def test_prospects_won_and_referral_are_recorded_once(ws, runner):
    out = run(runner, "prospects", "won", "hanako@mfg.example.jp", "--date", "2026-02-27", "--amount", "500000")
    assert "won (long-term, 2026-02-27)" in out
    assert "already recorded" in run(runner, "prospects", "won", "hanako@mfg.example.jp", "--date", "2026-02-27")
    data = report_json(runner, "conversion")
    assert data["cohorts"][0]["won"] == 2 and data["cohorts"][0]["won_long_term"] == 1
    assert "referred" in run(
        runner, "prospects", "referral", "hanako@mfg.example.jp", "x@new.example.jp", "--date", "2026-03-01"
    )
    again = run(runner, "prospects", "referral", "hanako@mfg.example.jp", "X@new.example.jp")
    assert "already recorded" in again
    clients = report_json(runner, "referrals")["clients"]
    assert {c["email"]: c["referrals"] for c in clients} == {"client@mfg.example.jp": 1, "hanako@mfg.example.jp": 1}
    bad = runner.invoke(main, ["prospects", "won", "nobody@example.jp"])
    assert bad.exit_code == 1 and "error: no prospect with the address nobody@example.jp" in bad.output
    bad = runner.invoke(main, ["prospects", "won", "hanako@mfg.example.jp", "--amount", "-5"])
    assert bad.exit_code == 1 and "negative" in bad.output
