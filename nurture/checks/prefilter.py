"""Required literals of a rule pattern: the prefilter that lets most rules skip most texts.

The idea of RE2's and Hyperscan's prefilters: ``"free" in text`` is a C-speed substring search, so a pattern
none of whose required literals occurs in a text never runs on it. Most rules are absent from most newsletters,
which is what keeps a 2,000-character item well under a millisecond (bench/content.py).

Contract: :func:`required_literals` returns strings of which every match of the pattern contains at least one,
or None when it cannot prove any. None only costs speed (the pattern then runs on the whole text); a wrong set
would lose findings. The pattern is read by the small parser below, written for this purpose rather than taken
from ``re._parser`` (private to CPython, renamed in 3.11 and free to change again). It knows literals,
escapes, character classes, groups, alternation and repeats; whatever matches text it cannot name (``.``,
``\\d``, a range, a negated class, a back-reference) or matches no text (anchors, lookarounds) is "no literal
here"; and it gives up with None on what it does not read: inline flags (``(?i)`` and ``(?x)`` change what a
literal is), conditionals, malformed patterns. tests/checks/test_content.py checks the contract on every
shipped rule, over the corpus and the rules' own examples.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_COUNTS = re.compile(r"\{(?:(\d+)(?:,\d*)?|,\d*)\}")  # {m}, {m,}, {m,n}, {,n}, {,}; a lone "{" is a literal
_SIMPLE_ESCAPES = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


class _Unsupported(Exception):
    """Syntax this parser does not read: the pattern gets no prefilter."""


@dataclass(frozen=True)
class _Group:
    """A group (or the whole pattern) with its alternatives."""

    alternatives: tuple[tuple[_Node, ...], ...]


@dataclass(frozen=True)
class _Repeat:
    """An atom repeated at least once (repeats that may match nothing are dropped while parsing)."""

    node: _Node


#: One parsed element: a literal character, a set of literal characters (a class such as ``[・•]``), a group,
#: a repeat, or None for anything that contributes no literal.
_Node = str | frozenset[str] | _Group | _Repeat | None


class _Parser:
    """Python regex syntax (``re`` module, no verbose mode) into :data:`_Node` sequences."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def _peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.pattern[index] if index < len(self.pattern) else ""

    def alternatives(self, *, in_group: bool) -> tuple[tuple[_Node, ...], ...]:
        """The alternatives up to the closing ``)`` (consumed) of a group, or to the end of the pattern."""
        alternatives: list[list[_Node]] = [[]]
        while self.pos < len(self.pattern):
            ch = self._peek()
            if ch == ")":
                if not in_group:
                    raise _Unsupported("unbalanced )")
                self.pos += 1
                return tuple(map(tuple, alternatives))
            if ch == "|":
                self.pos += 1
                alternatives.append([])
                continue
            node = self._atom()
            least = self._repeat()
            if least is None:
                if isinstance(node, _Group) and len(node.alternatives) == 1:
                    alternatives[-1].extend(node.alternatives[0])  # (?:abc)d reads as abcd
                else:
                    alternatives[-1].append(node)
            else:
                alternatives[-1].append(_Repeat(node) if least >= 1 else None)
        if in_group:
            raise _Unsupported("unclosed group")
        return tuple(map(tuple, alternatives))

    def _repeat(self) -> int | None:
        """The least count of the repeat that follows (consumed), or None when none follows."""
        ch = self._peek()
        if ch in ("*", "+", "?"):
            least = 1 if ch == "+" else 0
            self.pos += 1
        elif ch == "{" and (counts := _COUNTS.match(self.pattern, self.pos)):
            least = int(counts.group(1) or 0)
            self.pos = counts.end()
        else:
            return None
        if self._peek() in ("?", "+"):  # lazy or possessive: the same text must still match
            self.pos += 1
        return least

    def _atom(self) -> _Node:
        ch = self._peek()
        if ch == "(":
            return self._group()
        if ch == "[":
            return self._class()
        if ch == "\\":
            return self._escape(in_class=False)
        if ch in ("*", "+", "?") or (ch == "{" and _COUNTS.match(self.pattern, self.pos)):
            raise _Unsupported("nothing to repeat")
        self.pos += 1
        return None if ch in (".", "^", "$") else ch

    def _group(self) -> _Node:
        rest = self.pattern[self.pos + 1 :]
        if not rest.startswith("?"):
            self.pos += 1
            return _Group(self.alternatives(in_group=True))
        if rest.startswith(("?:", "?>")):  # non-capturing, atomic
            self.pos += 3
            return _Group(self.alternatives(in_group=True))
        if rest.startswith("?P<"):
            self.pos = self._after(">")
            return _Group(self.alternatives(in_group=True))
        if rest.startswith(("?=", "?!", "?<=", "?<!")):  # lookarounds match no text
            self.pos += 4 if rest.startswith("?<") else 3
            self.alternatives(in_group=True)
            return None
        if rest.startswith(("?P=", "?#")):  # back-reference, comment
            self.pos = self._after(")")
            return None
        raise _Unsupported("inline flags or a conditional")

    def _after(self, char: str) -> int:
        end = self.pattern.find(char, self.pos)
        if end < 0:
            raise _Unsupported(f"no {char!r}")
        return end + 1

    def _class(self) -> _Node:
        """``[...]``: the set of its characters when it lists literal characters only, else None."""
        self.pos += 1
        negated = self._peek() == "^"
        if negated:
            self.pos += 1
        chars: set[str] = set()
        literal_only = not negated
        first = True
        while True:
            ch = self._peek()
            if not ch:
                raise _Unsupported("unclosed class")
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            item = self._escape(in_class=True) if ch == "\\" else self._take()
            if self._peek() == "-" and self._peek(1) not in ("]", ""):  # a range: not a list of literals
                self.pos += 1
                if self._peek() == "\\":
                    self._escape(in_class=True)
                else:
                    self._take()
                literal_only = False
            elif item is None:
                literal_only = False
            else:
                chars.add(item)
        if not literal_only or not chars:
            return None
        return next(iter(chars)) if len(chars) == 1 else frozenset(chars)

    def _take(self) -> str:
        ch = self._peek()
        self.pos += 1
        return ch

    def _escape(self, *, in_class: bool) -> str | None:
        """The character a backslash escape stands for, or None for a class, an anchor or a back-reference."""
        self.pos += 1
        ch = self._take()
        if not ch:
            raise _Unsupported("trailing backslash")
        if ch in "dDsSwW":
            return None
        if ch == "b" and in_class:
            return "\b"
        if ch in "AZbB":
            return None
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch]
        if ch in _HEX_DIGITS:
            digits = self.pattern[self.pos : self.pos + _HEX_DIGITS[ch]]
            self.pos += _HEX_DIGITS[ch]
            try:
                return chr(int(digits, 16))
            except ValueError:
                raise _Unsupported(f"bad \\{ch} escape") from None
        if ch == "N":
            end = self._after("}")
            name = self.pattern[self.pos + 1 : end - 1]
            self.pos = end
            try:
                return unicodedata.lookup(name)
            except KeyError:
                raise _Unsupported(f"unknown character name {name!r}") from None
        if ch.isdigit():  # an octal escape or a back-reference: treated as unknown text, which is safe
            while self._peek().isdigit():
                self.pos += 1
            return None
        if ch.isascii() and ch.isalpha():
            raise _Unsupported(f"unknown escape \\{ch}")
        return ch


