"""Reading the tables people keep: CSV (UTF-8, UTF-8 with BOM, CP932/Shift_JIS from Excel in Japan) and XLSX.

:func:`read_table` streams rows; memory does not grow with the file. Row numbers are the ones a person sees in
Excel: the header is row 1, the first data row is row 2. Fully empty rows are skipped (their numbers too).

Encoding detection without guessing libraries: a BOM means UTF-8; otherwise the whole file is checked as UTF-8
in a streaming pass (cheap next to parsing); if that fails it is checked as CP932 (Microsoft's Shift_JIS, which
is what Excel writes: it has the NEC/IBM extension characters such as ①, ㈱ and 髙 that plain Shift_JIS lacks).
Anything else needs ``--encoding``.
"""

from __future__ import annotations

import codecs
import csv
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

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


def read_table(path: str | Path, encoding: str | None = None, sheet: str | None = None) -> Table:
    """Open a .csv/.tsv/.txt or .xlsx file for streaming. Raises InputError for unreadable files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, sheet)
    if suffix == ".xls":
        raise InputError(
            f"{path}: the old Excel .xls format is not supported",
            hint="in Excel choose 'Save As' -> 'Excel Workbook (.xlsx)' or 'CSV UTF-8'",
        )
    return _read_csv(path, normalize_encoding(encoding) if encoding else detect_encoding(path))


def _read_csv(path: Path, encoding: str) -> Table:
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
    try:
        headers = next(reader)
    except StopIteration:
        fh.close()
        raise InputError(f"{path}: the file is empty", hint="the first row must hold the column names") from None
    except UnicodeDecodeError as exc:
        fh.close()
        raise InputError(f"{path}: not readable as {encoding}: {exc.reason}") from None

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        number = 1
        try:
            for record in reader:
                number += 1
                if any(cell.strip() for cell in record):
                    yield number, list(record)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: row {number + 1}: not readable as {encoding}: {exc.reason}", hint="check --encoding"
            ) from None
        except csv.Error as exc:
            raise InputError(f"{path}: row {number}: {exc}", hint="check the quotes in that row") from None
        finally:
            fh.close()

    return Table(path, [h.strip() for h in headers], rows(), encoding)


def _read_xlsx(path: Path, sheet: str | None) -> Table:
    import openpyxl  # imported here: it is slow to import and only xlsx needs it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .xlsx workbook ({exc})") from None
    if sheet is not None and sheet not in workbook.sheetnames:
        raise InputError(f"{path}: no sheet named {sheet!r}; sheets: {', '.join(workbook.sheetnames)}")
    ws = workbook[sheet] if sheet else workbook.worksheets[0]
    iterator = ws.iter_rows(values_only=True)
    try:
        header_row = next(iterator)
    except StopIteration:
        workbook.close()
        raise InputError(
            f"{path}: the sheet {ws.title!r} is empty", hint="the first row must hold the column names"
        ) from None
    headers = ["" if h is None else str(h).strip() for h in header_row]

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        try:
            for number, record in enumerate(iterator, start=2):
                if any(c is not None and str(c).strip() for c in record):
                    yield number, list(record)
        finally:
            workbook.close()

    return Table(path, headers, rows(), None)


def header_key(header: str) -> str:
    """A header as compared with aliases: NFKC, lower case, without spaces, underscores, hyphens or dots."""
    text = unicodedata.normalize("NFKC", header).strip().lower()
    for ch in " _-.・:：()（）":
        text = text.replace(ch, "")
    return text
