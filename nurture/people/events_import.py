"""Offline touch points from a spreadsheet: seminar attendance, downloads, replies and meetings.

``nurture events import FILE`` reads CSV/XLSX with the same rules as the prospect import (encoding detected,
English or Japanese headers, every bad row listed, all or nothing) and records each row through the one door for
events, :func:`nurture.track.record_events`.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from nurture.core.errors import InputError
from nurture.people.cells import Rejected, RowError, cell_text, parse_datetime, parse_email
from nurture.people.prospects import ALIASES
from nurture.people.tabular import header_key, read_table
from nurture.store.models import Event, Prospect
from nurture.track import (
    DOCUMENT_DOWNLOADED,
    MET,
    OFFLINE_TYPES,
    REPLIED,
    SEMINAR_ATTENDED,
    NewEvent,
    record_events,
)

#: Header names (compared with :func:`nurture.people.tabular.header_key`) of an offline-events file -> field.
IMPORT_ALIASES: dict[str, tuple[str, ...]] = {
    "type": ("type", "event", "eventtype", "kind", "種別", "イベント", "イベント種別", "内容種別", "区分", "種類"),
    "occurred_at": ("date", "datetime", "occurredat", "when", "日付", "日時", "実施日", "発生日", "日"),
    "title": ("title", "subject", "seminar", "document", "件名", "タイトル", "セミナー名", "資料名", "名称"),
    "note": ("note", "notes", "memo", "comment", "detail", "メモ", "備考", "詳細", "コメント"),
}
#: What people write in the type column -> event type (compared with header_key, so case/width/spaces vary).
IMPORT_TYPE_WORDS: dict[str, str] = {
    **{
        w: SEMINAR_ATTENDED
        for w in (
            "seminarattended",
            "seminar",
            "webinar",
            "event",
            "セミナー",
            "セミナー参加",
            "ウェビナー",
            "ウェビナー参加",
            "イベント参加",
            "展示会",
            "展示会来場",
        )
    },
    **{
        w: DOCUMENT_DOWNLOADED
        for w in (
            "documentdownloaded",
            "download",
            "downloaded",
            "whitepaper",
            "資料ダウンロード",
            "資料dl",
            "資料請求",
            "ダウンロード",
            "dl",
        )
    },
    **{w: REPLIED for w in ("replied", "reply", "返信", "メール返信", "問い合わせ", "お問い合わせ", "inquiry")},
    **{
        w: MET
        for w in (
            "met",
            "meeting",
            "meet",
            "visit",
            "call",
            "面談",
            "商談",
            "訪問",
            "打ち合わせ",
            "打合せ",
            "電話",
            "オンライン面談",
        )
    },
}


@dataclass
class EventImport:
    """What ``import_offline_events`` did (or would do)."""

    recorded: int = 0
    already: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    written: bool = False
    dry_run: bool = False
    encoding: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "already_recorded": self.already,
            "rejected": [r.as_dict() for r in self.rejected],
            "written": self.written,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "columns": self.columns,
            "by_type": self.by_type,
        }


def import_offline_events(
    engine: Engine,
    path: Any,
    *,
    time_zone: str = "Asia/Tokyo",
    encoding: str | None = None,
    sheet: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
) -> EventImport:
    """Record seminar attendance, downloads, replies and meetings from a CSV/XLSX file.

    Same rules as the prospect import: encoding detected (UTF-8, BOM, CP932), English or Japanese headers,
    every bad row listed (``row N, field: "value" reason``), nothing written if any row is bad unless
    ``skip_invalid``, nothing at all with ``dry_run``. Each row must name a known prospect by address. A row
    already imported (same address, type, instant and title) is recognised by its dedup key and not recorded
    twice, so importing a file again is harmless. Local times are read in ``time_zone``.
    """
    table = read_table(path, encoding=encoding, sheet=sheet)
    aliases = {"email": ALIASES["email"], **IMPORT_ALIASES}
    index = {header_key(a): name for name, names in aliases.items() for a in (*names, name)}
    columns: dict[str, int] = {}
    extras: list[tuple[int, str]] = []
    for i, header in enumerate(table.headers):
        name = index.get(header_key(header))
        if name and name not in columns:
            columns[name] = i
        elif header:
            extras.append((i, header))
    missing = [n for n in ("email", "type", "occurred_at") if n not in columns]
    if missing:
        words = {"email": "email / メールアドレス", "type": "type / 種別", "occurred_at": "date / 日付"}
        raise InputError(
            f"{path}: missing column(s): {', '.join(words[m] for m in missing)}",
            hint="the first row must name the columns, e.g. メールアドレス,種別,日付,タイトル,メモ "
            "(types: セミナー参加, 資料ダウンロード, 返信, 面談)",
        )
    zone = zoneinfo.ZoneInfo(time_zone)
    summary = EventImport(
        dry_run=dry_run, encoding=table.encoding, columns={table.headers[i]: name for name, i in columns.items()}
    )
    parsed: list[tuple[int, str, str, datetime, str, str, dict[str, str]]] = []

    def cell(cells: list[Any], name: str) -> Any:
        i = columns.get(name)
        return cells[i] if i is not None and i < len(cells) else None

    for number, cells in table.rows:
        try:
            email = parse_email(cell(cells, "email"))
            word = cell_text(cell(cells, "type"))
            kind = IMPORT_TYPE_WORDS.get(header_key(word)) or (word if word in OFFLINE_TYPES else None)
            if kind is None:
                raise RowError(
                    "type",
                    word,
                    "is not an offline event type (seminar_attended/セミナー参加, "
                    "document_downloaded/資料ダウンロード, replied/返信, met/面談)",
                )
            when = parse_datetime(cell(cells, "occurred_at"), zone, "date")
            if when is None:
                raise RowError("date", "", "is empty; every event needs a date")
        except RowError as exc:
            summary.rejected.append(Rejected(number, exc.field, str(exc.value), exc.reason))
            continue
        attributes = {h: _free_text(cells[i]) for i, h in extras if i < len(cells) and _free_text(cells[i])}
        parsed.append(
            (number, email, kind, when, _free_text(cell(cells, "title")), _free_text(cell(cells, "note")), attributes)
        )
    known: dict[str, int] = {}
    addresses = sorted({p[1] for p in parsed})
    with engine.connect() as conn:
        for start in range(0, len(addresses), 500):
            known.update(
                conn.execute(
                    select(Prospect.email, Prospect.id).where(Prospect.email.in_(addresses[start : start + 500]))
                ).all()
            )
    new: list[NewEvent] = []
    for number, email, kind, when, title, note, attributes in parsed:
        if email not in known:
            summary.rejected.append(
                Rejected(
                    number, "email", email, "is not a known prospect (import it first with nurture prospects import)"
                )
            )
            continue
        key = hashlib.sha256("\x1f".join((email, kind, when.isoformat(), title)).encode()).hexdigest()[:40]
        data: dict[str, Any] = {"row": number, "file": str(path)}
        if title:
            data["title"] = title
        if note:
            data["note"] = note
        if attributes:
            data["attributes"] = attributes
        new.append(NewEvent(kind, when, "import", prospect_id=known[email], dedup_key=f"import:{key}", data=data))
        summary.by_type[kind] = summary.by_type.get(kind, 0) + 1
    summary.rejected.sort(key=lambda r: r.row)
    if dry_run or (summary.rejected and not skip_invalid) or not new:
        if dry_run and new:
            with engine.connect() as conn:
                keys = [e.dedup_key for e in new]
                exists: set[str | None] = set()
                for start in range(0, len(keys), 500):
                    exists.update(
                        conn.execute(
                            select(Event.dedup_key).where(Event.dedup_key.in_(keys[start : start + 500]))
                        ).scalars()
                    )
            summary.already = len(exists)
            summary.recorded = len(new) - summary.already
        return summary
    result = record_events(engine, new)
    summary.recorded, summary.already, summary.written = result.inserted, result.duplicates, True
    return summary


def _free_text(value: Any) -> str:
    """A title or note as written: trimmed, but not NFKC-normalised (that would turn ① into 1)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
