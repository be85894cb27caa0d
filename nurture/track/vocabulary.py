"""The event vocabulary: every event type and source nurture records, and the value objects that cross the door.

Event types are plain strings, named once here and stored as they are in ``events.type``:

=======================  ======================================================================================
type                     meaning (effects: :mod:`nurture.track.record`)
=======================  ======================================================================================
``sent``                 a provider accepted the mail (SendGrid ``processed``); settles an ambiguous send
``delivered``            the receiving server took it
``deferred``             the receiving server said "later"; the provider retries
``bounced``              ``data["bounce"]`` is ``hard`` (permanent) or ``soft``
``dropped``              the provider refused to send to the address; ``data["suppress"]`` says as what
``complained``           the reader marked it as spam
``unsubscribed``         the reader unsubscribed (one-click POST, the page, the provider's link)
``opened``, ``clicked``  tracking hits, labelled human / machine / unknown (:mod:`nurture.track.botdetect`)
``paused``               the reader paused mail until ``data["paused_until"]``
``frequency_changed``    the reader asked for less mail: ``data["frequency_factor"]``
offline types            ``seminar_attended``, ``document_downloaded``, ``replied``, ``met``: imported from a file
``signed_up``            a person confirmed a subscription (double opt-in) on the sign-up form
``inquired``             a person asked to be contacted (the form's free text in ``data["text"]``): a handoff
``postal_mailed``        a postal newsletter was mailed to the prospect (``data["batch"]``)
``postal_returned``      a postal newsletter came back undeliverable (宛先不明): suppresses post for the address
``won``                  a deal was won (``nurture prospects won``): ``data["amount"]``, ``data["term"]`` short|long
``referred``             the prospect (a client) referred someone: ``data["referred"]`` (the address)
``unknown``              a provider event nurture has no meaning for; the raw payload is in ``data["raw"]``
=======================  ======================================================================================

:class:`Source` names where an event came from (``events.source``). :class:`NewEvent` is what a source hands to
:func:`nurture.track.record.record_events`; :class:`Recorded` is what that call did. This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

SENT = "sent"
DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"
DROPPED = "dropped"
COMPLAINED = "complained"
UNSUBSCRIBED = "unsubscribed"
OPENED = "opened"
CLICKED = "clicked"
PAUSED = "paused"
FREQUENCY_CHANGED = "frequency_changed"
SEMINAR_ATTENDED = "seminar_attended"
DOCUMENT_DOWNLOADED = "document_downloaded"
REPLIED = "replied"
MET = "met"
SIGNED_UP = "signed_up"
INQUIRED = "inquired"
POSTAL_MAILED = "postal_mailed"
POSTAL_RETURNED = "postal_returned"
WON = "won"
REFERRED = "referred"
#: A provider event nurture has no meaning for; the raw payload is in ``data["raw"]``.
UNKNOWN = "unknown"

#: What people do outside mail, recorded by ``nurture events import``.
OFFLINE_TYPES = (SEMINAR_ATTENDED, DOCUMENT_DOWNLOADED, REPLIED, MET)
TYPES = (
    SENT,
    DELIVERED,
    DEFERRED,
    BOUNCED,
    DROPPED,
    COMPLAINED,
    UNSUBSCRIBED,
    OPENED,
    CLICKED,
    PAUSED,
    FREQUENCY_CHANGED,
    *OFFLINE_TYPES,
    SIGNED_UP,
    INQUIRED,
    POSTAL_MAILED,
    POSTAL_RETURNED,
    WON,
    REFERRED,
    UNKNOWN,
)
#: Event -> the prospect status (and suppression reason) it implies.
SUPPRESSING = {UNSUBSCRIBED: "unsubscribed", COMPLAINED: "complained", BOUNCED: "bounced", DROPPED: "bounced"}


class Source(StrEnum):
    """Where an event came from (``events.source``). Members are ``str`` and stored as their value."""

    PIXEL = "pixel"  # the open pixel of the tracking server
    LINK = "link"  # a tracked link or the honeypot link
    WEB = "web"  # the unsubscribe and preferences pages
    SENDGRID = "sendgrid"  # SendGrid's Event Webhook
    IMPORT = "import"  # nurture events import
    SEND = "send"  # the sending engine (a provider refused the mail while sending)
    SMTP = "smtp"  # the sending engine, from an SMTP server's answer
    OPERATOR = "operator"  # a person at the command line (nurture suppress, nurture suppressions import)


SOURCES: tuple[Source, ...] = tuple(Source)


@dataclass(frozen=True)
class NewEvent:
    """An event to record. Give ``delivery_id`` when known (prospect, campaign and item are then filled from the
    delivery), else ``provider_message_id`` (SendGrid's message id prefix), else ``prospect_id``, else ``email``
    (suppression of an address nurture may not know as a prospect).

    Raises ValueError for a type not in :data:`TYPES` or a naive ``occurred_at``.
    """

    type: str
    occurred_at: datetime
    source: str
    delivery_id: int | None = None
    prospect_id: int | None = None
    provider_message_id: str = ""
    email: str = ""
    campaign: str = ""
    item_key: str = ""
    label: str = "unknown"
    confidence: float = 0.5
    rule: str = ""
    url: str = ""
    user_agent: str = ""
    ip: str = ""
    method: str = ""
    dedup_key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown event type {self.type!r}; one of {', '.join(TYPES)}")
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")


@dataclass
class Recorded:
    """What one :func:`~nurture.track.record.record_events` call did."""

    inserted: int = 0  # rows written to ``events``
    duplicates: int = 0  # events skipped because their ``dedup_key`` was already stored (or repeated)
    suppressed: int = 0  # new Suppression rows
    reconciled: int = 0  # ``unknown`` deliveries a provider event proved ``sent``
    relabelled: int = 0  # earlier events relabelled by a rule over several events
