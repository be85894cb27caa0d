"""Campaign files -> Campaign objects: defaults, and every mistake reported with file:line and a fix."""

from __future__ import annotations

import dataclasses
import re
import typing
from datetime import date
from pathlib import Path

import pytest

from nurture.core import config as configuration
from nurture.core.errors import ConfigError, NotFound
from nurture.plan import campaigns
from nurture.plan.campaigns import lint_campaign, load_campaign, load_campaigns
from nurture.plan.segments import FIELDS, FLAGS, OPERATORS

GOOD = """\
name = "mfg-insights"
description = "製造業の業界動向ニュースレター"
language = "ja"
priority = 10

[segment]
temperature = { in = ["warm", "cold"] }
industry = { in = ["製造業", "manufacturing"] }

[cadence]
interval_by_temperature = { hot = 7, warm = 14, cold = 30 }
start = 2026-01-05
end = 2028-12-31
company_holidays = ["12-29..01-03", "2026-08-13..2026-08-16"]
monthly_cap = 2

[content]
mode = "pool"
when_exhausted = "wait"

[[content.items]]
key = "2026-11-supply-chain"
subject = "{{ prospect.company }}様へ：今月の製造業トピックス"
template = "mfg/supply.mjml"
text_template = "mfg/supply.txt"
industries = ["製造業"]
vars = { author = "編集部" }

[[content.items]]
subject = "省人化の進め方"
template = "mfg/labor.mjml"

[[allow]]
phrase = "無料"
reason = "無料公開の統計データの紹介"

[tracking]
opens = false
"""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A project folder with nurture.toml, empty template files and a campaigns folder; cwd set to it."""
    (tmp_path / "nurture.toml").write_text(
        '[identity]\norganization = "テスト工業"\nfrom_name = "テスト工業ニュース"\n'
        'from_address = "news@example.co.jp"\nreply_to = "sales@example.co.jp"\n\n'
        '[cadence]\ninterval_days = 21\ntime_zone = "Asia/Tokyo"\nsend_hours = [10, 17]\n',
        encoding="utf-8",
    )
    for name in ("mfg/supply.mjml", "mfg/supply.txt", "mfg/labor.mjml"):
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("<mjml></mjml>", encoding="utf-8")
    (tmp_path / "campaigns").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NURTURE_CONFIG", raising=False)
    return tmp_path


def write(ws: Path, text: str, name: str = "mfg") -> Path:
    path = ws / "campaigns" / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(ws: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_campaign(write(ws, text), configuration.load())
    lines = info.value.message.splitlines()
    return [line.strip() for line in (lines[1:] if len(lines) > 1 else lines)]


def test_good_campaign_loads_with_defaults_resolved(ws):
    c = load_campaign(write(ws, GOOD), configuration.load())
    assert (c.name, c.language, c.status, c.priority) == ("mfg-insights", "ja", "active", 10)
    # identity defaults
    assert (c.from_name, c.from_address, c.reply_to) == (
        "テスト工業ニュース",
        "news@example.co.jp",
        "sales@example.co.jp",
    )
    # cadence: the file's values, the rest from nurture.toml
    assert c.cadence.interval_for("hot") == 7 and c.cadence.interval_for("cold") == 30
    assert c.cadence.interval_days == 21 and c.cadence.send_hours == (10, 17)
    assert (c.cadence.start, c.cadence.end, c.cadence.monthly_cap) == (date(2026, 1, 5), date(2028, 12, 31), 2)
    assert [h.text for h in c.cadence.company_holidays] == ["12-29..01-03", "2026-08-13..2026-08-16"]
    assert c.cadence.send_days == ("mon", "tue", "wed", "thu", "fri")
    assert (c.content.mode, c.content.when_exhausted) == ("pool", "wait")
    first, second = c.items
    assert (first.key, first.industries, first.vars, first.line) == (
        "2026-11-supply-chain",
        ("製造業",),
        {"author": "編集部"},
        21,
    )
    assert second.key == "labor" and second.text_template is None  # key defaults to the template's stem
    assert c.allow[0].phrase == "無料" and c.tracking.opens is False and c.tracking.clicks is True
    assert c.segment.values("temperature", "in") == ("warm", "cold")
    assert c.item("2") is second and c.item("labor") is second
    with pytest.raises(NotFound, match="1:2026-11-supply-chain, 2:labor"):
        c.item("9")


def test_unknown_key_in_segment_says_did_you_mean(ws):
    text = GOOD.replace('temperature = { in = ["warm", "cold"] }', 'temprature = { in = ["warm", "cold"] }')
    assert problems(ws, text) == ['campaigns/mfg.toml:7: unknown key "temprature" (did you mean "temperature"?)']


def test_every_mistake_at_once_with_place_and_fix(ws):
    text = """\
name = "Mfg Insights"
language = "jp"
stauts = "active"

[segment]
temperature = { gte = 1 }
industry = { inn = ["製造業"] }
shoe_size = { eq = "27" }

