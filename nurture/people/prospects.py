"""The prospect import: the lists people keep in Excel, into the prospects table.

Import contract (:func:`import_file`):

- columns are matched to fields by English or Japanese header names (:data:`ALIASES`) or ``--map``; any other
  column is kept in ``attributes`` under its header;
- values are read by :mod:`nurture.people.cells` (NFKC: full-width letters and spaces, half-width katakana;
  temperature words in ja/en; dates as Excel writes them, local times read in the configured time zone;
  addresses checked with email-validator without DNS and lower-cased);
- a prospect is matched by address, case-insensitively; a re-import updates what the file says and leaves what
  it leaves blank; it never resets consent to ``unknown`` and never touches status or suppression;
- addresses erased at the person's request (GDPR Art. 17; only their hash is kept) are not imported again;
- all-or-nothing: one transaction; with any rejected row nothing is written unless ``skip_invalid``;
  ``dry_run`` always rolls back. Work is done in batches of set-based statements, never one ORM object per row.

Reading prospects back is :mod:`nurture.people.queries`.

Why one module of ~520 lines: column mapping, the batch and its flush are one pipeline with one transaction;
parsing cells (the part that grows with new vocabularies) already lives in :mod:`nurture.people.cells`.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from nurture.core import clock
from nurture.core.errors import InputError
from nurture.people.addresses import parse_postal_code, split_prefecture
from nurture.people.cells import (
    CONSENT_WORDS,
    STAGE_WORDS,
    TEMPERATURE_WORDS,
    Rejected,
    RowError,
    RowErrors,
    cell_text,
    parse_date,
    parse_datetime,
    parse_email,
    parse_word,
)
from nurture.people.consent import Consent, consent_row
from nurture.people.tabular import Cell, header_key, read_table
from nurture.store import db
from nurture.store.models import (
    CONSENT_BASES,
    RANKS,
    STAGES,
    STRENGTHS,
    TEMPERATURES,
    ConsentRecord,
    Prospect,
    ProspectTag,
)
from nurture.store.suppression import add_suppressions, suppression_reasons

BATCH = 2000

#: Header names (compared with :func:`nurture.people.tabular.header_key`) -> field.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "e-mail",
        "mail",
        "mailaddress",
        "メールアドレス",
        "メール",
        "eメール",
        "eメールアドレス",
        "電子メール",
        "電子メールアドレス",
    ),
    "name": ("name", "fullname", "contactname", "氏名", "名前", "お名前", "ご氏名", "担当者氏名"),
    "company": (
        "company",
        "companyname",
        "organization",
        "organisation",
        "account",
        "会社名",
        "会社",
        "企業名",
        "法人名",
        "社名",
        "勤務先",
    ),
    "title": ("title", "jobtitle", "role", "position", "役職", "役職名", "肩書", "肩書き"),
    "industry": ("industry", "sector", "業種", "業界"),
    "temperature": ("temperature", "temp", "温度感", "温度", "見込み度", "確度"),
    "stage": ("stage", "leadstage", "ステージ", "段階", "フェーズ"),
    "rank": ("rank", "ランク"),
    "score": ("score", "leadscore", "スコア"),
    "owner": ("owner", "salesrep", "accountowner", "担当者", "担当", "営業担当", "担当営業"),
    "last_contact_at": (
        "lastcontact",
        "lastcontactat",
        "lastcontactdate",
        "lastcontacted",
        "最終接触日",
        "最終接触",
        "最終コンタクト日",
        "最終連絡日",
        "最終接触日時",
    ),
    "next_action": ("nextaction", "次回アクション", "次のアクション", "ネクストアクション"),
    "next_action_due": (
        "nextactiondue",
        "nextactiondate",
        "duedate",
        "次回期限",
        "期限",
        "次回アクション期限",
        "次回予定日",
    ),
    "time_zone": ("timezone", "tz", "タイムゾーン"),
    "language": ("language", "lang", "言語"),
    "tags": ("tags", "tag", "タグ", "ラベル"),
    "consent_basis": ("consent", "consentbasis", "同意", "同意区分", "同意種別", "配信同意"),
    "consent_source": ("consentsource", "同意取得元", "取得経路", "入手経路", "同意取得経路"),
    "consent_at": ("consentat", "consentdate", "同意日", "同意取得日"),
    "postal_code": ("postalcode", "zip", "zipcode", "postcode", "郵便番号", "〒", "郵便"),
    "prefecture": ("prefecture", "state", "province", "都道府県"),
    "address_line": ("address", "street", "addressline", "address1", "住所", "所在地", "市区町村", "住所1", "番地"),
    "building": ("building", "address2", "建物名", "ビル名", "建物", "住所2", "建物名・部屋番号"),
    "department": ("department", "dept", "division", "部署", "部署名", "所属", "部門"),
    "postal_status": ("postaloptout", "nopost", "郵送不要", "dm不要", "郵送停止"),
    "strength_existing_business": ("strengthexistingbusiness", "existingbusiness", "既存取引"),
    "strength_empathy": ("strengthempathy", "empathy", "共感"),
    "strength_contribution": ("strengthcontribution", "contribution", "貢献"),
    "strength_multiple_contacts": ("strengthmultiplecontacts", "multiplecontacts", "複数接点", "複数窓口"),
    "strength_decision_maker": ("strengthdecisionmaker", "decisionmaker", "決裁者接点", "決裁者"),
    "strength_invested": ("strengthinvested", "invested", "時間投資", "投資"),
    # Columns of the business-card services' CSV exports (Sansan, Eight) and of other address books: the name in
    # two columns, the day the cards were exchanged, and an opt-out flag. They are not stored as such; see
    # _card_fields and _flush.
    "family_name": ("姓", "氏名[姓]", "氏名姓", "lastname", "familyname", "surname"),
    "given_name": ("名", "氏名[名]", "氏名名", "firstname", "givenname"),
    "card_exchanged_at": ("名刺交換日", "名刺交換日時", "交換日", "cardexchangedate", "cardexchangedat"),
    "opt_out": (
        "配信停止",
        "メール配信停止",
        "配信拒否",
        "メール配信拒否",
        "メルマガ配信停止",
        "オプトアウト",
        "optout",
        "optedout",
        "unsubscribe",
        "unsubscribed",
        "donotemail",
    ),
    "mail_ok": ("メール配信", "配信可否", "メール配信可否", "メルマガ配信", "メルマガ", "配信希望", "emailoptin"),
}
#: Columns ``prospects export`` writes for people to read that import leaves alone (status is changed only by
#: what people do, never by a file).
READ_ONLY: dict[str, tuple[str, ...]] = {"status": ("status", "配信状態")}
FIELDS = tuple(ALIASES)
_ALIAS_INDEX = {header_key(alias): name for name, aliases in ALIASES.items() for alias in aliases}
for _name in FIELDS:
    _ALIAS_INDEX.setdefault(header_key(_name), _name)
for _aliases in READ_ONLY.values():
    for _alias in _aliases:
        _ALIAS_INDEX[header_key(_alias)] = "-"
#: Fields that are read from a row but are not columns of the prospects table.
_DERIVED_KEYS = frozenset(("family_name", "given_name", "card_exchanged_at", "opt_out", "mail_ok"))
#: Opt-out flags as the business-card services and people write them: yes (stop mail) / no.
OPT_OUT_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "y", "○", "◯", "〇", "●", "✓", "✔", "済", "済み", "停止", "配信停止"), "yes"),
    **dict.fromkeys(("拒否", "はい", "あり", "有", "する", "希望しない", "不可", "unsubscribed", "optout"), "yes"),
    **dict.fromkeys(("0", "false", "no", "n", "いいえ", "なし", "無", "しない", "-", "ー", "×", "可"), "no"),
}
#: The other polarity (a "メール配信" column: may we mail?): yes = mail is fine.
MAIL_OK_WORDS = {
    **dict.fromkeys(
        ("1", "true", "yes", "y", "○", "◯", "〇", "●", "可", "許可", "希望", "する", "はい", "あり"), "yes"
    ),
    **dict.fromkeys(("0", "false", "no", "n", "×", "不可", "拒否", "停止", "配信停止", "希望しない", "しない"), "no"),
    **dict.fromkeys(("いいえ", "なし", "無"), "no"),
}

_TAG_SPLIT = re.compile(r"[,;、，|]+")


@dataclass
class ImportSummary:
    """What :func:`import_file` did (or, with ``dry_run``, would do); ``written`` says whether it committed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    no_consent: int = 0
    suppressed: int = 0
    #: Rows whose opt-out column (配信停止, or メール配信 = 不可) said "no mail": suppressed by this import.
    opted_out: int = 0
    written: bool = False
    dry_run: bool = False
    encoding: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    header_row: int = 1

    @property
    def rejected_rows(self) -> int:
        """How many rows were left out (:attr:`rejected` has one entry per problem, several for a row)."""
        return len({r.row for r in self.rejected})

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [r.as_dict() for r in self.rejected],
            "no_consent": self.no_consent,
            "suppressed_skipped": self.suppressed,
            "opted_out": self.opted_out,
            "written": self.written,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "rejected_rows": self.rejected_rows,
            "header_row": self.header_row,
            "columns": self.mapping,
            "custom_attributes": self.attributes,
        }


