"""Consent records: how and when each address agreed to get our mail (特定電子メール法 asks the sender to keep this
record until at least a month after sending stops; GDPR Art. 7(1) asks the sender to be able to prove consent).

:func:`add_consent` appends a :class:`~nurture.store.models.ConsentRecord` (the sign-up confirmation, an operator, an
import); :func:`consent_of` answers ``nurture prospects consent EMAIL``; :func:`consent_rows` streams every record
for an audit export (``nurture consent export``). A prospect who has no record yet (imported before records existed)
is shown from the consent columns of the prospect row, marked ``"recorded": false``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection

from nurture.core import clock
from nurture.core.errors import NotFound
from nurture.people.queries import address_key
from nurture.store.models import ConsentRecord, Prospect, ProspectTopic

#: Where a consent came from (``consent_records.source_kind``).
SOURCE_KINDS = ("form", "import", "operator")
#: Columns of the audit export, in order.
EXPORT_COLUMNS = (
    "email",
    "prospect_id",
    "basis",
    "given_at",
    "source_kind",
    "source",
    "ip",
    "user_agent",
    "wording",
    "confirmed_at",
    "topics",
    "language",
    "recorded_at",
)


@dataclass(frozen=True)
class Consent:
    """One consent to record. ``source``: the form id, ``file:row`` of an import, or the operator's name."""

    email: str
    basis: str
    given_at: datetime
    source_kind: str
    source: str = ""
    ip: str = ""
    user_agent: str = ""
    wording: str = ""
    confirmed_at: datetime | None = None
    topics: tuple[str, ...] = field(default_factory=tuple)
    language: str = ""


def consent_row(prospect_id: int | None, consent: Consent) -> dict[str, Any]:
    """The ``consent_records`` row of ``consent`` (every column), for a single insert or a batch (imports)."""
    if consent.source_kind not in SOURCE_KINDS:
        raise ValueError(f"consent source_kind {consent.source_kind!r} is not one of {SOURCE_KINDS}")
    return {
        "prospect_id": prospect_id,
        "email": address_key(consent.email),
        "basis": consent.basis,
        "given_at": consent.given_at,
        "source_kind": consent.source_kind,
        "source": consent.source[:300],
        "ip": consent.ip[:64],
        "user_agent": consent.user_agent[:2000],
        "wording": consent.wording,
        "confirmed_at": consent.confirmed_at,
        "topics": list(consent.topics),
        "language": consent.language[:8],
        "recorded_at": clock.now(),
    }


def add_consent(conn: Connection, prospect_id: int | None, consent: Consent) -> None:
    """Append ``consent`` for ``prospect_id`` in the caller's transaction (the record and the change it proves are
    written together or not at all)."""
    conn.execute(insert(ConsentRecord).values(**consent_row(prospect_id, consent)))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record_dict(row: Any) -> dict[str, Any]:
    d = {c: getattr(row, c) for c in EXPORT_COLUMNS}
    for key in ("given_at", "confirmed_at", "recorded_at"):
        d[key] = _iso(d[key])
    d["topics"] = list(d["topics"] or [])
    d["recorded"] = True
    return d


def consent_of(engine: Engine, email: str) -> dict[str, Any]:
    """What nurture knows about ``email``'s consent: the prospect's current basis, source and time, the topics they
    chose, and every record (oldest first). NotFound when neither a prospect nor a record has the address."""
    key = address_key(email)
    with engine.connect() as conn:
        p = conn.execute(
            select(
                Prospect.id,
                Prospect.status,
                Prospect.consent_basis,
                Prospect.consent_source,
                Prospect.consent_at,
            ).where(Prospect.email == key)
        ).first()
        records = conn.execute(
            select(ConsentRecord).where(ConsentRecord.email == key).order_by(ConsentRecord.given_at, ConsentRecord.id)
        ).all()
        history = [_record_dict(r) for r in records]
        topics = (
            conn.execute(
                select(ProspectTopic.topic, ProspectTopic.subscribed, ProspectTopic.changed_at, ProspectTopic.source)
                .where(ProspectTopic.prospect_id == p.id)
                .order_by(ProspectTopic.topic)
            ).all()
            if p is not None
            else []
        )
    if p is None and not history:
        raise NotFound(
            f"no prospect and no consent record for {key}", hint="check the address: `nurture prospects list`"
        )
    if p is not None and not history and p.consent_basis != "unknown":
        # Imported before consent records were kept: the prospect row is the only record.
        history.append(
            {
                **dict.fromkeys(EXPORT_COLUMNS, None),
                "email": key,
                "prospect_id": p.id,
                "basis": p.consent_basis,
                "given_at": _iso(p.consent_at),
                "source_kind": "import",
                "source": p.consent_source,
                "topics": [],
                "recorded": False,
            }
        )
    return {
        "email": key,
        "prospect_id": p.id if p is not None else None,
        "status": p.status if p is not None else None,
        "basis": p.consent_basis if p is not None else None,
        "source": p.consent_source if p is not None else None,
        "at": _iso(p.consent_at) if p is not None else None,
        "topics": {t.topic: t.subscribed for t in topics},
        "records": history,
    }


def consent_rows(engine: Engine, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every consent record (given on or after ``since``), in the order given, as :data:`EXPORT_COLUMNS` dicts.
    Streams in id order so an export of any size holds one batch in memory."""
    last = 0
    while True:
        with engine.connect() as conn:
            query = select(ConsentRecord).where(ConsentRecord.id > last).order_by(ConsentRecord.id).limit(1000)
            if since is not None:
                query = query.where(ConsentRecord.given_at >= since)
            batch = conn.execute(query).all()
        if not batch:
            return
        for row in batch:
            yield _record_dict(row)
        last = batch[-1].id
