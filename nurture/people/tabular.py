"""Reading the tables people keep: CSV (UTF-8, UTF-8 with BOM, CP932/Shift_JIS from Excel in Japan) and XLSX.

:func:`read_table` streams rows; memory does not grow with the file. Row numbers are the ones a person sees in
Excel (the header is row 1 and the first data row row 2, unless title rows sit above the header: then the header
is found below them, or named with ``header_row``). Fully empty rows are skipped (their numbers too).

Encoding detection without guessing libraries: a BOM means UTF-8; otherwise the whole file is checked as UTF-8
in a streaming pass (cheap next to parsing); if that fails it is checked as CP932 (Microsoft's Shift_JIS, which
is what Excel writes: it has the NEC/IBM extension characters such as ①, ㈱ and 髙 that plain Shift_JIS lacks).
Anything else needs ``--encoding``.
"""

from __future__ import annotations

import codecs
import csv
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from xml.etree.ElementTree import ParseError

from nurture.core.errors import InputError

Cell = str | int | float | date | datetime | None
_CHUNK = 1 << 20
_ENCODING_ALIASES = {
    "sjis": "cp932",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "windows-31j": "cp932",
    "utf8": "utf-8",
    "utf-8-bom": "utf-8-sig",
    "utf8-sig": "utf-8-sig",
}


@dataclass
class Table:
    """A table being read: ``headers`` as written, ``rows`` yields ``(row_number, cells)``."""

    path: Path
    headers: list[str]
    rows: Iterator[tuple[int, list[Cell]]]
    encoding: str | None = None
    #: The row (as Excel numbers rows) the headers were read from.
    header_row: int = 1


