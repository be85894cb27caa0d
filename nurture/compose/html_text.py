"""The text/plain part from mail HTML: readable in any client, with links written out.

Contract: :func:`html_to_text` turns HTML into text with headings underlined, paragraphs apart, list items with
"- " and links as ``text (url)``; styles, scripts, comments and hidden elements (the preheader) are dropped.
Jinja markup in the HTML passes through as text, so the renderer derives the text part once per compiled
template, not per mail. :class:`TextExtractor` is the parser behind it, public so that a check can read the
same visible text while it scans the HTML for something else (``nurture.checks.footer``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from html.parser import HTMLParser

#: Elements that start a new line of text.
BLOCK_TAGS = frozenset(
    (
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    )
)
_SKIP = frozenset(("head", "style", "script", "title", "template"))
_VOID = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr")
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|max-height\s*:\s*0|mso-hide\s*:\s*all", re.I)
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def squeeze_blank_lines(text: str) -> str:
    """``text`` with every run of blank lines cut to one blank line."""
    return _BLANK_RUNS.sub("\n\n", text)


def _display_width(text: str) -> int:
    """Columns a monospace mail client gives ``text`` (CJK counts two), for heading underlines."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


class TextExtractor(HTMLParser):
    """Readable plain text from mail HTML (see the module docstring); :meth:`text` returns it after ``close()``.

    ``canonical`` maps text before a link's label is compared with its URL (a label that already shows the URL
    gets no ``(url)``); the single-pass planner passes one that restores its placeholders. :attr:`hidden` is
    true while the parser is inside an element whose content is not shown (``<head>``, ``display:none``, ...).
    """

    def __init__(self, canonical: Callable[[str], str] | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.canonical = canonical or (lambda text: text)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.links: list[tuple[str, int]] = []  # (href, position in current) of open <a>
        self.heading: str | None = None
        self.list_depth = 0

    @property
    def hidden(self) -> bool:
        return self.skip_depth > 0

    def _flush(self, blank: bool = False) -> None:
        text = _SPACES.sub(" ", "".join(self.current)).strip()
        self.current = []
        if text:
            if self.heading in ("h1", "h2"):
                self.lines += ["", text, ("=" if self.heading == "h1" else "-") * min(_display_width(text), 72)]
            else:
                self.lines.append(text)
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        hides = tag in _SKIP or bool(_HIDDEN_STYLE.search(style))
        if tag not in _VOID:
            self.stack.append((tag, hides))
            if hides:
                self.skip_depth += 1
        if self.skip_depth:
            return
        if tag == "br":
            self._flush()
        elif tag in ("ul", "ol"):
            self._flush(blank=True)
            self.list_depth += 1
        elif tag == "li":
            self._flush()
            self.current.append("  " * max(self.list_depth - 1, 0) + "- ")
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush(blank=True)
            self.heading = tag
            if tag not in ("h1", "h2"):
                self.current.append("■ ")
        elif tag in ("p", "table", "hr", "blockquote"):
            self._flush(blank=True)
        elif tag in BLOCK_TAGS:
            self._flush()
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.current)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, hides = self.stack.pop()
            if hides:
                self.skip_depth -= 1
            if open_tag == tag:
                break
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = _SPACES.sub(" ", "".join(self.current[start:])).strip()
            if href and not href.startswith("#") and self.canonical(href) not in self.canonical(label):
                shown = href[len("mailto:") :] if href.startswith("mailto:") else href
                if not label:
                    self.current.append(shown)
                elif shown != label:
                    self.current.append(f" ({shown})")
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush(blank=True)
            self.heading = None
        elif tag in ("ul", "ol"):
            self._flush(blank=True)
            self.list_depth = max(self.list_depth - 1, 0)
        elif tag in ("p", "table", "blockquote"):
            self._flush(blank=True)
        elif tag in BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.current.append(data)

    def text(self) -> str:
        self._flush()
        return squeeze_blank_lines("\n".join(self.lines)).strip() + "\n"


def html_to_text(html: str, canonical: Callable[[str], str] | None = None) -> str:
    """Plain text for the text/plain part of ``html`` (see :class:`TextExtractor` for ``canonical``)."""
    parser = TextExtractor(canonical)
    parser.feed(html)
    parser.close()
    return parser.text()
