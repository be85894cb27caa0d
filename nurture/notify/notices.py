"""The notice pass: deliver the notices of handoffs that are due, and escalate those nobody acknowledged.

``handoffs`` is an outbox. Scoring makes a row with ``notice_due_at = now``; :func:`notify_due` (run every
``[handoff] interval_seconds`` by ``nurture serve``, or by ``nurture handoffs notify`` from cron) does:

1. **Schedule escalations**: an ``open`` handoff made longer ago than ``ack_timeout_minutes`` (but not more than
   :data:`ESCALATION_WINDOW` longer), not escalated yet, with an escalation channel configured, gets
   ``notice_due_at = now`` (only when it has none: a row waiting for a
   retry keeps its time, and the retry does the escalation too).
2. **Claim** due rows: in one short transaction (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL) each row's ``notice_due_at`` is moved to ``now + LEASE`` with ``UPDATE ... WHERE notice_due_at =
   <the value read>``, so of several processes exactly one gets a row. A process that dies while sending loses
   only its lease: the row is due again when the lease ends.
3. **Send** outside any transaction: the notice to the owner (mail and/or webhook) unless ``notified_at`` is set,
   then the escalation (mail to ``escalate_to`` and/or ``escalate_webhook_url``) when it is due. Each channel is
   tried once per pass; a channel that got through is remembered in ``notice_error`` (a ``sent notice:mail``
   line) so that a retry never repeats it (the owner never gets the same mail twice because the webhook failed).
4. **Record**: all through -> ``notified_at`` / ``escalated_at`` set, ``notice_due_at = NULL``; otherwise
   ``notice_attempts + 1``, the error kept in ``notice_error`` and ``notice_due_at`` moved forward by the backoff
   (``retry_base_seconds`` doubling up to ``retry_max_seconds``). Nothing is ever dropped: a notice to an owner
   without an address waits, with the error saying so, until the configuration gives one. The record is
   conditional on the lease being still ours.

The lease (:data:`LEASE_SECONDS`) is renewed right before each row is sent and is longer than sending one row
can take (two mails and two webhooks at their timeouts), so a row is never sent by two processes at once.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Select, and_, select, update
from sqlalchemy.orm import Session

from nurture.core import clock
from nurture.core.config import Config
from nurture.notify import render
from nurture.notify.channels import ChannelError, post_webhook, send_mail
from nurture.notify.facts import handoff_facts
from nurture.notify.owners import recipient
from nurture.store import db
from nurture.store.models import Handoff

log = logging.getLogger("nurture.notify")

#: Seconds a claimed row belongs to the process that claimed it (longer than any send can take).
LEASE_SECONDS = 300
#: Handoffs that went unacknowledged longer than this past the timeout are not escalated any more (they are in
#: the weekly digest): turning escalation on, or a server down for weeks, must not flood the fallback with old news.
ESCALATION_WINDOW = timedelta(days=7)
#: Rows claimed per transaction.
BATCH = 20

_SENT = re.compile(r"^sent (notice|escalation):(mail|webhook)\b", re.M)


@dataclass
class PassReport:
    """What one pass did: handoff ids per outcome."""

    notified: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    escalations_scheduled: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "notified": self.notified,
            "escalated": self.escalated,
            "failed": self.failed,
            "escalations_scheduled": self.escalations_scheduled,
            "errors": self.errors,
        }


def backoff(config: Config, attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1`` (``attempts`` >= 1 failed so far)."""
    h = config.handoff
    return timedelta(seconds=min(h.retry_max_seconds, h.retry_base_seconds * 2 ** max(0, attempts - 1)))


def escalation_configured(config: Config) -> bool:
    return bool(config.handoff.escalate_to or config.handoff.escalate_webhook_url)


def notify_due(engine: Engine, config: Config, *, limit: int = 1000) -> PassReport:
    """One pass (see the module docstring); returns what it did. Safe in several processes at once."""
    report = PassReport()
    report.escalations_scheduled = schedule_escalations(engine, config)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    done = 0
    while done < limit:
        claimed = _claim(engine, min(BATCH, limit - done))
        if not claimed:
            break
        for handoff_id, lease in claimed:
            try:
                _deliver(engine, config, handoff_id, lease, report, worker)
            except Exception as exc:  # one broken row (a bug, a database hiccup) never stops the others
                log.exception("handoff %s: the notice pass failed on it; it is retried later", handoff_id)
                report.failed.append(handoff_id)
                report.errors[handoff_id] = f"{type(exc).__name__}: {exc}"
                _postpone(engine, config, handoff_id, f"{type(exc).__name__}: {exc}")
        done += len(claimed)
    return report


