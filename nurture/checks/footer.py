"""The footer check: what 特定電子メール法 and CAN-SPAM require in every mail (shared/COMPLIANCE.md).

Contract: :func:`footer_problems` looks for the sender's name, postal address, an opt-out statement with its
link and an inquiry contact in the visible HTML and in the text part of a rendered mail, and returns one line
per thing missing (empty: the mail is complete). Text is compared after NFKC, without whitespace and case, so
"〒100-0005 東京都…" is found however the template wraps it. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata

from nurture.compose.html_text import BLOCK_TAGS, TextExtractor
from nurture.compose.rendering import RenderedMessage
from nurture.core.config import Config

#: Wording that tells the reader they can refuse further mail, by language.
OPT_OUT_WORDS = {
    "ja": ("配信停止", "配信を停止", "配信解除", "登録解除", "受信を希望されない", "受信拒否", "購読を停止"),
    "en": ("unsubscribe", "opt out", "opt-out", "stop receiving", "no longer wish"),
}

_SPACES = re.compile(r"[ \t\r\n\f\v]+")


class _FooterScan(TextExtractor):
    """The visible text of the HTML (as the text part shows it), plus each link's href and the text of the
    block around it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[list[str]] = [[]]
        self.anchors: list[tuple[str, int]] = []  # (href, block index)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        if self.hidden:
            return
        if tag in BLOCK_TAGS or tag == "br":
            self.blocks.append([])
        if tag == "a":
            self.anchors.append((dict(attrs).get("href") or "", len(self.blocks) - 1))

    def handle_endtag(self, tag: str) -> None:
        super().handle_endtag(tag)
        if tag in BLOCK_TAGS:
            self.blocks.append([])

    def handle_data(self, data: str) -> None:
        super().handle_data(data)
        if not self.hidden:
            self.blocks[-1].append(data)


def _normalized(text: str) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", text)).lower()


def footer_problems(rendered: RenderedMessage, config: Config, language: str) -> list[str]:
    """What the mail lacks of what 特定電子メール法 (and CAN-SPAM) require in every mail: the sender's name,
    postal address, an opt-out statement with its link, an inquiry contact. Each is looked for in the visible
    HTML and in the text part; an empty list means the mail is complete.

    The opt-out statement counts when a paragraph holding opt-out wording (:data:`OPT_OUT_WORDS`) also
    holds an http(s) or mailto link, so "配信停止はこちら" must sit next to its link, as the law asks.
    """
    identity = config.identity
    words = OPT_OUT_WORDS.get(language, ()) + OPT_OUT_WORDS["en"]
    scan = _FooterScan()
    scan.feed(rendered.html)
    scan.close()
    html_text = _normalized(scan.text())
    text = _normalized(rendered.text)
    problems: list[str] = []

    def need(label: str, value: str, setting: str) -> None:
        if not value.strip():
            problems.append(f"{label}: [identity] {setting} is empty in the configuration")
            return
        wanted = _normalized(value)
        for part, haystack in (("HTML", html_text), ("text", text)):
            if wanted not in haystack:
                problems.append(f"{part} part lacks the {label} ({value.strip()!r})")

    need("sender name", identity.organization or identity.from_name, "organization")
    need("postal address", identity.postal_address, "postal_address")

    def opt_out_in_html() -> bool:
        for href, block in scan.anchors:
            if not href.lower().startswith(("http://", "https://", "mailto:")):
                continue
            around = _normalized("".join(scan.blocks[block]))
            if any(_normalized(w) in around for w in words):
                return True
        return False

    if not opt_out_in_html():
        problems.append(
            "HTML part lacks an opt-out statement next to its link "
            "(e.g. 配信停止はこちら / Unsubscribe, linked to {{ urls.unsubscribe }})"
        )
    if not any(
        re.search(re.escape(w) + r".{0,200}?(https?://|mailto:|@)", unicodedata.normalize("NFKC", line), re.I)
        for line in _paragraphs(rendered.text)
        for w in words
    ):
        problems.append("text part lacks an opt-out statement with its URL")
    need("inquiry contact", identity.inquiry, "inquiry")
    return problems


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
