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
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nurture.checks.rules import Rule, RuleSet, load_rules, lower_ascii

ESCALATE_AT = 3


@dataclass(frozen=True)
class Finding:
    """One flagged phrase. ``line`` is 1-based in the checked text; 0 means the subject (check_message)."""

    source: str
    line: int
    phrase: str
    category: str
    severity: str
    why: str
    rule: str

    def __str__(self) -> str:
        where = self.source or "<text>"
        where = f"{where} (subject)" if self.line == 0 else f"{where}:{self.line}"
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


def _findings(text: str, rules: tuple[Rule, ...], allowed: list[str], source: str, *, subject: bool) -> list[Finding]:
    doc = _Normalised(text)
    norm = doc.norm
    hits = _hits(lower_ascii(norm), rules)
    if not hits:
        return []
    if allowed:
        # An allowed hit also covers the smaller hits inside it (無料 inside an allowed 無料デモ).
        spans = [(h.start, h.end) for h in hits if any(a in norm[h.start : h.end].casefold() for a in allowed)]
        hits = [h for h in hits if not any(s <= h.start and h.end <= e for s, e in spans)]
    out = []
    for hit in _resolve_overlaps(hits):
        phrase = doc.original(hit.start, hit.end)
        line = 0 if subject else doc.line_index(hit.start) + 1
        r = hit.rule
        out.append(Finding(source, line, " ".join(phrase.split()), r.category, r.severity, r.why, r.id))
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
    text: str, *, language: str | None = None, allow: Iterable[Any] = (), source: str = "", rules: RuleSet | None = None
) -> list[Finding]:
    """Sales-pitch findings in ``text`` (see the module docstring), sorted by position."""
    ruleset = (rules or load_rules()).for_language(language)
    return _escalate(_findings(text or "", ruleset, _allowed_phrases(allow), source, subject=False))


def check_message(
    rendered: Any,
    *,
    language: str | None = None,
    allow: Iterable[Any] = (),
    source: str = "",
    rules: RuleSet | None = None,
) -> list[Finding]:
    """Findings for a rendered mail: its ``.subject`` (line 0) and its ``.text`` part (lines numbered there).
    The HTML part is not read: the text part carries the same words, and line numbers there are useful."""
    ruleset = (rules or load_rules()).for_language(language)
    allowed = _allowed_phrases(allow)
    found = _findings(getattr(rendered, "subject", "") or "", ruleset, allowed, source, subject=True)
    found += _findings(getattr(rendered, "text", "") or "", ruleset, allowed, source, subject=False)
    return _escalate(found)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that fail a check."""
    return [f for f in findings if f.severity == "error"]
