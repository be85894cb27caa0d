"""The one door: :func:`record_events` is the only writer of the ``events`` table.

Sources (the tracking server's pixel and links, the unsubscribe and preferences pages, provider webhooks, the
offline ``nurture events import``, the sending engine) build :class:`~nurture.track.vocabulary.NewEvent` values
and hand them here. The prospect and delivery changes an event implies are made here, in the same transaction:

==================  ===========================================================================================
event               effect
==================  ===========================================================================================
``unsubscribed``    prospect status ``unsubscribed`` + Suppression row (reason ``unsubscribed``)
``complained``      prospect status ``complained`` + Suppression (``complained``)
``bounced`` hard    prospect status ``bounced`` + Suppression (``bounced``); ``data["bounce"] == "hard"``
``bounced`` soft    nothing (kept; the provider retries). ``data["bounce"] == "soft"``
``dropped``         provider refused to send (SendGrid ``dropped``: a permanent refusal for that address):
                    Suppression + status by ``data["suppress"]`` (``bounced`` unless the reason says otherwise)
``deferred``        nothing (kept: the provider retries; nothing is lost)
``sent``            a delivery left in state ``unknown`` (ambiguous send) becomes ``sent`` (reconciliation)
``delivered``       likewise reconciles an ``unknown`` delivery
``paused``          prospect.paused_until = ``data["paused_until"]`` (ISO 8601)
``frequency_changed`` prospect.frequency_factor = ``data["frequency_factor"]``
``postal_returned`` prospect.postal_status = ``returned`` (宛先不明): no more post; e-mail is not affected
others              recorded only (opened, clicked, offline events, ``unknown`` raw provider types)
==================  ===========================================================================================

Status changes apply only to ``active`` prospects: an ``erased`` person stays erased, and the first reason wins.
Effects are idempotent, so a replayed batch changes nothing.

Deduplication: ``dedup_key`` is unique; rows whose key exists are skipped (``INSERT ... ON CONFLICT DO
NOTHING``, SQLite >= 3.24 and PostgreSQL both). Tracking hits have no key: every hit is an event, labelled.

Labels: opens and clicks are labelled human / machine / unknown by :mod:`nurture.track.botdetect` here, where the
delivery's ``sent_at`` and the other clicks of the same mail are at hand. Rules that look at several events (all
links clicked within a second, honeypot) also relabel the earlier events they implicate.

Listeners register with :func:`add_listener` and are called inside the transaction with the rows actually
inserted (each with its ``id``, and with the label it ends the transaction with) followed by the rows of earlier
events this batch relabelled (key ``"relabeled": True``, new label): that is how a higher layer (scoring) hears of
events, and of a hit later found to be a machine, without this package importing it.

Bot labels remember (``caught_source`` in :mod:`~nurture.track.botdetect`): a source caught as a machine marks its
other hits for the same recipient within a window, stored before or after it, in this batch or another. On
PostgreSQL each batch first takes an advisory lock per recipient (:func:`nurture.store.db.scope_lock`), so two
tracking workers recording a scanner's honeypot hit and its pixel at the same moment cannot both miss the other;
SQLite's single writer serialises them already.

Each step is a few set-based statements per batch, never a query per event (except ``paused`` and
``frequency_changed``, one UPDATE each: people change preferences one at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from nurture.core import clock
from nurture.core.clock import parse_instant
from nurture.store import db
from nurture.store.models import CATCHING_WHERE, Base, Delivery, Event, Prospect, Suppression, email_hash
from nurture.store.states import DeliveryState
from nurture.track import botdetect
from nurture.track.vocabulary import (
    BOUNCED,
    CLICKED,
    DELIVERED,
    DROPPED,
    FREQUENCY_CHANGED,
    OPENED,
    PAUSED,
    POSTAL_RETURNED,
    SENT,
    SUPPRESSING,
    NewEvent,
    Recorded,
)

#: ``listener(connection, inserted_rows)``: the rows are the dicts inserted into ``events`` (column -> value).
Listener = Callable[[Connection, list[dict[str, Any]]], None]
_listeners: list[Listener] = []

_EVENTS: Table = Base.metadata.tables[Event.__tablename__]
#: Rules whose label a later rule over several events must not overwrite.
_HONEYPOT_RULES = ("honeypot", "honeypot_clicker")


def add_listener(listener: Listener) -> None:
    """Call ``listener(connection, inserted_rows)`` after each batch is inserted, in the same transaction.

    A listener that raises rolls the whole batch back (events and effects): the caller sees the error.
    Adding the same listener twice registers it once.
    """
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener``; nothing happens if it was not registered."""
    if listener in _listeners:
        _listeners.remove(listener)


