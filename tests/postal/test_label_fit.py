"""Long company names, departments and buildings on a label: every character printed inside its label (wrapped
or smaller type, never cut off by the label's edge), on both sheet layouts. Checked on the real PDF with
pdftotext's word boxes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nurture.postal.labels import LAYOUTS, Address, label_lines, sheets_html
from nurture.postal.pdf import write_pdf

LONG = Address(
    postal_code="100-0005",
    prefecture="東京都",
    address_line="千代田区丸の内一丁目九番二号",
    building="グラントウキョウサウスタワー 二十三階 受付 株式会社グローバル・ハイテクノロジー様宛",
    company="株式会社グローバル・ハイテクノロジー・マニュファクチャリング・ソリューションズ・ジャパン・ホールディングス",
    department="第二事業本部 精密加工技術開発センター 品質保証部",
    title="取締役副社長兼最高技術責任者",
    name="長谷川 由紀子",
)
ENGLISH = Address(
    postal_code="SW1A 1AA",
    prefecture="London",
    address_line="Westminster Business Centre, 10 Great George Street",
    company="International Precision Manufacturing Consolidated Holdings Limited",
    title="Vice President, Procurement",
    name="Alexandra Montgomery-Fitzwilliam",
)
SHORT = Address(postal_code="530-0001", prefecture="大阪府", address_line="大阪市北区梅田1-2-3", company="有限会社丸三")
MM = 72 / 25.4
WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>')


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="needs poppler-utils (pdftotext)")
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_long_lines_stay_inside_their_label(layout, tmp_path: Path):
    sheet = LAYOUTS[layout]
    pdf = tmp_path / "labels.pdf"
    write_pdf(
        sheets_html([("P1-0001", LONG), ("P1-0002", ENGLISH), ("P1-0003", SHORT)], sheet, "Noto Sans CJK JP"), pdf
    )
    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in WORD.findall(boxes)]
    for index, address in enumerate((LONG, ENGLISH, SHORT)):
        row, column = divmod(index, sheet.columns)
        left = (sheet.left + column * (sheet.width + sheet.gap_x)) * MM
        top = (sheet.top + row * (sheet.height + sheet.gap_y)) * MM
        right, bottom = left + sheet.width * MM, top + sheet.height * MM
        mine = [w for w in words if left - 1 <= w[0] < right and top - 1 <= w[1] < bottom]
        for _x0, _y0, x1, y1, word in mine:
            assert x1 <= right - 1 and y1 <= bottom - 1, f"{layout}: {word!r} runs past the label's edge"
        printed = "".join(w[4] for w in mine)
        for line in label_lines(address):
            assert line.replace(" ", "") in printed, f"{layout}: {line!r} is not all on the label"


def test_the_addressee_is_the_larger_line_in_either_order():
    japanese = sheets_html([("P1", SHORT)], LAYOUTS["a4-12"], "Noto Sans CJK JP")
    assert '<div class="name">有限会社丸三 御中</div>' in japanese
    western = sheets_html([("P2", ENGLISH)], LAYOUTS["a4-12"], "Noto Sans CJK JP")
    assert '<div class="name">Alexandra Montgomery-Fitzwilliam, Vice President, Procurement</div>' in western
    assert '<div class="line">London SW1A 1AA</div>' in western


def test_an_address_in_japan_written_in_english_is_printed_in_western_order():
    jane = Address(
        postal_code="107-6090",
        prefecture="Tokyo",
        address_line="1-12-32 Akasaka, Minato-ku",
        building="Ark Mori Building 25F",
        company="Global Widgets K.K.",
        department="Procurement",
        title="Director",
        name="Jane Doe",
    )
    assert label_lines(jane) == [
        "Jane Doe, Director",
        "Global Widgets K.K.",
        "Procurement",
        "1-12-32 Akasaka, Minato-ku",
        "Ark Mori Building 25F",
        "Tokyo 107-6090",
    ]
    # the same building in Japanese keeps Japanese order, also without a prefecture column
    taro = Address(postal_code="107-6090", prefecture="", address_line="港区赤坂1-12-32", name="山田 太郎")
    assert label_lines(taro)[-1] == "山田 太郎 様"
