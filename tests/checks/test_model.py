"""The pitch model and the labelled corpus (issue 14): held-out accuracy with a fixed seed, explanations,
hard line wraps, the shipped model in step with what it is trained from."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from nurture.checks import content
from nurture.checks.content import check_text
from nurture.checks.fit import ERROR_GRID, MAIL_GRID, VETO_GRID, choose_mail_threshold, choose_thresholds, fit, folds
from nurture.checks.model import (
    CORPUS_DIR,
    MODEL_FILE,
    load_model,
    read_corpus,
    saved_digest,
    sources_digest,
)

LANGUAGES = ("ja", "en")

# Held-out floors asserted here: 2-fold (seed 14), a model fitted on one half judging the other, its
# thresholds chosen by a 2-fold inner cross-validation inside that half (nurture.checks.fit: the held-out
# half influences nothing), so the test stays a few seconds. The NB-scaled model of session 6 puts pitches
# between 0.3 and 0.5 that the fixed default 0.5 missed, so fixed defaults no longer measure it. The floors
# are those of session 5 (not lowered); the protocol reaches them with a margin. The measurement of issue
# 14's targets (recall and precision >= 0.95) is bench/content.py: 5-fold, thresholds chosen by inner
# cross-validation inside the training folds.
FLOORS = {"ja": (0.92, 0.87), "en": (0.88, 0.87)}  # (recall, precision) of errors on held-out items


@pytest.mark.parametrize("language", LANGUAGES)
def test_corpus_is_large_labelled_and_varied(language):
    rows = read_corpus(language)
    labels = Counter(r["label"] for r in rows)
    assert labels["salesy"] >= 150 and labels["informational"] >= 150, labels
    assert len({r["text"] for r in rows}) == len(rows)  # no duplicates
    assert len({r["id"] for r in rows}) == len(rows)
    salesy_classes = {r["class"] for r in rows if r["label"] == "salesy"}
    assert {
        "price",
        "discount",
        "urgency",
        "scarcity",
        "meeting",
        "purchase_cta",
        "free_offer",
        "guarantee",
        "switch_incentive",
        "adoption_pressure",
        "upsell",
        "referral",
        "comparison",
        "preorder",
        "testimonial",
    } <= salesy_classes
    hard = {r["class"] for r in rows if r["label"] == "informational"}
    assert {"price_news", "deadline", "subsidy", "statistics", "event_fee", "law"} <= hard
    industries = {r["industry"] for r in rows}
    assert {"mfg", "logistics", "construction", "it", "food", "retail", "healthcare", "services"} <= industries
    sources = (CORPUS_DIR / "SOURCES.md").read_text("utf-8")
    for cls in salesy_classes | hard:
        assert f"`{cls}`" in sources, f"SOURCES.md does not say where class {cls} comes from"


@pytest.mark.parametrize("language", LANGUAGES)
def test_held_out_recall_and_precision(language):
    """2-fold: the model is fitted on one half only (weights and thresholds) and the check (rules + that
    model) judges the other; an item counts as caught when it gets an error."""
    rows = read_corpus(language)
    tp = fp = fn = 0
    halves = folds(rows, 2, 14)
    for i, test in enumerate(halves):
        model = fit(halves[1 - i], language, inner=2)
        for row in test:
            flagged = bool(content.errors(check_text(row["text"], language=language, model={language: model})))
            salesy = row["label"] == "salesy"
            tp += salesy and flagged
            fp += flagged and not salesy
            fn += salesy and not flagged
    recall, precision = tp / (tp + fn), tp / (tp + fp)
    floor_recall, floor_precision = FLOORS[language]
    assert recall >= floor_recall and precision >= floor_precision, (language, recall, precision)
    # ... and far above the rules alone, which is the check before issue 14.
    rules_tp = sum(
        bool(content.errors(check_text(r["text"], language=language, model={}))) for r in rows if r["label"] == "salesy"
    )
    assert recall > rules_tp / (tp + fn) + 0.3


def test_thresholds_are_chosen_from_the_items_given():
    """choose_thresholds keeps the pair with the best min(recall, precision); the mail threshold is higher
    than the item one when informational items score high now and then (a mail has 25 chances)."""
    items = [(0.9, []), (0.7, []), (0.45, [(0.35, True)]), (0.6, []), (0.2, [(0.01, True)]), (0.1, [])]
    salesy = [True, True, True, False, False, False]
    # 3 of 3 caught (a rule error at p=0.35 stands), not the 0.6 item; the rule error at p=0.01 is vetoed.
    # Every veto from 0.02 to 0.3 does both; ties go to the lowest (the rules are the reviewed part).
    assert choose_thresholds(items, salesy) == (0.7, VETO_GRID[0])
    info = [0.05 * (i % 12) for i in range(60)]  # informational scores 0 .. 0.55
    scores = info + [0.97] * 30
    labels = [False] * 60 + [True] * 30
    assert choose_mail_threshold(scores, labels, 14) > 0.55


def test_fit_trains_on_the_rows_given_and_carries_its_thresholds():
    rows = [r for r in read_corpus("ja") if r.get("batch") != "s5"][:120]
    model = fit(rows, "ja", inner=2)
    assert model.error_at in ERROR_GRID and model.veto_below in VETO_GRID
    assert model.error_at <= model.mail_error_at <= MAIL_GRID[-1]
    shipped = load_model()["ja"]
    assert shipped.error_at in ERROR_GRID and shipped.mail_error_at >= shipped.error_at


def test_shipped_model_is_trained_from_the_current_corpus_cues_and_rules():
    assert MODEL_FILE.exists()
    assert saved_digest() == sources_digest(), "retrain: python bench/content.py --write-model"
    data = json.loads(MODEL_FILE.read_text("utf-8"))
    assert set(data["models"]) == set(LANGUAGES)
    assert set(load_model()) == set(LANGUAGES)


def test_every_model_finding_says_where_and_why():
    text = (
        "いつもお世話になっております。\n\n弊社のクラウド勤怠は、すでに800社が導入済みです。\n"
        "乗り遅れる前に、ぜひご検討ください。\n"
    )
    found = [f for f in check_text(text, language="ja") if f.rule == "ja-model"]
    assert found, check_text(text, language="ja")
    for f in found:
        assert f.line in (3, 4) and f.phrase and f.phrase.replace(" ", "") in text.replace("\n", "")
        assert f.score is not None and f.score >= load_model()["ja"].error_at
        assert f.evidence and "p=" in f.why and "根拠" in f.why
        assert f.category == content.MODEL_CATEGORY and f.severity == "error"
    english = check_text("Over 900 shops have already switched. Don't get left behind — upgrade today.", language="en")
    assert content.errors(english)
    assert all(f.evidence and f.why for f in english)


def test_rule_findings_carry_the_model_judgement_of_their_sentence():
    [finding] = [
        f for f in check_text("今なら20%OFFでご提供します。", language="ja") if f.rule == "ja-discount-percent"
    ]
    assert finding.severity == "error" and finding.score is not None and finding.score > 0.9
    assert finding.evidence and all(e.rsplit(" ", 1)[-1][0] in "+-" for e in finding.evidence)


@pytest.mark.parametrize(
    "text",
    [
        "国土交通省は、トラック運送の標準的な運賃を平均8%引き上げる告示を出しました。",
        "鉄鋼各社が鋼材価格を1トン5,000円引き上げると発表しました。",
        "県建設業協会の安全大会は来月です。参加費は1名2,000円（資料代込み）とのことです。",
        "景品表示法では、実際には常に同じ価格なのに「期間限定」とうたうと有利誤認表示にあたるおそれがあります。",
        "The regional manufacturers' association holds its fall conference on November 20; "
        "registration is $95 for members.",
    ],
)
def test_issue_14_false_positives_are_not_errors(text):
    """A price rise (引き上げ), an association's event fee and an article on the law about 期間限定 wording."""
    assert not content.errors(check_text(text)), check_text(text)


def test_japanese_phrases_broken_by_a_hard_line_wrap_are_found_and_located():
    text = "今月の話題です。\n\n詳しいご案内やお申し込\nみはこちらのページから。全品２０％ＯＦＦは期間\n限定です。\n"
    found = check_text(text, language="ja", model={})
    phrases = {(f.phrase, f.line) for f in found}
    assert ("お申し込 みはこちら", 3) in phrases, phrases  # quoted as written, on the line where it starts
    assert ("期間 限定", 4) in phrases, phrases
    assert any(f.rule == "ja-discount-percent" and f.line == 4 for f in found), found
    assert check_text("今月の話題です。\n\n鋼材価格は横ばいでした。\n", language="ja", model={}) == []


def test_full_width_and_half_width_forms_reach_the_model():
    half = "ｻﾝﾌﾟﾙ無料、今なら初期費用０円。ぜひお試しください。"
    assert content.errors(check_text(half, language="ja"))


def test_template_words_keep_every_branch():
    source = "{% if a %}今なら半額{% else %}市場の動向{% endif %}\n{{ prospect.name }}様 {# note #}\n"
    assert content.template_words(source) == "今なら半額市場の動向\n様 \n"