def record_event(engine: Engine, event: NewEvent) -> Recorded:
    """Record one event (see :func:`record_events`)."""
    return record_events(engine, [event])


def record_events(engine: Engine, events: Sequence[NewEvent]) -> Recorded:
    """Record ``events`` in one transaction with set-based statements, apply their effects, call listeners.

    Duplicate ``dedup_key``\\ s (within the batch or already stored) are skipped. Events naming a delivery that
    does not exist keep their other fields with ``delivery_id`` None (previews use delivery 0). Database errors
    propagate with nothing written.
    """
    result = Recorded()
    if not events:
        return result
    # BEGIN IMMEDIATE on SQLite: a deferred transaction that reads and then writes gets SQLITE_BUSY at once
    # (no busy wait) if another writer committed in between; taking the write lock first makes it wait instead.
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        resolved = _resolve(conn, list(events))
        rows = _rows(resolved)
        unique: dict[str, dict[str, Any]] = {}
        keyless: list[dict[str, Any]] = []
        for row in rows:
            if row["dedup_key"] is None:
                keyless.append(row)
            else:
                unique.setdefault(row["dedup_key"], row)
        inserted = _insert(conn, keyless + list(unique.values()))
        result.inserted = len(inserted)
        result.duplicates = len(rows) - len(inserted)
        inserted_keys = {r["dedup_key"] for r in inserted if r["dedup_key"] is not None}
        fresh = [e for e in resolved if e.dedup_key is None or e.dedup_key in inserted_keys]
        relabels = _group_labels(conn, fresh)
        relabels.update(_caught_sources(conn, fresh))
        result.relabelled = len(relabels)
        # Effects run for every event, not only fresh ones: they are idempotent, and a crash between an insert
        # and its effect cannot happen (same transaction), so this only costs a few no-op statements.
        result.suppressed = _suppress(conn, resolved)
        result.reconciled = _reconcile(conn, resolved)
        _preferences(conn, resolved)
        if _listeners:
            told = _listener_rows(conn, inserted, relabels)
            for listener in list(_listeners):
                listener(conn, told)
    return result


# --- steps ----------------------------------------------------------------------------------------------------


def _resolve(conn: Connection, events: list[NewEvent]) -> list[NewEvent]:
    """Fill delivery/prospect/campaign/item from the deliveries table (two queries per batch at most), and label
    opens and clicks with the per-event rules of botdetect (which need the delivery's sent_at)."""
    ids = {e.delivery_id for e in events if e.delivery_id}
    pmids = {e.provider_message_id for e in events if not e.delivery_id and e.provider_message_id}
    by_id: dict[int, Any] = {}
    by_pmid: dict[str, Any] = {}
    cols = (
        Delivery.id,
        Delivery.prospect_id,
        Delivery.campaign,
        Delivery.item_key,
        Delivery.sent_at,
        Delivery.provider_message_id,
    )
    if ids:
        by_id = {r.id: r for r in conn.execute(select(*cols).where(Delivery.id.in_(ids)))}
    if pmids:
        by_pmid = {
            r.provider_message_id: r for r in conn.execute(select(*cols).where(Delivery.provider_message_id.in_(pmids)))
        }
    emails = {e.email.strip().lower() for e in events if e.email and not e.prospect_id}
    by_email: dict[str, int] = {}
    if emails:
        by_email = {
            r.email: r.id for r in conn.execute(select(Prospect.id, Prospect.email).where(Prospect.email.in_(emails)))
        }
    out = []
    for e in events:
        d = by_id.get(e.delivery_id) if e.delivery_id else by_pmid.get(e.provider_message_id)
        changes: dict[str, Any] = {}
        if d is not None:
            changes.update(
                delivery_id=d.id,
                prospect_id=e.prospect_id or d.prospect_id,
                campaign=e.campaign or d.campaign,
                item_key=e.item_key or d.item_key,
            )
        elif e.delivery_id:
            changes["delivery_id"] = None
        if not (changes.get("prospect_id") or e.prospect_id) and e.email:
            changes["prospect_id"] = by_email.get(e.email.strip().lower())
        if e.type in (OPENED, CLICKED) and not e.rule:
            verdict = botdetect.label_hit(
                e.type,
                user_agent=e.user_agent,
                ip=e.ip,
                method=e.method,
                occurred_at=e.occurred_at,
                sent_at=d.sent_at if d is not None else None,
                honeypot=bool(e.data.get("honeypot")),
                machine_open=e.data.get("sg_machine_open"),
            )
            changes.update(label=verdict.label, confidence=verdict.confidence, rule=verdict.rule)
        out.append(replace(e, **changes) if changes else e)
    return out


