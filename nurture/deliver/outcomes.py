"""Writing delivery outcomes: :class:`OutcomeWriter`, one per worker thread.

An outcome is the set of ``deliveries`` columns one attempt changes (state, error, attempts, sent_at, ...). The
writer queues them and writes ``[delivery] record_batch`` at a time in one transaction, each row only where the
claim is still this worker's (a row whose lease ran out and was claimed by another worker is that worker's now),
and clears the claim as it writes. Fewer commits, and a bounded crash window: a process killed between a send
and the write of its outcome repeats at most ``record_batch`` mails per worker thread (1 = every outcome is
committed before the next send).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from nurture.core import clock
from nurture.store import db
from nurture.store.models import Delivery


class OutcomeWriter:
    """Queues the outcomes of ``worker``'s deliveries and writes them on ``conn`` (the worker's connection).

    ``statements`` caches one prepared UPDATE per shape of outcome (the set of columns it sets); the writers of
    one run share it.
    """

    def __init__(
        self, conn: Connection, worker: str, record_batch: int, statements: dict[frozenset[str], db.Bulk]
    ) -> None:
        self.conn = conn
        self.worker = worker
        self.record_batch = record_batch
        self.statements = statements
        self.queued: list[dict[str, Any]] = []

    def record(self, delivery_id: int, values: dict[str, Any]) -> None:
        """Queue ``values`` for delivery ``delivery_id``; write the queue when it holds ``record_batch``."""
        self.queued.append({**values, "claimed_by": "", "lease_until": None, "_id": delivery_id, "_w": self.worker})
        if len(self.queued) >= self.record_batch:
            self.flush()

    def flush(self) -> None:
        """Write every queued outcome in one transaction. Call it before anything that must see them (a lease
        renewal, a release) and before the worker ends."""
        records = self.queued
        if not records:
            return
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        now = clock.now()  # updated_at: when the row is written, the same for the whole batch
        for values in records:
            values["updated_at"] = now
            groups.setdefault(frozenset(values), []).append(values)
        conn = self.conn
        with db.begin(conn):
            for keys, rows in groups.items():
                bulk = self.statements.get(keys)
                if bulk is None:
                    stmt = (
                        update(Delivery)
                        .where(Delivery.id == bindparam("_id"), Delivery.claimed_by == bindparam("_w"))
                        .values({k: bindparam(k) for k in keys if k not in ("_id", "_w")})
                    )
                    bulk = self.statements[keys] = db.Bulk(stmt, conn.dialect, list(keys))
                bulk.run(conn, rows)
        records.clear()