def _decodes_as(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` (BOM), ``utf-8`` or ``cp932``; InputError if none fits."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "cp932"):
        if _decodes_as(path, encoding):
            return encoding
    raise InputError(
        f"{path}: cannot tell the text encoding (not UTF-8 and not Shift_JIS/CP932)",
        hint="save it from Excel as 'CSV UTF-8', or pass --encoding (e.g. --encoding euc-jp)",
    )


def normalize_encoding(name: str) -> str:
    key = name.strip().lower()
    key = _ENCODING_ALIASES.get(key, key)
    try:
        codecs.lookup(key)
    except LookupError:
        raise InputError(
            f"unknown encoding {name!r}", hint="use utf-8, utf-8-sig, cp932 (Shift_JIS) or euc-jp"
        ) from None
    return key


#: The first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(text: str) -> str:
    """``text`` as written to an exported CSV cell: a leading apostrophe added when it starts with a formula
    character, or with apostrophes followed by one (so that :func:`undefuse` gives back exactly ``text``)."""
    if text.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + text
    return text


def undefuse(text: str) -> str:
    """The inverse of :func:`defuse`: one leading apostrophe dropped before a formula character. A value that
    really starts with an apostrophe and a formula character (``'=x``) is exported as ``''=x`` and so comes back."""
    if text.startswith("'") and text.lstrip("'").startswith(FORMULA_STARTS):
        return text[1:]
    return text


#: How many rows :func:`read_table` looks through for the header row when ``find_header`` is given: title rows
#: ("顧客リスト 2026年11月", a date, a blank row) sit above the headers in the sheets people keep.
HEADER_SEARCH_ROWS = 20


def read_table(
    path: str | Path,
    encoding: str | None = None,
    sheet: str | None = None,
    *,
    header_row: int | None = None,
    find_header: Callable[[list[str]], bool] | None = None,
) -> Table:
    """Open a .csv/.tsv/.txt or .xlsx file for streaming. Raises InputError for unreadable files.

    The header is row ``header_row`` (as Excel numbers rows) if given; else the first of the first
    :data:`HEADER_SEARCH_ROWS` non-empty rows that ``find_header`` accepts (title rows above it are skipped);
    else the first non-empty row. Data rows are the non-empty rows after it, numbered as Excel shows them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if header_row is not None and header_row < 1:
        raise InputError(f"--header-row {header_row}: rows are numbered from 1, as in Excel")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        records, close, encoding_used, where = _xlsx_records(path, sheet)
    elif suffix == ".xls":
        raise InputError(
            f"{path}: the old Excel .xls format is not supported",
            hint="in Excel choose 'Save As' -> 'Excel Workbook (.xlsx)' or 'CSV UTF-8'",
        )
    else:
        encoding_used = normalize_encoding(encoding) if encoding else detect_encoding(path)
        records, close = _csv_records(path, encoding_used)
        where = "the file"
    try:
        number, headers = _header(path, records, header_row, find_header, where)
    except BaseException:
        close()
        raise

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        try:
            for n, record in records:
                if any(c is not None and str(c).strip() for c in record):
                    yield n, record
        finally:
            close()

    table = Table(path, headers, rows(), encoding_used)
    table.header_row = number
    return table


def _header(
    path: Path,
    records: Iterator[tuple[int, list[Cell]]],
    header_row: int | None,
    find_header: Callable[[list[str]], bool] | None,
    where: str,
) -> tuple[int, list[str]]:
    """(row number, header cells) taken from ``records``, which is left at the first data row."""
    first: tuple[int, list[str]] | None = None
    seen = 0
    for number, record in records:
        cells = ["" if c is None else undefuse(str(c).strip()) for c in record]
        if header_row is not None:
            if number == header_row:
                if not any(cells):
                    raise InputError(f"{path}: row {header_row} (--header-row) is empty")
                return number, cells
            continue
        if not any(cells):
            continue
        if find_header is None:
            return number, cells
        if first is None:
            first = (number, cells)
        if find_header(cells):
            return number, cells
        seen += 1
        if seen >= HEADER_SEARCH_ROWS:
            break
    if header_row is not None:
        raise InputError(f"{path}: there is no row {header_row} (--header-row) in {where}")
    if first is None:
        raise InputError(f"{path}: {where} is empty", hint="the first row must hold the column names")
    # No row was accepted: the first one is taken as the header, and the caller reports its columns as not
    # understood (the rows read past it are lost to the iterator, which is fine: that import stops there).
    return first


def _csv_records(path: Path, encoding: str) -> tuple[Iterator[tuple[int, list[Cell]]], Callable[[], None]]:
    fh = path.open("r", encoding=encoding, newline="")
    try:
        sample = fh.read(64 * 1024)
    except UnicodeDecodeError as exc:
        fh.close()
        raise InputError(
            f"{path}: not readable as {encoding}: {exc.reason}", hint="check --encoding (Excel in Japan writes cp932)"
        ) from None
    fh.seek(0)
    delimiter = "\t" if path.suffix.lower() == ".tsv" or (sample.count("\t") > sample.count(",")) else ","
    reader = csv.reader(fh, delimiter=delimiter)

    def records() -> Iterator[tuple[int, list[Cell]]]:
        number = 0
        try:
            for record in reader:
                number += 1
                yield number, list(record)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: row {number + 1}: not readable as {encoding}: {exc.reason}", hint="check --encoding"
            ) from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise InputError(
                    f"{path}: row {number + 1}: a cell is longer than {csv.field_size_limit():,} characters",
                    hint='an unclosed quote (") makes the rest of the file one cell: check the quotes in that row',
                ) from None
            raise InputError(f"{path}: row {number + 1}: {exc}", hint="check the quotes in that row") from None

    return records(), fh.close


#: What the zip and XML readers under openpyxl raise for a file that is not a whole .xlsx workbook (openpyxl's
#: own InvalidFileException is added where openpyxl is imported). TypeError and IndexError: openpyxl's reader
#: indexes into what the XML says, and damaged XML says odd things.
_XLSX_BROKEN: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    ParseError,
    OSError,
    KeyError,
    ValueError,
    EOFError,
    TypeError,
    IndexError,
)


def _xlsx_records(
    path: Path, sheet: str | None
) -> tuple[Iterator[tuple[int, list[Cell]]], Callable[[], None], None, str]:
    import openpyxl  # imported here: it is slow to import and only xlsx needs it
    from openpyxl.utils.exceptions import InvalidFileException

    broken = (InvalidFileException, *_XLSX_BROKEN)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes), not an .xlsx workbook", hint="save it again from Excel")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except broken as exc:
        raise InputError(
            f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})",
            hint="open it in Excel and save it again as 'Excel Workbook (.xlsx)', or export it as CSV",
        ) from None
    if sheet is not None and sheet not in workbook.sheetnames:
        workbook.close()
        raise InputError(f"{path}: no sheet named {sheet!r}; sheets: {', '.join(workbook.sheetnames)}")
    if not workbook.worksheets:
        workbook.close()
        raise InputError(f"{path}: the workbook has no worksheet")
    ws = workbook[sheet] if sheet else workbook.worksheets[0]

    def records() -> Iterator[tuple[int, list[Cell]]]:
        number = 0
        try:
            for number, record in enumerate(ws.iter_rows(values_only=True), start=1):
                yield number, list(record)
        except broken as exc:
            raise InputError(
                f"{path}: sheet {ws.title!r} is damaged after row {number} ({type(exc).__name__}: {exc})",
                hint="open it in Excel and save it again, or export it as CSV",
            ) from None

    return records(), workbook.close, None, f"the sheet {ws.title!r}"


def header_key(header: str) -> str:
    """A header as compared with aliases: NFKC, lower case, without spaces, underscores, hyphens or dots."""
    text = unicodedata.normalize("NFKC", header).strip().lower()
    for ch in " _-.・:：()（）":
        text = text.replace(ch, "")
    return text