def _rows(events: list[NewEvent]) -> list[dict[str, Any]]:
    """The ``events`` rows for ``events``, cut to the column widths."""
    now = clock.now()
    rows = []
    for e in events:
        data = dict(e.data)
        if e.method and e.method != "GET":
            data.setdefault("method", e.method)
        rows.append(
            {
                "type": e.type,
                "prospect_id": e.prospect_id,
                "delivery_id": e.delivery_id or None,
                "campaign": e.campaign[:100],
                "item_key": e.item_key[:100],
                "occurred_at": e.occurred_at,
                "recorded_at": now,
                "source": e.source[:32],
                "label": e.label,
                "confidence": float(e.confidence),
                "rule": e.rule[:64],
                "url": e.url,
                "user_agent": e.user_agent[:1000],
                "ip": e.ip[:64],
                "dedup_key": e.dedup_key[:255] if e.dedup_key else None,
                "data": data,
            }
        )
    return rows


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert, skipping existing dedup keys; returns the rows actually inserted.

    Core ``Table`` inserts with a parameter list (executemany): SQLAlchemy batches them into multi-row
    ``INSERT ... VALUES`` ("insertmanyvalues") with ``RETURNING`` on both databases, and the statement is compiled
    once and cached — building one giant ``.values([...])`` statement per batch was 30x slower. Each returned row
    gets its ``id`` (listeners name the events they act on).
    """
    if not rows:
        return []
    keyless = [r for r in rows if r["dedup_key"] is None]
    keyed = [r for r in rows if r["dedup_key"] is not None]
    if keyless:
        ids = conn.execute(insert(_EVENTS).returning(_EVENTS.c.id, sort_by_parameter_order=True), keyless).scalars()
        for row, event_id in zip(keyless, ids, strict=True):
            row["id"] = event_id
    inserted = list(keyless)
    if keyed:
        stmt = (
            db.insert_for(conn, _EVENTS)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(_EVENTS.c.dedup_key, _EVENTS.c.id)
        )
        got: dict[str, int] = {key: event_id for key, event_id in conn.execute(stmt, keyed)}
        for row in keyed:
            if row["dedup_key"] in got:
                row["id"] = got[row["dedup_key"]]
                inserted.append(row)
    return inserted


def _suppress(conn: Connection, events: list[NewEvent]) -> int:
    """Status + Suppression for unsubscribes, complaints, hard bounces and drops. Returns new suppressions."""
    targets: dict[str, tuple[str, str, int | None, datetime]] = {}  # email hash -> (reason, source, prospect, when)
    prospect_ids = {e.prospect_id for e in events if _suppression_reason(e) and e.prospect_id}
    emails: dict[int, str] = {}
    if prospect_ids:
        emails = dict(conn.execute(select(Prospect.id, Prospect.email).where(Prospect.id.in_(prospect_ids))).all())
    for e in events:
        reason = _suppression_reason(e)
        if not reason:
            continue
        address = emails.get(e.prospect_id) if e.prospect_id else None
        address = address or e.email
        if not address:
            continue
        targets.setdefault(email_hash(address), (reason, f"{e.source}:{e.type}", e.prospect_id, e.occurred_at))
    if not targets:
        return 0
    existing = set(conn.execute(select(Suppression.email_hash).where(Suppression.email_hash.in_(targets))).scalars())
    new = [
        {"email_hash": h, "reason": r, "source": s[:200], "created_at": clock.now()}
        for h, (r, s, _, _) in targets.items()
        if h not in existing
    ]
    if new:
        conn.execute(insert(Suppression), new)
    for reason in {r for r, _, _, _ in targets.values()}:
        pids = [p for r, _, p, _ in targets.values() if r == reason and p]
        if pids:
            conn.execute(
                update(Prospect)
                .where(Prospect.id.in_(pids), Prospect.status == "active")
                .values(
                    status=reason,
                    status_reason=f"{reason} ({_source_of(targets, reason)})",
                    status_changed_at=clock.now(),
                    updated_at=clock.now(),
                )
            )
    return len(new)


def _source_of(targets: dict[str, tuple[str, str, int | None, datetime]], reason: str) -> str:
    return next(s for r, s, _, _ in targets.values() if r == reason)


def _suppression_reason(e: NewEvent) -> str | None:
    if e.type == BOUNCED:
        return "bounced" if e.data.get("bounce") == "hard" else None
    if e.type == DROPPED:
        return e.data.get("suppress", "bounced") or None
    return SUPPRESSING.get(e.type)


def _reconcile(conn: Connection, events: list[NewEvent]) -> int:
    """A provider's ``processed``/``delivered`` proves an ambiguous send was accepted: mark it sent, and note the
    provider's message id where the delivery has none. One SELECT finds the few deliveries concerned."""
    first: dict[int, NewEvent] = {}
    for e in events:
        if e.type in (SENT, DELIVERED) and e.delivery_id:
            first.setdefault(e.delivery_id, e)
    if not first:
        return 0
    concerned = conn.execute(
        select(Delivery.id, Delivery.state, Delivery.provider_message_id).where(
            Delivery.id.in_(first),
            or_(Delivery.state == DeliveryState.UNKNOWN, Delivery.provider_message_id == ""),
        )
    ).all()
    count = 0
    for d in concerned:
        e = first[d.id]
        ambiguous = d.state == DeliveryState.UNKNOWN
        values: dict[str, Any] = {}
        if ambiguous:
            values.update(state=DeliveryState.SENT, sent_at=e.occurred_at, error="reconciled from provider event")
        if not d.provider_message_id and e.provider_message_id:
            values["provider_message_id"] = e.provider_message_id
        if values:
            values["updated_at"] = clock.now()
            conn.execute(update(Delivery).where(Delivery.id == d.id, Delivery.state == d.state).values(**values))
            count += ambiguous
    return count


