"""The information-only content check (nurture/checks/content.py, rules.py, prefilter.py and rules/*.toml).

The corpus in tests/corpus/ is judged as a whole (precision and recall), then each category, the
normalisation, allowances, escalation and rule-file validation are tested on their own.
"""

from __future__ import annotations

import dataclasses
import textwrap
import tomllib
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest

from nurture.checks import content
from nurture.checks.content import Finding, check_message, check_text
from nurture.checks.prefilter import required_literals
from nurture.checks.rules import CATEGORIES, RULES_DIR, load_rules, lower_ascii
from nurture.core.errors import ConfigError

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclasses.dataclass(frozen=True)
class Allowance:  # the shape of nurture.plan.campaigns.Allowance
    phrase: str
    reason: str


# ---------------------------------------------------------------------------------------------- corpus


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    language: str
    salesy: bool
    expect: tuple[str, ...]
    message: SimpleNamespace


def _corpus() -> list[Item]:
    """Each file: ``Subject: ...`` and optional ``Expect: cat, cat`` header lines, a blank line, the body.
    The sender footer of the item's language is appended, as a rendered text part would carry it."""
    items = []
    for kind in ("informational", "salesy"):
        for path in sorted((CORPUS / kind).glob("*.txt")):
            head, _, body = path.read_text("utf-8").partition("\n\n")
            meta = dict(line.split(": ", 1) for line in head.splitlines())
            language = path.name[:2]
            footer = (CORPUS / f"footer-{language}.txt").read_text("utf-8")
            expect = tuple(c.strip() for c in meta.get("Expect", "").split(",") if c.strip())
            message = SimpleNamespace(subject=meta["Subject"], text=body + footer, html="")
            items.append(Item(f"{kind}/{path.name}", language, kind == "salesy", expect, message))
    return items


ITEMS = _corpus()
INFORMATIONAL = [i for i in ITEMS if not i.salesy]
SALESY = [i for i in ITEMS if i.salesy]


def test_corpus_is_big_enough_in_both_languages():
    for group in (INFORMATIONAL, SALESY):
        assert len(group) >= 15
        assert {i.language for i in group} == {"ja", "en"}
        assert min(sum(i.language == lang for i in group) for lang in ("ja", "en")) >= 8
    for item in SALESY:
        assert item.expect and set(item.expect) <= set(CATEGORIES), item.name


@pytest.mark.parametrize("language_mode", ["item", "all"])
def test_informational_items_pass(language_mode):
    """Precision on whole newsletters written before the labelled corpus (never trained on): the rules alone
    never fail one; with the pitch model at most two mails per language get an error (known false positives,
    kept visible here rather than trained away: today en-01 and en-02, sentences of market prices and discount
    rates written in the editorial "we"; bench/content.py lists them), and warnings stay rare (1 in 4).
    ``all`` applies both languages' rules (language=None)."""
    warned, failed = [], []
    for item in INFORMATIONAL:
        language = item.language if language_mode == "item" else None
        rules_only = check_message(item.message, language=language, source=item.name, model={})
        assert not content.errors(rules_only), "\n".join(map(str, rules_only))
        found = check_message(item.message, language=language, source=item.name)
        if content.errors(found):
            failed.append((item.language, "\n".join(map(str, content.errors(found)))))
        elif found:
            warned.append(item.name)
    for lang in ("ja", "en"):
        assert sum(language == lang for language, _ in failed) <= 2, failed
    assert len(warned) <= len(INFORMATIONAL) / 4, warned


@pytest.mark.parametrize("language_mode", ["item", "all"])
def test_salesy_items_are_caught(language_mode):
    """Recall: at least 90% of salesy items get an error, every one gets some finding, and each category is
    found in at least 80% of the items the corpus labels with it."""
    with_error, expected, found_expected = 0, {c: 0 for c in CATEGORIES}, {c: 0 for c in CATEGORIES}
    for item in SALESY:
        language = item.language if language_mode == "item" else None
        found = check_message(item.message, language=language, source=item.name)
        assert found, f"{item.name}: nothing flagged"
        with_error += bool(content.errors(found))
        categories = {f.category for f in found}
        for category in item.expect:
            expected[category] += 1
            found_expected[category] += category in categories
    assert with_error / len(SALESY) >= 0.9
    for category in CATEGORIES:
        if expected[category]:
            assert found_expected[category] / expected[category] >= 0.8, (category, found_expected, expected)
    assert all(expected[c] >= 2 for c in CATEGORIES), expected  # every category is exercised by the corpus


