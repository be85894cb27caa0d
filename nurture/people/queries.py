"""Reading prospects: the list with its filters, and one prospect with everything known about it.

Contract: read-only; each function opens its own connection. Addresses are looked up as the import stores them
(NFKC, trimmed, lower-cased), so ``Taro@Example.co.jp`` and ``ｔａｒｏ@example.co.jp`` find the same prospect.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, Select, func, or_, select
from sqlalchemy.orm import Session

from nurture.core import clock
from nurture.core.errors import NotFound
from nurture.store.models import Prospect, ProspectTag, Suppression, email_hash


def address_key(email: str) -> str:
    """``email`` as the import stores addresses: NFKC, trimmed, lower-cased."""
    return unicodedata.normalize("NFKC", email).strip().lower()


LIST_COLUMNS = (
    "email",
    "name",
    "company",
    "industry",
    "temperature",
    "rank",
    "stage",
    "score",
    "owner",
    "last_contact_at",
    "next_action",
    "next_action_due",
    "status",
    "consent_basis",
)


def filtered(
    stmt: Select,
    *,
    temperature: Iterable[str] = (),
    industry: Iterable[str] = (),
    rank: Iterable[str] = (),
    stage: Iterable[str] = (),
    owner: Iterable[str] = (),
    status: Iterable[str] = (),
    stale_days: int | None = None,
    tag: str | None = None,
) -> Select:
    """``stmt`` (a select over prospects) narrowed by the filters of ``prospects list`` (and ``export``): each
    given filter must hold; several values of one filter are alternatives.

    ``stale_days``: no contact for at least that many days, or never contacted (SEEDS 001: follow-up leaks).
    """
    for column, wanted in (
        ("temperature", temperature),
        ("industry", industry),
        ("rank", rank),
        ("stage", stage),
        ("owner", owner),
        ("status", status),
    ):
        wanted = [w for w in wanted if w]
        if wanted:
            stmt = stmt.where(getattr(Prospect, column).in_(wanted))
    if stale_days is not None:
        cutoff = clock.now() - timedelta(days=stale_days)
        stmt = stmt.where(or_(Prospect.last_contact_at.is_(None), Prospect.last_contact_at <= cutoff))
    if tag:
        stmt = stmt.where(Prospect.id.in_(select(ProspectTag.prospect_id).where(ProspectTag.tag == tag)))
    return stmt


def list_prospects(engine: Engine, *, limit: int | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
    """Prospects matching every given filter (:func:`filtered`), streamed in e-mail order."""
    stmt = filtered(select(*[getattr(Prospect, c) for c in LIST_COLUMNS], Prospect.id), **filters)
    stmt = stmt.order_by(Prospect.email)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        for row in conn.execute(stmt.execution_options(yield_per=1000)):
            yield {c: getattr(row, c) for c in LIST_COLUMNS}


def erased_address(email: str) -> str:
    """What an erased prospect's ``email`` becomes (:func:`nurture.people.operator.erase`): the address hash,
    which is also its suppression key, and nothing readable."""
    return f"{email_hash(address_key(email))}@erased.invalid"


def get_prospect(engine: Engine, email: str) -> dict[str, Any]:
    """Every field of one prospect plus its tags; NotFound if there is none. An erased person is found by the
    address they had (its hash is all that is kept): ``erased`` is True and the personal fields are empty."""
    key = address_key(email)
    with engine.connect() as conn:
        row = conn.execute(select(Prospect.__table__).where(Prospect.email == key)).mappings().first()
        if row is None:
            row = (
                conn.execute(select(Prospect.__table__).where(Prospect.email == erased_address(key))).mappings().first()
            )
        if row is None:
            raise NotFound(f"no prospect with address {email!r}", hint="see `nurture prospects list`")
        data = dict(row)
        data["erased"] = data["status"] == "erased"
        data["tags"] = sorted(
            conn.execute(select(ProspectTag.tag).where(ProspectTag.prospect_id == data["id"])).scalars()
        )
        data["suppressed"] = (
            conn.execute(
                select(func.count()).select_from(Suppression).where(Suppression.email_hash == email_hash(key))
            ).scalar_one()
            > 0
        )
    return data


def find_prospect(engine: Engine, email: str) -> Prospect:
    """The prospect with this address, loaded and detached from its session (to render a preview for it, or to
    read its id); NotFound if there is none."""
    with Session(engine, expire_on_commit=False) as session:
        prospect = session.scalar(select(Prospect).where(Prospect.email == address_key(email)))
    if prospect is None:
        raise NotFound(f"no prospect with the address {email}", hint="list them with `nurture prospects list`")
    return prospect
