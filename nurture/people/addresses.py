"""Postal addresses as Japanese business lists hold them: 郵便番号, 都道府県, 市区町村・番地, 建物名, 部署.

Pure functions used by the import (reading cells) and by the postal channel (what is a complete address). The
postal code is kept in the form a label prints, ``NNN-NNNN``; full-width digits, 〒 and odd dashes are
normalised. Codes of other countries (letters, e.g. ``SW1A 1AA``) are kept as written: the label layout is
Japanese, but a list may hold a few addresses abroad.
"""

from __future__ import annotations

import re
import unicodedata

from nurture.people.cells import RowError

#: The 47 prefectures, longest first so that 京都府 is not read as 東京都's tail (and 神奈川県 before 奈良県).
_PREFECTURE_NAMES = (  # noqa: SIM905 - one line per region reads better than 47 quoted strings
    "北海道 青森県 岩手県 宮城県 秋田県 山形県 福島県 茨城県 栃木県 群馬県 埼玉県 千葉県 東京都 神奈川県 "
    "新潟県 富山県 石川県 福井県 山梨県 長野県 岐阜県 静岡県 愛知県 三重県 滋賀県 京都府 大阪府 兵庫県 "
    "奈良県 和歌山県 鳥取県 島根県 岡山県 広島県 山口県 徳島県 香川県 愛媛県 高知県 福岡県 佐賀県 長崎県 "
    "熊本県 大分県 宮崎県 鹿児島県 沖縄県"
).split()
#: The 47 prefectures, longest first so that a shorter name is never matched inside a longer one.
PREFECTURES = tuple(sorted(_PREFECTURE_NAMES, key=len, reverse=True))
_DASHES = re.compile(r"[‐‑‒–—―−ー－-]")


def parse_postal_code(value: str) -> str:
    """``value`` as ``NNN-NNNN`` (Japanese form), or as written when it has letters (abroad). Raises RowError
    for digit strings of another length, the usual typo (a digit missing, or a pre-1998 five-digit code)."""
    text = unicodedata.normalize("NFKC", value).strip().lstrip("〒").strip()
    text = _DASHES.sub("-", text)
    if not text:
        return ""
    if re.search(r"[A-Za-z]", text):
        return text[:16]
    digits = re.sub(r"[\s-]", "", text)
    if not digits.isdigit() or len(digits) != 7:
        raise RowError("postal_code", value, "is not a postal code like 100-0001 (seven digits)")
    return f"{digits[:3]}-{digits[3:]}"


def split_prefecture(address: str) -> tuple[str, str]:
    """(prefecture, rest) when ``address`` starts with a prefecture (a list with one 住所 column), else
    ("", address)."""
    text = address.strip()
    for name in PREFECTURES:
        if text.startswith(name):
            return name, text[len(name) :].strip()
    return "", text


def is_complete(postal_code: str, prefecture: str, address_line: str) -> bool:
    """Enough to reach a person by post: a code, a prefecture (or state) and a street address."""
    return bool(postal_code.strip() and prefecture.strip() and address_line.strip())