def test_sender_footers_do_not_trip_the_check():
    for language in ("ja", "en"):
        footer = (CORPUS / f"footer-{language}.txt").read_text("utf-8")
        assert check_text(footer) == []


# ------------------------------------------------------------------------------------------ categories

FLAGGED = [
    # (text, category, severity)
    ("弊社の新サービスは月額9,800円（税別）でご利用いただけます。", "price", "error"),
    ("新モデルは¥9,800です。", "price", "error"),
    ("Plans start at just $49 per user per month.", "price", "error"),
    ("年末特別価格でご案内します。", "discount", "error"),
    ("全品20%OFFです。", "discount", "error"),
    ("Get 20% off your first order.", "discount", "error"),
    ("今なら導入支援が付いてきます。", "urgency", "error"),
    ("期間限定のご案内です。", "urgency", "error"),
    ("先着10社様に限ります。", "urgency", "error"),
    ("This is a limited time offer.", "urgency", "error"),
    ("Act now before it's too late.", "urgency", "error"),
    ("ご購入はWebサイトから。", "purchase_cta", "error"),
    ("▼お申し込みはこちら", "purchase_cta", "error"),
    ("無料デモを実施中です。", "purchase_cta", "error"),
    ("お見積りはお気軽に。", "purchase_cta", "error"),
    ("Buy now and start saving.", "purchase_cta", "error"),
    ("Book a demo with our team.", "purchase_cta", "error"),
    ("Request a quote for your plant.", "purchase_cta", "error"),
    ("Start with a free trial.", "purchase_cta", "error"),
    ("お気軽にご相談ください。", "sales_cta", "warning"),
    ("Contact us today to learn more.", "sales_cta", "warning"),
    ("ぜひ一度お打ち合わせをお願いできませんでしょうか。", "pushy_appointment", "error"),
    ("30分だけお時間をいただけませんか。", "pushy_appointment", "error"),
    ("Let's hop on a call next week.", "pushy_appointment", "error"),
    ("Can I schedule a meeting with our sales team for you?", "pushy_appointment", "error"),
]

NOT_FLAGGED = [
    "今月は鋼材の価格動向をまとめました。",
    "国内の市場規模は約3兆円で、前年比4%の成長です。",
    "原材料価格の上昇を受け、各社が値上げの動向を注視しています。",
    "補助金は予算の範囲内で、先着順ではなく審査により採択されます。",
    "市の補助金は、申請の受付順（先着順）に交付が決まります。",
    "最低賃金は全国加重平均で1,121円になりました。",
    "The consumer price index rose 0.3% in October.",
    "The discount rate of the central bank was left unchanged.",
    "A phase 3 clinical trial enrolled 640 patients.",
    "The field trial ran for two seasons on 14 farms.",
    "Several exhibitors ran live demos of laser cutting.",
    "Hot-rolled coil prices fell to $870 per ton.",
    "補助金では、相見積もりの取得と見積依頼書の保存が求められます。",
    "Manufacturers should order now: transformer lead times exceed 100 weeks.",
    "For a limited time, the IRS is waiving penalties for late filers.",
    "Thanks to everyone who took 10 minutes of your time to answer our survey.",
    "Don't miss the new OSHA rule on heat illness, which takes effect in April.",
    "今すぐできる省エネ対策を5つ紹介します。",
    "大手各社はセール期間を短縮した。",
    "同社は来春、新型機を発売する予定だ。",
]


@pytest.mark.parametrize("text,category,severity", FLAGGED)
def test_each_category_is_flagged(text, category, severity):
    """Each rule category on its own (model={}: the rules alone), then with the pitch model: an error stays
    an error, and the model may add its own judgement of the sentence (category "pitch")."""
    found = [(f.category, f.severity) for f in check_text(text, model={})]
    assert found[0] == (category, severity) or found == [(category, severity)], found
    assert all(sev == "warning" for cat, sev in found if cat != category), found
    with_model = [(f.category, f.severity) for f in check_text(text)]
    assert (category, severity) in with_model or (severity == "warning" and (category, "error") in with_model)
    assert {cat for cat, _ in with_model} <= {category, content.MODEL_CATEGORY} | {c for c, _ in found}


