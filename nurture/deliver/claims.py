"""Claims: which worker sends which pending delivery, held as leases in the ``deliveries`` table.

A claim marks up to ``n`` due pending deliveries (``next_attempt_at`` passed or unset, no live lease) with the
worker's name (``claimed_by``) and a lease (``lease_until``), in one transaction: on PostgreSQL the rows are
picked ``FOR UPDATE SKIP LOCKED``, on SQLite inside ``BEGIN IMMEDIATE`` (the write lock), so two workers --
threads, processes or machines -- never claim one row. The worker renews the lease while it holds the rows and
releases what it did not send (the row stays ``pending``, its claim cleared). A worker that dies leaves its
leases to run out; then any run claims those rows again.

Every function takes the worker's own connection and leaves no transaction open on it; outcomes are written
elsewhere (:mod:`nurture.deliver.outcomes`), only where the claim is still the writer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Connection

from nurture.compose import PROSPECT_FIELDS
from nurture.core import clock
from nurture.plan.planner import MEMBER_COLUMNS
from nurture.store import db
from nurture.store.models import Delivery, Prospect
from nurture.store.states import DeliveryState
from nurture.store.suppression import suppression_reasons

#: What delivery reads of a prospect: the mailability check and what templates see (compose.PROSPECT_FIELDS
#: and attributes). Not the whole row: each datetime column costs a conversion per mail on SQLite.
SEND_COLUMNS = tuple(
    dict.fromkeys([*MEMBER_COLUMNS, *(getattr(Prospect, name) for name in PROSPECT_FIELDS), Prospect.attributes])
)


def claim_due(conn: Connection, worker: str, campaigns: list[str], n: int, lease: timedelta) -> list[int]:
    """Claim up to ``n`` due, unclaimed pending deliveries of ``campaigns`` for ``lease``; their ids, oldest
    first."""
    if not campaigns or n <= 0:
        return []
    now = clock.now()
    stmt = (
        select(Delivery.id)
        .where(
            Delivery.state == DeliveryState.PENDING,
            Delivery.campaign.in_(campaigns),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        )
        .order_by(Delivery.id)
        .limit(n)
    )
    stmt = db.skip_locked(conn, stmt)
    with db.begin(conn, immediate=True):
        ids = list(conn.scalars(stmt))
        if ids:
            conn.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(claimed_by=worker, lease_until=now + lease, updated_at=now)
            )
    return ids


def next_due_in(conn: Connection, campaigns: list[str]) -> float | None:
    """Seconds until the earliest unclaimed pending delivery of ``campaigns`` becomes due, if any. Rows other
    workers hold are theirs to finish and do not count."""
    if not campaigns:
        return None
    now = clock.now()
    first = conn.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.state == DeliveryState.PENDING,
            Delivery.campaign.in_(campaigns),
            Delivery.next_attempt_at > now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        )
    )
    conn.rollback()
    return None if first is None else (first - now).total_seconds()


def renew(conn: Connection, worker: str, ids: list[int], lease: timedelta) -> set[int]:
    """Extend the lease on those of ``ids`` still ours and pending; the ids we still hold."""
    now = clock.now()
    with db.begin(conn):
        conn.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.claimed_by == worker, Delivery.state == DeliveryState.PENDING)
            .values(lease_until=now + lease)
        )
        return set(conn.scalars(select(Delivery.id).where(Delivery.id.in_(ids), Delivery.claimed_by == worker)))


def release(conn: Connection, worker: str, ids: list[int]) -> None:
    """Give back those of ``ids`` still ours and pending: claimable again at once, nothing else changed."""
    if not ids:
        return
    with db.begin(conn):
        conn.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.claimed_by == worker, Delivery.state == DeliveryState.PENDING)
            .values(claimed_by="", lease_until=None)
        )


def load_claimed(conn: Connection, ids: list[int]) -> tuple[Sequence[Any], dict[str, str]]:
    """The claimed deliveries joined with their prospects (``delivery_id``, ``campaign``, ``item_key``,
    ``attempts`` and :data:`SEND_COLUMNS`) in id order, and the suppression reasons of their addresses."""
    rows = conn.execute(
        select(Delivery.id.label("delivery_id"), Delivery.campaign, Delivery.item_key, Delivery.attempts, *SEND_COLUMNS)
        .join(Prospect, Prospect.id == Delivery.prospect_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    suppressed = suppression_reasons(conn, (r.email for r in rows))
    conn.rollback()
    return rows, suppressed
