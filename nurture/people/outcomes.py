"""What nurture is for, recorded: a deal won (:func:`record_win`) and a referral by a client
(:func:`record_referral`). Both are events (``won``, ``referred``) written through
:func:`nurture.track.record_events`, with a ``dedup_key`` so that running the same command twice records once.

A win remembers whether the prospect was *short-term* (a next action with a due date was pending: followed by
that action) or *long-term* (no next action: the nurture problem) at that moment, as SEEDS 001 defines them,
so the conversion report can tell the two apart years later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from nurture.core import clock
from nurture.core.errors import InputError
from nurture.people.queries import address_key, find_prospect
from nurture.track import NewEvent, record_events
from nurture.track.vocabulary import REFERRED, WON


@dataclass(frozen=True)
class Recorded:
    email: str
    recorded: bool  # False: the same win/referral was already on record
    detail: str


def _instant(day: date | None, zone: str) -> datetime:
    if day is None:
        return clock.now()
    moment = datetime.combine(day, time(12, 0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    if moment > clock.now():
        raise InputError(f"--date {day.isoformat()} is in the future", hint="give the day the deal was won")
    return moment


def record_win(
    engine: Engine,
    email: str,
    *,
    day: date | None = None,
    amount: float | None = None,
    note: str = "",
    zone: str = "UTC",
) -> Recorded:
    """Record that ``email`` was won on ``day`` (default today) for ``amount`` (optional, >= 0).
    NotFound for an unknown address; InputError for a negative amount or a future date."""
    if amount is not None and amount < 0:
        raise InputError(f"--amount {amount:g} is negative", hint="give the order value, e.g. --amount 1200000")
    prospect = find_prospect(engine, email)
    when = _instant(day, zone)
    term = "short" if (prospect.next_action_due is not None or (prospect.next_action or "").strip()) else "long"
    data = {"amount": amount, "term": term, "note": note}
    result = record_events(
        engine,
        [
            NewEvent(
                WON,
                when,
                "import",
                prospect_id=prospect.id,
                dedup_key=f"won:{prospect.id}:{when.date().isoformat()}",
                data=data,
            )
        ],
    )
    return Recorded(prospect.email, result.inserted == 1, f"{term}-term, {when.date().isoformat()}")


def record_referral(
    engine: Engine, client: str, referred: str, *, day: date | None = None, note: str = "", zone: str = "UTC"
) -> Recorded:
    """Record that the client ``client`` (a prospect) referred ``referred`` (any address: the new contact need
    not be a prospect yet). NotFound for an unknown client; InputError for a referral to oneself."""
    prospect = find_prospect(engine, client)
    target = address_key(referred)
    if "@" not in target:
        raise InputError(f"referred address {referred!r} is not an e-mail address", hint="e.g. sato@example.co.jp")
    if target == prospect.email:
        raise InputError(f"{client} cannot refer themselves", hint="give the address of the person they referred")
    when = _instant(day, zone)
    result = record_events(
        engine,
        [
            NewEvent(
                REFERRED,
                when,
                "import",
                prospect_id=prospect.id,
                dedup_key=f"referred:{prospect.id}:{target}",
                data={"referred": target, "note": note},
            )
        ],
    )
    return Recorded(prospect.email, result.inserted == 1, f"referred {target}")
