"""Rule files for the information-only check: their TOML shape, their compiled form, and how one rule matches.

Contract
--------
``load_rules(extra_paths) -> RuleSet``: the shipped rules (``nurture/checks/rules/*.toml``) plus a user's own
files, compiled and validated once per process. A rule file documents and tests itself: every rule's
``examples`` must be flagged and its ``counterexamples`` must not, or loading fails. Problems are raised
together as one ConfigError of ``file:line: ...`` lines (unknown keys, bad regexes, patterns that match empty
text, duplicate ids, rules that miss their examples). ``rules_for(config)`` is the set a workspace checks with.

``Rule.spans(text)`` is where one rule hits ``text`` prepared by :func:`lower_ascii` (after NFKC): matches of
any of its patterns, each kept only if the rule's ``near`` context occurs and none of its ``unless`` context
does, in the *context* of the hit: the sentence around it (ended by 。！？!? , ". ", a blank line or a new
bullet/numbered line), cut to ``window`` characters on each side when the rule sets one. A pattern runs only
around the literals every match of it must contain (:mod:`nurture.checks.prefilter`). What a text's hits mean
(overlaps, allowances, escalation, findings) is :mod:`nurture.checks.content`'s business.
"""

from __future__ import annotations

import functools
import re
import typing
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nurture.checks.prefilter import required_literals
from nurture.core.config import Config
from nurture.core.errors import ConfigError
from nurture.core.tomlschema import KeyPath, Problems, TomlFile, build

Category = Literal["price", "discount", "urgency", "purchase_cta", "sales_cta", "pushy_appointment"]
CATEGORIES: tuple[str, ...] = typing.get_args(Category)
Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = typing.get_args(Severity)
LANGUAGES = ("ja", "en")
RULES_DIR = Path(__file__).resolve().parent / "rules"

#: A compiled pattern and the literals every match of it contains (None: no prefilter for it).
Part = tuple[frozenset[str] | None, re.Pattern[str]]


# Case-insensitivity without re.IGNORECASE: both the text and the patterns are ASCII-lowercased (length
# preserving, so offsets stay valid). IGNORECASE disables sre's literal-prefix search and made the check
# ~3x slower (bench/content.py); after NFKC every letter the rules care about is ASCII anyway.
_FLAGS = re.MULTILINE
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def lower_ascii(text: str) -> str:
    """``text`` with ASCII letters lowercased and nothing else changed (same length, same offsets)."""
    return text.translate(_ASCII_LOWER) if not text.isascii() else text.lower()


def _lower_pattern(source: str) -> str:
    """ASCII-lowercase a regex outside escapes (\\S, \\D, \\N{NAME} keep their meaning)."""
    out, i = [], 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            j = i + 2
            if source[i + 1] == "N" and source[j : j + 1] == "{":
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


# Sentence ends: Japanese and ASCII terminators, a period before whitespace, a blank line, or a line break
# before a bullet / numbered item (list items are separate statements in newsletters).
_BOUNDARY = re.compile(r"[。！？!?]|\.(?=\s)|\n[ \t]*\n|\n(?=[ \t]*(?:[・•●○■□◆◇▶►▼▽※★☆\-*]|\d+[.)]))")
#: Where a sentence ends, for rules' context and the pitch model's units (nurture.checks.content).
SENTENCE_BOUNDARY = _BOUNDARY
_LOOKAROUND = 400  # a sentence longer than this is cut; keeps the context search O(1) per hit
_REACH = 300  # longest match assumed around a required literal (rules match words, not paragraphs)


def _context(text: str, start: int, end: int, window: int) -> str:
    """The sentence around ``text[start:end]`` (its terminator included), cut to ``window`` chars a side."""
    left = max(0, start - _LOOKAROUND)
    for before in _BOUNDARY.finditer(text, left, start):
        left = before.end()
    after = _BOUNDARY.search(text, end, min(len(text), end + _LOOKAROUND))
    if after is None:
        right = min(len(text), end + _LOOKAROUND)
    else:
        right = after.end() if after.group(0) in ("。", "!", "?", ".") else after.start()
    if window:
        left, right = max(left, start - window), min(right, end + window)
    return text[left:right]