def _preferences(conn: Connection, events: list[NewEvent]) -> None:
    for e in events:
        if not e.prospect_id:
            continue
        if e.type == PAUSED:
            until = e.data.get("paused_until")
            conn.execute(
                update(Prospect)
                .where(Prospect.id == e.prospect_id)
                .values(paused_until=parse_instant(until) if until else None, updated_at=clock.now())
            )
        elif e.type == POSTAL_RETURNED:
            # A postal bounce stops post to this address (not e-mail); an opt-out from post stays an opt-out.
            conn.execute(
                update(Prospect)
                .where(Prospect.id == e.prospect_id, Prospect.postal_status == "")
                .values(postal_status="returned", updated_at=clock.now())
            )
        elif e.type == FREQUENCY_CHANGED:
            conn.execute(
                update(Prospect)
                .where(Prospect.id == e.prospect_id)
                .values(frequency_factor=float(e.data["frequency_factor"]), updated_at=clock.now())
            )


#: A relabel: event id -> (label, confidence, rule).
Relabels = dict[int, tuple[str, float, str]]
#: Namespace of the per-recipient advisory locks taken before the caught-source rule reads (db.scope_lock).
_SOURCE_LOCK_NAMESPACE = 0x6E75
_source_window = timedelta(seconds=botdetect.SOURCE_WINDOW_SECONDS)


def set_source_window(window: timedelta) -> None:
    """How long a caught source is remembered either side of the hit that caught it (``[tracking]
    source_window_minutes``; the tracking server and the CLI set it from the config)."""
    global _source_window
    if window < timedelta(0):
        raise ValueError("the source window cannot be negative")
    _source_window = window


def _relabel(conn: Connection, ids: set[int], label: str, confidence: float, rule: str, out: Relabels) -> None:
    if not ids:
        return
    conn.execute(
        update(Event)
        .where(Event.id.in_(ids))
        .values(label=label, confidence=confidence, rule=rule, relabeled_at=clock.now())
    )
    out.update(dict.fromkeys(ids, (label, confidence, rule)))