def parse_row(
    cells: list[Cell], columns: list[tuple[int, str]], extras: list[tuple[int, str]], zone: zoneinfo.ZoneInfo
) -> tuple[dict[str, Any], list[str] | None]:
    """One row -> (field values present in the row, tags or None). Raises :class:`RowErrors` with every bad
    field of the row (all of them, so that a person fixes the row once).

    Business-card columns become ``values["_card"]`` (consent basis ``business_card`` from the exchange date,
    applied by :func:`_flush` only where the row or the prospect has no consent yet) and ``values["_opt_out"]``.
    The field chain is inline (not a function per field): this loop is most of an import's time.
    """
    values: dict[str, Any] = {}
    tags: list[str] | None = None
    errors: list[RowError] | None = None
    for index, name in columns:
        raw = cells[index] if index < len(cells) else None
        try:
            if name == "email":
                values["email"] = parse_email(raw)
                continue
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            if name == "temperature":
                values[name] = parse_word(raw, TEMPERATURE_WORDS, TEMPERATURES, name)
            elif name == "stage":
                values[name] = parse_word(raw, STAGE_WORDS, STAGES, name)
            elif name == "rank":
                text = cell_text(raw).upper()
                if text not in RANKS:
                    raise RowError(name, text, "is not one of A, B, C")
                values[name] = text
            elif name == "consent_basis":
                values[name] = parse_word(raw, CONSENT_WORDS, CONSENT_BASES, name)
            elif name == "score":
                try:
                    values[name] = float(cell_text(raw).replace(",", ""))
                except ValueError:
                    raise RowError(name, cell_text(raw), "is not a number") from None
            elif name.startswith("strength_"):
                text = cell_text(raw)
                if text not in ("0", "1", "2", "3"):
                    raise RowError(name, text, "must be 0, 1, 2 or 3")
                values[name] = int(text)
            elif name in ("last_contact_at", "consent_at", "card_exchanged_at"):
                values[name] = parse_datetime(raw, zone, name)
            elif name == "next_action_due":
                values[name] = parse_date(raw, name)
            elif name == "time_zone":
                text = cell_text(raw)
                try:
                    zoneinfo.ZoneInfo(text)
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    raise RowError(name, text, 'is not a time zone (use names like "Asia/Tokyo")') from None
                values[name] = text
            elif name == "language":
                text = cell_text(raw).lower()
                values[name] = {"日本語": "ja", "japanese": "ja", "英語": "en", "english": "en"}.get(text, text)[:8]
            elif name == "postal_code":
                values[name] = parse_postal_code(cell_text(raw))
            elif name == "address_line":
                prefecture, rest = split_prefecture(cell_text(raw))
                values[name] = rest[:300]
                if prefecture:
                    values.setdefault("prefecture", prefecture)
            elif name == "postal_status":
                values[name] = _postal_status(cell_text(raw))
            elif name == "tags":
                tags = sorted({t.strip() for t in _TAG_SPLIT.split(cell_text(raw)) if t.strip()})
            elif name == "opt_out":
                values[name] = parse_word(raw, OPT_OUT_WORDS, ("○", "1", "配信停止", "(blank)"), name) == "yes"
            elif name == "mail_ok":
                values[name] = parse_word(raw, MAIL_OK_WORDS, ("可", "不可", "○", "×"), name) == "yes"
            else:
                values[name] = cell_text(raw)
        except RowError as exc:
            errors = [*(errors or []), exc]
    if errors:
        raise RowErrors(errors)
    if _DERIVED_KEYS & values.keys():
        _card_fields(values)
    attributes = {}
    for index, header in extras:
        raw = cells[index] if index < len(cells) else None
        if raw is not None and cell_text(raw):
            attributes[header] = raw.isoformat() if isinstance(raw, (date, datetime)) else cell_text(raw)
    if attributes:
        values["attributes"] = attributes
    return values, tags


