"""The information-only check: flags sales-pitch language in newsletter text (SEEDS 000: "information, not
proposals"). Japanese and English; the rules are data (:mod:`nurture.checks.rules`), this module judges a text
with them.

Contract
--------
``check_text(text, *, language=None, allow=(), source="", rules=None) -> list[Finding]``
    ``language`` "ja" / "en" applies that language's rules plus the ``any`` ones; ``None`` applies every rule.
    ``allow`` holds objects with ``.phrase`` (a campaign's ``Allowance``) or plain strings: a finding whose
    phrase contains an allowed phrase (after the same normalisation) is dropped. Findings come sorted by line.
    ``rules`` defaults to the shipped rules (:func:`nurture.checks.rules.load_rules`).
``check_message(rendered, ...)`` checks ``rendered.subject`` (reported as line 0) and ``rendered.text``.

How a text is judged
--------------------
1. NFKC normalisation first (UAX #15), so ＄９９, ９，８００円, ＦＲＥＥ and half-width ｷｬﾝﾍﾟｰﾝ match the same
   rules as $99, 9,800円, FREE and キャンペーン; ASCII letters match regardless of case. Findings quote
   the original text, not the normalised one.
2. Each rule finds its hits (:meth:`nurture.checks.rules.Rule.spans`): its patterns, kept or dropped by the
   ``near``/``unless`` context of the sentence around each hit. This is how a price attached to an offer
   (月額9,800円（税別）, $49 per user) differs from a macro figure (市場規模は約3兆円, $870 per ton, 1ドル=152円).
3. Allowed phrases are dropped; where hits overlap, the more severe (then the longer) one is kept.
4. Several soft signals make a pitch: when an item has warnings from ``ESCALATE_AT`` or more different rules,
   those warnings are reported as errors (their ``why`` says so).

Severities: ``error`` = selling (a price or discount of an offer, urgency, purchase/demo/quote calls to action,
pushy appointment requests) and fails ``nurture check``; ``warning`` = a soft signal that is often fine in an
informational letter (a single "お気軽にご相談ください", 無料 on its own, "our platform helps ...").
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nurture.checks.model import Evidence, PitchModel, Score, cue_hits, cue_pairs, features, load_model, prepare
from nurture.checks.rules import RULES_DIR, SENTENCE_BOUNDARY, Rule, RuleSet, load_rules, lower_ascii
from nurture.compose.html_text import html_to_text

ESCALATE_AT = 3
#: The category of a finding made by the pitch model rather than a rule.
MODEL_CATEGORY = "pitch"
#: From this pitch probability the model reports a warning for a sentence (or its paragraph). Its error
#: threshold and the probability below which a shipped rule's error is only a warning (the sentence reads as
#: information: an association's event fee, a price *rise*, the law on 期間限定 wording) are the model's own
#: ``error_at`` and ``veto_below``, chosen inside its training items (nurture.checks.fit).
MODEL_WARN_AT = 0.7
#: A text of more sentences than this is a whole mail, judged with the model's ``mail_error_at`` (the corpus
#: items the item threshold is chosen on have at most 8 sentences).
MAIL_SENTENCES = 8


@dataclass(frozen=True)
class Finding:
    """One flagged phrase. ``line`` is 1-based in the checked text (of ``part``); 0 means the subject.

    ``part``: "text" (the text part, or a plain text), "subject", "html" (words only in the HTML part) or
    "template" (words in a template branch the sample prospect did not take). ``score`` is the pitch model's
    probability for the sentence (None without a model), ``evidence`` the features that weighed most
    (``"無料で" +0.41``, ``rule:ja-free +0.30``), ``allowed`` the campaign's written reason when a reviewed
    exception lets the finding through (its severity is then "allowed")."""

    source: str
    line: int
    phrase: str
    category: str
    severity: str
    why: str
    rule: str
    part: str = "text"
    score: float | None = None
    evidence: tuple[str, ...] = ()
    allowed: str = ""

    def __str__(self) -> str:
        where = self.source or "<text>"
        if self.line == 0:
            where = f"{where} (subject)"
        elif self.part in ("html", "template"):
            where = f"{where} ({self.part}):{self.line}"
        else:
            where = f"{where}:{self.line}"
        return f'{where}: {self.severity}: [{self.category}] "{self.phrase}": {self.why} ({self.rule})'


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    rule: Rule


def _hits(low: str, rules: Iterable[Rule]) -> list[_Hit]:
    """Hits of ``rules`` in ``low`` (normalised, ASCII-lowercased text), rule by rule."""
    return [_Hit(start, end, rule) for rule in rules for start, end in rule.spans(low)]


def _allowed_phrases(allow: Iterable[Any]) -> list[str]:
    out = []
    for entry in allow:
        phrase = entry if isinstance(entry, str) else getattr(entry, "phrase", "")
        phrase = unicodedata.normalize("NFKC", phrase or "").casefold().strip()
        if phrase:
            out.append(phrase)
    return out


def _resolve_overlaps(hits: list[_Hit]) -> list[_Hit]:
    """Keep the most severe, then the longest, of overlapping hits."""
    ranked = sorted(hits, key=lambda h: (h.rule.severity != "error", -(h.end - h.start), h.start))
    kept: list[_Hit] = []
    for hit in ranked:
        if all(hit.end <= k.start or hit.start >= k.end for k in kept):
            kept.append(hit)
    return sorted(kept, key=lambda h: (h.start, h.end))


# Characters NFKC may compose with what precedes them: combining marks (general category M*), the half-width
# (semi-)voiced sound marks, and conjoining Hangul jamo. Only their presence makes a line's length change
# by composition (UAX #15 section 1.3).
_COMPOSING = re.compile("[\u0300-\u036f\u1100-\u11ff\u3099\u309a\uff9e\uff9f\u20d0-\u20ff\ufe20-\ufe2f]")


class _Normalised:
    """A text, its NFKC form, and the way back: line numbers and original spans for positions in the
    normalised text. NFKC never composes across a line break, so each line is normalised on its own and
    only lines that NFKC changes (full-width, half-width kana) need a per-character map, built on demand."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True) or [""]
        self.norm_lines = [unicodedata.normalize("NFKC", line) for line in self.lines]
        self.norm = "".join(self.norm_lines)
        self.norm_starts: list[int] = []
        self.orig_starts: list[int] = []
        n = o = 0
        for line, norm_line in zip(self.lines, self.norm_lines, strict=True):
            self.norm_starts.append(n)
            self.orig_starts.append(o)
            n += len(norm_line)
            o += len(line)
        self._maps: dict[int, tuple[list[int], list[int]] | None] = {}

    def line_index(self, pos: int) -> int:
        return bisect.bisect_right(self.norm_starts, pos) - 1

    def _map(self, k: int) -> tuple[list[int], list[int]] | None:
        """Per normalised character of line ``k``: (start, end) of its source in the original line."""
        if k not in self._maps:
            line, starts, ends, i = self.lines[k], [], [], 0
            if len(line) == len(self.norm_lines[k]) and not _COMPOSING.search(line):
                # Nothing can compose, so equal lengths mean one character in, one out (＄９９ -> $99).
                self._maps[k] = (list(range(len(line))), list(range(1, len(line) + 1)))
                return self._maps[k]
            while i < len(line):
                j = i + 1
                # A cluster is a character plus what NFKC may compose onto it: combining marks and the
                # half-width (semi-)voiced sound marks U+FF9E/U+FF9F that turn ｶﾞ into ガ.
                while j < len(line) and (unicodedata.combining(line[j]) or line[j] in "\uff9e\uff9f"):
                    j += 1
                piece = unicodedata.normalize("NFKC", line[i:j])
                starts.extend([i] * len(piece))
                ends.extend([j] * len(piece))
                i = j
            self._maps[k] = (starts, ends) if len(starts) == len(self.norm_lines[k]) else None
        return self._maps[k]

    def _original(self, pos: int, end: bool) -> int | None:
        k = self.line_index(pos)
        offset = pos - self.norm_starts[k]
        if self.lines[k] == self.norm_lines[k]:
            return self.orig_starts[k] + offset + (1 if end else 0)
        mapping = self._map(k)
        if mapping is None:
            return None
        return self.orig_starts[k] + mapping[1 if end else 0][offset]

    def original(self, start: int, end: int) -> str:
        """The original text behind ``norm[start:end]`` (the normalised text if it cannot be mapped)."""
        lo, hi = self._original(start, False), self._original(end - 1, True)
        if lo is None or hi is None:
            return self.norm[start:end]
        return self.text[lo:hi]