@pytest.mark.parametrize("text", NOT_FLAGGED)
def test_ordinary_words_in_informational_sentences_pass(text):
    """No rule fires; the pitch model may at most warn (a sentence with "discount" and "rate" is borderline)."""
    assert check_text(text, model={}) == []
    assert not content.errors(check_text(text))


def test_price_is_judged_by_its_context():
    offer = check_text("当社の点検サービスは1台あたり15,000円（税込）です。")
    macro = check_text("国内の点検サービスの市場規模は約1,500億円です。")
    assert [f.phrase for f in offer] == ["15,000円"] and macro == []


def test_language_selects_rule_sets():
    assert check_text("Buy now", language="ja") == []
    assert check_text("Buy now", language="en")[0].rule == "en-cta-buy-now"
    assert check_text("ご購入はこちら", language="en") == []
    assert len(check_text("Buy now. ご購入はこちら")) == 2  # None: both languages
    with pytest.raises(ConfigError, match="unknown language"):
        check_text("x", language="fr")


def test_overlapping_hits_report_the_most_severe_once():
    found = check_text("無料デモ")
    assert [(f.phrase, f.severity, f.rule) for f in found] == [("無料デモ", "error", "ja-cta-purchase")]


# ------------------------------------------------------------------------------------- normalisation


def test_full_width_and_half_width_forms_are_caught_and_quoted_as_written():
    found = check_text("Our app is only ＄９９ a month.")
    assert [(f.phrase, f.category) for f in found] == [("＄９９", "price")]
    found = check_text("ﾒｰﾙ読者様限定のｷｬﾝﾍﾟｰﾝ価格です。")
    assert ("ｷｬﾝﾍﾟｰﾝ価格", "discount", "error") in [(f.phrase, f.category, f.severity) for f in found]
    found = check_text("ＦＲＥＥ　ＴＲＩＡＬ")
    assert [f.phrase for f in found] == ["ＦＲＥＥ ＴＲＩＡＬ"]  # whitespace runs are shown as one space
    assert check_text("BUY NOW")[0].phrase == "BUY NOW"
    found = check_text("月額９，８００円（税別）")
    assert found[0].phrase == "９，８００円"


def test_phrases_do_not_match_inside_longer_words():
    assert check_text("We moved to a new office.", model={}) == []  # no "OFF" rule firing inside "office"
    assert check_text("営業部門のセールス担当者が増えた。", model={}) == []  # セールス is not セール


# ------------------------------------------------------------------------------------ lines and output


def test_lines_sources_and_subject():
    text = "今月の業界動向です。\n\n市場規模は約3兆円です。\nお申し込みはこちら\n"
    [finding] = check_text(text, source="mfg/item-1", model={})
    assert (finding.source, finding.line, finding.phrase) == ("mfg/item-1", 4, "お申し込みはこちら")
    assert str(finding).startswith('mfg/item-1:4: error: [purchase_cta] "お申し込みはこちら": ')
    rendered = SimpleNamespace(subject="今なら20%OFF", text="本文です。\n無料デモはこちら", html="<p>ignored</p>")
    found = check_message(rendered, source="mfg/item-2", model={})
    assert [(f.line, f.phrase) for f in found] == [(0, "今なら"), (0, "20%OFF"), (2, "無料デモ")]
    assert str(found[0]).startswith("mfg/item-2 (subject): error:")


def test_a_pitch_only_in_the_html_part_is_found():
    """A mail whose text part is informational but whose HTML part sells (a hand-written text_template) fails;
    words the text part already carries are not reported twice."""
    rendered = SimpleNamespace(
        subject="業界ニュース",
        text="今月は市場の動向です。\n鋼材価格は横ばいでした。\n",
        html="<html><body><p>今月は市場の動向です。</p><p>鋼材価格は横ばいでした。</p>"
        "<p>今なら<b>20%OFF</b>、お申し込みはこちら</p></body></html>",
    )
    found = check_message(rendered, language="ja")
    assert content.errors(found)
    assert {f.part for f in found} == {"html"}
    assert "20%OFF" in {f.phrase for f in found}
    assert all("市場の動向" not in f.phrase for f in found)
    same = SimpleNamespace(subject="業界ニュース", text="市場の動向です。", html="<p>市場の動向です。</p>")
    assert check_message(same, language="ja") == []


# ---------------------------------------------------------------------------------------- allowances