def _required(nodes: tuple[_Node, ...]) -> frozenset[str] | None:
    """The best required-literal set of a sequence: every match of the sequence holds each element's text, so
    any one element's set will do; the one whose shortest literal is longest (then with fewest strings) is the
    most selective."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for node in (*nodes, None):
        if isinstance(node, str):
            run.append(node)
            continue
        if run:
            candidates.append(frozenset(["".join(run)]))
            run = []
        found: frozenset[str] | None = None
        if isinstance(node, frozenset):
            found = node
        elif isinstance(node, _Repeat):
            found = _required((node.node,))
        elif isinstance(node, _Group):
            options = [_required(alternative) for alternative in node.alternatives]
            if all(option is not None for option in options):
                found = _minimal(frozenset[str]().union(*(option for option in options if option is not None)))
        if found:
            candidates.append(found)
    if not candidates:
        return None
    return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))


def _minimal(literals: frozenset[str]) -> frozenset[str]:
    """``literals`` without the ones that contain another: a text holding 無料で holds 無料, so {無料, 無料で}
    says no more than {無料} and costs one more search."""
    return frozenset(s for s in literals if not any(t != s and t in s for t in literals))


def required_literals(pattern: str) -> frozenset[str] | None:
    """Strings of which every match of ``pattern`` contains at least one, or None if none can be proved (see
    the module docstring). Case matters: the content check lowers both the pattern and the text first."""
    try:
        alternatives = _Parser(pattern).alternatives(in_group=False)
    except _Unsupported:
        return None
    return _required((_Group(alternatives),))
