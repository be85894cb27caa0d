"""The information-only check: flags sales-pitch language in newsletter text (SEEDS 000: "information, not
proposals"). Japanese and English; the rules are data (``nurture/rules/*.toml``), this module only runs them.

Contract
--------
``check_text(text, *, language=None, allow=(), source="", rules=None) -> list[Finding]``
    ``language`` "ja" / "en" applies that language's rules plus the ``any`` ones; ``None`` applies every rule.
    ``allow`` holds objects with ``.phrase`` (a campaign's ``Allowance``) or plain strings: a finding whose
    phrase contains an allowed phrase (after the same normalisation) is dropped. Findings come sorted by line.
``check_message(rendered, ...)`` checks ``rendered.subject`` (reported as line 0) and ``rendered.text``.

How a text is judged
--------------------
1. NFKC normalisation first (UAX #15), so ＄９９, ９，８００円, ＦＲＥＥ and half-width ｷｬﾝﾍﾟｰﾝ match the same
   rules as $99, 9,800円, FREE and キャンペーン; ASCII letters match regardless of case. Findings quote
   the original text, not the normalised one.
2. Each rule's patterns are searched over the whole text (a pattern runs only where the literals every
   match of it must contain occur: see ``_required_literals``). A hit is kept only if the rule's ``near`` context
   (when given) occurs and none of its ``unless`` context occurs in the hit's *context*: the sentence around
   it (ended by 。！？!? , ". ", a blank line or a new bullet/numbered line), cut to ``window`` characters on
   each side when the rule sets one. This is how a price attached to an offer (月額9,800円（税別）, $49 per
   user) differs from a macro figure (市場規模は約3兆円, $870 per ton, 1ドル=152円).
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
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nurture.core.errors import ConfigError
from nurture.core.tomlschema import Problems, TomlFile, build

CATEGORIES = ("price", "discount", "urgency", "purchase_cta", "sales_cta", "pushy_appointment")
SEVERITIES = ("error", "warning")
LANGUAGES = ("ja", "en")
ESCALATE_AT = 3
RULES_DIR = Path(__file__).resolve().parent / "rules"

Category = Literal["price", "discount", "urgency", "purchase_cta", "sales_cta", "pushy_appointment"]


# ---------------------------------------------------------------------------------------------------------
# Rule files: the TOML shape (checked by tomlschema) and the compiled form.


@dataclass(frozen=True)
class RuleSpec:
    """One ``[[rule]]`` table as written. Patterns are Python regexes (MULTILINE) matched against NFKC-
    normalised text, ignoring the case of ASCII letters; ``phrases`` are literal (word-bounded when they start/end with a letter
    or digit, any whitespace between words). ``examples`` must be flagged and ``counterexamples`` must not:
    both are checked when the file loads, so a rule file documents and tests itself."""

    id: str
    category: Category
    severity: Literal["error", "warning"]
    why: str
    patterns: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    near: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    window: int = 0
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.id):
            raise ValueError(f'rule id "{self.id}" must be lowercase letters, digits and "-"')
        if not self.patterns and not self.phrases:
            raise ValueError(f'rule "{self.id}" needs "patterns" or "phrases"')
        if self.window < 0:
            raise ValueError(f'rule "{self.id}": window must be 0 (the whole sentence) or a positive number')
        if not self.why.strip():
            raise ValueError(f'rule "{self.id}": "why" must tell the marketer what is wrong')


@dataclass(frozen=True)
class RuleFileSpec:
    """A whole rules file: ``language`` ("ja", "en" or "any") and its ``[[rule]]`` tables."""

    language: Literal["ja", "en", "any"]
    rule: tuple[RuleSpec, ...]
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """A compiled rule. ``origin`` is ``file:line`` of its ``[[rule]]`` header."""

    id: str
    language: str
    category: str
    severity: str
    why: str
    parts: tuple[Part, ...]  # (required literals or None, compiled pattern) per pattern/phrase
    near: re.Pattern[str] | None
    unless: re.Pattern[str] | None
    window: int
    origin: str


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules from one or more files; :meth:`for_language` selects what a check applies."""

    rules: tuple[Rule, ...]
    _by_language: dict[str | None, tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)

    def for_language(self, language: str | None) -> tuple[Rule, ...]:
        if language not in self._by_language:
            if language is not None and language not in LANGUAGES:
                raise ConfigError(f'content check: unknown language "{language}"; use one of: ja, en')
            self._by_language[language] = tuple(
                r for r in self.rules if language is None or r.language in (language, "any"))
        return self._by_language[language]

    def __len__(self) -> int:
        return len(self.rules)


# Case-insensitivity without re.IGNORECASE: both the text and the patterns are ASCII-lowercased (length
# preserving, so offsets stay valid). IGNORECASE disables sre's literal-prefix search and made the check
# ~3x slower (bench/content.py); after NFKC every letter the rules care about is ASCII anyway.
_FLAGS = re.MULTILINE
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _lower_text(text: str) -> str:
    return text.translate(_ASCII_LOWER) if not text.isascii() else text.lower()