def test_allowance_suppresses_findings_containing_its_phrase():
    text = "国の統計データは無料公開されています。当社の無料診断もどうぞ。"
    before = check_text(text)
    assert {f.phrase for f in before} == {"無料診断"}
    assert check_text(text, allow=[Allowance("無料", "公的統計の紹介")]) == []
    assert check_text(text, allow=["無料診断"]) == []  # plain strings work too
    assert check_text(text, allow=[Allowance("見積", "unrelated")]) == before


def test_allowance_is_normalised_and_case_insensitive():
    assert check_text("Start your FREE TRIAL", allow=[Allowance("ｆｒｅｅ ｔｒｉａｌ", "r")]) == []  # the model too


def test_allowed_larger_hit_does_not_hide_a_smaller_one():
    # 無料デモ is allowed; the bare 無料 elsewhere in the text is still reported.
    found = check_text("展示会の無料デモの様子。\n\n当社のサポートは無料です。", allow=["無料デモ"], model={})
    assert [f.phrase for f in found] == ["無料"]


# ---------------------------------------------------------------------------------------- escalation


def test_several_soft_signals_escalate_to_errors():
    two = "お気軽にご相談ください。当社のサポートは無料です。"
    assert {f.severity for f in check_text(two, model={})} == {"warning"}
    three = two + "ご興味がございましたら、ご返信ください。"
    found = check_text(three, model={})
    assert len({f.rule for f in found}) == content.ESCALATE_AT
    assert {f.severity for f in found} == {"error"}
    assert all("soft sales signals" in f.why for f in found)


# ---------------------------------------------------------------------------------------- rule files


def _rules_file(tmp_path: Path, body: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), "utf-8")
    return path


def test_builtin_rules_load_once_and_cover_every_category():
    rules = load_rules()
    assert rules is load_rules()
    assert {r.category for r in rules.rules} == set(CATEGORIES)
    assert {r.language for r in rules.rules} == {"ja", "en"}
    assert all(r.origin.endswith(tuple(f":{n}" for n in range(1, 1000))) for r in rules.rules)


def test_extra_rules_file_adds_rules(tmp_path):
    path = _rules_file(
        tmp_path,
        """
        language = "any"

        [[rule]]
        id = "acme-product-name"
        category = "purchase_cta"
        severity = "warning"
        why = "Product names belong on the website."
        phrases = ["AcmeFlow"]
        examples = ["Try AcmeFlow"]
        """,
    )
    rules = load_rules([path])
    assert len(rules) == len(load_rules()) + 1
    assert check_text("AcmeFlow is great") == []
    [finding] = check_text("AcmeFlow is great", rules=rules)
    assert (finding.rule, finding.severity) == ("acme-product-name", "warning")
    rendered = SimpleNamespace(subject="AcmeFlow", text="", html="")
    assert check_message(rendered, rules=rules)[0].line == 0


@pytest.mark.parametrize(
    "body,message",
    [
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "price"
        severity = "error"
        why = "w"
        patern = ["a"]
        """,
            r'mine.toml:9: unknown key "patern" in \[rule\[0\]\] \(did you mean "pattern',
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "price"
        severity = "error"
        why = "w"
        patterns = ["(unclosed"]
        """,
            r'mine.toml:9: rule "x": bad regex .*missing \)',
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "pricing"
        severity = "error"
        why = "w"
        phrases = ["a"]
        """,
            r"""mine.toml:6: rule\[0\].category = 'pricing' is not allowed \(did you mean "price"\?\)""",
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "price"
        severity = "error"
        why = "w"
        patterns = ["a?"]
        """,
            r"mine.toml:9: .*matches empty text",
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "price"
        severity = "error"
        why = "w"
        phrases = ["deal"]
        examples = ["a bargain"]
        counterexamples = ["a good deal of research"]
        """,
            r"""(?s)mine.toml:10: rule "x" does not flag its example 'a bargain'.*mine.toml:11: rule "x" flags""",
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "x"
        category = "price"
        severity = "error"
        why = "w"
        """,
            r'mine.toml:4: rule "x" needs "patterns" or "phrases"',
        ),
        (
            """
        language = "en"

        [[rule]]
        id = "en-price-offer"
        category = "price"
        severity = "error"
        why = "w"
        phrases = ["x"]
        """,
            r'mine.toml:5: rule id "en-price-offer" is already used at .*en.toml:\d+',
        ),
    ],
)
def test_bad_rules_files_name_file_and_line(tmp_path, body, message):
    path = _rules_file(tmp_path, body)
    with pytest.raises(ConfigError, match=message):
        load_rules([path])


