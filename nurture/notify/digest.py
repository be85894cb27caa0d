"""The weekly digest: each owner gets their own leaks, handoffs and the prospects who moved up, by mail.

:func:`run_digest` builds one digest per owner with :func:`nurture.report.owner_digest.owner_digest` (read-only),
renders it in the owner's language (:mod:`nurture.notify.owners`) and sends it through ``[delivery] sender``,
or only returns it (``dry_run``). An owner with nothing to report gets no mail. One owner's failure (no address,
the server refusing) is reported and the others still get theirs. Meant for cron, e.g. Monday 08:00::

    0 8 * * 1  cd /srv/nurture && nurture digest
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import NurtureError
from nurture.notify import render
from nurture.notify.channels import DIGEST_CAMPAIGN, ChannelError, send_mail
from nurture.notify.owners import recipient
from nurture.plan.campaigns import load_campaigns
from nurture.plan.silence import silent_prospects
from nurture.report.owner_digest import digest_owners, owner_digest
from nurture.store.models import Prospect


@dataclass
class DigestMail:
    """One owner's digest and what became of it: ``status`` is sent, empty (nothing to report), failed or
    dry-run; ``detail`` the receipt or the error."""

    owner: str
    address: str
    language: str
    data: dict[str, Any]
    rendered: render.Rendered | None
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "address": self.address,
            "language": self.language,
            "status": self.status,
            "detail": self.detail,
            "subject": self.rendered.subject if self.rendered else "",
            "digest": self.data,
        }


def run_digest(
    engine: Engine,
    config: Config,
    *,
    owner: str | None = None,
    dry_run: bool = False,
    until: datetime | None = None,
    include_empty: bool = False,
) -> list[DigestMail]:
    """Digests for every owner (or only ``owner``) over the ``[digest] days`` before ``until`` (default now)."""
    until = until or clock.now()
    d = config.digest
    since = until - timedelta(days=d.days)
    out: list[DigestMail] = []
    with engine.connect() as conn:
        owners = (
            [owner]
            if owner is not None
            else digest_owners(conn, since=since, until=until, no_contact_days=d.no_contact_days)
        )
        digests = [
            owner_digest(
                conn,
                o,
                since=since,
                until=until,
                no_contact_days=d.no_contact_days,
                time_zone=config.cadence.time_zone,
                limit=d.max_rows,
            )
            for o in owners
        ]
        _add_silent(conn, config, digests, until, d.max_rows)
    for index, digest in enumerate(digests, start=1):
        who = recipient(config, digest.owner)
        data = digest.as_dict()
        mail = DigestMail(digest.owner, who.address, who.language, data, None, "empty")
        out.append(mail)
        if digest.empty and not include_empty:
            continue
        mail.rendered = render.digest(
            data,
            language=who.language,
            time_zone=config.cadence.time_zone,
            owner=who.display or "-",
            no_contact_days=d.no_contact_days,
        )
        if dry_run:
            mail.status = "dry-run"
            continue
        if not who.address:
            mail.status, mail.detail = (
                "failed",
                f'no address for owner "{digest.owner}": set [handoff] owners or default_owner'
                if digest.owner
                else "prospects without an owner: set [handoff] default_owner to send their digest",
            )
            continue
        # The Message-ID is per owner and week-ish: a rerun of the same cron job is recognisable as a duplicate.
        ident = int(until.timestamp() // 86400) * 10000 + index
        try:
            mail.detail = send_mail(config, who.address, mail.rendered, ident=ident, campaign=DIGEST_CAMPAIGN)
            mail.status = "sent"
        except ChannelError as exc:
            mail.status, mail.detail = "failed", str(exc)
    return out


def _add_silent(conn: Any, config: Config, digests: list[Any], now: datetime, limit: int) -> None:
    """Each owner's mailable prospects that nurture is not mailing, with why (the same answer as ``nurture send
    --dry-run``, :func:`nurture.plan.silence.silent_prospects`), so nobody goes silent without sales hearing."""
    if not digests:
        return
    try:
        campaigns = [c for c in load_campaigns(config) if c.channel == "email"]
    except NurtureError:
        return  # a broken campaign file is `nurture check`'s to report; the rest of the digest still goes
    found = list(silent_prospects(conn, campaigns, config, now, kinds=("exhausted", "window", "overdue")))
    if not found:
        return
    ids = [f.prospect_id for f in found]
    people = {
        r.id: r
        for r in conn.execute(
            select(Prospect.id, Prospect.owner, Prospect.name, Prospect.company).where(Prospect.id.in_(ids))
        )
    }
    for digest in digests:
        mine = [f for f in found if people[f.prospect_id].owner == digest.owner]
        digest.silent = [
            {
                "email": f.email,
                "name": people[f.prospect_id].name,
                "company": people[f.prospect_id].company,
                "kind": f.kind,
                "reason": f.reason,
            }
            for f in mine[:limit]
        ]
        digest.counts["silent"] = len(mine)
