"""The text renderers: terminal table (rich), CSV, JSON and XLSX (openpyxl), from a :class:`Report` only.

CSV holds one section (a CSV file is one table): the report's first section unless ``section`` names another;
it is UTF-8 with a byte-order mark so that Excel shows Japanese correctly. XLSX has a ``summary`` sheet (period,
filters, totals, warnings) and one sheet per section. Lists inside a cell (a move's events) become one line of
``type/label campaign/item`` entries separated by ``; ``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from nurture.core.errors import InputError
from nurture.report.model import Report, Section, json_default, jsonable

TABLE_ROWS = 30  # a terminal report stays on one screen per section; --limit or another format shows all


def cell(value: Any) -> str:
    """One value as text: events as ``type/label campaign/item``, instants to the minute, rates as given."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return format(value, ".10g")  # 1800000.0 -> 1800000, never 1.8e+06
    if isinstance(value, list):
        return "; ".join(cell(v) for v in value)
    if isinstance(value, dict):
        if "type" in value and "label" in value:
            where = f" {value.get('campaign')}/{value.get('item')}" if value.get("campaign") else ""
            return f"{value['type']}/{value['label']}{where}"
        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value)


def rate_text(column: str, value: Any) -> str:
    """A cell for people: rates as percentages (complaint rates to 0.01 %: their thresholds are 0.1 % and
    0.3 %), large numbers with thousands separators."""
    if isinstance(value, bool):
        return cell(value)
    if column.endswith("_rate") and isinstance(value, (int, float)):
        return f"{value:.2%}" if column == "complaint_rate" else f"{value:.1%}"
    if isinstance(value, (int, float)) and abs(value) >= 10000:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return cell(value)


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), ensure_ascii=False, indent=2, default=json_default)


def pick(report: Report, section: str | None) -> Section:
    if section is None:
        return report.sections[0]
    for s in report.sections:
        if s.key == section:
            return s
    keys = ", ".join(s.key for s in report.sections)
    raise InputError(f"the {report.kind} report has no section {section!r}", hint=f"sections: {keys}")


def to_csv(report: Report, section: str | None = None) -> str:
    s = pick(report, section)
    columns = list(s.columns)
    if s.rows and "events" in s.rows[0] and "events" not in columns:
        columns.append("events")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in s.rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return "\ufeff" + out.getvalue()


def to_xlsx(report: Report) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "summary"
    ws.append([report.title])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["since", report.params.since.isoformat()])
    ws.append(["until", report.params.until.isoformat()])
    for k, v in report.params.filters().items():
        ws.append([k, ", ".join(v)])
    for k, v in report.totals.items():
        ws.append([k, v if isinstance(v, (int, float)) or v is None else cell(v)])
    for w in report.warnings:
        ws.append(["warning", w])
    for s in report.sections:
        sheet = wb.create_sheet(s.key[:31])
        columns = list(s.columns) + (
            ["events"] if s.rows and "events" in s.rows[0] and "events" not in s.columns else []
        )
        sheet.append(columns)
        for c in sheet[1]:
            c.font = Font(bold=True)
        for row in s.rows:
            values: list[Any] = []
            for c in columns:
                value: Any = row.get(c)
                if isinstance(value, datetime):
                    value = value.replace(tzinfo=None)  # Excel has no zones: UTC, as the summary says
                elif not isinstance(value, (int, float, str, date)) and value is not None:
                    value = cell(value)
                values.append(value)
            sheet.append(values)
        sheet.freeze_panes = "A2"
        for i, c in enumerate(columns, 1):
            sheet.column_dimensions[sheet.cell(1, i).column_letter].width = min(60, max(10, len(c) + 2))
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 60
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def print_table(report: Report, console: Console, limit: int | None = None) -> None:
    """The report for a person at a terminal: title, totals, warnings, then each section (first
    :data:`TABLE_ROWS` rows unless ``limit``)."""
    p = report.params
    console.print(f"[bold]{report.title}[/bold]  {p.since:%Y-%m-%d} .. {p.until:%Y-%m-%d} (UTC)")
    active = {k: v for k, v in p.filters().items() if v}
    if active:
        console.print("filters: " + "; ".join(f"{k}={','.join(v)}" for k, v in active.items()))
    if report.totals:
        console.print("  ".join(f"{k}: {cell(v) or '-'}" for k, v in report.totals.items()))
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)
    cap = limit if limit is not None else TABLE_ROWS
    for s in report.sections:
        total = s.total if s.total is not None else len(s.rows)
        if not s.rows:
            console.print(f"[bold]{s.title}[/bold]: none" + (f" — {s.note}" if s.note else ""))
            continue
        columns = s.brief or s.columns
        table = Table(title=f"{s.title} ({total})", title_justify="left", box=box.SIMPLE_HEAD, header_style="bold")
        for c in columns:
            numeric = isinstance(s.rows[0].get(c), (int, float))
            table.add_column(
                c.replace("_", "\n") if numeric else c,  # numbers are narrow: their headers wrap at the words
                overflow="fold",
                no_wrap=c in ("at", "created_at", "campaign", "item", "email") or numeric,
                justify="right" if numeric else "left",
            )
        for row in s.rows[:cap]:
            table.add_row(*(rate_text(c, row.get(c)) for c in columns))
        console.print(table)
        if total > min(cap, len(s.rows)):
            console.print(f"  ... {total - min(cap, len(s.rows))} more (--limit N, or --format csv/xlsx/json)")