def _card_fields(values: dict[str, Any]) -> None:
    """Turn the business-card columns of a parsed row into what is stored (see :func:`parse_row`)."""
    family, given = values.pop("family_name", ""), values.pop("given_name", "")
    if (family or given) and not values.get("name"):
        values["name"] = f"{family} {given}".strip()
    exchanged = values.pop("card_exchanged_at", None)
    if exchanged is not None:
        if values.get("consent_basis") == "unknown":  # "不明" next to an exchange date: the date says more
            del values["consent_basis"]
        values["_card"] = {"consent_basis": "business_card", "consent_source": "名刺交換", "consent_at": exchanged}
    opt_out = values.pop("opt_out", None)
    mail_ok = values.pop("mail_ok", None)
    if opt_out or mail_ok is False:
        values["_opt_out"] = True


def has_email_column(headers: list[str], overrides: dict[str, str] | None = None) -> bool:
    """Whether a row of cells looks like the header row: one of its cells names the e-mail column."""
    by_key = {header_key(k): v for k, v in (overrides or {}).items()}
    return any((by_key.get(k) or _ALIAS_INDEX.get(k)) == "email" for k in map(header_key, headers) if k)


def map_columns(headers: list[str], overrides: dict[str, str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(index, field) for known columns and (index, header) for the ones kept as custom attributes."""
    by_key = {header_key(k): v for k, v in overrides.items()}
    for column, wanted in overrides.items():
        if wanted not in FIELDS and wanted != "-":
            raise InputError(
                f'--map {column}={wanted}: unknown field "{wanted}"',
                hint=f"fields: {', '.join(FIELDS)}; use - to ignore a column",
            )
    columns: list[tuple[int, str]] = []
    extras: list[tuple[int, str]] = []
    seen: dict[str, str] = {}
    for index, header in enumerate(headers):
        key = header_key(header)
        if not key:
            continue
        target = by_key.get(key) or _ALIAS_INDEX.get(key)
        if target == "-":
            continue
        if target is None:
            extras.append((index, header))
            continue
        if target in seen:
            raise InputError(
                f'columns "{seen[target]}" and "{header}" both mean {target}',
                hint=f'rename one, or ignore it with --map "{header}=-"',
            )
        seen[target] = header
        columns.append((index, target))
    if "email" not in seen:
        raise InputError(
            "no e-mail column found",
            hint=f"name a column メールアドレス or email, or pass --map COLUMN=email "
            f"(columns: {', '.join(h for h in headers if h)})",
        )
    return columns, extras


def _postal_status(text: str) -> str:
    """A 郵送不要-style column: yes / 1 / ○ / 不要 / stop -> "opted_out"; no / empty / 可 -> "" (post welcome)."""
    word = text.strip().lower()
    if word in ("", "0", "no", "false", "いいえ", "×", "可", "ok", "要"):
        return ""
    if word in ("1", "yes", "true", "はい", "○", "〇", "不要", "stop", "opted_out", "停止"):
        return "opted_out"
    if word in ("returned", "宛先不明"):  # as `prospects export` writes a postal bounce, so it round-trips
        return "returned"
    raise RowError("postal_status", text, "is not yes/no (e.g. 不要 or 空欄)")


_COMPARED = (
    "name",
    "company",
    "title",
    "industry",
    "temperature",
    "stage",
    "rank",
    "score",
    "owner",
    "last_contact_at",
    "next_action",
    "next_action_due",
    "time_zone",
    "language",
    "attributes",
    "consent_basis",
    "consent_source",
    "consent_at",
    "postal_code",
    "prefecture",
    "address_line",
    "building",
    "department",
    "postal_status",
    *[f"strength_{s}" for s in STRENGTHS],
)


def _new_row(values: dict[str, Any], now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": "",
        "company": "",
        "title": "",
        "industry": "",
        "temperature": "cold",
        "stage": "MQL",
        "rank": "C",
        "score": 0.0,
        "owner": "",
        "last_contact_at": None,
        "next_action": "",
        "next_action_due": None,
        "time_zone": "",
        "language": "",
        "attributes": {},
        "consent_basis": "unknown",
        "consent_source": "",
        "consent_at": None,
        "status": "active",
        "status_reason": "",
        "status_changed_at": None,
        "paused_until": None,
        "frequency_factor": 1.0,
        "postal_code": "",
        "prefecture": "",
        "address_line": "",
        "building": "",
        "department": "",
        "postal_status": "",
        **{f"strength_{s}": 0 for s in STRENGTHS},
    }
    row.update({k: v for k, v in values.items() if not k.startswith("_")})
    for name, value in values.get("_card", {}).items():
        if name not in values:
            row[name] = value
    row["created_at"] = row["updated_at"] = now
    return row


def _changes(existing: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What a re-import changes. Consent never goes back to unknown; attributes merge."""
    out: dict[str, Any] = {}
    card = values.get("_card")
    if card and "consent_basis" not in values and existing.get("consent_basis") == "unknown":
        values = {**{k: v for k, v in card.items() if k not in values}, **values}
    for name, value in values.items():
        if name == "email" or name.startswith("_"):
            continue
        if name == "consent_basis" and value == "unknown":
            continue
        if name == "attributes":
            merged = dict(existing.get("attributes") or {}) | value
            if merged != (existing.get("attributes") or {}):
                out[name] = merged
            continue
        if existing.get(name) != value:
            out[name] = value
    # Post came back from the old address (宛先不明); a corrected address makes post worth trying again.
    moved = any(name in out for name in ("postal_code", "prefecture", "address_line", "building"))
    if moved and existing.get("postal_status") == "returned" and "postal_status" not in values:
        out["postal_status"] = ""
    return out


@dataclass
class _Batch:
    """Rows waiting to be written, and what this import has written so far.

    Duplicate addresses are caught without holding every address of the file in memory: within a batch by
    ``first`` (bounded by BATCH), across batches by ``written``, one bit per prospect id this import created or
    matched (125 kB per million prospect ids, whatever the size of the file).
    """

    rows: list[tuple[int, dict[str, Any], list[str] | None]] = field(default_factory=list)
    first: dict[str, int] = field(default_factory=dict)
    written: bytearray = field(default_factory=bytearray)
    #: The suppression source of an opt-out in this file (``import:<file name>``).
    source: str = "import"
    #: The file's name, for the consent records of its rows (``<file>:<row>``).
    file: str = ""

    def mark(self, ids: Iterable[int]) -> None:
        for i in ids:
            byte = i >> 3
            if byte >= len(self.written):
                self.written.extend(bytes(byte - len(self.written) + 4096))
            self.written[byte] |= 1 << (i & 7)

    def marked(self, i: int) -> bool:
        byte = i >> 3
        return byte < len(self.written) and bool(self.written[byte] & (1 << (i & 7)))


def _opt_out(conn: Connection, emails: list[str], existing_ids: list[int], source: str, now: datetime) -> set[int]:
    """Honour the opt-out column: a suppression for each address (kept even if the prospect is deleted), and
    status ``unsubscribed`` for the existing active prospects among them. Returns the ids whose status changed.

    Not an event through :func:`nurture.track.record_events`: nurture did not see the person opt out, the file
    says they did at some time before; the suppression row (``source`` names the file) is the record."""
    if not emails:
        return set()
    add_suppressions(conn, {e: "unsubscribed" for e in emails}, source=source, at=now)
    if not existing_ids:
        return set()
    changed = set(
        conn.execute(select(Prospect.id).where(Prospect.id.in_(existing_ids), Prospect.status == "active")).scalars()
    )
    if changed:
        conn.execute(
            update(Prospect)
            .where(Prospect.id.in_(changed))
            .values(
                status="unsubscribed",
                status_reason="opted out (opt-out column of the imported file)",
                status_changed_at=now,
                updated_at=now,
            )
        )
    return changed


def _flush(conn: Connection, batch: _Batch, summary: ImportSummary, now: datetime) -> None:
    if not batch.rows:
        return
    emails = [values["email"] for _, values, _ in batch.rows]
    cols = [Prospect.id, Prospect.email, *[getattr(Prospect, c) for c in _COMPARED]]
    existing = {r.email: r._asdict() for r in conn.execute(select(*cols).where(Prospect.email.in_(emails)))}
    missing = [e for e in emails if e not in existing]
    suppressed = suppression_reasons(conn, missing)
    inserts: list[dict[str, Any]] = []
    insert_tags: list[tuple[str, list[str]]] = []
    updates: list[dict[str, Any]] = []
    retag: dict[int, list[str]] = {}
    seen_existing: list[int] = []
    # Consent given in this file (a new prospect with a basis, or a basis changed): one consent record per row.
    consents: list[tuple[str, int | None, dict[str, Any], int]] = []
    opt_outs: list[str] = []
    opt_out_ids: list[int] = []
    for number, values, tags in batch.rows:
        email = values["email"]
        current = existing.get(email)
        if current is not None and batch.marked(current["id"]):
            summary.rejected.append(Rejected(number, "email", email, "appears again (earlier in this file)"))
            continue
        if current is None:
            reason = suppressed.get(email)
            if reason == "erased":
                summary.suppressed += 1
                continue
            row = _new_row(values, now)
            if values.get("_opt_out"):
                opt_outs.append(email)
                if not reason:
                    row["status"] = "unsubscribed"
                    row["status_reason"] = "opted out (opt-out column of the imported file)"
                    row["status_changed_at"] = now
            if reason:  # suppressed but the row was deleted: come back suppressed, never active
                row["status"] = {"unsubscribed": "unsubscribed", "bounced": "bounced", "complained": "complained"}.get(
                    reason, "unsubscribed"
                )
                row["status_reason"] = f"suppressed ({reason}) before import"
                row["status_changed_at"] = now
            if row["consent_basis"] == "unknown":
                summary.no_consent += 1
            elif row["status"] == "active":
                consents.append((email, None, row, number))
            inserts.append(row)
            if tags:
                insert_tags.append((email, tags))
            summary.created += 1
            continue
        changes = _changes(current, values)
        if values.get("_opt_out"):
            opt_outs.append(email)
            opt_out_ids.append(current["id"])
        if (changes.get("consent_basis") or current["consent_basis"]) == "unknown":
            summary.no_consent += 1
        if tags is not None:
            retag[current["id"]] = tags
        seen_existing.append(current["id"])
        if changes.get("consent_basis", "unknown") != "unknown":
            consents.append((email, current["id"], {**current, **changes}, number))
        if changes:
            changes["updated_at"] = now
            updates.append({"_id": current["id"], **changes})
    batch.mark(seen_existing)
    if inserts:
        db.insert_rows(conn, Prospect.__table__, inserts)
        ids = dict(
            conn.execute(
                select(Prospect.email, Prospect.id).where(Prospect.email.in_([r["email"] for r in inserts]))
            ).all()
        )
        batch.mark(ids.values())
        if insert_tags:
            db.insert_rows(
                conn, ProspectTag.__table__, [{"prospect_id": ids[e], "tag": t} for e, ts in insert_tags for t in ts]
            )
    if updates:
        by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for u in updates:
            by_keys.setdefault(tuple(sorted(k for k in u if k != "_id")), []).append(u)
        for keys, group in by_keys.items():
            stmt = update(Prospect).where(Prospect.id == bindparam("_id")).values({k: bindparam(k) for k in keys})
            conn.execute(stmt, group)
    tag_changed: set[int] = set()
    if retag:
        current_tags: dict[int, set[str]] = {}
        for pid, tag in conn.execute(
            select(ProspectTag.prospect_id, ProspectTag.tag).where(ProspectTag.prospect_id.in_(list(retag)))
        ):
            current_tags.setdefault(pid, set()).add(tag)
        tag_changed = {pid for pid, tags in retag.items() if set(tags) != current_tags.get(pid, set())}
        if tag_changed:
            conn.execute(delete(ProspectTag).where(ProspectTag.prospect_id.in_(list(tag_changed))))
            rows = [{"prospect_id": pid, "tag": t} for pid in tag_changed for t in retag[pid]]
            if rows:
                conn.execute(insert(ProspectTag), rows)
    if consents:
        new_ids = dict(
            conn.execute(
                select(Prospect.email, Prospect.id).where(
                    Prospect.email.in_([e for e, pid, _, _ in consents if not pid])
                )
            ).all()
        )
        records = [
            consent_row(
                pid or new_ids.get(email),
                Consent(
                    email=email,
                    basis=row["consent_basis"],
                    given_at=row.get("consent_at") or now,
                    source_kind="import",
                    source=f"{batch.file}:{number}"
                    + (f" ({row['consent_source']})" if row.get("consent_source") else ""),
                ),
            )
            for email, pid, row, number in consents
        ]
        db.insert_rows(conn, ConsentRecord.__table__, records)
    updated_ids = {u["_id"] for u in updates}
    tag_only = [pid for pid in tag_changed if pid not in updated_ids]
    if tag_only:
        conn.execute(update(Prospect).where(Prospect.id.in_(tag_only)).values(updated_at=now))
    opted = _opt_out(conn, opt_outs, opt_out_ids, batch.source, now)
    summary.opted_out += len(opt_outs)
    updated_ids |= opted
    tag_only = [pid for pid in tag_only if pid not in opted]
    summary.updated += len(updated_ids) + len(tag_only)
    summary.unchanged += len(seen_existing) - len(updated_ids) - len(tag_only)
    batch.rows.clear()
    batch.first.clear()


def import_file(
    engine: Engine,
    path: str | Path,
    *,
    default_time_zone: str = "Asia/Tokyo",
    encoding: str | None = None,
    mapping: dict[str, str] | None = None,
    sheet: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    header_row: int | None = None,
    progress: Any = None,
) -> ImportSummary:
    """Import a CSV/XLSX file of prospects; see the module docstring for the contract.

    The header row is ``header_row`` (numbered as in Excel) or else the first of the first rows that has an
    e-mail column (title rows above it are skipped). ``progress``, if given, is called with the number of rows
    read so far (every batch).
    """
    overrides = mapping or {}
    table = read_table(
        path,
        encoding=encoding,
        sheet=sheet,
        header_row=header_row,
        find_header=lambda h: has_email_column(h, overrides),
    )
    columns, extras = map_columns(table.headers, overrides)
    zone = zoneinfo.ZoneInfo(default_time_zone)
    summary = ImportSummary(
        dry_run=dry_run,
        encoding=table.encoding,
        mapping={table.headers[i]: f for i, f in columns},
        attributes=[h for _, h in extras],
        header_row=table.header_row,
    )
    now = clock.now()
    batch = _Batch(source=f"import:{Path(path).name}"[:200], file=Path(path).name)
    read = 0
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            for number, cells in table.rows:
                read += 1
                try:
                    values, tags = parse_row(cells, columns, extras, zone)
                except RowErrors as exc:
                    summary.rejected += [Rejected(number, e.field, str(e.value), e.reason) for e in exc.errors]
                    continue
                email = values["email"]
                if email in batch.first:
                    summary.rejected.append(
                        Rejected(number, "email", email, f"appears again (first at row {batch.first[email]})")
                    )
                    continue
                batch.first[email] = number
                batch.rows.append((number, values, tags))
                if len(batch.rows) >= BATCH:
                    _flush(conn, batch, summary, now)
                    if progress:
                        progress(read)
            _flush(conn, batch, summary, now)
            if progress:
                progress(read)
            summary.rejected.sort(key=lambda r: r.row)
            if dry_run or (summary.rejected and not skip_invalid):
                transaction.rollback()
            else:
                transaction.commit()
                summary.written = True
        except BaseException:
            transaction.rollback()
            raise
    return summary
