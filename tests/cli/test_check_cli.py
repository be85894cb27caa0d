"""``nurture check`` and ``nurture preview`` through the CLI (CliRunner), on small campaigns made here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from nurture.cli.main import main
from nurture.store import db
from nurture.store.models import Prospect

IDENTITY = """\
[identity]
organization = "株式会社テスト工業"
from_name = "テスト工業ニュース"
from_address = "news@example.co.jp"
postal_address = "東京都千代田区丸の内1-1-1"
inquiry = "info@example.co.jp"
"""

FOOTER = (
    "<mj-text>発行元：{{ sender.organization }}<br/>{{ sender.postal_address }}<br/>\n"
    "お問い合わせ：{{ sender.inquiry }}<br/>\n"
    "今後の配信を希望されない場合は配信停止の手続きができます："
    '<a href="{{ urls.unsubscribe }}" data-nurture="no-track">配信停止はこちら</a></mj-text>'
)

INFO = (
    "<mjml><mj-body><mj-section><mj-column>\n"
    "<mj-text>{{ prospect.company }} {{ prospect.name }}様</mj-text>\n"
    "<mj-text>今月は{{ item.vars.topic }}の動向です。"
    "原材料の価格動向と、在庫を持つ場所の考え方を、公開統計から整理しました。</mj-text>\n"
    f"{FOOTER}\n"
    "</mj-column></mj-section></mj-body></mjml>\n"
)

SALESY = f"""<mjml><mj-body><mj-section><mj-column>
<mj-text>{{{{ prospect.name }}}}様</mj-text>
<mj-text>今なら期間限定で導入費用が20%割引！特別価格 月額9,800円（税別）でご提供します。</mj-text>
<mj-text>お申し込みはこちらから、今すぐご購入ください。無料デモのご予約も受付中です。</mj-text>
{FOOTER}
</mj-column></mj-section></mj-body></mjml>
"""

NO_FOOTER = """<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ prospect.name }}様、今月の業界動向です。</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""

