"""What an operator does to the list by hand: suppress, unsuppress, erase, and load a previous tool's suppressions.

Contracts:

- :func:`suppress`: each address is suppressed (never mailed again). A prospect's opt-out is an ``unsubscribed``
  event (or ``bounced``/``complained`` for those kinds) recorded through :func:`nurture.track.record_events`, the
  one door, with source ``operator`` and the operator's reason in ``data["reason"]``: the door sets the status and
  writes the suppression row, scoring hears of it. An address that is no prospect gets a suppression row only
  (:func:`nurture.store.suppression.add_suppressions`), so a later import brings it in suppressed. Already
  suppressed addresses are left as they are; invalid ones are reported, the others still suppressed.
- :func:`unsuppress`: for a person who asked to get mail again: the suppression entry is deleted, the prospect
  becomes ``active`` and the new consent (basis, source, now) is recorded. Refused for an erased person and for
  a basis of ``unknown``. One transaction.
- :func:`erase`: deletion on request (GDPR Art. 17, APPI 35): the prospect's personal fields are emptied, its
  address replaced by ``<sha256>@erased.invalid`` (:func:`erased_address`), its tags deleted, and the personal
  fields of its events (ip, user agent, the query of the URL, data), deliveries (subject, error text) and printed
  postal labels (the address snapshot) cleared;
  the suppression entry says ``erased`` so that no import brings the person back. Counts (sends, opens) survive
  for the reports. One transaction.
- :func:`import_suppressions`: a previous tool's list (plain addresses, Mailchimp's unsubscribed or cleaned
  export, SendGrid's suppression exports, any CSV/XLSX with an address column), applied as :func:`suppress` does,
  with a dedup key per address so that loading the same file twice records nothing twice.

Every function takes ``dry_run``: everything is checked and counted, nothing written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, Text, cast, delete, func, select, update

from nurture.core import clock
from nurture.core.errors import InputError, NotFound
from nurture.people.cells import RowError, cell_text, parse_email
from nurture.people.prospects import has_email_column
from nurture.people.queries import address_key, erased_address
from nurture.people.tabular import header_key, read_table
from nurture.store import db
from nurture.store.models import (
    CONSENT_BASES,
    Delivery,
    Event,
    Handoff,
    PostalRecipient,
    Prospect,
    ProspectTag,
    email_hash,
)
from nurture.store.suppression import add_suppressions, mark_erased, remove_suppression, suppression_reasons
from nurture.track.record import record_events
from nurture.track.vocabulary import BOUNCED, COMPLAINED, UNSUBSCRIBED, NewEvent, Source

#: Kinds of suppression an operator can load, and the event a prospect's one is recorded as.
KINDS = {"unsubscribed": UNSUBSCRIBED, "bounced": BOUNCED, "complained": COMPLAINED}
BATCH = 1000


@dataclass
class Suppressed:
    """What :func:`suppress` or :func:`import_suppressions` did (or, with ``dry_run``, would do)."""

    kind: str = "unsubscribed"
    rows: int = 0  # addresses read (after removing repeats)
    new: int = 0  # newly suppressed
    already: int = 0  # suppressed before (left as they were)
    prospects: int = 0  # of the new ones, prospects (their status changed, an event recorded)
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"row"|"address", "value", "reason"}
    repeated: int = 0
    addresses: list[dict[str, Any]] = field(default_factory=list)  # per address, for a few given by hand
    dry_run: bool = False
    written: bool = False
    source: str = ""
    header_row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "addresses_read": self.rows,
            "suppressed": self.new,
            "already_suppressed": self.already,
            "prospects_changed": self.prospects,
            "repeated": self.repeated,
            "invalid": self.invalid,
            "addresses": self.addresses,
            "dry_run": self.dry_run,
            "written": self.written,
            "source": self.source,
            "header_row": self.header_row,
        }


def _apply(
    engine: Engine,
    entries: list[tuple[str, str, str]],
    summary: Suppressed,
    *,
    note: str,
    source: str,
    dedup: str | None,
    detail: bool,
) -> None:
    """Suppress ``entries`` ((address, kind, the row's own reason), addresses unique and valid) in batches; see
    :func:`suppress`. ``note`` (the operator's) goes with every entry."""
    now = clock.now()
    for start in range(0, len(entries), BATCH):
        chunk = entries[start : start + BATCH]
        emails = [e for e, _, _ in chunk]
        with engine.connect() as conn:
            already = suppression_reasons(conn, emails)
            known = dict(conn.execute(select(Prospect.email, Prospect.id).where(Prospect.email.in_(emails))).all())
        events: list[NewEvent] = []
        others: dict[str, dict[str, str]] = {}
        for email, kind, own in chunk:
            reason = "; ".join(r for r in (note, own) if r)
            if email in already:
                summary.already += 1
                if detail:
                    summary.addresses.append({"email": email, "outcome": f"already suppressed ({already[email]})"})
                continue
            summary.new += 1
            if email in known:
                summary.prospects += 1
                data: dict[str, Any] = {"by": "operator"}
                if reason:
                    data["reason"] = reason
                if kind == "bounced":
                    data["bounce"] = "hard"
                events.append(
                    NewEvent(
                        KINDS[kind],
                        now,
                        Source.OPERATOR,
                        prospect_id=known[email],
                        email=email,
                        dedup_key=f"{dedup}:{email_hash(email)[:40]}:{kind}" if dedup else None,
                        data=data,
                    )
                )
            else:
                others.setdefault(reason, {})[email] = kind
            if detail:
                outcome = "suppressed" + (f" (prospect, {kind})" if email in known else " (not a prospect)")
                summary.addresses.append({"email": email, "outcome": outcome})
        if summary.dry_run:
            continue
        if events:
            record_events(engine, events)
        if others:
            with db.transaction(engine) as session:
                for reason, kinds in others.items():
                    label = source + (f": {reason}" if reason else "")
                    add_suppressions(session.connection(), kinds, source=label, at=now)
        summary.written = summary.written or bool(events or others)


def _unique_valid(values: Iterable[tuple[Any, Any]], summary: Suppressed, key: str) -> list[str]:
    """Valid, distinct addresses (in order) from (row or position, raw value); the others go to ``invalid``."""
    seen: set[str] = set()
    out: list[str] = []
    for where, raw in values:
        try:
            email = parse_email(raw)
        except RowError as exc:
            summary.invalid.append({key: where, "value": exc.value, "reason": exc.reason})
            continue
        if email in seen:
            summary.repeated += 1
            continue
        seen.add(email)
        out.append(email)
    summary.rows = len(out)
    return out


def suppress(
    engine: Engine,
    emails: Iterable[str],
    *,
    reason: str = "",
    kind: str = "unsubscribed",
    dry_run: bool = False,
    rows: Iterable[tuple[int, Any]] = (),
) -> Suppressed:
    """Suppress the given addresses (see the module docstring); ``reason`` is the operator's note. ``rows``
    adds (row number, cell) pairs read from a file (:func:`read_addresses`): a bad one is reported by its row."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    summary = Suppressed(kind=kind, dry_run=dry_run, source="operator")
    addresses = _unique_valid(((e, e) for e in emails), summary, "address")
    given = set(addresses)
    addresses += [a for a in _unique_valid(rows, summary, "row") if a not in given]
    summary.rows = len(addresses)
    _apply(
        engine,
        [(e, kind, "") for e in addresses],
        summary,
        note=reason.strip(),
        source="operator",
        dedup=None,
        detail=True,
    )
    return summary


# --- a previous tool's suppression list --------------------------------------------------------------------------

#: Header names that hold the reason a tool gives (kept in the suppression's source text).
_REASON_HEADERS = {"reason", "unsubreason", "理由", "配信停止理由", "停止理由", "note", "メモ", "備考"}
#: Columns that tell which export a file is (compared with header_key).
_MAILCHIMP_UNSUB = "unsubtime"
_MAILCHIMP_CLEAN = "cleantime"
_MAILCHIMP_SUBSCRIBED = "optintime"
_FILE_KINDS = (
    (re.compile(r"spam|complain|abuse", re.I), "complained"),
    (re.compile(r"bounce|clean|invalid|block", re.I), "bounced"),
    (re.compile(r"unsub|opt.?out|suppress", re.I), "unsubscribed"),
)


def detect_kind(path: Path, headers: list[str]) -> tuple[str, str]:
    """(kind, which export it looks like) from the columns, then the file name (SendGrid names its downloads
    ``bounces.csv``, ``spam_reports.csv``, ``unsubscribes.csv``, ``blocks.csv``, ``invalid_emails.csv``)."""
    keys = {header_key(h) for h in headers}
    if _MAILCHIMP_CLEAN in keys:
        return "bounced", "Mailchimp cleaned contacts"
    if _MAILCHIMP_UNSUB in keys:
        return "unsubscribed", "Mailchimp unsubscribed contacts"
    if _MAILCHIMP_SUBSCRIBED in keys:
        raise InputError(
            f"{path}: this is Mailchimp's export of subscribed contacts (column OPTIN_TIME, no UNSUB_TIME or "
            "CLEAN_TIME): loading it would suppress everyone who is subscribed",
            hint="load unsubscribed_members_export*.csv and cleaned_members_export*.csv from the same zip",
        )
    for pattern, kind in _FILE_KINDS:
        if pattern.search(path.name):
            return kind, f"file name ({path.name})"
    return "unsubscribed", "default"


def read_addresses(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, header_row: int | None = None
) -> tuple[list[tuple[int, Any, str]], list[str], int | None]:
    """((row, address cell, reason text) for every row, headers, header row or None for a plain list).

    A plain list (no header: the first row already holds an address, in its first column) and any table with
    an address column (email, Email Address, メールアドレス, e-mail, address ...) are read alike.
    """
    path = Path(path)

    def looks_like_header(cells: list[str]) -> bool:
        return has_email_column(cells, {"address": "email"}) or "@" in (cells[0] if cells else "")

    table = read_table(path, encoding=encoding, sheet=sheet, header_row=header_row, find_header=looks_like_header)
    headers = table.headers
    rows: list[tuple[int, Any, str]] = []
    if not has_email_column(headers, {"address": "email"}):
        if "@" not in (headers[0] if headers else ""):
            raise InputError(
                f"{path}: no address column found (columns: {', '.join(h for h in headers if h)})",
                hint="name it email or メールアドレス, or give a plain list with one address per line",
            )
        rows.append((table.header_row, headers[0], ""))
        rows += [(n, cells[0] if cells else None, "") for n, cells in table.rows]
        return rows, [], None
    keys = [header_key(h) for h in headers]
    email_index = next(i for i, k in enumerate(keys) if k and has_email_column([headers[i]], {"address": "email"}))
    reason_index = next((i for i, k in enumerate(keys) if k in _REASON_HEADERS), None)
    for number, cells in table.rows:
        raw = cells[email_index] if email_index < len(cells) else None
        reason = ""
        if reason_index is not None and reason_index < len(cells):
            reason = cell_text(cells[reason_index])
        rows.append((number, raw, reason))
    return rows, headers, table.header_row


def import_suppressions(
    engine: Engine,
    path: str | Path,
    *,
    kind: str | None = None,
    reason: str = "",
    encoding: str | None = None,
    sheet: str | None = None,
    header_row: int | None = None,
    dry_run: bool = False,
) -> tuple[Suppressed, str]:
    """Load a suppression list; returns (what was done, which export the file looked like). ``kind`` overrides
    what :func:`detect_kind` finds; ``reason`` is added to each row's own reason column, if any."""
    path = Path(path)
    rows, headers, found_header = read_addresses(path, encoding=encoding, sheet=sheet, header_row=header_row)
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind {kind}: use one of {', '.join(KINDS)}")
    detected, looks_like = detect_kind(path, headers) if kind is None else (kind, "--kind")
    summary = Suppressed(kind=detected, dry_run=dry_run, source=f"import:{path.name}", header_row=found_header)
    own_reasons: dict[str, str] = {}
    for _, raw, note in rows:
        if note and raw is not None:
            own_reasons.setdefault(cell_text(raw).lower(), note)
    addresses = _unique_valid(((n, raw) for n, raw, _ in rows), summary, "row")
    _apply(
        engine,
        [(e, detected, own_reasons.get(e, "")) for e in addresses],
        summary,
        note=reason.strip(),
        source=f"import:{path.name}",
        dedup=f"suppressions-import:{path.name}"[:120],
        detail=False,
    )
    return summary, looks_like


# --- unsuppress and erase ---------------------------------------------------------------------------------------


def unsuppress(engine: Engine, email: str, *, consent: str, source: str, dry_run: bool = False) -> dict[str, Any]:
    """Let a person who asked for mail again be mailed, recording their new consent; see the module docstring."""
    try:
        key = parse_email(email)
    except RowError as exc:
        raise InputError(f'"{email}" {exc.reason}') from None
    if consent not in CONSENT_BASES or consent == "unknown":
        allowed = ", ".join(b for b in CONSENT_BASES if b != "unknown")
        raise InputError(f"--consent {consent}: not a consent basis", hint=f"use one of {allowed}")
    if not source.strip():
        raise InputError("--source is empty", hint='say where the consent was given, e.g. --source "phone 2026-12-01"')
    now = clock.now()
    with db.transaction(engine) as session:
        conn = session.connection()
        row = conn.execute(select(Prospect.id, Prospect.status).where(Prospect.email == key)).first()
        reasons = suppression_reasons(conn, [key])
        if reasons.get(key) == "erased":
            raise InputError(
                f"{key} was erased at the person's request; nothing is left to unsuppress",
                hint="if they ask to be mailed again, import them as a new prospect after they sign up again",
            )
        if row is None:
            raise NotFound(
                f"no prospect with the address {key}",
                hint="import them (nurture prospects import) with their consent, then run unsuppress",
            )
        was = reasons.get(key)
        result = {
            "email": key,
            "was_suppressed": was,
            "status_before": row.status,
            "status": "active",
            "consent_basis": consent,
            "consent_source": source.strip(),
            "consent_at": now,
            "dry_run": dry_run,
            "warning": (
                "the address bounced: mail to it may bounce again"
                if "bounced" in (was, row.status)
                else "the person reported a mail as spam: be sure they asked for mail again"
                if "complained" in (was, row.status)
                else "was not suppressed: only the consent was replaced"
                if was is None and row.status == "active"
                else ""
            ),
        }
        if dry_run:
            return result  # nothing written: the transaction commits nothing
        remove_suppression(conn, key)
        conn.execute(
            update(Prospect)
            .where(Prospect.id == row.id)
            .values(
                status="active",
                status_reason=f"resubscribed by an operator ({consent}: {source.strip()})"[:200],
                status_changed_at=now,
                consent_basis=consent,
                consent_source=source.strip()[:200],
                consent_at=now,
                updated_at=now,
            )
        )
    return result


def _without_query(url: str) -> str:
    """``url`` without its query and fragment (where tracking parameters and addresses ride)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _clear_unlinked_events(conn: Any, email: str) -> int:
    """Events that name the address only in their raw data (a provider's webhook for an address that was no
    prospect then) lose their personal fields too. A scan of the events without a prospect: erasure is rare."""
    ids = list(
        conn.execute(
            select(Event.id).where(Event.prospect_id.is_(None), cast(Event.data, Text).contains(email, autoescape=True))
        ).scalars()
    )
    for start in range(0, len(ids), BATCH):
        conn.execute(
            update(Event).where(Event.id.in_(ids[start : start + BATCH])).values(ip="", user_agent="", data={})
        )
    return len(ids)


def erase(engine: Engine, email: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Erase a person at their request; see the module docstring. Erasing twice, or an address nurture never
    knew (to keep it from ever being imported), is fine."""
    key = address_key(email)
    if not key or "@" not in key:
        raise InputError(f'"{email}" is not an address')
    now = clock.now()
    result: dict[str, Any] = {"email": key, "dry_run": dry_run}
    with db.transaction(engine) as session:
        conn = session.connection()
        pid = conn.execute(select(Prospect.id).where(Prospect.email == key)).scalar()
        if pid is None:
            already = conn.execute(select(Prospect.id).where(Prospect.email == erased_address(key))).scalar()
            result["outcome"] = (
                "already erased"
                if already is not None
                else "not a prospect: address would be suppressed"
                if dry_run
                else "not a prospect: address suppressed"
            )
            result.update(events_cleared=0, deliveries_cleared=0)
            if not dry_run:
                mark_erased(conn, key, at=now)
                result["unlinked_events_cleared"] = _clear_unlinked_events(conn, key)
            return result
        events = conn.execute(select(Event.id, Event.url).where(Event.prospect_id == pid)).all()
        deliveries = conn.execute(
            select(func.count()).select_from(Delivery).where(Delivery.prospect_id == pid)
        ).scalar_one()
        outcome = "would be erased" if dry_run else "erased"
        result.update(outcome=outcome, events_cleared=len(events), deliveries_cleared=deliveries)
        if dry_run:
            return result
        mark_erased(conn, key, at=now)
        conn.execute(
            update(Prospect)
            .where(Prospect.id == pid)
            .values(
                email=erased_address(key),
                name="",
                company="",
                title="",
                industry="",
                owner="",
                next_action="",
                next_action_due=None,
                last_contact_at=None,
                time_zone="",
                language="",
                attributes={},
                postal_code="",
                prefecture="",
                address_line="",
                building="",
                department="",
                postal_status="",
                consent_basis="unknown",
                consent_source="",
                consent_at=None,
                status="erased",
                status_reason="erased at the person's request",
                status_changed_at=now,
                paused_until=None,
                updated_at=now,
            )
        )
        conn.execute(delete(ProspectTag).where(ProspectTag.prospect_id == pid))
        by_url: dict[str, list[int]] = {}
        for event_id, url in events:
            by_url.setdefault(_without_query(url or ""), []).append(event_id)
        for url, ids in by_url.items():
            for start in range(0, len(ids), BATCH):
                conn.execute(
                    update(Event)
                    .where(Event.id.in_(ids[start : start + BATCH]))
                    .values(ip="", user_agent="", url=url, data={})
                )
        conn.execute(update(Delivery).where(Delivery.prospect_id == pid).values(subject="", error=""))
        # The labels printed for them keep their code (a batch still counts its pieces) but not the address.
        conn.execute(update(PostalRecipient).where(PostalRecipient.prospect_id == pid).values(address={}))
        result["unlinked_events_cleared"] = _clear_unlinked_events(conn, key)
        conn.execute(update(Handoff).where(Handoff.prospect_id == pid).values(verdict_reason="", notice_error=""))
    return result
