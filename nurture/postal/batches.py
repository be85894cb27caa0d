"""A quarter's postal work: print a batch (:func:`run`), mark it mailed (:func:`mark_mailed`), record returned mail
(:func:`record_returns`). The two later steps are events through the one door
(:func:`nurture.track.record_events`: ``postal_mailed``, ``postal_returned``), so scoring and reports see the
postal touch, and each is idempotent (run it twice, nothing changes twice).

Files of a batch, in ``OUT/batch-<id>/``: ``labels.pdf`` (A4 label sheets, ``[postal] label_layout``),
``recipients.csv`` (for a print-and-mail vendor, ``[postal] csv_encoding``), ``issue-<item>.pdf`` (the issue on
A4, one per item in the batch). The database rows and the files are made together: if writing a file fails, the
batch is not recorded.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select, update

from nurture.checks.campaign import render_item
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import ConfigError, InputError, NotFound
from nurture.people.cells import cell_text
from nurture.people.tabular import header_key, read_table
from nurture.plan.campaigns import Campaign
from nurture.postal.due import PostalDecision, postal_decisions
from nurture.postal.labels import LAYOUTS, honorific, sheets_html
from nurture.postal.pdf import write_pdf
from nurture.store import db
from nurture.store.models import Delivery, PostalBatch, PostalRecipient, Prospect
from nurture.store.states import DeliveryState
from nurture.track import NewEvent, record_events
from nurture.track.vocabulary import POSTAL_MAILED, POSTAL_RETURNED

VENDOR_HEADERS = ("管理番号", "号", "郵便番号", "都道府県", "住所", "建物名", "会社名", "部署", "役職", "氏名", "敬称")


@dataclass
class BatchResult:
    """What :func:`run` did (or would do, in a dry run)."""

    campaign: str
    dry_run: bool
    batch_id: int | None = None
    out_dir: str = ""
    due: list[PostalDecision] = field(default_factory=list)
    not_due: list[PostalDecision] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "dry_run": self.dry_run,
            "batch": self.batch_id,
            "out_dir": self.out_dir,
            "recipients": len(self.due),
            "not_due": len(self.not_due),
            "reasons": dict(Counter(d.reason for d in self.not_due)),
            "files": self.files,
            "due": [d.as_dict() for d in self.due],
            "skipped": [d.as_dict() for d in self.not_due],
        }


def layout_for(config: Config) -> Any:
    layout = LAYOUTS.get(config.postal.label_layout)
    if layout is None:
        raise ConfigError(
            f'[postal] label_layout = "{config.postal.label_layout}" is not a known label sheet',
            hint=f"use one of {', '.join(LAYOUTS)}",
        )
    return layout


def run(engine: Engine, config: Config, campaign: Campaign, out: Path, *, dry_run: bool = False) -> BatchResult:
    """Choose who is due, and (unless ``dry_run``) record a batch and write its files under ``out``."""
    if campaign.channel != "postal":
        raise InputError(f'campaign "{campaign.name}" is an e-mail campaign', hint="nurture send sends it")
    layout = layout_for(config)
    now = clock.now()
    result = BatchResult(campaign=campaign.name, dry_run=dry_run)
    if campaign.status == "paused":
        raise InputError(f'campaign "{campaign.name}" is paused', hint='set status = "active" in its file')
    decisions = postal_decisions(engine, config, campaign, now)
    result.due = [d for d in decisions if d.item is not None]
    result.not_due = [d for d in decisions if d.item is None]
    if dry_run or not result.due:
        return result
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        batch_id = conn.execute(
            insert(PostalBatch).values(campaign=campaign.name, created_at=now, out_dir="").returning(PostalBatch.id)
        ).scalar_one()
        folder = out / f"batch-{batch_id}"
        codes = [f"P{batch_id}-{n:04d}" for n in range(1, len(result.due) + 1)]
        conn.execute(
            insert(PostalRecipient),
            [
                {
                    "batch_id": batch_id,
                    "prospect_id": d.prospect_id,
                    "item_key": d.item.key if d.item else "",
                    "code": code,
                    "address": d.address.as_dict(),
                }
                for code, d in zip(codes, result.due, strict=True)
            ],
        )
        conn.execute(update(PostalBatch).where(PostalBatch.id == batch_id).values(out_dir=str(folder)))
        try:
            result.files = _write_files(config, campaign, folder, list(zip(codes, result.due, strict=True)), layout)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)  # the transaction rolls back: no batch, no files
            raise
    result.batch_id, result.out_dir = batch_id, str(folder)
    return result


def _write_files(
    config: Config, campaign: Campaign, folder: Path, rows: list[tuple[str, PostalDecision]], layout: Any
) -> list[str]:
    folder.mkdir(parents=True, exist_ok=False)
    font = config.postal.font_family
    labels = folder / "labels.pdf"
    write_pdf(sheets_html([(code, d.address) for code, d in rows], layout, font), labels)
    vendor = folder / "recipients.csv"
    with vendor.open("w", encoding=config.postal.csv_encoding, errors="replace", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(VENDOR_HEADERS)
        for code, d in rows:
            a = d.address
            writer.writerow(
                [
                    code,
                    d.item.key if d.item else "",
                    a.postal_code,
                    a.prefecture,
                    a.address_line,
                    a.building,
                    a.company,
                    a.department,
                    a.title,
                    a.name,
                    honorific(a),
                ]
            )
    files = [str(labels), str(vendor)]
    for key in dict.fromkeys(d.item.key for _, d in rows if d.item):
        item = campaign.item(key)
        rendered = render_item(config, campaign, item, _reader())
        page = f'<style>@page {{ size: A4; margin: 12mm; }} body {{ font-family: "{font}", sans-serif; }}</style>'
        issue = folder / f"issue-{key}.pdf"
        write_pdf(rendered.html.replace("</head>", page + "</head>", 1), issue)
        files.append(str(issue))
    return files


def _reader() -> Prospect:
    """The person the printed issue is rendered for: nobody in particular (an issue is the same for everyone)."""
    return Prospect(id=0, email="", name="", company="", title="", industry="", language="", attributes={})


def mark_mailed(engine: Engine, config: Config, batch_id: int, on: date | None = None) -> dict[str, Any]:
    """Record that batch ``batch_id`` went to the post on ``on`` (default today in [cadence] time_zone): a sent
    delivery (sender ``postal``) and a ``postal_mailed`` event per recipient. Idempotent for the same date; a date
    in the future, or a second, different date, is refused (InputError)."""
    zone = ZoneInfo(config.cadence.time_zone)
    now = clock.now()
    day = on or now.astimezone(zone).date()
    # Noon of the mailing day, but never later than now: a touch recorded in the future would hold e-mail back
    # longer than the gap promises.
    at = min(datetime.combine(day, time(12), zone), now)
    with engine.connect() as conn:
        batch = conn.execute(select(PostalBatch).where(PostalBatch.id == batch_id)).first()
        if batch is None:
            raise NotFound(f"no postal batch {batch_id}", hint="nurture postal batches lists them")
        today = now.astimezone(zone).date()
        if day > today:
            raise InputError(
                f"batch {batch_id}: --date {day} is in the future (today is {today} in {zone.key})",
                hint="mark the batch once it is at the post office",
            )
        # The touches (deliveries, events) of a batch are recorded once: a second, different date would change
        # what `postal batches` says but not when e-mail was held back.
        if batch.mailed_on is not None and batch.mailed_on != day:
            raise InputError(
                f"batch {batch_id} was already marked mailed on {batch.mailed_on}; not changed to {day}",
                hint="the postal touches were recorded with that date",
            )
        recipients = conn.execute(select(PostalRecipient).where(PostalRecipient.batch_id == batch_id)).all()
    rows = [
        {
            "campaign": batch.campaign,
            "prospect_id": r.prospect_id,
            "item_key": r.item_key,
            "state": DeliveryState.SENT.value,
            "error": "",
            "subject": "",
            "sender": "postal",
            "message_id": "",
            "provider_message_id": r.code,
            "attempts": 1,
            "claimed_by": "",
            "created_at": now,
            "sent_at": at,
            "updated_at": now,
        }
        for r in recipients
    ]
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        if rows:
            conn.execute(
                db.insert_for(conn, Delivery.__table__).on_conflict_do_nothing(
                    index_elements=["campaign", "prospect_id", "item_key"]
                ),
                rows,
            )
        ids = dict(
            conn.execute(
                select(Delivery.provider_message_id, Delivery.id).where(
                    Delivery.campaign == batch.campaign,
                    Delivery.sender == "postal",
                    Delivery.provider_message_id.in_([r.code for r in recipients]),
                )
            ).all()
        )
        for r in recipients:
            if r.code in ids:
                conn.execute(update(PostalRecipient).where(PostalRecipient.id == r.id).values(delivery_id=ids[r.code]))
        conn.execute(update(PostalBatch).where(PostalBatch.id == batch_id).values(mailed_on=day))
    recorded = record_events(
        engine,
        [
            NewEvent(
                POSTAL_MAILED,
                at,
                "postal",
                delivery_id=ids.get(r.code),
                prospect_id=r.prospect_id,
                campaign=batch.campaign,
                item_key=r.item_key,
                dedup_key=f"postal_mailed:{r.code}",
                data={"batch": batch_id, "code": r.code},
            )
            for r in recipients
        ],
    )
    return {"batch": batch_id, "mailed_on": day.isoformat(), "recipients": len(recipients), "events": recorded.inserted}


def record_returns(engine: Engine, path: Path, *, dry_run: bool = False) -> dict[str, Any]:
    """Returned mail from a file: a column 管理番号/code (as printed on the label and in the vendor CSV) or an
    e-mail column, or a plain list of codes. Each match records ``postal_returned`` (post stops for that
    address); rows that match nothing are reported with their row number and recorded nothing."""
    table = read_table(path)
    keys = [header_key(h) for h in table.headers]
    code_col = next((i for i, k in enumerate(keys) if k in ("管理番号", "code", "recipientcode", "id")), None)
    mail_col = next((i for i, k in enumerate(keys) if k in ("email", "メールアドレス", "mail")), None)
    wanted: list[tuple[int, str, str]] = []  # (row, kind, value)
    if code_col is None and mail_col is None:
        # No header: every cell of the first column, the header line included, is a code.
        first = table.headers[0].strip() if table.headers else ""
        if first:
            wanted.append((1, "code", first))
        for number, cells in table.rows:
            if cells and cell_text(cells[0]):
                wanted.append((number, "code", cell_text(cells[0])))
    else:
        for number, cells in table.rows:
            col = code_col if code_col is not None else mail_col
            value = cell_text(cells[col]) if col is not None and col < len(cells) else ""
            if value:
                wanted.append((number, "code" if code_col is not None else "email", value))
    with engine.connect() as conn:
        by_code = {
            r.code: r
            for r in conn.execute(
                select(PostalRecipient).where(PostalRecipient.code.in_([v for _, k, v in wanted if k == "code"]))
            )
        }
        emails = [v.lower() for _, k, v in wanted if k == "email"]
        latest: dict[str, Any] = {}
        if emails:
            for row in conn.execute(
                select(PostalRecipient, Prospect.email.label("prospect_email"))
                .join(Prospect, Prospect.id == PostalRecipient.prospect_id)
                .where(Prospect.email.in_(emails))
                .order_by(PostalRecipient.id)
            ):
                latest[row.prospect_email] = row  # the newest batch wins
    found: list[tuple[int, str, Any]] = []
    unknown: list[tuple[int, str, Any]] = []
    for number, kind, value in wanted:
        match: Any = by_code.get(value) if kind == "code" else latest.get(value.lower())
        (found if match is not None else unknown).append((number, value, match))
    batch_of = {}
    with engine.connect() as conn:
        if found:
            batch_of = dict(
                conn.execute(
                    select(PostalBatch.id, PostalBatch.campaign).where(
                        PostalBatch.id.in_({r.batch_id for _, _, r in found})
                    )
                ).all()
            )
    recorded = 0
    if found and not dry_run:
        now = clock.now()
        recorded = record_events(
            engine,
            [
                NewEvent(
                    POSTAL_RETURNED,
                    now,
                    "postal",
                    delivery_id=r.delivery_id,
                    prospect_id=r.prospect_id,
                    campaign=batch_of.get(r.batch_id, ""),
                    item_key=r.item_key,
                    dedup_key=f"postal_returned:{r.code}",
                    data={"batch": r.batch_id, "code": r.code, "file": str(path), "row": number},
                )
                for number, _, r in found
            ],
        ).inserted
        with db.transaction(engine) as session:
            session.execute(
                update(PostalRecipient)
                .where(PostalRecipient.id.in_([r.id for _, _, r in found]), PostalRecipient.returned_at.is_(None))
                .values(returned_at=now)
            )
    return {
        "file": str(path),
        "dry_run": dry_run,
        "matched": len(found),
        "recorded": recorded,
        "unknown": [{"row": n, "value": v} for n, v, _ in unknown],
    }


def list_batches(engine: Engine) -> list[dict[str, Any]]:
    """Every batch, newest first, with its recipient and returned counts."""
    with engine.connect() as conn:
        batches = conn.execute(select(PostalBatch).order_by(PostalBatch.id.desc())).all()
        counts: Counter[int] = Counter()
        returned: Counter[int] = Counter()
        for batch_id, ret in conn.execute(select(PostalRecipient.batch_id, PostalRecipient.returned_at)):
            counts[batch_id] += 1
            returned[batch_id] += ret is not None
    return [
        {
            "batch": b.id,
            "campaign": b.campaign,
            "created_at": b.created_at.isoformat(),
            "mailed_on": b.mailed_on.isoformat() if b.mailed_on else None,
            "recipients": counts[b.id],
            "returned": returned[b.id],
            "out_dir": b.out_dir,
        }
        for b in batches
    ]


def set_post_wanted(engine: Engine, emails: list[str], *, wanted: bool) -> dict[str, Any]:
    """Opt ``emails`` out of post (``wanted`` False: ``postal_status = "opted_out"``) or back in (True: clears an
    opt-out or a returned-mail mark). E-mail is not affected. Unknown addresses are listed, not fatal."""
    found: dict[str, str] = {}
    with db.transaction(engine) as session:
        conn = session.connection()
        rows = conn.execute(
            select(Prospect.id, Prospect.email, Prospect.postal_status).where(
                Prospect.email.in_([e.strip().lower() for e in emails])
            )
        ).all()
        for row in rows:
            found[row.email] = row.postal_status
        if rows:
            conn.execute(
                update(Prospect)
                .where(Prospect.id.in_([r.id for r in rows]))
                .values(postal_status="" if wanted else "opted_out", updated_at=clock.now())
            )
    unknown = [e for e in emails if e.strip().lower() not in found]
    return {"changed": sorted(found), "before": found, "unknown": unknown, "post": "wanted" if wanted else "stopped"}
