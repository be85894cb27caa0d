"""The suppression list: addresses nurture must never mail again (unsubscribed, bounced, complained, erased).

Rows are keyed by SHA-256 of the lower-cased address (:func:`nurture.store.models.email_hash`), so erasing a person
keeps only the hash. Everything that asks "is this address suppressed?" asks here: one query per batch
(:func:`suppression_reasons`), or a correlated ``NOT EXISTS`` inside a segment query (:func:`not_suppressed`),
which needs the hash in SQL: native on PostgreSQL, a function this module gives SQLite (:func:`sqlite_email_hash`,
registered on every connection by :mod:`nurture.store.db`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from nurture.store.models import Prospect, Suppression, email_hash
from nurture.store.sql import among


class email_sha256(FunctionElement):
    """SQL for :func:`nurture.store.models.email_hash` of a stored (already lower-cased) address.

    PostgreSQL computes it natively (``sha256()`` exists since PostgreSQL 11). SQLite has no hash function:
    :mod:`nurture.store.db` registers ``nurture_email_hash`` on every connection it opens (deterministic, so SQLite
    may factor it). This lets the suppression check be a correlated ``NOT EXISTS`` inside the one query.
    """

    type = String()
    inherit_cache = True
    name = "email_sha256"


@compiles(email_sha256, "postgresql")
def _email_sha256_pg(element: email_sha256, compiler: SQLCompiler, **kw: Any) -> str:
    return f"encode(sha256(convert_to(lower(btrim({compiler.process(element.clauses, **kw)})), 'UTF8')), 'hex')"


@compiles(email_sha256)
def _email_sha256_default(element: email_sha256, compiler: SQLCompiler, **kw: Any) -> str:
    return f"nurture_email_hash({compiler.process(element.clauses, **kw)})"


def sqlite_email_hash(value: str | None) -> str | None:
    """The SQLite user function behind :class:`email_sha256` (registered by :mod:`nurture.store.db`)."""
    return None if value is None else email_hash(value)


def not_suppressed() -> ColumnElement[bool]:
    """No suppression entry for the prospect's address. The dearest test (a hash per row), so
    :func:`segment_select` puts it last: SQLite evaluates AND-ed terms in order and stops at the first false."""
    return ~exists().where(Suppression.email_hash == email_sha256(Prospect.email))


def suppression_reasons(conn: Any, emails: Iterable[str]) -> dict[str, str]:
    """The suppression reason of each of ``emails`` that is suppressed, in one query (batches of import,
    planning and sending all ask this)."""
    hashes = {email_hash(e): e for e in emails}
    if not hashes:
        return {}
    return {
        hashes[digest]: reason
        for digest, reason in conn.execute(
            select(Suppression.email_hash, Suppression.reason).where(
                among(conn.dialect, Suppression.email_hash, hashes)
            )
        )
    }


def suppression_reason(session: Session, email: str) -> str | None:
    """The suppression reason recorded for ``email`` (unsubscribed, bounced, ...), or None."""
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == email_hash(email)))


def add_suppressions(conn: Any, reasons: dict[str, str], *, source: str, at: datetime) -> int:
    """Suppress each address of ``reasons`` (address -> reason) that is not suppressed yet; an existing entry
    keeps its first reason and source. Returns how many entries are new. Set-based: one SELECT and one INSERT per
    call (a previous tool's list can hold hundreds of thousands of addresses: callers pass batches)."""
    by_hash = {email_hash(e): r for e, r in reasons.items()}
    if not by_hash:
        return 0
    existing: set[str] = set()
    hashes = list(by_hash)
    for start in range(0, len(hashes), 1000):
        existing.update(
            conn.execute(
                select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes[start : start + 1000]))
            ).scalars()
        )
    new = [
        {"email_hash": h, "reason": r, "source": source[:200], "created_at": at}
        for h, r in by_hash.items()
        if h not in existing
    ]
    if new:
        conn.execute(insert(Suppression), new)
    return len(new)


def remove_suppression(conn: Any, email: str) -> str | None:
    """Delete the suppression entry of ``email``; returns the reason it had, or None if there was none."""
    digest = email_hash(email)
    reason = conn.execute(select(Suppression.reason).where(Suppression.email_hash == digest)).scalar()
    if reason is not None:
        conn.execute(delete(Suppression).where(Suppression.email_hash == digest))
    return reason


def mark_erased(conn: Any, email: str, *, at: datetime) -> None:
    """Make ``email``'s entry say ``erased`` (created if missing): import never brings the address back, and the
    entry is all that is left of the person (GDPR Art. 17)."""
    digest = email_hash(email)
    found = conn.execute(
        update(Suppression)
        .where(Suppression.email_hash == digest)
        .values(reason="erased", source="operator:erase", created_at=at)
    ).rowcount
    if not found:
        conn.execute(
            insert(Suppression).values(email_hash=digest, reason="erased", source="operator:erase", created_at=at)
        )
