"""The prospect export: the list as a CSV or .xlsx file that people open in Excel and that ``prospects import``
reads back unchanged.

Contract (:func:`export_prospects`):

- prospects erased at their request are left out;
- columns are the fields the import reads (:data:`COLUMNS`), then every custom attribute (one column each, in
  order of name), then ``status`` (配信状態), which the import ignores: status changes only by what people do;
- headers in Japanese or English, each one a name the import recognises (a test checks every one); in Japanese the
  words for temperature, stage and consent are Japanese too (ホット, 名刺交換 ...), words the import reads back;
- instants (last contact, consent) in the configured time zone, as ``2026-11-01 09:30`` (seconds only when
  there are any); due dates as ``2026-12-01``; tags joined with ", ";
- formula injection (OWASP "CSV injection"): in a CSV, a text cell starting with = + - @ TAB or CR gets a leading
  apostrophe (:func:`nurture.people.tabular.defuse`), which the import removes again
  (:func:`nurture.people.tabular.undefuse`), so the round trip is exact. In an .xlsx such a cell is written as a
  string with Excel's quote prefix (the cell shows ``=1+2`` as text and editing it keeps it text): no apostrophe is
  needed there, and none is added;
- CP932 (Excel in Japan): the characters that Windows writes differently from the Unicode mapping of Shift_JIS
  (WAVE DASH 〜 and a few others, :data:`CP932_EQUIVALENTS`) are written as the CP932 character every Windows
  program shows for them; anything else CP932 cannot hold (emoji, most non-Japanese scripts) is an InputError
  naming each cell, and no file is written (choose ``--encoding utf-8-sig``);
- the file is written beside its destination and renamed into place: a failed export leaves no partial file.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, select

from nurture.core.errors import InputError
from nurture.people.queries import filtered
from nurture.people.tabular import FORMULA_STARTS, defuse, normalize_encoding
from nurture.store.models import STRENGTHS, Prospect, ProspectTag

#: (field, Japanese header, English header), in the order of the file. Every header is an import alias.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("email", "メールアドレス", "email"),
    ("name", "氏名", "name"),
    ("company", "会社名", "company"),
    ("title", "役職", "title"),
    ("department", "部署", "department"),
    ("industry", "業種", "industry"),
    ("temperature", "温度感", "temperature"),
    ("stage", "ステージ", "stage"),
    ("rank", "ランク", "rank"),
    ("score", "スコア", "score"),
    ("owner", "担当者", "owner"),
    ("last_contact_at", "最終接触日", "last contact"),
    ("next_action", "次回アクション", "next action"),
    ("next_action_due", "次回期限", "next action due"),
    ("time_zone", "タイムゾーン", "time zone"),
    ("language", "言語", "language"),
    ("tags", "タグ", "tags"),
    ("consent_basis", "同意区分", "consent"),
    ("consent_source", "同意取得元", "consent source"),
    ("consent_at", "同意取得日", "consent date"),
    ("postal_code", "郵便番号", "postal code"),
    ("prefecture", "都道府県", "prefecture"),
    ("address_line", "住所", "address"),
    ("building", "建物名", "building"),
    ("postal_status", "郵送不要", "no post"),
    ("strength_existing_business", "既存取引", "strength existing business"),
    ("strength_empathy", "共感", "strength empathy"),
    ("strength_contribution", "貢献", "strength contribution"),
    ("strength_multiple_contacts", "複数接点", "strength multiple contacts"),
    ("strength_decision_maker", "決裁者接点", "strength decision maker"),
    ("strength_invested", "時間投資", "strength invested"),
)
#: The read-only column at the end (the import ignores it).
STATUS_HEADERS = {"ja": "配信状態", "en": "status"}
#: Stored words -> the Japanese words written under Japanese headers (each one read back by the import).
JA_WORDS: dict[str, dict[str, str]] = {
    "postal_status": {"opted_out": "不要", "returned": "宛先不明"},
    "temperature": {"hot": "ホット", "warm": "ウォーム", "cold": "コールド"},
    "stage": {"customer": "顧客", "lost": "失注"},
    "consent_basis": {
        "opt_in": "オプトイン",
        "business_card": "名刺交換",
        "existing_relationship": "取引関係",
        "published_business_address": "公表アドレス",
        "unknown": "不明",
    },
    "status": {
        "active": "配信中",
        "unsubscribed": "配信停止",
        "bounced": "不達",
        "complained": "迷惑メール報告",
        "erased": "削除済み",
    },
}
#: Characters whose Unicode mapping of Shift_JIS differs from what Windows (CP932) uses: Python's cp932 codec
#: cannot write the left one, every Windows program shows the right one in its place.
CP932_EQUIVALENTS = str.maketrans(
    {
        "\u301c": "\uff5e",  # 〜 WAVE DASH -> ～ FULLWIDTH TILDE
        "\u2016": "\u2225",  # ‖ DOUBLE VERTICAL LINE -> ∥ PARALLEL TO
        "\u2212": "\uff0d",  # − MINUS SIGN -> － FULLWIDTH HYPHEN-MINUS
        "\u00a2": "\uffe0",  # ¢ -> ￠
        "\u00a3": "\uffe1",  # £ -> ￡
        "\u00ac": "\uffe2",  # ¬ -> ￢
        "\u2014": "\u2015",  # — EM DASH -> ― HORIZONTAL BAR
    }
)
FORMATS = ("csv", "xlsx")
ENCODINGS = ("utf-8-sig", "utf-8", "cp932")
_STRENGTH_FIELDS = tuple(f"strength_{s}" for s in STRENGTHS)
_NUMERIC = ("score", *_STRENGTH_FIELDS)
_INSTANTS = ("last_contact_at", "consent_at")
_SHOWN_PROBLEMS = 20


@dataclass
class ExportSummary:
    """What :func:`export_prospects` wrote."""

    rows: int = 0
    path: str = ""
    format: str = "csv"
    encoding: str | None = None
    headers: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    defused: int = 0  # cells that start with a formula character (apostrophe added in CSV, quote prefix in xlsx)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "path": self.path,
            "format": self.format,
            "encoding": self.encoding,
            "columns": self.headers,
            "custom_attributes": self.attributes,
            "formula_cells_defused": self.defused,
        }


def headers_for(language: str, attributes: list[str]) -> list[str]:
    """The header row of an export in ``language`` (``ja`` or ``en``)."""
    index = 1 if language == "ja" else 2
    return [c[index] for c in COLUMNS] + attributes + [STATUS_HEADERS[language]]


def _local(value: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    return value.astimezone(zone).replace(tzinfo=None)


def _instant_text(value: datetime, zone: zoneinfo.ZoneInfo) -> str:
    local = _local(value, zone)
    if local.microsecond:
        return local.isoformat(sep=" ")
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _rows(
    engine: Engine, filters: dict[str, Any], language: str
) -> tuple[list[str], Iterator[tuple[dict[str, Any], list[str]]]]:
    """(attribute names, iterator of (prospect row, tags)), streamed in e-mail order, two passes: the first reads
    only the attributes (to know the columns), the second everything."""
    # Erased people are left out: nothing of them is left to read, and their placeholder address
    # (<hash>@erased.invalid) is no address the import would take back.
    ids = filtered(select(Prospect.id).where(Prospect.status != "erased"), **filters).subquery()
    names: set[str] = set()
    with engine.connect() as conn:
        for (attrs,) in conn.execute(
            select(Prospect.attributes).where(Prospect.id.in_(select(ids.c.id))).execution_options(yield_per=2000)
        ):
            if attrs:
                names.update(attrs)
    attributes = sorted(names)

    def rows() -> Iterator[tuple[dict[str, Any], list[str]]]:
        stmt = (
            select(Prospect.__table__)
            .where(Prospect.id.in_(select(ids.c.id)))
            .order_by(Prospect.email)
            .execution_options(yield_per=1000)
        )
        with engine.connect() as conn, engine.connect() as tag_conn:
            batch: list[dict[str, Any]] = []
            for row in conn.execute(stmt).mappings():
                batch.append(dict(row))
                if len(batch) >= 1000:
                    yield from _with_tags(tag_conn, batch)
                    batch = []
            yield from _with_tags(tag_conn, batch)

    return attributes, rows()


def _with_tags(conn: Any, batch: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[str]]]:
    tags: dict[int, list[str]] = {}
    if batch:
        for pid, tag in conn.execute(
            select(ProspectTag.prospect_id, ProspectTag.tag)
            .where(ProspectTag.prospect_id.in_([r["id"] for r in batch]))
            .order_by(ProspectTag.tag)
        ):
            tags.setdefault(pid, []).append(tag)
    for row in batch:
        yield row, tags.get(row["id"], [])


def _values(
    row: dict[str, Any], tags: list[str], attributes: list[str], language: str, zone: zoneinfo.ZoneInfo
) -> list[Any]:
    """One prospect as cell values: str, int/float, or datetime/date (local, naive) for xlsx to type."""
    out: list[Any] = []
    words = JA_WORDS if language == "ja" else {}
    for name, _, _ in COLUMNS:
        if name == "tags":
            out.append(", ".join(tags))
            continue
        value = row.get(name)
        if value is None:
            out.append("")
        elif name in _INSTANTS:
            out.append(_local(value, zone))
        elif name in _NUMERIC:
            out.append(value)
        elif name in words:
            out.append(words[name].get(value, value))
        else:
            out.append(value)
    attrs = row.get("attributes") or {}
    for key in attributes:
        value = attrs.get(key)
        out.append("" if value is None else value if isinstance(value, str) else str(value))
    status = row.get("status") or ""
    out.append(words.get("status", {}).get(status, status))
    return out


def export_prospects(
    engine: Engine,
    out: str | Path | None,
    *,
    format: str = "csv",
    encoding: str = "utf-8-sig",
    language: str = "ja",
    time_zone: str = "Asia/Tokyo",
    stdout: IO[bytes] | None = None,
    progress: Any = None,
    **filters: Any,
) -> ExportSummary:
    """Write the prospects matching ``filters`` (those of :func:`nurture.people.queries.filtered`) to ``out``
    (or, for a CSV with ``out`` None, to the binary stream ``stdout``). See the module docstring for the contract.

    ``progress``, if given, is called with the number of rows written so far (every 1,000 rows).
    """
    if format not in FORMATS:
        raise InputError(f"--format {format}: use csv or xlsx")
    if language not in ("ja", "en"):
        raise InputError(f"--headers {language}: use ja or en")
    zone = zoneinfo.ZoneInfo(time_zone)
    attributes, rows = _rows(engine, filters, language)
    summary = ExportSummary(
        path=str(out) if out else "-",
        format=format,
        encoding=None if format == "xlsx" else normalize_encoding(encoding),
        headers=headers_for(language, attributes),
        attributes=attributes,
    )
    if format == "xlsx" and out is None:
        raise InputError("an .xlsx export needs --out FILE", hint="e.g. --out prospects.xlsx")
    target = Path(out) if out else None
    if target is not None and target.is_dir():
        raise InputError(f"{target}: is a folder", hint="give a file name, e.g. --out prospects.csv")
    directory = target.parent if target is not None else Path(".")
    if target is not None and not directory.exists():
        raise InputError(f"{directory}: no such folder")
    fd, temp = tempfile.mkstemp(prefix=".nurture-export-", suffix=f".{format}", dir=directory)
    os.close(fd)
    try:
        if format == "csv":
            _write_csv(Path(temp), rows, summary, attributes, language, zone, progress)
        else:
            _write_xlsx(Path(temp), rows, summary, attributes, language, zone, progress)
        if target is not None:
            os.replace(temp, target)
        else:
            with open(temp, "rb") as fh:
                assert stdout is not None, "a CSV export without a file needs a stream"
                while chunk := fh.read(1 << 20):
                    stdout.write(chunk)
                stdout.flush()
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return summary


def _csv_text(value: Any, zone: zoneinfo.ZoneInfo) -> tuple[str, bool]:
    """(cell text, whether it was defused)."""
    if isinstance(value, datetime):
        return _instant_text(value.replace(tzinfo=zone), zone), False
    if isinstance(value, date):
        return value.isoformat(), False
    if isinstance(value, (int, float)):
        return _number_text(value), False
    text = str(value)
    safe = defuse(text)
    return safe, safe is not text


def _write_csv(
    path: Path,
    rows: Iterator[tuple[dict[str, Any], list[str]]],
    summary: ExportSummary,
    attributes: list[str],
    language: str,
    zone: zoneinfo.ZoneInfo,
    progress: Any,
) -> None:
    encoding = summary.encoding or "utf-8-sig"
    cp932 = encoding == "cp932"
    problems: list[str] = []
    headers = summary.headers
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")  # Excel writes CRLF; so do we
        writer.writerow([defuse(h) for h in headers])
        for number, (row, tags) in enumerate(rows, start=2):
            cells = []
            for column, value in enumerate(_values(row, tags, attributes, language, zone)):
                text, defused = _csv_text(value, zone)
                summary.defused += defused
                if cp932 and not text.isascii():
                    text = text.translate(CP932_EQUIVALENTS)
                    try:
                        text.encode("cp932")
                    except UnicodeEncodeError as exc:
                        problems.append(f'row {number}, {headers[column]}: "{text}" has {text[exc.start]!r}')
                        text = ""
                cells.append(text)
            writer.writerow(cells)
            summary.rows += 1
            if progress and summary.rows % 1000 == 0:
                progress(summary.rows)
    if problems:
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise InputError(
            f"{len(problems)} cell(s) cannot be written in cp932 (Shift_JIS); nothing was exported:\n  {shown}{more}",
            hint="export with --encoding utf-8-sig (Excel opens it as well), or edit those values",
        )


def _write_xlsx(
    path: Path,
    rows: Iterator[tuple[dict[str, Any], list[str]]],
    summary: ExportSummary,
    attributes: list[str],
    language: str,
    zone: zoneinfo.ZoneInfo,
    progress: Any,
) -> None:
    import openpyxl  # imported here: it is slow to import and only xlsx needs it
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("prospects" if language == "en" else "見込み客")
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    datetime_format, datetime_seconds = "yyyy-mm-dd hh:mm", "yyyy-mm-dd hh:mm:ss"

    def cell(value: Any) -> Any:
        """A plain value where openpyxl's own typing is right (most cells: the fast path of write-only mode), a
        styled cell for dates and for text that a spreadsheet would take as a formula."""
        if isinstance(value, str):
            if not value:
                return None  # an empty cell, not an empty string: smaller file, and what Excel writes
            if not value.isprintable():
                value = ILLEGAL_CHARACTERS_RE.sub("", value)  # control characters an .xlsx cannot hold
            if not value.startswith(FORMULA_STARTS):
                return value
            c = WriteOnlyCell(sheet, value=value)
            c.data_type = "s"  # text, never a formula
            c.quotePrefix = True  # and Excel keeps it text when the cell is edited
            summary.defused += 1
            return c
        if isinstance(value, datetime):
            if value.microsecond:
                return value.isoformat(sep=" ")  # Excel keeps milliseconds: text keeps the instant exact
            c = WriteOnlyCell(sheet, value=value)
            c.number_format = datetime_format if not value.second else datetime_seconds
            return c
        if isinstance(value, date):
            c = WriteOnlyCell(sheet, value=value)
            c.number_format = "yyyy-mm-dd"
            return c
        return value

    header_cells = []
    for h in summary.headers:
        c = WriteOnlyCell(sheet, value=h)
        c.font = bold
        header_cells.append(c)
    sheet.append(header_cells)
    for row, tags in rows:
        sheet.append([cell(v) for v in _values(row, tags, attributes, language, zone)])
        summary.rows += 1
        if progress and summary.rows % 1000 == 0:
            progress(summary.rows)
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(buffer.getvalue())