# ------------------------------------------------------------------------------------ hard line wraps

# A hard line wrap inside Japanese text (mail clients and editors wrap at ~35 full-width characters) breaks
# お申し込み\nはこちら into two lines. A newline between two Japanese characters (not before a bullet ・) is
# joined away before rules and model read the text; English needs nothing (phrases match any whitespace).
_WIDE = "\u3041-\u30fa\u30fc-\u30ff\u3400-\u9fff\uf900-\ufaff々〆"
_WRAP = re.compile(rf"(?<=[{_WIDE}、」』）])[ \t\u3000]*\n[ \t\u3000]*(?=[{_WIDE}0-9¥$「『（(])")


class _Joined:
    """``low`` with hard-wrapped Japanese lines joined, and the way back to positions in ``low``."""

    def __init__(self, low: str) -> None:
        self.starts: list[int] = [0]  # joined position where each kept stretch starts
        self.offsets: list[int] = [0]  # ... and its position in ``low``
        if "\n" not in low or not _WRAP.search(low):
            self.text = low
            return
        pieces, last = [], 0
        for m in _WRAP.finditer(low):
            pieces.append(low[last : m.start()])
            last = m.end()
            self.starts.append(self.starts[-1] + m.start() - self.offsets[-1])
            self.offsets.append(last)
        pieces.append(low[last:])
        self.text = "".join(pieces)

    def to_low(self, pos: int) -> int:
        k = bisect.bisect_right(self.starts, pos) - 1
        return self.offsets[k] + pos - self.starts[k]