CAMPAIGN = """\
name = "news"
language = "ja"

[segment]
temperature = { in = ["warm", "cold"] }
industry = { in = ["製造業"] }

[content]
[[content.items]]
key = "trend-1"
subject = "{{ prospect.company }}様へ：今月の業界動向"
template = "news/info.mjml"
vars = { topic = "物流" }

[[content.items]]
key = "trend-2"
subject = "在庫の考え方"
template = "news/info.mjml"
vars = { topic = "在庫" }
"""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A project with nurture.toml (identity, no database section, no secret), templates and one campaign."""
    (tmp_path / "nurture.toml").write_text(IDENTITY, encoding="utf-8")
    folder = tmp_path / "templates" / "news"
    folder.mkdir(parents=True)
    for name, text in (("info.mjml", INFO), ("salesy.mjml", SALESY), ("nofooter.mjml", NO_FOOTER)):
        (folder / name).write_text(text, encoding="utf-8")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "news.toml").write_text(CAMPAIGN, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name in ("NURTURE_CONFIG", "NURTURE_SECRET", "NURTURE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def add_campaign(ws: Path, name: str, text: str) -> None:
    (ws / "campaigns" / f"{name}.toml").write_text(text, encoding="utf-8")


def test_good_campaign_passes_without_database_or_secret(ws, runner):
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "ok        news (campaigns/news.toml, 2 items)" in result.output
    assert "1 campaign checked: 1 without errors, 0 with errors (0 errors, 0 warnings)" in result.output
    assert "placeholder secret" in result.output
    assert not (ws / "nurture.db").exists()  # a file check: no database was opened or created


def test_broken_toml_fails_with_file_and_line(ws, runner):
    add_campaign(
        ws,
        "broken",
        CAMPAIGN.replace('name = "news"', 'name = "broken"')
        .replace("temperature = {", "temprature = {")
        .replace('template = "news/info.mjml"\nvars = { topic = "在庫" }', 'template = "news/nope.mjml"'),
    )
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert "errors    broken (campaigns/broken.toml, not loaded): 2 errors, 0 warnings" in result.output
    assert 'campaigns/broken.toml:5: unknown key "temprature" (did you mean "temperature"?)' in result.output
    assert 'campaigns/broken.toml:18: item "trend-2": unknown template file "news/nope.mjml"' in result.output
    assert "ok        news" in result.output  # the other campaign is still checked


def test_invalid_toml_syntax(ws, runner):
    add_campaign(ws, "news", CAMPAIGN.replace('language = "ja"', 'language = "ja'))
    result = runner.invoke(main, ["check", "news"])
    assert result.exit_code == 1
    assert "campaigns/news.toml:2: invalid TOML" in result.output


def test_mjml_error_names_the_template_and_the_item(ws, runner):
    (ws / "templates" / "news" / "info.mjml").write_text(INFO.replace("公開統計", "A < B の公開統計"), "utf-8")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert 'campaigns/news.toml:9: item "trend-1": templates/news/info.mjml' in result.output
    assert "MJML error" in result.output and "bare < in text" in result.output


def test_unknown_variable_fails_the_render(ws, runner):
    add_campaign(ws, "news", CAMPAIGN.replace("{{ prospect.company }}様へ", "{{ prospect.compnay }}様へ"))
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert 'campaigns/news.toml:9: item "trend-1": does not render for sample@example.co.jp' in result.output
    assert "compnay" in result.output


def test_missing_footer_fails(ws, runner):
    add_campaign(
        ws,
        "news",
        CAMPAIGN.replace('template = "news/info.mjml"\nvars = { topic = "物流" }', 'template = "news/nofooter.mjml"'),
    )
    result = runner.invoke(main, ["check", "--json"])
    assert result.exit_code == 1
    findings = json.loads(result.output)["campaigns"][0]["findings"]
    kinds = {(f["kind"], f["item"]) for f in findings}
    assert kinds == {("footer", "trend-1")}
    assert any("opt-out" in f["message"] for f in findings)


def test_missing_identity_is_reported_once_per_campaign(ws, runner):
    (ws / "nurture.toml").write_text(IDENTITY.replace('postal_address = "東京都千代田区丸の内1-1-1"\n', ""), "utf-8")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert result.output.count("postal_address is empty") == 1


def test_salesy_content_fails_with_item_phrase_category_and_why(ws, runner):
    add_campaign(
        ws,
        "sales",
        CAMPAIGN.replace('name = "news"', 'name = "sales"').replace(
            'template = "news/info.mjml"\nvars = { topic = "在庫" }', 'template = "news/salesy.mjml"'
        ),
    )
    result = runner.invoke(main, ["check", "sales", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)["campaigns"][0]
    content = [f for f in report["findings"] if f["kind"] == "content"]
    assert content and all(f["item"] == "trend-2" and f["line"] == 15 for f in content)
    assert {"price", "urgency", "purchase_cta"} <= {f["category"] for f in content}
    assert all(f["phrase"] and f["why"] and f["where"].startswith(("text line", "subject")) for f in content)
    human = runner.invoke(main, ["check", "sales"]).output
    assert 'campaigns/sales.toml:15: item "trend-2": urgency' in human


def test_allow_lets_a_phrase_through(ws, runner):
    flash = "今なら期間限定の統計速報も公開されています。"
    (ws / "templates" / "news" / "info.mjml").write_text(
        INFO.replace("公開統計から整理しました。", "公開統計から整理しました。" + flash), "utf-8"
    )
    assert runner.invoke(main, ["check"]).exit_code == 1
    add_campaign(
        ws,
        "news",
        CAMPAIGN + '\n[[allow]]\nphrase = "期間限定"\n'
        'reason = "統計の速報公開の説明で、販売ではない"\n[[allow]]\nphrase = "今なら"\nreason = "同上"\n',
    )
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output


def test_json_shape(ws, runner):
    add_campaign(
        ws,
        "other",
        CAMPAIGN.replace('name = "news"', 'name = "other"').replace(
            'vars = { topic = "物流" }', 'vars = { topic = "物流" }\nindustries = ["小売業"]'
        ),
    )
    result = runner.invoke(main, ["check", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {
        "ok",
        "errors",
        "warnings",
        "preview_secret",
        "note",
        "setup",
        "campaigns",
        "schedule_warnings",
    }
    assert data["setup"] == []  # the outbox sender: no preflight
    assert data["schedule_warnings"] == []  # the default schedule (every 15 minutes) reaches every window
    assert (data["ok"], data["errors"], data["warnings"], data["preview_secret"]) == (True, 0, 1, True)
    news, other = sorted(data["campaigns"], key=lambda c: c["name"])
    assert news == {
        "name": "news",
        "file": "campaigns/news.toml",
        "status": "ok",
        "loaded": True,
        "items": 2,
        "errors": 0,
        "warnings": 0,
        "allowed": 0,
        "findings": [],
    }
    assert other["status"] == "warnings"
    (warning,) = other["findings"]
    assert set(warning) == {
        "severity",
        "kind",
        "message",
        "file",
        "line",
        "item",
        "phrase",
        "category",
        "why",
        "where",
        "rule",
        "score",
        "evidence",
        "allowed",
    }
    assert (warning["severity"], warning["kind"], warning["file"], warning["line"]) == (
        "warning",
        "segment",
        "campaigns/other.toml",
        9,
    )


def test_check_named_campaign_and_unknown_name(ws, runner):
    assert runner.invoke(main, ["check", "news"]).exit_code == 0
    result = runner.invoke(main, ["check", "nope"])
    assert result.exit_code == 1
    assert "error: no campaign named nope" in result.output
    assert "available: news" in result.output


def test_no_campaigns_at_all(ws, runner):
    (ws / "campaigns" / "news.toml").unlink()
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert "no campaign files (*.toml) in campaigns" in result.output


def test_duplicate_names_across_files(ws, runner):
    add_campaign(ws, "news-copy", CAMPAIGN)
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert 'campaigns/news.toml: duplicate campaign name "news" (also in campaigns/news-copy.toml)' in result.output


def test_preview_writes_html_and_prints_subject_and_text(ws, runner):
    result = runner.invoke(main, ["preview", "news"])
    assert result.exit_code == 0, result.output
    out = ws / "preview-news-trend-1.html"
    assert f"wrote {out.name}" in result.output
    html = out.read_text("utf-8")
    assert "株式会社サンプル精機" in html and "<html" in html.lower()
    assert "subject: 株式会社サンプル精機様へ：今月の業界動向" in result.output
    assert "今月は物流の動向です。" in result.output  # the text part
    assert "placeholder secret" in result.output


def test_preview_item_by_key_or_number_and_out(ws, runner, tmp_path):
    target = tmp_path / "out" / "x.html"
    target.parent.mkdir()
    result = runner.invoke(main, ["preview", "news", "--item", "trend-2", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "今月は在庫の動向です。" in target.read_text("utf-8")
    result = runner.invoke(main, ["preview", "news", "--item", "2"])
    assert result.exit_code == 0 and (ws / "preview-news-trend-2.html").exists()
    result = runner.invoke(main, ["preview", "news", "--item", "7"])
    assert result.exit_code == 1
    assert 'no item "7"' in result.output and "1:trend-1, 2:trend-2" in result.output


def test_preview_of_a_broken_campaign_is_a_config_error(ws, runner):
    add_campaign(ws, "news", CAMPAIGN.replace("temperature = {", "temprature = {"))
    result = runner.invoke(main, ["preview", "news"])
    assert result.exit_code == 2
    assert 'error: campaigns/news.toml:5: unknown key "temprature"' in result.output


def test_check_and_preview_for_a_prospect_from_the_database(ws, runner, db_url):
    (ws / "nurture.toml").write_text(IDENTITY + f'\n[database]\nurl = "{db_url}"\n', encoding="utf-8")
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Prospect),
            [
                dict(
                    email="kato@example.jp",
                    name="加藤 一郎",
                    company="加藤製作所",
                    title="",
                    industry="製造業",
                    temperature="cold",
                    stage="MQL",
                    rank="C",
                    score=0.0,
                    owner="",
                    next_action="",
                    time_zone="",
                    language="ja",
                    attributes={},
                    consent_basis="business_card",
                    consent_source="",
                    status="active",
                    status_reason="",
                    frequency_factor=1.0,
                    created_at=now,
                    updated_at=now,
                    strength_existing_business=0,
                    strength_empathy=0,
                    strength_contribution=0,
                    strength_multiple_contacts=0,
                    strength_decision_maker=0,
                    strength_invested=0,
                )
            ],
        )
    result = runner.invoke(main, ["preview", "news", "--prospect", "KATO@example.jp"])
    assert result.exit_code == 0, result.output
    assert "subject: 加藤製作所様へ：今月の業界動向" in result.output
    assert "加藤 一郎 <kato@example.jp>" in result.output and "sample prospect" not in result.output
    assert runner.invoke(main, ["check", "--prospect", "kato@example.jp"]).exit_code == 0
    result = runner.invoke(main, ["check", "--prospect", "nobody@example.jp"])
    assert result.exit_code == 1 and "no prospect with the address nobody@example.jp" in result.output
    db._engines.pop(db_url, None)
    engine.dispose()


def test_help_texts(runner):
    for command in ("check", "preview"):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--prospect" in result.output


def test_own_rule_files_from_config_and_ended_campaign_warning(ws, runner):
    """[content] rules adds the user's rule files to the built-in ones; a past end date is a warning."""
    (ws / "rules").mkdir()
    (ws / "rules" / "ours.toml").write_text(
        """\
language = "ja"

[[rule]]
id = "our-product"
category = "purchase_cta"
severity = "error"
why = "製品名はニュースレターではなくWebサイトで紹介します。"
phrases = ["在庫の考え方"]
examples = ["在庫の考え方"]
""",
        encoding="utf-8",
    )
    (ws / "nurture.toml").write_text(IDENTITY + '\n[content]\nrules = ["rules/ours.toml"]\n', encoding="utf-8")
    add_campaign(ws, "news", CAMPAIGN.replace("[content]", "[cadence]\nend = 2020-12-31\n\n[content]"))
    result = runner.invoke(main, ["check", "--json"])
    assert result.exit_code == 1
    [report] = json.loads(result.output)["campaigns"]
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert errors and all(f["phrase"] == "在庫の考え方" for f in errors)
    assert any("ended on 2020-12-31" in f["message"] for f in report["findings"] if f["severity"] == "warning")
    (ws / "nurture.toml").write_text(IDENTITY + '\n[content]\nrules = ["rules/missing.toml"]\n', encoding="utf-8")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 2 and "missing.toml" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ issue 14: the whole mail, allow, explain