[cadence]
start = 2026-05-01
end = 2026-04-30
time_zone = "Asia/Tokio"
send_days = ["mon", "tues"]
send_hours = [18, 9]
company_holidays = ["12-29..01-03", "02-30"]
interval_by_temperature = { hott = 7 }

[content]
[[content.items]]
key = "one"
subject = "件名"
template = "mfg/supply.mjml"

[[content.items]]
key = "one"
subject = "{{ prospect.company 様"
template = "mfg/suply.mjml"

[[content.items]]
key = "three"
subject = "x"
template = "../../etc/passwd"

[[allow]]
phrase = "無料"
reason = ""
"""
    got = problems(ws, text)
    expected = [
        "campaigns/mfg.toml:2: language = 'jp' is not allowed; choose one of: ja, en",
        'campaigns/mfg.toml:3: unknown key "stauts" (did you mean "status"?)',
        'campaigns/mfg.toml:1: name "Mfg Insights" must be lower-case letters, digits and "-"',
        'campaigns/mfg.toml:6: operator "gte" does not apply to temperature; temperature takes: eq, in, not_in',
        'campaigns/mfg.toml:7: unknown operator "inn" for industry (did you mean "in"?)',
        'campaigns/mfg.toml:8: unknown key "shoe_size" in [segment]; segment fields are:',
        'campaigns/mfg.toml:17: cadence.interval_by_temperature: unknown temperature "hott" (did you mean "hot"?)',
        "campaigns/mfg.toml:12: cadence.end 2026-04-30 is before cadence.start 2026-05-01",
        'campaigns/mfg.toml:14: cadence.send_days: unknown day "tues" (did you mean "tue"?)',
        "campaigns/mfg.toml:15: cadence.send_hours [18, 9] must be [start, end) local hours",
        'campaigns/mfg.toml:13: cadence.time_zone: "Asia/Tokio" is not a known time zone',
        'campaigns/mfg.toml:16: cadence.company_holidays[1]: company holiday "02-30": 02-30 is not a day of the year',
        'campaigns/mfg.toml:26: duplicate item key "one" (first used at line 20)',
        'campaigns/mfg.toml:27: item "one": subject is not a valid template',
        'campaigns/mfg.toml:28: item "one": unknown template file "mfg/suply.mjml" (not found in templates/) '
        '(did you mean "mfg/supply.mjml"?)',
        'campaigns/mfg.toml:33: item "three": template "../../etc/passwd" must be a path inside the templates folder',
        'campaigns/mfg.toml:37: allow "無料": write the reason',
    ]
    assert len(got) == len(expected), "\n".join(got)
    for want in expected:
        assert any(line.startswith(want) for line in got), f"{want}\n not in\n" + "\n".join(got)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("start = 2026-01-05", "start = 2026-02-30"), "campaigns/mfg.toml:12: invalid TOML"),
        (("start = 2026-01-05", 'start = "5 Jan 2026"'), "campaigns/mfg.toml:12: cadence.start must be a date like"),
        (('name = "mfg-insights"\n', ""), 'campaigns/mfg.toml: missing key "name"'),
        (('language = "ja"\n', ""), 'campaigns/mfg.toml: missing key "language"'),
        (("[[content.items]]", "[[content.item]]"), 'unknown key "item" in [content] (did you mean "items"?)'),
        (("priority = 10", 'priority = 10\nfrom_address = "news at example"'), 'from_address "news at example" is not'),
        (
            ('text_template = "mfg/supply.txt"', 'text_template = "mfg/missing.txt"'),
            'campaigns/mfg.toml:25: item "2026-11-supply-chain": unknown template file "mfg/missing.txt"',
        ),
        (('key = "2026-11-supply-chain"', 'key = "11月号"'), 'item key "11月号" is not a valid id'),
        (('subject = "省人化の進め方"', 'subject = ""'), 'item "labor": subject is empty'),
        (("monthly_cap = 2", "monthly_cap = 0"), "cadence.monthly_cap must be at least 1"),
        (('reason = "無料公開の統計データの紹介"\n', ""), 'missing key "reason" in [allow[0]]'),
    ],
)
def test_single_mistakes(ws, change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    got = problems(ws, text)
    assert any(message in line for line in got), "\n".join(got)


def test_campaign_without_items_is_an_error(ws):
    text = GOOD.split("[[content.items]]")[0]
    assert any("has no content items" in line for line in problems(ws, text))


def test_industry_filter_that_cannot_match_the_segment_is_a_warning(ws):
    text = GOOD.replace('industries = ["製造業"]', 'industries = ["小売業"]')
    c = load_campaign(write(ws, text), configuration.load())
    assert lint_campaign(c) == [
        "campaigns/mfg.toml:21: item \"2026-11-supply-chain\": industries ['小売業'] cannot "
        "match the segment (industry in ['製造業', 'manufacturing']); nobody would receive it"
    ]
    assert lint_campaign(load_campaign(write(ws, GOOD), configuration.load())) == []
    text = GOOD.replace('industry = { in = ["製造業", "manufacturing"] }', 'industry = { not_in = ["製造業"] }')
    assert len(lint_campaign(load_campaign(write(ws, text), configuration.load()))) == 1


def test_load_campaigns_sorts_by_priority_and_finds_by_name(ws):
    write(ws, GOOD, "mfg")
    write(ws, GOOD.replace('name = "mfg-insights"', 'name = "zz-news"').replace("priority = 10", "priority = 50"), "zz")
    write(ws, GOOD.replace('name = "mfg-insights"', 'name = "aa-news"').replace("priority = 10", "priority = 10"), "aa")
    config = configuration.load()
    assert [c.name for c in load_campaigns(config)] == ["zz-news", "aa-news", "mfg-insights"]
    assert [c.name for c in load_campaigns(config, ["mfg-insights"])] == ["mfg-insights"]
    with pytest.raises(NotFound) as info:
        load_campaigns(config, ["nope"])
    assert "no campaign named nope" in str(info.value)
    assert "available: aa-news, mfg-insights, zz-news" in str(info.value)


def test_duplicate_campaign_names_across_files(ws):
    write(ws, GOOD, "mfg")
    write(ws, GOOD, "mfg-copy")
    with pytest.raises(
        ConfigError,
        match=r'campaigns/mfg.toml: duplicate campaign name "mfg-insights" '
        r"\(also in campaigns/mfg-copy.toml\)",
    ):
        load_campaigns(configuration.load())


def test_a_broken_file_does_not_block_asking_for_another(ws):
    write(ws, GOOD, "mfg")
    write(ws, 'name = "other"\nlanguage = "en"\ncolour = 1\n[content]\n', "other")
    config = configuration.load()
    assert [c.name for c in load_campaigns(config, ["mfg-insights"])] == ["mfg-insights"]
    with pytest.raises(ConfigError, match=r'campaigns/other\.toml:3: unknown key "colour"'):
        load_campaigns(config)
    with pytest.raises(ConfigError, match=r'campaigns/other\.toml:3: unknown key "colour"'):
        load_campaigns(config, ["other"])


def test_campaign_files_are_frozen(ws):
    c = load_campaign(write(ws, GOOD), configuration.load())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"  # type: ignore[misc]


README = Path(__file__).resolve().parents[2] / "campaigns" / "README.md"


def readme_example() -> str:
    text = README.read_text("utf-8")
    return re.search(r"## A complete example.*?```toml\n(.*?)```", text, re.S).group(1)


def test_readme_example_is_a_valid_campaign(ws):
    for name in ("mfg/2026-11-supply-chain.mjml", "mfg/2026-11-supply-chain.txt", "mfg/02-logistics-2024.mjml"):
        (ws / "templates" / name).write_text("<mjml></mjml>", encoding="utf-8")
    c = load_campaign(write(ws, readme_example()), configuration.load())
    assert c.name == "mfg-insights" and [i.key for i in c.items] == ["2026-11-supply-chain", "02-logistics-2024"]
    assert len(c.cadence.company_holidays) == 4 and c.cadence.monthly_cap == 2
    assert lint_campaign(c) == []


def test_readme_documents_every_key():
    example = readme_example()
    keys = set()
    for cls in (
        campaigns._FileTable,
        campaigns._CadenceTable,
        campaigns._ContentTable,
        campaigns._ItemTable,
        campaigns.Allowance,
        campaigns.CampaignTracking,
    ):
        keys |= set(typing.get_type_hints(cls))
    keys |= set(FIELDS) | set(FLAGS) | set(OPERATORS)
    missing = sorted(k for k in keys if k not in example)
    assert missing == [], f"campaigns/README.md does not explain: {missing}"


def test_weight_and_fallback_load_and_are_checked(ws):
    c = load_campaign(
        write(ws, GOOD.replace("priority = 10\n", 'priority = 10\nweight = 2\nfallback = "ever"\n')),
        configuration.load(),
    )
    assert (c.weight, c.fallback) == (2.0, "ever")
    plain = load_campaign(write(ws, GOOD), configuration.load())
    assert (plain.weight, plain.fallback) == (1.0, "")
    found = problems(ws, GOOD.replace("priority = 10\n", 'priority = 10\nweight = 0\nfallback = "mfg-insights"\n'))
    assert any(":5: weight 0 must be more than 0" in p for p in found), found
    assert any(':6: fallback "mfg-insights" must be the name of another campaign' in p for p in found), found


def test_a_fallback_nobody_has_is_an_error_listing_the_campaigns(ws):
    write(ws, GOOD.replace("priority = 10\n", 'priority = 10\nfallback = "evergreen"\n'))
    with pytest.raises(ConfigError, match=r'fallback "evergreen" is not a campaign \(campaigns: mfg-insights\)'):
        load_campaigns(configuration.load())