def _spans(text: str, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank stretches of ``text`` between ``boundary`` matches (a sentence keeps its terminator)."""
    out, start = [], 0
    for m in boundary.finditer(text):
        end = m.end() if m.group(0) in ("。", "!", "?", ".") else m.start()
        if text[start:end].strip():
            out.append((start, end))
        start = max(end, m.end())
    if text[start:].strip():
        out.append((start, len(text)))
    return out


_PARAGRAPH = re.compile(r"\n[ \t\u3000]*\n")


def _paragraphs(text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """How the check reads ``text``: its paragraphs as (start, end, their sentences' spans), offsets in ``text``.
    Training splits informational items the same way (:func:`training_docs`)."""
    return [
        (p0, p1, [(p0 + s0, p0 + s1) for s0, s1 in _spans(text[p0:p1], SENTENCE_BOUNDARY)])
        for p0, p1 in _spans(text, _PARAGRAPH)
    ]


_MAX_UNIT = 1200  # a "paragraph" longer than this is not read as one unit (its sentences still are)


# --------------------------------------------------------------------------------------- allowances


@dataclass(frozen=True)
class _Allow:
    phrases: tuple[tuple[str, str], ...]  # (normalised phrase, reason)
    rules: dict[str, str]  # rule id -> reason

    def reason(self, rule: str, phrase: str) -> str | None:
        if rule in self.rules:
            return self.rules[rule] or "allowed"
        if not self.phrases:
            return None
        low = unicodedata.normalize("NFKC", phrase).casefold()
        for allowed, why in self.phrases:
            if allowed in low:
                return why or "allowed"
        return None


def _allowances(allow: Iterable[Any]) -> _Allow:
    """Plain strings are phrases; objects may carry ``phrase``, ``rule`` (a rule id, or a model id such as
    ``ja-model``) and ``reason`` (a campaign's ``Allowance``)."""
    phrases, rules = [], {}
    for entry in allow:
        if isinstance(entry, str):
            phrase, rule, reason = entry, "", ""
        else:
            phrase = getattr(entry, "phrase", "") or ""
            rule = getattr(entry, "rule", "") or ""
            reason = getattr(entry, "reason", "") or ""
        phrase = unicodedata.normalize("NFKC", phrase).casefold().strip()
        if phrase:
            phrases.append((phrase, reason))
        if rule.strip():
            rules[rule.strip()] = reason
    return _Allow(tuple(phrases), rules)


# ----------------------------------------------------------------------------------------- judging


@dataclass(eq=False)
class _Unit:
    """A sentence or a paragraph of the joined text, its features and its pitch probability."""

    start: int  # in the joined text
    end: int
    grams: list[str]  # its n-grams, each once ...
    found: list[float | None]  # ... and their weights (None: not in the model), from one lookup
    dense: set[str]
    p: float = 0.0
    paragraph: _Unit | None = None
    _score: Score | None = None
    _texts: tuple[str, ...] | None = None

    @property
    def judged(self) -> float:
        """Its own probability or its paragraph's, whichever is higher."""
        return max(self.p, self.paragraph.p if self.paragraph is not None else 0.0)

    def score(self, model: PitchModel, prepared: str) -> Score:
        """The probability with its evidence (computed only for units that become findings)."""
        if self._score is None:
            names = list(itertools.compress(self.grams, self.found))
            weights: list[float] = list(filter(None, self.found))
            self._score = model.score_known(
                len(self.grams), names, weights, self.dense, text=prepared[self.start : self.end], offset=self.start
            )
        return self._score

    def evidence(self, model: PitchModel, prepared: str) -> tuple[str, ...]:
        """:meth:`score`'s evidence as text, made once per unit (every rule hit in it shows the same)."""
        if self._texts is None:
            self._texts = tuple(map(_evidence_text, self.score(model, prepared).evidence))
        return self._texts


def _builtin(rule: Rule) -> bool:
    return rule.origin.startswith(str(RULES_DIR))


def _model_for(model: dict[str, PitchModel] | None, language: str | None, text: str) -> PitchModel | None:
    models = load_model() if model is None else model
    if not models:
        return None
    if language is None:  # no language given: the one the text is written in
        language = "ja" if _JAPANESE.search(text) else "en"
    return models.get(language)


_JAPANESE = re.compile("[\u3041-\u30ff\u4e00-\u9fff]")


def _evidence_text(ev: Evidence) -> str:
    """``"無料で" +0.41`` (an n-gram; digits read as 0), ``rule ja-free +0.30``, ``cue self&free +0.52``."""
    if ev.feature.startswith(("rule:", "cue:")):
        kind, name = ev.feature.split(":", 1)
        return f"{kind} {name} {ev.weight:+.2f}"
    if ev.feature.startswith("#"):  # characters of English words
        return f'"{ev.feature[1:].strip()}" {ev.weight:+.2f}'
    return f'"{ev.feature}" {ev.weight:+.2f}'


def _model_why(language: str, score: Score, texts: tuple[str, ...]) -> str:
    """``texts``: the evidence of ``score`` as text (:meth:`_Unit.evidence`)."""
    strongest = ", ".join(t for t, e in zip(texts, score.evidence, strict=True) if e.weight > 0)
    if language == "ja":
        return (
            f"文面全体が営業・販売の呼びかけとして読まれます（判定モデル p={score.probability:.2f}、"
            f"根拠: {strongest}）。情報として書き直すか、理由を添えて allow に記録してください。"
        )
    return (
        f"This sentence reads as a sales pitch (model p={score.probability:.2f}; strongest: {strongest}). "
        "Rewrite it as information, or record a reviewed exception with its reason in the campaign's allow."
    )


def _model_phrase(unit: _Unit, score: Score, joined: str) -> tuple[int, int]:
    """The stretch of the unit the strongest positive n-grams point at (joined-text positions)."""
    spans = [(e.start, e.end) for e in score.evidence if e.weight > 0 and e.end > e.start]
    if not spans:
        return unit.start, min(unit.end, unit.start + 40)
    lo, hi = spans[0]
    for s, e in spans[1:4]:
        if s <= hi + 12 and e >= lo - 12 and max(hi, e) - min(lo, s) <= 60:
            lo, hi = min(lo, s), max(hi, e)
    # Whole words in English: widen to the word edges.
    while lo > unit.start and joined[lo - 1].isalnum() and joined[lo].isascii():
        lo -= 1
    while hi < unit.end and joined[hi - 1].isascii() and joined[hi].isalnum() and joined[hi].isascii():
        hi += 1
    return lo, hi


def _scored_units(
    jt: str, prepared: str, hits: list[_Hit], model: PitchModel
) -> tuple[list[_Unit], list[tuple[_Unit, list[_Unit]]]]:
    """The sentences of ``jt`` (joined text; ``prepared`` is its :func:`prepare` form) and its paragraphs of
    more than one sentence, each with its pitch probability; the shipped rules' ``hits`` are features of the
    sentence (and paragraph) they fall in."""
    sentences: list[_Unit] = []
    paragraphs: list[tuple[_Unit, list[_Unit]]] = []
    hits_of_cues = cue_hits(prepared, model.language)
    cue_starts = [pos for pos, _ in hits_of_cues]

    def cues_in(a: int, b: int) -> set[str]:
        lo, hi = bisect.bisect_left(cue_starts, a), bisect.bisect_left(cue_starts, b)
        return cue_pairs(name for _, name in hits_of_cues[lo:hi])

    language, lookup = model.language, model.weights.get
    for p0, p1, spans in _paragraphs(jt):
        inner = []
        for a, b in spans:
            grams = list(features(prepared[a:b], language))
            inner.append(_Unit(a, b, grams, list(map(lookup, grams)), cues_in(a, b)))
        sentences.extend(inner)
        if len(inner) > 1 and p1 - p0 <= _MAX_UNIT:
            # A paragraph's n-grams are its sentences' ones: their weights are merged from the sentences'
            # lookups (a small dict, which also counts each n-gram once) instead of being looked up again in
            # the model's large table, the costliest step per n-gram.
            merged: dict[str, float | None] = {}
            for u in inner:
                merged.update(zip(u.grams, u.found, strict=True))
            para = _Unit(p0, p1, list(merged), list(merged.values()), cues_in(p0, p1))
            paragraphs.append((para, inner))
            for u in inner:
                u.paragraph = para
    starts = [u.start for u in sentences]
    for h in hits:
        if _builtin(h.rule) and sentences:
            unit = sentences[max(0, bisect.bisect_right(starts, h.start) - 1)]
            unit.dense.add(f"rule:{h.rule.id}")
            if unit.paragraph is not None:
                unit.paragraph.dense.add(f"rule:{h.rule.id}")
    for u in sentences:
        u.p = model.probability_of(len(u.grams), filter(None, u.found), u.dense)
    for para, _inner in paragraphs:
        para.p = model.probability_of(len(para.grams), filter(None, para.found), para.dense)
    return sentences, paragraphs


def pitch_probability(text: str, language: str, model: PitchModel) -> float:
    """The item-level score of ``text``: the highest pitch probability of any of its sentences or paragraphs
    (the model's own error on an item is exactly this score >= ``model.error_at``)."""
    jt = _Joined(lower_ascii(unicodedata.normalize("NFKC", text or ""))).text
    rules = tuple(r for r in load_rules().for_language(language) if _builtin(r))
    sentences, paragraphs = _scored_units(jt, prepare(jt), _hits(jt, rules), model)
    units = sentences + [para for para, _ in paragraphs]
    return max((u.p for u in units), default=0.0)


def rule_errors(text: str, language: str, model: PitchModel) -> list[tuple[float, bool]]:
    """Each error a rule (or the escalation of soft signals) reports in ``text`` before the model's veto:
    (the pitch probability of its sentence, whether the veto may turn it into a warning). With
    :func:`pitch_probability` this is all an item's verdict depends on, for any ``error_at``/``veto_below``."""
    never = dataclasses.replace(model, error_at=2.0, mail_error_at=2.0, veto_below=0.0)
    rules = load_rules()
    vetoable = {r.id for r in rules.for_language(language) if _builtin(r) and r.severity == "error"}
    found = check_text(text, language=language, rules=rules, model={language: never})
    return [
        (f.score if f.score is not None else 1.0, f.rule in vetoable)
        for f in found
        if f.severity == "error" and f.rule != f"{language}-model"
    ]


def _findings(
    text: str,
    rules: tuple[Rule, ...],
    allow: _Allow,
    source: str,
    *,
    part: str,
    model: PitchModel | None,
    keep_allowed: bool,
) -> list[Finding]:
    doc = _Normalised(text)
    low = lower_ascii(doc.norm)
    joined = _Joined(low)
    jt = joined.text
    hits = _hits(jt, rules)
    if not hits and model is None:
        return []
    if allow.phrases and hits:
        # An allowed hit also covers the smaller hits inside it (無料 inside an allowed 無料デモ).
        allowed_spans = [
            (h.start, h.end) for h in hits if any(a in jt[h.start : h.end].casefold() for a, _ in allow.phrases)
        ]
        if not keep_allowed:
            hits = [h for h in hits if not any(s <= h.start and h.end <= e for s, e in allowed_spans)]

    def where(start: int, end: int) -> tuple[int, str]:
        lo, hi = joined.to_low(start), joined.to_low(end - 1) + 1
        line = 0 if part == "subject" else doc.line_index(lo) + 1
        return line, " ".join(doc.original(lo, hi).split())

    sentences: list[_Unit] = []
    paragraphs: list[tuple[_Unit, list[_Unit]]] = []
    prepared = prepare(jt) if model is not None else ""
    if model is not None:
        sentences, paragraphs = _scored_units(jt, prepared, hits, model)
    starts = [u.start for u in sentences]

    def unit_of(pos: int) -> _Unit | None:
        return sentences[max(0, bisect.bisect_right(starts, pos) - 1)] if sentences else None

    out: list[Finding] = []
    explained: set[int] = set()  # ids of sentences that already carry an error finding
    for hit in _resolve_overlaps(hits):
        line, phrase = where(hit.start, hit.end)
        r = hit.rule
        severity, why = r.severity, r.why
        hit_unit = unit_of(hit.start)
        p = hit_unit.judged if hit_unit is not None else None
        score = hit_unit.score(model, prepared) if hit_unit is not None and model is not None else None
        if severity == "error" and model is not None and p is not None and p < model.veto_below and _builtin(r):
            severity = "warning"
            why += (
                f" [この文は情報提供として読まれるため警告にとどめます（判定モデル p={p:.2f}）]"
                if model is not None and model.language == "ja"
                else f" [the sentence reads as information, so this is a warning (model p={p:.2f})]"
            )
        evidence = hit_unit.evidence(model, prepared) if score and hit_unit is not None and model else ()
        finding = Finding(
            source,
            line,
            phrase,
            r.category,
            severity,
            why,
            r.id,
            part,
            round(p, 3) if p is not None else None,
            evidence,
        )
        reason = allow.reason(r.id, phrase)
        if reason is not None:
            if not keep_allowed:
                continue
            finding = dataclasses.replace(finding, severity="allowed", allowed=reason)
        elif severity == "error" and hit_unit is not None:
            explained.add(id(hit_unit))
        out.append(finding)
    if model is not None:
        rule_id = f"{model.language}-model"
        error_at = model.mail_error_at if len(sentences) > MAIL_SENTENCES else model.error_at
        flag_at = min(MODEL_WARN_AT, error_at)
        pitched = [u for u in sentences if u.p >= flag_at and id(u) not in explained]
        for para, inner in paragraphs:
            if para.p >= flag_at and not any(u.p >= flag_at or id(u) in explained for u in inner):
                pitched.append(para)
        for unit in pitched:
            score = unit.score(model, prepared)
            lo, hi = _model_phrase(unit, score, jt)
            line, phrase = where(lo, hi)
            severity = "error" if score.probability >= error_at else "warning"
            finding = Finding(
                source,
                line,
                phrase,
                MODEL_CATEGORY,
                severity,
                _model_why(model.language, score, unit.evidence(model, prepared)),
                rule_id,
                part,
                round(score.probability, 3),
                unit.evidence(model, prepared),
            )
            # A reviewed phrase anywhere in the sentence covers the model's judgement of that sentence.
            reason = allow.reason(rule_id, jt[unit.start : unit.end])
            if reason is not None:
                if not keep_allowed:
                    continue
                finding = dataclasses.replace(finding, severity="allowed", allowed=reason)
            out.append(finding)
    out.sort(key=lambda f: (f.line, f.severity != "error"))
    return out


def _escalate(findings: list[Finding]) -> list[Finding]:
    soft_rules = {f.rule for f in findings if f.severity == "warning"}
    if len(soft_rules) < ESCALATE_AT:
        return findings
    note = f" [{len(soft_rules)} different soft sales signals in one item read as a pitch]"
    return [
        dataclasses.replace(f, severity="error", why=f.why + note) if f.severity == "warning" else f for f in findings
    ]


def check_text(
    text: str,
    *,
    language: str | None = None,
    allow: Iterable[Any] = (),
    source: str = "",
    rules: RuleSet | None = None,
    model: dict[str, PitchModel] | None = None,
    keep_allowed: bool = False,
) -> list[Finding]:
    """Sales-pitch findings in ``text`` (see the module docstring), sorted by line."""
    ruleset = (rules or load_rules()).for_language(language)
    text = text or ""
    return _escalate(
        _findings(
            text,
            ruleset,
            _allowances(allow),
            source,
            part="text",
            model=_model_for(model, language, text),
            keep_allowed=keep_allowed,
        )
    )


def _new_lines(extra: str, known: str) -> str:
    """The lines of ``extra`` whose words do not occur in ``known`` (both compared without whitespace and
    after NFKC); other lines are blanked, so line numbers stay those of ``extra``."""
    squeeze = functools.partial(re.sub, r"\s+", "")
    seen = squeeze(unicodedata.normalize("NFKC", known))
    out = []
    for line in extra.split("\n"):
        words = squeeze(unicodedata.normalize("NFKC", line))
        out.append(line if words and words not in seen else "")
    return "\n".join(out)


def check_message(
    rendered: Any,
    *,
    language: str | None = None,
    allow: Iterable[Any] = (),
    source: str = "",
    rules: RuleSet | None = None,
    model: dict[str, PitchModel] | None = None,
    keep_allowed: bool = False,
    template_text: str = "",
) -> list[Finding]:
    """Findings for a rendered mail: its ``.subject`` (line 0), its ``.text`` part, the words of its
    ``.html`` part that the text part does not carry (part "html", lines of the HTML's visible text), and
    ``template_text``: the template's words in every branch of its conditionals (part "template"; only
    lines the rendered mail does not show; judged by the rules, not the model). A pitch hidden in one of them
    fails the check as well."""
    ruleset = (rules or load_rules()).for_language(language)
    allowed = _allowances(allow)
    subject = getattr(rendered, "subject", "") or ""
    text = getattr(rendered, "text", "") or ""
    html = getattr(rendered, "html", "") or ""
    chosen = _model_for(model, language, subject + text)
    kw: dict[str, Any] = dict(model=chosen, keep_allowed=keep_allowed)
    found = _findings(subject, ruleset, allowed, source, part="subject", **kw)
    found += _findings(text, ruleset, allowed, source, part="text", **kw)
    if html:
        html_words = _new_lines(html_to_text(html), subject + "\n" + text)
        if html_words.strip():
            found += _findings(html_words, ruleset, allowed, source, part="html", **kw)
    if template_text:
        branches = _new_lines(template_text, subject + "\n" + text)
        if branches.strip():
            # Rules only: with its tags removed, a template's text runs branches and partials (greetings,
            # footers) together into sentences no reader sees, which the model was not trained to read.
            found += _findings(
                branches, ruleset, allowed, source, part="template", model=None, keep_allowed=keep_allowed
            )
    return _escalate(found)


def template_words(source: str) -> str:
    """A Jinja template's literal text with every branch of its conditionals kept: tags and comments are
    dropped and ``{{ expressions }}`` become nothing, line by line (line numbers stay those of ``source``)."""
    return _JINJA.sub(lambda m: "\n" * m.group(0).count("\n"), source)


_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that fail a check."""
    return [f for f in findings if f.severity == "error"]


def training_docs(rows: Iterable[dict[str, str]], language: str) -> list[tuple[str, bool, list[str]]]:
    """Corpus rows as the model is trained on them: the text prepared as the check reads it (NFKC, ASCII
    lowercase, hard wraps joined) and the ids of the shipped rules that hit it. An informational item of
    several sentences also gives each of its sentences as an informational doc of its own: the check reads
    a mail sentence by sentence, and a sentence of an informational item is informational too (a salesy
    item's sentences are not all salesy, so they are not split). This cut false alarms on held-out
    paragraphs (bench/content.py)."""
    rules = tuple(r for r in load_rules().for_language(language) if _builtin(r))
    docs = []
    for row in rows:
        text = _Joined(lower_ascii(unicodedata.normalize("NFKC", row["text"]))).text
        salesy = row["label"] == "salesy"
        hits = _hits(text, rules)
        docs.append((text, salesy, sorted({h.rule.id for h in hits})))
        if salesy:
            continue
        sentences = [span for _, _, spans in _paragraphs(text) for span in spans]
        if len(sentences) > 1:
            for a, b in sentences:
                ids = sorted({h.rule.id for h in hits if a <= h.start < b})
                docs.append((text[a:b], False, ids))
    return docs