PITCH_IN_BRANCH = """<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ prospect.name }}様、今月は物流の動向です。公開統計から整理しました。</mj-text>
<mj-raw>{% if prospect.industry == '小売業' %}</mj-raw>
<mj-text>小売業の皆さまへ：今なら導入費用が20%OFF、お申し込みは今すぐこちらから。</mj-text>
<mj-raw>{% endif %}</mj-raw>
FOOTER
</mj-column></mj-section></mj-body></mjml>
""".replace("FOOTER", FOOTER)


def test_a_pitch_in_a_branch_the_sample_does_not_take_fails(ws, runner):
    """The sample prospect is in 製造業, so the 小売業 branch is not rendered; its words are still checked."""
    (ws / "templates" / "news" / "branch.mjml").write_text(PITCH_IN_BRANCH, "utf-8")
    add_campaign(
        ws,
        "news",
        CAMPAIGN.replace('template = "news/info.mjml"\nvars = { topic = "物流" }', 'template = "news/branch.mjml"'),
    )
    result = runner.invoke(main, ["check", "--json"])
    assert result.exit_code == 1, result.output
    findings = json.loads(result.output)["campaigns"][0]["findings"]
    content = [f for f in findings if f["kind"] == "content" and f["severity"] == "error"]
    assert content and all(f["where"].startswith("template line") for f in content), content
    assert any("20%OFF" in f["phrase"] for f in content)


