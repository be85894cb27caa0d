"""Handoffs as sales sees them: the list, and the verdict (acknowledged or rejected, by whom, why).

A verdict is recorded on the prospect's open handoff (the newest, if a prospect was handed over more than once
without a verdict, the older ones are decided with it: sales looked at the person, not at a row). ``decided_at``
minus ``created_at`` is the time to acknowledgement that the handoffs report measures; rejections with their
reasons tell how good the threshold is.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from nurture.core import clock
from nurture.core.errors import InputError, NotFound
from nurture.store.models import Handoff, Prospect

STATES = ("open", "acknowledged", "rejected")
REASONS = ("rank_A", "stage_SQL", "inquiry")


def notice_status(h: Any) -> str:
    """``sent``, ``pending`` (due, not yet tried), ``retrying`` (failed, will retry), or ``none``."""
    if h.notified_at is not None:
        return "sent"
    if h.notice_due_at is None:
        return "none"
    return "retrying" if h.notice_attempts else "pending"


def list_handoffs(
    engine: Engine,
    *,
    states: tuple[str, ...] = (),
    owner: str | None = None,
    reasons: tuple[str, ...] = (),
    email: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Handoffs, newest first, with their prospect; filters combine with AND."""
    stmt = select(Handoff, Prospect).join(Prospect, Prospect.id == Handoff.prospect_id)
    if states:
        stmt = stmt.where(Handoff.state.in_(states))
    if reasons:
        stmt = stmt.where(Handoff.reason.in_(reasons))
    if owner is not None:
        stmt = stmt.where(func.coalesce(func.nullif(Handoff.owner, ""), Prospect.owner) == owner)
    if email:
        stmt = stmt.where(Prospect.email == email.strip().lower())
    if since is not None:
        stmt = stmt.where(Handoff.created_at >= since)
    stmt = stmt.order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(limit)
    now = clock.now()
    out = []
    with engine.connect() as conn:
        for h, p in Session(conn).execute(stmt).all():
            out.append(
                {
                    "id": h.id,
                    "email": p.email,
                    "name": p.name,
                    "company": p.company,
                    "owner": h.owner or p.owner,
                    "reason": h.reason,
                    "state": h.state,
                    "rank": p.rank,
                    "stage": p.stage,
                    "score": round(float(p.score or 0.0), 1),
                    "created_at": h.created_at,
                    "age_hours": round((now - h.created_at).total_seconds() / 3600, 1),
                    "notice": notice_status(h),
                    "notified_at": h.notified_at,
                    "notice_due_at": h.notice_due_at,
                    "notice_attempts": h.notice_attempts,
                    "notice_error": h.notice_error,
                    "escalated_at": h.escalated_at,
                    "decided_at": h.decided_at,
                    "decided_by": h.decided_by,
                    "verdict_reason": h.verdict_reason,
                }
            )
    return out


def decide(engine: Engine, email: str, verdict: str, *, by: str = "", reason: str = "", zone: str = "UTC") -> list[int]:
    """Record ``verdict`` (``acknowledged`` or ``rejected``) on the prospect's open handoffs; returns their ids.

    Raises NotFound when there is no such prospect, InputError when it has no open handoff (saying what its last
    handoff's state is, its time in ``zone``) or when a rejection has no reason."""
    if verdict not in ("acknowledged", "rejected"):
        raise ValueError(verdict)
    if verdict == "rejected" and not reason.strip():
        raise InputError(
            "a rejection needs a reason", hint='say why, e.g. --reason "no budget this year": it tunes the threshold'
        )
    address = email.strip().lower()
    by = by or _user()
    now = clock.now()
    with engine.begin() as conn:
        pid = conn.execute(select(Prospect.id).where(Prospect.email == address)).scalar_one_or_none()
        if pid is None:
            raise NotFound(f"no prospect {address}", hint="check the address with `nurture prospects list`")
        ids = list(
            conn.execute(
                select(Handoff.id).where(Handoff.prospect_id == pid, Handoff.state == "open").order_by(Handoff.id)
            ).scalars()
        )
        if not ids:
            last = (
                Session(conn)
                .execute(select(Handoff).where(Handoff.prospect_id == pid).order_by(Handoff.created_at.desc()).limit(1))
                .scalar_one_or_none()
            )
            if last is None:
                raise InputError(f"{address} has not been handed over to sales", hint="see `nurture handoffs`")
            raise InputError(
                f"{address}: the last handoff is already {last.state}"
                + (
                    f" (by {last.decided_by} at {last.decided_at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone}))"
                    if last.decided_at
                    else ""
                ),
                hint="nothing to record; a new handoff is made at the next crossing",
            )
        # state = 'open' in the WHERE: a verdict recorded meanwhile by someone else is not overwritten.
        conn.execute(
            update(Handoff)
            .where(Handoff.id.in_(ids), Handoff.state == "open")
            .values(state=verdict, decided_at=now, decided_by=by, verdict_reason=reason.strip())
        )
    return ids


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container): the verdict is still recorded
        return ""
