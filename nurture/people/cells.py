"""One cell of a table people keep in Excel, as a checked field value: the parsing shared by the prospect
import (:mod:`nurture.people.prospects`) and the offline events import (:mod:`nurture.people.events_import`).

Contract: each ``parse_*`` function takes a raw cell (:data:`nurture.people.tabular.Cell`) and returns the
field's value, or raises :class:`RowError` naming the field, the value as read and what is wrong with it; the
importer turns that into a :class:`Rejected` row (``row 7, email: "x" is not a valid address``) and goes on, so
every bad row of a file is listed at once. Text is NFKC-normalised (full-width letters and spaces, half-width
katakana); words for temperature, stage and consent are understood in Japanese and English; dates are read as
Excel writes them, local times in the given time zone, and stored as UTC; addresses are checked with
email-validator (no DNS) and lower-cased.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from nurture.people.tabular import Cell, header_key, undefuse
from nurture.store.models import CONSENT_BASES

#: What people write for a temperature, a stage or a consent basis -> the stored value (:func:`parse_word`).
TEMPERATURE_WORDS = {
    "hot": "hot",
    "ホット": "hot",
    "高": "hot",
    "高い": "hot",
    "熱い": "hot",
    "h": "hot",
    "warm": "warm",
    "ウォーム": "warm",
    "ウオーム": "warm",
    "中": "warm",
    "普通": "warm",
    "w": "warm",
    "cold": "cold",
    "コールド": "cold",
    "低": "cold",
    "低い": "cold",
    "冷たい": "cold",
    "c": "cold",
}
STAGE_WORDS = {
    "mql": "MQL",
    "tql": "TQL",
    "sql": "SQL",
    "customer": "customer",
    "顧客": "customer",
    "既存顧客": "customer",
    "受注": "customer",
    "lost": "lost",
    "失注": "lost",
}
CONSENT_WORDS = {
    "optin": "opt_in",
    "オプトイン": "opt_in",
    "同意済": "opt_in",
    "同意済み": "opt_in",
    "同意あり": "opt_in",
    "あり": "opt_in",
    "yes": "opt_in",
    "済": "opt_in",
    "businesscard": "business_card",
    "名刺": "business_card",
    "名刺交換": "business_card",
    "existingrelationship": "existing_relationship",
    "取引関係": "existing_relationship",
    "既存取引": "existing_relationship",
    "取引あり": "existing_relationship",
    "publishedbusinessaddress": "published_business_address",
    "公表アドレス": "published_business_address",
    "web公開": "published_business_address",
    "公開アドレス": "published_business_address",
    "unknown": "unknown",
    "不明": "unknown",
    "なし": "unknown",
    "未確認": "unknown",
}
CONSENT_WORDS |= {header_key(b): b for b in CONSENT_BASES} | {b: b for b in CONSENT_BASES}
_DATE_RE = re.compile(
    r"^(\d{4})\s*[/\-.年]\s*(\d{1,2})\s*[/\-.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]+(\d{1,2})\s*[:時]\s*(\d{1,2})(?:\s*[:分]\s*(\d{1,2}))?\s*秒?)?$"
)


class RowError(ValueError):
    """A cell that cannot be read as its field: ``field``, the ``value`` as read, and the ``reason``."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


class RowErrors(ValueError):
    """Every bad cell of one row (``errors``, in column order), so a person fixes a row once, not once per field."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


@dataclass
class Rejected:
    """One problem of a row an import left out, with the row number as Excel shows it (a row with several bad
    cells gives one Rejected per cell, all with the same ``row``)."""

    row: int
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f'row {self.row}, {self.field}: "{self.value}" {self.reason}'

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "value": self.value, "reason": self.reason}


#: What NFKC leaves apart but Japanese text means as one: the WAVE DASH 〜 (Macs, the web) is the FULLWIDTH TILDE
#: ～ (Windows, CP932), which NFKC folds to "~"; the MINUS SIGN − is Windows' FULLWIDTH HYPHEN-MINUS －, which
#: NFKC folds to "-". Folding them too makes a list saved on a Mac and on Windows read the same, and keeps a CP932
#: export (which must write ～ and －) reading back unchanged.
_FOLD = str.maketrans({"\u301c": "~", "\u2212": "-"})


def cell_text(value: Cell) -> str:
    """A cell as normalised text: NFKC (full-width letters/digits/spaces, half-width katakana), an export's
    formula defusing undone (:func:`undefuse`), white space folded and trimmed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():  # ASCII is already NFKC-normal; most cells are
        text = unicodedata.normalize("NFKC", text)
        if "\u301c" in text or "\u2212" in text:  # two scans in C: far cheaper than translate() on every cell
            text = text.translate(_FOLD)
    if text.startswith("'"):
        text = undefuse(text)
    return " ".join(text.split())


# RFC 5322 3.2.3 dot-atom of atext: what email-validator accepts for an ASCII local part without quoting.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=65536)
def _checked_domain(domain: str) -> str | None:
    """The normalised domain, or None if email-validator rejects it. Cached: lists repeat company domains."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def parse_email(value: Cell) -> str:
    """A checked, lower-cased address. Plain ASCII local parts take a fast path (the domain check is cached,
    which is most of email-validator's cost); anything else goes through email-validator whole."""
    text = cell_text(value)
    if not text:
        raise RowError("email", text, "is empty; every row needs an address")
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local):
        checked = _checked_domain(domain)
        if checked is not None and len(local) + 1 + len(checked) <= 254:
            return f"{local}@{checked}".lower()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise RowError("email", text, "is not a valid address") from None
    return result.normalized.lower()


def parse_datetime(value: Cell, zone: zoneinfo.ZoneInfo, field_name: str) -> datetime | None:
    """Dates and times as Excel writes them; local times are read in ``zone`` and stored as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        local = value if value.tzinfo else value.replace(tzinfo=zone)
        return local.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone).astimezone(UTC)
    text = cell_text(value)
    if not text:
        return None
    return _parse_datetime_text(text, zone, field_name)


@functools.lru_cache(maxsize=8192)
def _parse_datetime_text(text: str, zone: zoneinfo.ZoneInfo, field_name: str) -> datetime:
    """Cached: a list holds the same few hundred dates many times over."""
    m = _DATE_RE.match(text)
    if not m:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(field_name, text, "is not a date (use 2026/11/22, 2026-11-22 or 2026/11/22 9:30)") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)
    y, mo, d, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
    try:
        return datetime(y, mo, d, hh, mm, ss, tzinfo=zone).astimezone(UTC)
    except ValueError:
        raise RowError(field_name, text, "is not a real date") from None


def parse_date(value: Cell, field_name: str) -> date | None:
    """A calendar date (no time zone: a due date means that day wherever the reader is)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    parsed = parse_datetime(value, zoneinfo.ZoneInfo("UTC"), field_name)
    return parsed.date() if parsed else None


def parse_word(value: Cell, words: dict[str, str], allowed: Iterable[str], field_name: str) -> str | None:
    """The stored value for the word in ``value`` (looked up as written, then by :func:`header_key`), None for
    a blank cell; RowError listing ``allowed`` for a word not in ``words``."""
    text = cell_text(value)
    if not text:
        return None
    found = words.get(text) or words.get(header_key(text))
    if found:
        return found
    raise RowError(field_name, text, f"is not one of {', '.join(allowed)}")