def test_a_pitch_only_in_the_html_part_fails(ws, runner):
    """A hand-written text part that is clean does not hide a pitch in the HTML part."""
    (ws / "templates" / "news" / "salesy.txt").write_text(
        "{{ prospect.name }}様\n今月の業界動向です。\n配信停止：{{ urls.unsubscribe }}\n", "utf-8"
    )
    add_campaign(
        ws,
        "news",
        CAMPAIGN.replace(
            'template = "news/info.mjml"\nvars = { topic = "物流" }',
            'template = "news/salesy.mjml"\ntext_template = "news/salesy.txt"',
        ),
    )
    result = runner.invoke(main, ["check", "--json"])
    data = json.loads(result.output)
    wheres = {f["where"] for f in data["campaigns"][0]["findings"] if f["kind"] == "content"}
    assert result.exit_code == 1
    assert any(w.startswith("HTML part line") for w in wheres), wheres


def test_allow_a_rule_with_a_reason_is_honoured_and_listed(ws, runner):
    text = CAMPAIGN.replace('template = "news/info.mjml"\nvars = { topic = "物流" }', 'template = "news/salesy.mjml"')
    add_campaign(ws, "news", text)
    before = json.loads(runner.invoke(main, ["check", "--json"]).output)["campaigns"][0]["findings"]
    rules = sorted({f["rule"] for f in before if f["kind"] == "content" and f["severity"] == "error"})
    assert rules
    # Allowed rule findings no longer explain their sentence: the model's own judgement then shows, and is a
    # separate reviewed exception.
    rules = sorted(set(rules) | {"ja-model"})
    allow = "".join(
        f'\n[[allow]]\nrule = "{r}"\nitem = "trend-1"\nreason = "レビュー済み：社内研修用の見本メール"\n' for r in rules
    )
    add_campaign(ws, "news", text + allow)
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "allowed" in result.output and "レビュー済み：社内研修用の見本メール" in result.output
    data = json.loads(runner.invoke(main, ["check", "--json"]).output)
    assert data["campaigns"][0]["allowed"] >= len(rules)
    # An allowance without a reason, or naming neither a phrase nor a rule, is refused with file and line.
    add_campaign(ws, "news", text + '\n[[allow]]\nrule = "ja-model"\nreason = ""\n')
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1 and "write the reason" in result.output
    add_campaign(ws, "news", CAMPAIGN + '\n[[allow]]\nrule = "ja-no-such-rule"\nreason = "typo"\n')
    result = runner.invoke(main, ["check"])
    assert 'rule "ja-no-such-rule" is not a known rule id' in result.output