def _lower_pattern(source: str) -> str:
    """ASCII-lowercase a regex outside escapes (\\S, \\D, \\N{NAME} keep their meaning)."""
    out, i = [], 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            j = i + 2
            if source[i + 1] == "N" and source[j:j + 1] == "{":
                j = source.index("}", j) + 1 if "}" in source[j:] else j
            out.append(source[i:j])
            i = j
            continue
        out.append(ch.lower() if ch.isascii() else ch)
        i += 1
    return "".join(out)


def _phrase_regex(phrase: str) -> str:
    """A literal phrase as a regex: whitespace matches any run of whitespace (line wraps), and an ASCII
    letter/digit at either end must not continue a longer word ("OFF" must not match "OFFICE")."""
    phrase = unicodedata.normalize("NFKC", phrase).strip()
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    if re.match(r"[A-Za-z0-9]", phrase):
        body = r"(?<![a-z0-9])" + body
    if re.search(r"[A-Za-z0-9]$", phrase):
        body += r"(?![a-z0-9])"
    return body


def _required_literals(source: str) -> frozenset[str] | None:
    """Strings of which every match of ``source`` contains at least one, or None if none can be proved.

    The prefilter idea of RE2/Hyperscan: ``"free" in text`` is a C-speed substring search, so a pattern
    whose literals are absent never runs. Most rules are absent from most newsletters, which is what keeps
    a 2,000-character item well under a millisecond. Uses the stdlib's own regex parser (``re._parser``);
    anything unexpected just disables the prefilter for that pattern."""
    try:
        from re import _constants as sre
        from re import _parser as sre_parse

        repeats = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}

        def sequence(items) -> frozenset[str] | None:
            candidates: list[frozenset[str]] = []
            run: list[str] = []
            for op, av in list(items) + [(None, None)]:
                if op is sre.LITERAL:
                    run.append(chr(av))
                    continue
                if run:
                    candidates.append(frozenset(["".join(run)]))
                    run = []
                found = None
                if op is sre.SUBPATTERN:
                    found = sequence(av[-1])
                elif op is sre.BRANCH:
                    options = [sequence(b) for b in av[1]]
                    found = None if any(o is None for o in options) else frozenset().union(*options)
                elif op in repeats and av[0] >= 1:
                    found = sequence(av[2])
                elif op is sre.IN and av and all(o is sre.LITERAL for o, _ in av):
                    found = frozenset(chr(a) for _, a in av)
                if found:
                    candidates.append(found)
            if not candidates:
                return None
            return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))

        return sequence(sre_parse.parse(source, _FLAGS))
    except Exception:  # noqa: BLE001 - a private parser changing shape must never break the check
        return None


Part = tuple[frozenset[str] | None, re.Pattern[str]]


def _compile_parts(sources: Iterable[str], path: tuple, rule_id: str, problems: Problems) -> list[Part]:
    parts: list[Part] = []
    for source in sources:
        lowered = _lower_pattern(source)
        try:
            compiled = re.compile(lowered, _FLAGS)
        except re.error as exc:
            problems.add(path, f'rule "{rule_id}": bad regex {source!r}: {exc.msg} at position {exc.pos}')
            continue
        if compiled.fullmatch(""):
            problems.add(path, f'rule "{rule_id}": pattern {source!r} matches empty text, so it would flag '
                               "everything; make it match at least one character")
            continue
        parts.append((_required_literals(lowered), compiled))
    return parts


def _compile_context(sources: Iterable[str], path: tuple, rule_id: str, problems: Problems) -> re.Pattern | None:
    parts = _compile_parts(sources, path, rule_id, problems)
    return re.compile("|".join(f"(?:{p.pattern})" for _, p in parts), _FLAGS) if parts else None


def _compile_file(path: Path, seen: dict[str, str]) -> list[Rule]:
    toml = TomlFile(path)
    problems = Problems(toml)
    spec: RuleFileSpec | None = build(RuleFileSpec, toml.data, (), problems)
    problems.raise_if_any()
    assert spec is not None
    rules: list[Rule] = []
    for index, rs in enumerate(spec.rule):
        if rs is None:
            continue
        where = ("rule", index)
        origin = toml.where(where)
        if rs.id in seen:
            problems.add(where + ("id",), f'rule id "{rs.id}" is already used at {seen[rs.id]}; ids must be unique')
            continue
        seen[rs.id] = origin
        before = len(problems.items)
        parts = _compile_parts(rs.patterns, where + ("patterns",), rs.id, problems)
        parts += _compile_parts([_phrase_regex(p) for p in rs.phrases], where + ("phrases",), rs.id, problems)
        near = _compile_context(rs.near, where + ("near",), rs.id, problems) if rs.near else None
        unless = _compile_context(rs.unless, where + ("unless",), rs.id, problems) if rs.unless else None
        if len(problems.items) > before or not parts:
            continue
        rule = Rule(rs.id, spec.language, rs.category, rs.severity, rs.why.strip(), tuple(parts), near, unless,
                    rs.window, origin)
        for example in rs.examples:
            if not _hits(_lower_text(unicodedata.normalize("NFKC", example)), (rule,)):
                problems.add(where + ("examples",), f'rule "{rs.id}" does not flag its example {example!r}')
        for example in rs.counterexamples:
            if _hits(_lower_text(unicodedata.normalize("NFKC", example)), (rule,)):
                problems.add(where + ("counterexamples",),
                             f'rule "{rs.id}" flags its counterexample {example!r}')
        rules.append(rule)
    problems.raise_if_any()
    return rules