def test_rules_file_that_is_not_toml(tmp_path):
    path = _rules_file(tmp_path, 'language = "en"\n[[rule]\n')
    with pytest.raises(ConfigError, match=r"mine.toml:2: invalid TOML"):
        load_rules([path])


def test_finding_is_a_plain_record():
    f = Finding("s", 1, "p", "price", "error", "w", "r")
    assert dataclasses.asdict(f) == {
        "source": "s",
        "line": 1,
        "phrase": "p",
        "category": "price",
        "severity": "error",
        "why": "w",
        "rule": "r",
        "part": "text",
        "score": None,
        "evidence": (),
        "allowed": "",
    }


# ------------------------------------------------------------------------------------------- prefilter


def test_required_literals_of_patterns():
    assert required_literals(r"\bfree\s+trial\b") == {"trial"}  # the longest literal wins
    assert required_literals(r"今なら|今だけ") == {"今なら", "今だけ"}
    assert required_literals(r"(?:お|御)見積(?:もり|り)?") == {"見積"}
    assert required_literals(r"\d+\s?%\s?off") == {"off"}
    assert required_literals(r"\d+|x") is None  # one branch needs no literal: no prefilter
    assert required_literals(r"(?:the\s+)?deal") == {"deal"}
    assert required_literals(r"(?:a|b)c(?:de)f") == {"cdef"}  # a group with one branch joins its neighbours
    assert required_literals(r"無料(?:の)?診断|無料で") == {"無料"}  # 無料で says no more than 無料
    assert required_literals(r"\N{BULLET}\x41\u3042\.") == {"•Aあ."}  # escapes are the characters they name
    assert required_literals(r"[\x27\u2019]") == {"'", "’"}
    assert required_literals(r"[・•]\s*\d+") == {"・", "•"}
    assert required_literals(r"x{2,}y{0,3}z+") == {"x"}
    assert required_literals(r"(?<![a-z])sale(?!s)") == {"sale"}  # lookarounds match no text
    assert required_literals(r"[^。\n]{0,24}?なら") == {"なら"}
    assert required_literals(r"a{}b") == {"a{}b"}  # "{}" is not a repeat
    for unread in (r"(?i)free", r"(?x)fr ee", r"(?(1)a|b)", r"(unclosed", r"[unclosed", "trailing\\"):
        assert required_literals(unread) is None, unread


def _texts() -> list[str]:
    """The corpus and every shipped rule's examples and counterexamples, as the rules see them."""
    texts = [item.message.subject + "\n" + item.message.text for item in ITEMS]
    for path in sorted(RULES_DIR.glob("*.toml")):
        for rule in tomllib.loads(path.read_text("utf-8"))["rule"]:
            texts += rule.get("examples", []) + rule.get("counterexamples", [])
    return [lower_ascii(unicodedata.normalize("NFKC", text)) for text in texts]


def test_every_match_holds_a_required_literal():
    """The prefilter's contract, on every shipped pattern and phrase: each match contains one of its literals."""
    texts = _texts()
    checked = 0
    for rule in load_rules().rules:
        for literals, pattern in rule.parts:
            if literals is None:
                continue
            for text in texts:
                for m in pattern.finditer(text):
                    checked += 1
                    assert any(lit in m.group(0) for lit in literals), (rule.id, pattern.pattern, m.group(0))
    assert checked > 300  # the corpus and examples exercise the patterns


def test_prefilter_never_changes_what_is_found():
    """Every rule, run with and without its literal prefilter over the corpus and the rules' own examples,
    finds the same hits."""
    rules = load_rules().rules
    assert sum(lits is not None for r in rules for lits, _ in r.parts) > 0.9 * sum(len(r.parts) for r in rules)
    texts = _texts()
    for rule in rules:
        unfiltered = dataclasses.replace(rule, parts=tuple((None, p) for _, p in rule.parts))
        for text in texts:
            assert rule.spans(text) == unfiltered.spans(text), rule.id


def test_english_phrases_match_across_a_line_wrap():
    assert [f.phrase for f in check_text("If this sounds useful, book a\ndemo with us.")] == ["book a demo"]