def test_explain_shows_every_finding_with_its_evidence(ws, runner):
    add_campaign(
        ws,
        "news",
        CAMPAIGN.replace('template = "news/info.mjml"\nvars = { topic = "物流" }', 'template = "news/salesy.mjml"')
        + '\n[[allow]]\nphrase = "無料デモ"\nreason = "展示会の公開デモの紹介"\n',
    )
    result = runner.invoke(main, ["check", "--explain", "news/trend-1"])
    assert result.exit_code == 1
    out = result.output
    assert "rule: ja-" in out and "why: " in out and "evidence: " in out and "model p=" in out
    assert "allowed by the campaign file: 展示会の公開デモの紹介" in out
    assert "news/trend-1:" in out and "content error" in out
    assert "trend-2" not in out
    data = json.loads(runner.invoke(main, ["check", "--explain", "trend-1", "--json"]).output)
    assert data["item"] == "trend-1" and all(f["item"] == "trend-1" for f in data["findings"])
    assert any(f["evidence"] for f in data["findings"])
    result = runner.invoke(main, ["check", "--explain", "news/nope"])
    assert result.exit_code == 1 and 'error: no item "news/nope"' in result.output
    clean = runner.invoke(main, ["check", "--explain", "trend-2"])
    assert clean.exit_code == 1  # trend-1 still fails the check; trend-2 itself reads as information
    assert "trend-2: no content findings" in clean.output