def _group_labels(conn: Connection, fresh: list[NewEvent]) -> Relabels:
    """Rules over several events of one mail: all links clicked within a second; a honeypot click marks every
    open and click from the same IP and user agent on that mail. Earlier rows they implicate are relabelled.

    Links are told apart by URL (two links to one URL are one link for this rule). Only the columns the rule
    needs are read, and rows already labelled by it are not updated again: this runs for every batch of clicks.
    """
    relabels: Relabels = {}
    clicks = [e for e in fresh if e.type == CLICKED and e.delivery_id]
    if not clicks:
        return relabels
    window = timedelta(seconds=botdetect.BURST_SECONDS)
    since = min(e.occurred_at for e in clicks) - window
    until = max(e.occurred_at for e in clicks) + window
    recent = conn.execute(
        select(Event.id, Event.delivery_id, Event.url, Event.occurred_at, Event.rule).where(
            Event.type == CLICKED,
            Event.delivery_id.in_({e.delivery_id for e in clicks}),
            Event.occurred_at >= since,
            Event.occurred_at <= until,
        )
    ).all()
    burst = botdetect.burst_clicks(
        [(r.id, r.delivery_id, r.url, r.occurred_at) for r in recent if r.rule not in _HONEYPOT_RULES]
    )
    keep = {*botdetect.STRONGER_THAN_BURST, "click_burst"}
    burst = {r.id for r in recent if r.id in burst and r.rule not in keep}
    _relabel(conn, burst, botdetect.MACHINE, botdetect.BURST_CONFIDENCE, "click_burst", relabels)
    pots = {(e.delivery_id, e.ip, e.user_agent) for e in clicks if e.data.get("honeypot")}
    if pots:
        rows = conn.execute(
            select(Event.id, Event.delivery_id, Event.ip, Event.user_agent, Event.rule).where(
                Event.delivery_id.in_({d for d, _, _ in pots}), Event.type.in_((CLICKED, OPENED))
            )
        ).all()
        hit = {r.id for r in rows if (r.delivery_id, r.ip, r.user_agent) in pots and r.rule not in _HONEYPOT_RULES}
        _relabel(conn, hit, botdetect.MACHINE, 1.0, "honeypot_clicker", relabels)
    return relabels


def _caught_sources(conn: Connection, fresh: list[NewEvent]) -> Relabels:
    """The caught-source rule (botdetect), for this batch's recipients within the window of this batch's hits.

    Two indexed reads (``ix_events_prospect_time``): the convicting hits in the window (usually none: then that is
    all it costs), then, for the recipients that have one, their hits not yet machine. This covers both directions
    at once: a new hit from a source caught earlier, and earlier (or out-of-order later) hits of a source this
    batch catches; the rows read include this batch's own (same transaction).
    """
    relabels: Relabels = {}
    hits = [e for e in fresh if e.type in (OPENED, CLICKED) and e.prospect_id]
    if not hits or _source_window <= timedelta(0):
        return relabels
    prospects = {e.prospect_id for e in hits if e.prospect_id}
    db.scope_lock(conn, _SOURCE_LOCK_NAMESPACE, prospects)
    since = min(e.occurred_at for e in hits) - _source_window
    until = max(e.occurred_at for e in hits) + _source_window
    # No filter on type here: the catching rules label only opens and clicks, and a type filter would tempt the
    # planner onto ix_events_type_time (every hit of every recipient in the window) instead of the partial index.
    in_window = (Event.prospect_id.in_(prospects), Event.occurred_at >= since, Event.occurred_at <= until)
    # The columns botdetect.caught_hits reads, in its order, for both reads.
    hit = select(Event.id, Event.prospect_id, Event.ip, Event.user_agent, Event.label, Event.rule, Event.occurred_at)
    catchers = conn.execute(hit.where(*in_window, text(CATCHING_WHERE), Event.label == botdetect.MACHINE)).all()
    if not catchers:
        return relabels
    suspects = conn.execute(
        hit.where(
            *in_window[1:],
            Event.prospect_id.in_({r.prospect_id for r in catchers}),
            Event.type.in_((OPENED, CLICKED)),
            Event.label != botdetect.MACHINE,
        )
    ).all()
    caught = botdetect.caught_hits(
        ((r.id, r.prospect_id, r.ip, r.user_agent, r.label, r.rule, r.occurred_at) for r in (*catchers, *suspects)),
        _source_window.total_seconds(),
    )
    _relabel(
        conn,
        caught,
        botdetect.MACHINE,
        botdetect.CAUGHT_SOURCE_CONFIDENCE,
        botdetect.CAUGHT_SOURCE_RULE,
        relabels,
    )
    return relabels


def _listener_rows(conn: Connection, inserted: list[dict[str, Any]], relabels: Relabels) -> list[dict[str, Any]]:
    """What listeners are told: the inserted rows with their final labels, then the earlier rows relabelled by this
    batch (read back, marked ``"relabeled": True``)."""
    for row in inserted:
        change = relabels.get(row["id"])
        if change is not None:
            row["label"], row["confidence"], row["rule"] = change
    older = set(relabels) - {row["id"] for row in inserted}
    if not older:
        return inserted
    columns = [c for c in _EVENTS.c if c.name != "data"]
    earlier = [
        {**row._asdict(), "relabeled": True}
        for row in conn.execute(select(*columns).where(_EVENTS.c.id.in_(older)).order_by(_EVENTS.c.id))
    ]
    return inserted + earlier
