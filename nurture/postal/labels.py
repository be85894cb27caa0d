"""Address labels: one prospect's address as the lines a Japanese label prints, and A4 label sheets as HTML
(turned into PDF by :mod:`nurture.postal.pdf`). Pure: no database, no files.

Japanese business addressing (宛名書き): 〒 code, prefecture and street, building, company, department, then the
person with their title before the name and 様 after it. 御中 goes after an organisation only when no person is
named (to the department if there is one, else to the company) — never 様 and 御中 together. An address abroad
(a code with letters, no Japanese prefecture) or one written in Latin letters (an address in Japan written in
English) is printed in Western order without an honorific.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from nurture.people.addresses import PREFECTURES


@dataclass(frozen=True)
class LabelLayout:
    """A label sheet: ``columns`` x ``rows`` labels of ``width`` x ``height`` mm on A4, the first one ``left``
    and ``top`` mm from the sheet's corner, ``gap_x``/``gap_y`` mm between labels, text ``font_pt`` points."""

    name: str
    description: str
    columns: int
    rows: int
    width: float
    height: float
    left: float
    top: float
    gap_x: float = 0.0
    gap_y: float = 0.0
    font_pt: float = 9.5
    padding: float = 4.0

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows


#: The common A4 sheets (the sizes of the usual 12- and 24-label products sold in Japan).
LAYOUTS: dict[str, LabelLayout] = {
    "a4-12": LabelLayout("a4-12", "A4, 2 x 6 labels of 86.4 x 42.3 mm", 2, 6, 86.4, 42.3, 18.6, 21.6),
    "a4-24": LabelLayout(
        "a4-24", "A4, 3 x 8 labels of 66.0 x 33.9 mm", 3, 8, 66.0, 33.9, 6.0, 12.9, font_pt=7.5, padding=2.5
    ),
}


@dataclass(frozen=True)
class Address:
    """What a label needs of a prospect (a snapshot of its postal fields)."""

    postal_code: str
    prefecture: str
    address_line: str
    building: str = ""
    company: str = ""
    department: str = ""
    title: str = ""
    name: str = ""

    @property
    def japanese(self) -> bool:
        """Whether the label is written the Japanese way: a Japanese prefecture, or else a code without letters
        and an address not written in Latin letters alone (``Tokyo`` / ``1-12-32 Akasaka, Minato-ku`` is an
        address in Japan written in English: Western order)."""
        if self.prefecture in PREFECTURES:
            return True
        if any(c.isalpha() and c.isascii() for c in self.postal_code):
            return False
        written = self.prefecture + self.address_line
        return not written or not written.isascii()

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def honorific(address: Address) -> str:
    """様 for a named person, else 御中 for the organisation ("" abroad)."""
    if not address.japanese:
        return ""
    return "様" if address.name.strip() else "御中"


def label_lines(address: Address) -> list[str]:
    """The lines of the label, top to bottom, with the honorific placed (see the module docstring)."""
    a = address
    if not a.japanese:
        person = ", ".join(p for p in (a.name, a.title) if p)
        lines = [person, a.company, a.department, a.address_line, a.building, f"{a.prefecture} {a.postal_code}"]
        return [line.strip() for line in lines if line and line.strip()]
    lines = [f"〒{a.postal_code}", f"{a.prefecture}{a.address_line}"]
    if a.building:
        lines.append(a.building)
    if a.name.strip():
        lines += [x for x in (a.company, a.department) if x]
        lines.append(" ".join(x for x in (a.title, a.name, "様") if x))
    else:
        orgs = [x for x in (a.company, a.department) if x]
        if orgs:
            orgs[-1] += " 御中"
        lines += orgs
    return lines


#: Type is never set smaller than this (points): below it a long line wraps instead.
MIN_FONT_PT = 5.0
_PT_MM = 25.4 / 72
_LINE_HEIGHT = 1.35
_NAME_SCALE = 1.15