def schedule_escalations(engine: Engine, config: Config) -> int:
    """Make open, unacknowledged, overdue handoffs due now (once: they need ``notice_due_at IS NULL``)."""
    if not escalation_configured(config):
        return 0
    now = clock.now()
    cutoff = now - timedelta(minutes=config.handoff.ack_timeout_minutes)
    oldest = cutoff - ESCALATION_WINDOW
    with engine.begin() as conn:
        result = conn.execute(
            update(Handoff)
            .where(
                Handoff.state == "open",
                Handoff.escalated_at.is_(None),
                Handoff.notice_due_at.is_(None),
                Handoff.created_at <= cutoff,
                Handoff.created_at > oldest,
            )
            .values(notice_due_at=now)
        )
    return int(result.rowcount or 0)


def _claim(engine: Engine, n: int) -> list[tuple[int, datetime]]:
    now = clock.now()
    # A plain read first: the pass runs every 15 s in every server process, and on SQLite the claim below takes
    # the one write lock, which the tracking server's writes would then wait for, for nothing.
    with engine.connect() as conn:
        if conn.execute(select(Handoff.id).where(Handoff.notice_due_at <= now).limit(1)).first() is None:
            return []
    lease = now + timedelta(seconds=LEASE_SECONDS)
    claimed: list[tuple[int, datetime]] = []
    with engine.connect() as conn, db.begin(conn, immediate=True):
        stmt = cast(
            "Select[Any]",
            select(Handoff.id, Handoff.notice_due_at)
            .where(Handoff.notice_due_at <= now)
            .order_by(Handoff.notice_due_at, Handoff.id)
            .limit(n),
        )
        rows = conn.execute(db.skip_locked(conn, stmt)).all()
        for handoff_id, due in rows:
            # The compare-and-set makes the claim exclusive even where the select could not lock (a database
            # without SKIP LOCKED): whoever moved notice_due_at first owns the row.
            moved = conn.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.notice_due_at == due)
                .values(notice_due_at=lease)
            ).rowcount
            if moved == 1:
                claimed.append((handoff_id, lease))
    return claimed


def _channels(config: Config, escalation: bool) -> list[tuple[str, str]]:
    """(channel, destination) pairs of the notice or the escalation; the mail's destination is filled later."""
    h = config.handoff
    if escalation:
        pairs = [("mail", h.escalate_to)] if h.escalate_to else []
        return pairs + ([("webhook", h.escalate_webhook_url)] if h.escalate_webhook_url else [])
    pairs = [("mail", "")] if h.mail else []
    return pairs + ([("webhook", h.webhook_url)] if h.webhook_url else [])


def _deliver(engine: Engine, config: Config, handoff_id: int, lease: datetime, report: PassReport, worker: str) -> None:
    # Renew the lease right before sending: the rows of a batch are sent one after the other, and a slow server
    # must not let a later row's lease run out while it waits its turn (another process would send it too).
    renewed = clock.now() + timedelta(seconds=LEASE_SECONDS)
    with engine.begin() as conn:
        mine = conn.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.notice_due_at == lease)
            .values(notice_due_at=renewed)
        ).rowcount
    if mine != 1:
        log.warning("handoff %s: the claim ran out before its turn; another pass has it (%s)", handoff_id, worker)
        return
    lease = renewed
    with engine.connect() as conn:
        facts = handoff_facts(conn, handoff_id)
        row = Session(conn).execute(select(Handoff).where(Handoff.id == handoff_id)).scalar_one_or_none()
    if facts is None or row is None:
        return  # the prospect was erased (cascade): nothing left to tell
    now = clock.now()
    sent = {f"{phase}:{channel}" for phase, channel in _SENT.findall(row.notice_error or "")}
    kept: list[str] = [line for line in (row.notice_error or "").splitlines() if _SENT.match(line)]
    errors: list[str] = []
    owner = row.owner or facts["prospect"]["owner"] or ""
    who = recipient(config, owner)
    tz = config.cadence.time_zone
    minutes = config.handoff.ack_timeout_minutes

    phases: list[str] = []
    if row.notified_at is None:
        phases.append("notice")
    escalate_at = row.created_at + timedelta(minutes=minutes)
    escalation_due = escalate_at <= now < escalate_at + ESCALATION_WINDOW
    if row.state == "open" and row.escalated_at is None and escalation_due and escalation_configured(config):
        phases.append("escalation")
    completed: set[str] = set()

    for phase in phases:
        escalation = phase == "escalation"
        channels = _channels(config, escalation)
        if not channels:
            errors.append("notice: no channel configured" if not escalation else "escalation: no channel configured")
            continue
        language = recipient(config, config.handoff.escalate_to).language if escalation else who.language
        rendered = render.notice(
            facts, language=language, time_zone=tz, owner=who.display, escalation=escalation, ack_minutes=minutes
        )
        ok = True
        for channel, destination in channels:
            key = f"{phase}:{channel}"
            if key in sent:
                continue
            try:
                if channel == "mail":
                    to = destination or who.address
                    if not to:
                        raise ChannelError(
                            f'mail: no address for owner "{owner}"'
                            if owner
                            else "mail: the prospect has no owner and [handoff] default_owner is not set"
                        )
                    receipt = send_mail(config, to, rendered, ident=handoff_id * 2 + (1 if escalation else 0))
                else:
                    payload = {"event": "escalation" if escalation else "handoff", "handoff": facts}
                    text = f"{rendered.subject}\n{_summary(facts)}"
                    receipt = post_webhook(config, destination, text, payload, _fields(facts, language))
                sent.add(key)
                kept.append(f"sent {key}: {receipt}")
                # Remember it now, not only at the end: if this process dies before recording, the retry after
                # the lease must not send this channel again.
                _remember(engine, handoff_id, lease, "\n".join(kept))
            except ChannelError as exc:
                ok = False
                errors.append(f"{phase}: {exc}")
        if ok:
            completed.add(phase)

    values: dict[str, Any] = {"notice_attempts": Handoff.notice_attempts + 1} if phases else {}
    if "notice" in completed:
        values["notified_at"] = now
    if "escalation" in completed:
        values["escalated_at"] = now
    if not errors:
        values.update(notice_due_at=None, notice_error="")
    else:
        attempts = (row.notice_attempts or 0) + 1
        due = now + backoff(config, attempts)
        if "escalation" not in phases and row.state == "open" and row.escalated_at is None:
            # Do not let the backoff hold back an escalation that falls due earlier.
            escalate_at = row.created_at + timedelta(minutes=minutes)
            if escalation_configured(config) and now < escalate_at < due:
                due = escalate_at
        # The lines of channels that got through stay (the retry skips them); a finished phase needs none.
        kept = [line for line in kept if line.split(":", 1)[0].split(" ", 1)[1] not in completed]
        values.update(notice_due_at=due, notice_error="\n".join(kept + errors))
    with engine.begin() as conn:
        mine = conn.execute(
            update(Handoff).where(and_(Handoff.id == handoff_id, Handoff.notice_due_at == lease)).values(**values)
        ).rowcount
    if mine != 1:
        log.warning("handoff %s: the lease ended before the notice was recorded (%s)", handoff_id, worker)
    if "notice" in completed:
        report.notified.append(handoff_id)
    if "escalation" in completed:
        report.escalated.append(handoff_id)
    if errors:
        report.failed.append(handoff_id)
        report.errors[handoff_id] = "; ".join(errors)
        log.warning("handoff %s: %s", handoff_id, "; ".join(errors))


