"""The suppression list: addresses nurture must never mail again (unsubscribed, bounced, complained, erased).

Rows are keyed by SHA-256 of the lower-cased address (:func:`nurture.store.models.email_hash`), so erasing a person
keeps only the hash. Everything that asks "is this address suppressed?" asks here: one query per batch
(:func:`suppression_reasons`), or a correlated ``NOT EXISTS`` inside a segment query (:func:`not_suppressed`),
which needs the hash in SQL: native on PostgreSQL, a function this module gives SQLite (:func:`sqlite_email_hash`,
registered on every connection by :mod:`nurture.store.db`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from nurture.store.models import Prospect, Suppression, email_hash


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
            select(Suppression.email_hash, Suppression.reason).where(Suppression.email_hash.in_(list(hashes)))
        )
    }


def suppression_reason(session: Session, email: str) -> str | None:
    """The suppression reason recorded for ``email`` (unsubscribed, bounced, ...), or None."""
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == email_hash(email)))