def _em_width(text: str) -> float:
    """The width of ``text`` in em: full-width (CJK) characters 1 em, ASCII about 0.6 em (a safe estimate for
    Noto Sans CJK's proportional Latin)."""
    return sum(0.6 if ch.isascii() else 1.0 for ch in text)


def fitting_size(lines: Sequence[str], layout: LabelLayout, name_index: int = -1) -> float:
    """The largest type size (points, the layout's size at most, in 0.25 pt steps) at which ``lines``, each
    wrapped to the label's width where too long, fit the label's height; :data:`MIN_FONT_PT` when none does.
    Long lines wrap before the type shrinks, so a long company name stays readable and is never cut off. The
    line at ``name_index`` (the addressee) is printed 1.15 times larger."""
    width = (layout.width - 2 * (layout.padding + 1)) * 0.97  # mm, with a little room for the estimate
    # The code in the corner sits 1.2 mm from the bottom and is about 2 mm tall: keep text above it.
    height = layout.height - layout.padding - max(layout.padding, 3.4) - 0.8  # 0.8: the name's top margin
    size = layout.font_pt
    name_index %= max(1, len(lines))
    while size > MIN_FONT_PT:
        needed = 0.0
        for i, line in enumerate(lines):
            pt = size * (_NAME_SCALE if i == name_index else 1.0)
            rows = max(1, math.ceil(_em_width(line) * pt * _PT_MM / width))
            needed += rows * pt * _PT_MM * _LINE_HEIGHT
        if needed <= height:
            return size
        size -= 0.25
    return MIN_FONT_PT


def sheets_html(addresses: Sequence[tuple[str, Address]], layout: LabelLayout, font_family: str) -> str:
    """A4 label sheets for ``(code, address)`` pairs in order, as one HTML document (one page per sheet). The
    code is printed small in the corner of each label so that returned mail can be matched back."""
    pages = []
    for start in range(0, len(addresses), layout.per_sheet):
        cells = []
        for index, (code, address) in enumerate(addresses[start : start + layout.per_sheet]):
            row, column = divmod(index, layout.columns)
            x = layout.left + column * (layout.width + layout.gap_x)
            y = layout.top + row * (layout.height + layout.gap_y)
            lines = label_lines(address)
            name_index = len(lines) - 1 if address.japanese else 0  # Western order: the addressee comes first
            size = fitting_size(lines, layout, name_index)
            body = "".join(
                f'<div class="{"name" if i == name_index else "line"}">{html.escape(line)}</div>'
                for i, line in enumerate(lines)
            )
            cells.append(
                f'<div class="label" style="left:{x:.2f}mm;top:{y:.2f}mm;font-size:{size:.2f}pt">'
                f'{body}<div class="code">{html.escape(code)}</div></div>'
            )
        pages.append(f'<section class="sheet">{"".join(cells)}</section>')
    css = f"""
@page {{ size: A4; margin: 0; }}
html, body {{ margin: 0; padding: 0; }}
body {{ font-family: "{html.escape(font_family)}", "Noto Sans CJK JP", sans-serif; color: #000; }}
.sheet {{ position: relative; width: 210mm; height: 297mm; page-break-after: always; overflow: hidden; }}
.sheet:last-child {{ page-break-after: auto; }}
.label {{ position: absolute; box-sizing: border-box; width: {layout.width}mm; height: {layout.height}mm;
  padding: {layout.padding}mm {layout.padding + 1}mm; line-height: 1.35; overflow: hidden; }}
.line, .name {{ overflow-wrap: anywhere; }}
.name {{ margin-top: 0.8mm; font-size: 1.15em; }}
.code {{ position: absolute; right: {layout.padding}mm; bottom: 1.2mm; font-size: 5.5pt; color: #555; }}
"""
    head = f'<!doctype html><html lang="ja"><head><meta charset="utf-8"><style>{css}</style></head>'
    return f"{head}<body>{''.join(pages)}</body></html>"