@functools.lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> RuleSet:
    seen: dict[str, str] = {}
    rules: list[Rule] = []
    for path in paths:
        rules.extend(_compile_file(Path(path), seen))
    return RuleSet(tuple(rules))


def builtin_rule_files() -> list[Path]:
    """The shipped rule files, ``nurture/rules/*.toml`` in name order."""
    return sorted(RULES_DIR.glob("*.toml"))


def load_rules(extra_paths: Iterable[str | Path] = ()) -> RuleSet:
    """The built-in rules plus the rules in ``extra_paths`` (a user's own files), compiled and validated once
    per process. Raises ConfigError (``file:line: ...``) for unknown keys, bad regexes, duplicate ids, and
    rules that miss their own examples."""
    paths = [str(p) for p in builtin_rule_files()] + [str(Path(p)) for p in extra_paths]
    return _load(tuple(paths))


# ---------------------------------------------------------------------------------------------------------
# Findings.


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


# Sentence ends: Japanese and ASCII terminators, a period before whitespace, a blank line, or a line break
# before a bullet / numbered item (list items are separate statements in newsletters).
_BOUNDARY = re.compile(r"[。！？!?]|\.(?=\s)|\n[ \t]*\n|\n(?=[ \t]*(?:[・•●○■□◆◇▶►▼▽※★☆\-*]|\d+[.)]))")
_LOOKAROUND = 400  # a sentence longer than this is cut; keeps the context search O(1) per hit
_REACH = 300  # longest match assumed around a required literal (rules match words, not paragraphs)


def _context(text: str, start: int, end: int, window: int) -> str:
    """The sentence around ``text[start:end]`` (its terminator included), cut to ``window`` chars a side."""
    left = max(0, start - _LOOKAROUND)
    for m in _BOUNDARY.finditer(text, left, start):
        left = m.end()
    m = _BOUNDARY.search(text, end, min(len(text), end + _LOOKAROUND))
    if m is None:
        right = min(len(text), end + _LOOKAROUND)
    else:
        right = m.end() if m.group(0) in ("。", "!", "?", ".") else m.start()
    if window:
        left, right = max(left, start - window), min(right, end + window)
    return text[left:right]


def _hits(low: str, rules: Iterable[Rule]) -> list[_Hit]:
    """Hits of ``rules`` in ``low`` (normalised, ASCII-lowercased text)."""
    hits = []
    for rule in rules:
        spans: set[tuple[int, int]] = set()
        for literals, pattern in rule.parts:
            lo, hi = 0, len(low)
            if literals is not None:
                # Search only the stretch between the first and last occurrence of the required literals,
                # widened by _REACH: no rule's match is that long, and sre then scans far fewer positions.
                lo, hi = len(low), -1
                for lit in literals:
                    first = low.find(lit)
                    if first >= 0:
                        lo, hi = min(lo, first), max(hi, low.rfind(lit) + len(lit))
                if hi < 0:
                    continue
                lo, hi = max(0, lo - _REACH), min(len(low), hi + _REACH)
            spans.update(m.span() for m in pattern.finditer(low, lo, hi) if m.end() > m.start())
        for start, end in sorted(spans):
            if rule.near is not None or rule.unless is not None:
                ctx = _context(low, start, end, rule.window)
                if rule.near is not None and not rule.near.search(ctx):
                    continue
                if rule.unless is not None and rule.unless.search(ctx):
                    continue
            hits.append(_Hit(start, end, rule))
    return hits


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
        for line, norm_line in zip(self.lines, self.norm_lines):
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
    hits = _hits(_lower_text(norm), rules)
    if not hits:
        return []
    if allowed:
        # An allowed hit also covers the smaller hits inside it (無料 inside an allowed 無料デモ).
        spans = [(h.start, h.end) for h in hits if any(a in norm[h.start:h.end].casefold() for a in allowed)]
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
    return [dataclasses.replace(f, severity="error", why=f.why + note) if f.severity == "warning" else f
            for f in findings]


def check_text(text: str, *, language: str | None = None, allow: Iterable[Any] = (), source: str = "",
               rules: RuleSet | None = None) -> list[Finding]:
    """Sales-pitch findings in ``text`` (see the module docstring), sorted by position."""
    ruleset = (rules or load_rules()).for_language(language)
    return _escalate(_findings(text or "", ruleset, _allowed_phrases(allow), source, subject=False))


def check_message(rendered: Any, *, language: str | None = None, allow: Iterable[Any] = (), source: str = "",
                  rules: RuleSet | None = None) -> list[Finding]:
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


def rules_for(config: Any) -> RuleSet:
    """The rule set a workspace checks with: the built-in rules plus its ``[content] rules`` files (paths from
    the config's folder)."""
    return load_rules([config.resolve(p) for p in config.content.rules])