def _remember(engine: Engine, handoff_id: int, lease: datetime, notice_error: str) -> None:
    """Write the channels sent so far while the lease is ours."""
    with engine.begin() as conn:
        conn.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.notice_due_at == lease)
            .values(notice_error=notice_error)
        )


def _postpone(engine: Engine, config: Config, handoff_id: int, error: str) -> None:
    """After an unexpected failure: count the attempt, keep the error (and the channels already sent) and back
    off (whatever lease we held)."""
    try:
        with engine.begin() as conn:
            attempts, previous = conn.execute(
                select(Handoff.notice_attempts, Handoff.notice_error).where(Handoff.id == handoff_id)
            ).one()
            kept = [line for line in (previous or "").splitlines() if _SENT.match(line)]
            conn.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.notice_due_at.is_not(None))
                .values(
                    notice_attempts=attempts + 1,
                    notice_error="\n".join([*kept, error[:2000]]),
                    notice_due_at=clock.now() + backoff(config, attempts + 1),
                )
            )
    except Exception:  # the database itself is down: the lease runs out and the row is due again
        log.exception("handoff %s: could not record the failure", handoff_id)


def _fields(facts: dict[str, Any], language: str) -> list[tuple[str, str]]:
    """Name/value pairs for a chat message's fields, in ``language``."""
    words = render.Words(language, "UTC")
    p, s = facts["prospect"], facts["score"]
    return [
        (words("company"), p["company"] or words("none")),
        (words("title"), p["title"] or words("none")),
        (words("rank"), f"{s['rank']} / {s['temperature']} / {s['stage']}"),
        (words("score"), f"{s['score']} ({words('fit_score')} {s['fit_score']} + {s['engagement_score']})"),
        (words("owner"), p["owner"] or words("none")),
        (words("email"), p["email"]),
    ]


def _summary(facts: dict[str, Any]) -> str:
    """One or two lines for chat: who, the score and the latest explanation."""
    p, s = facts["prospect"], facts["score"]
    line = (
        f"{p['name'] or p['email']} ({p['company'] or '-'}) <{p['email']}> — rank {s['rank']}, {s['temperature']}, "
        f"{s['stage']}, score {s['score']} (fit {s['fit_score']} + engagement {s['engagement_score']})"
    )
    if facts["inquiry"]:
        line += f"\n> {facts['inquiry'][:300]}"
    elif facts["history"] and facts["history"][0]["explanation"]:
        line += f"\n{facts['history'][0]['explanation']}"
    return line