@dataclass(frozen=True)
class RuleSpec:
    """One ``[[rule]]`` table as written. Patterns are Python regexes (MULTILINE) matched against NFKC-
    normalised text, ignoring the case of ASCII letters; ``phrases`` are literal (word-bounded when they
    start/end with a letter or digit, any whitespace between words). ``examples`` must be flagged and
    ``counterexamples`` must not: both are checked when the file loads, so a rule file documents and tests
    itself."""

    id: str
    category: Category
    severity: Severity
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
    parts: tuple[Part, ...]  # one per pattern and phrase
    near: re.Pattern[str] | None
    unless: re.Pattern[str] | None
    window: int
    origin: str

    def spans(self, low: str) -> list[tuple[int, int]]:
        """``(start, end)`` of each hit of this rule in ``low`` (NFKC-normalised, then :func:`lower_ascii`),
        in order; see the module docstring for what counts as a hit."""
        spans: set[tuple[int, int]] = set()
        for literals, pattern in self.parts:
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
        if self.near is None and self.unless is None:
            return sorted(spans)
        hits = []
        for start, end in sorted(spans):
            context = _context(low, start, end, self.window)
            if self.near is not None and not self.near.search(context):
                continue
            if self.unless is not None and self.unless.search(context):
                continue
            hits.append((start, end))
        return hits


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
                r for r in self.rules if language is None or r.language in (language, "any")
            )
        return self._by_language[language]

    def __len__(self) -> int:
        return len(self.rules)


def _compile_parts(sources: Iterable[str], path: KeyPath, rule_id: str, problems: Problems) -> list[Part]:
    parts: list[Part] = []
    for source in sources:
        lowered = _lower_pattern(source)
        try:
            compiled = re.compile(lowered, _FLAGS)
        except re.error as exc:
            problems.add(path, f'rule "{rule_id}": bad regex {source!r}: {exc.msg} at position {exc.pos}')
            continue
        if compiled.fullmatch(""):
            problems.add(
                path,
                f'rule "{rule_id}": pattern {source!r} matches empty text, so it would flag '
                "everything; make it match at least one character",
            )
            continue
        parts.append((required_literals(lowered), compiled))
    return parts


def _compile_context(sources: Iterable[str], path: KeyPath, rule_id: str, problems: Problems) -> re.Pattern[str] | None:
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
        where: KeyPath = ("rule", index)
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
        rule = Rule(
            rs.id,
            spec.language,
            rs.category,
            rs.severity,
            rs.why.strip(),
            tuple(parts),
            near,
            unless,
            rs.window,
            origin,
        )
        for example in rs.examples:
            if not rule.spans(lower_ascii(unicodedata.normalize("NFKC", example))):
                problems.add(where + ("examples",), f'rule "{rs.id}" does not flag its example {example!r}')
        for example in rs.counterexamples:
            if rule.spans(lower_ascii(unicodedata.normalize("NFKC", example))):
                problems.add(where + ("counterexamples",), f'rule "{rs.id}" flags its counterexample {example!r}')
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
    """The shipped rule files, ``nurture/checks/rules/*.toml`` in name order."""
    return sorted(RULES_DIR.glob("*.toml"))


def load_rules(extra_paths: Iterable[str | Path] = ()) -> RuleSet:
    """The built-in rules plus the rules in ``extra_paths`` (a user's own files), compiled and validated once
    per process. Raises ConfigError (``file:line: ...``) for unknown keys, bad regexes, duplicate ids, and
    rules that miss their own examples."""
    paths = [str(p) for p in builtin_rule_files()] + [str(Path(p)) for p in extra_paths]
    return _load(tuple(paths))


def rules_for(config: Config) -> RuleSet:
    """The rule set a workspace checks with: the built-in rules plus its ``[content] rules`` files (paths from
    the config's folder)."""
    return load_rules([config.resolve(p) for p in config.content.rules])
