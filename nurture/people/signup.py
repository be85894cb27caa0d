"""Sign-up with double opt-in: a form's sign-up waits in ``pending_subscriptions`` until the person clicks the
confirmation link; only the click makes the prospect active (and takes the address off the suppression list).

:func:`request_signup` decides whether a confirmation mail goes out now; it never says to the caller's visitor
whether the address was known (the page is the same either way). :func:`confirm_signup` is the click: in one
transaction it marks the pending row used (single use), creates or re-activates the prospect with consent basis
``opt_in``, sets the topics chosen (and refuses the ones offered but not chosen: consent for exactly those topics),
removes a suppression entry, and appends the consent record. Then it records ``signed_up`` (and ``inquired`` when
the "contact me" text was filled) through :func:`nurture.track.record_events`, the one door for events; scoring
makes the inquiry's handoff from that event.

:func:`set_topic` is the preferences page's topic switch. No function here sends mail or knows about HTTP.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from nurture.core import clock
from nurture.people.consent import Consent, add_consent
from nurture.people.queries import address_key
from nurture.store import db
from nurture.store.models import PendingSubscription, Prospect, ProspectTopic, Suppression, email_hash
from nurture.track import NewEvent, Source, record_events
from nurture.track.vocabulary import INQUIRED, SIGNED_UP

log = logging.getLogger(__name__)

#: What the form's fields may hold at most (characters); longer input is cut, never refused.
LIMITS = {"name": 200, "company": 200, "title": 200, "industry": 100, "text": 2000}


@dataclass(frozen=True)
class SignUp:
    """One sign-up as the form sent it (already checked: a valid address, industry among the choices, topics among
    those offered). ``offered``: the topics the form showed; ``wording``: the consent text shown and ticked."""

    email: str
    language: str
    form_id: str
    wording: str
    name: str = ""
    company: str = ""
    title: str = ""
    industry: str = ""
    topics: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()
    text: str = ""
    ip: str = ""
    user_agent: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "name": self.name[: LIMITS["name"]],
            "company": self.company[: LIMITS["company"]],
            "title": self.title[: LIMITS["title"]],
            "industry": self.industry[: LIMITS["industry"]],
            "topics": list(self.topics),
            "offered": list(self.offered),
            "text": self.text[: LIMITS["text"]],
            "language": self.language,
        }


@dataclass(frozen=True)
class Requested:
    """What :func:`request_signup` decided. ``send``: mail the confirmation link for (``pending_id``, ``nonce``)
    now. ``outcome``: ``new`` | ``resend`` | ``too_soon`` (a mail went out less than the window ago) | ``active``
    (the address is already an active, consenting prospect: no mail; ``inquiry_recorded`` if its text was
    recorded at once)."""

    outcome: str
    send: bool = False
    pending_id: int = 0
    nonce: str = ""
    inquiry_recorded: bool = False


@dataclass(frozen=True)
class Confirmed:
    """What a confirmation click did. ``outcome``: ``confirmed`` | ``already`` (the link was used before) |
    ``expired`` | ``invalid`` (no such pending sign-up, or the nonce does not match)."""

    outcome: str
    prospect_id: int = 0
    email: str = ""
    language: str = ""
    topics: tuple[str, ...] = field(default_factory=tuple)


def _active_prospect(conn: Connection, key: str) -> Any:
    return conn.execute(
        select(Prospect.id, Prospect.status, Prospect.consent_basis).where(Prospect.email == key)
    ).first()


def _is_suppressed(conn: Connection, key: str) -> bool:
    return (
        conn.execute(select(Suppression.email_hash).where(Suppression.email_hash == email_hash(key))).first()
        is not None
    )


def request_signup(engine: Engine, signup: SignUp, *, confirm_for: timedelta, resend_after: timedelta) -> Requested:
    """Keep ``signup`` as the address's one pending sign-up and say whether to mail the confirmation now.

    At most one confirmation mail per address per ``resend_after`` (the last one's time is kept in the row, so
    this holds across server processes and restarts); the link works for ``confirm_for`` after the last mail. A
    repeated sign-up replaces the pending fields (the latest form wins) and keeps the nonce while the link is
    still valid, so a mail sent earlier still works. An address that is already an active prospect with consent
    on record (and not suppressed) gets no mail; a "contact me" text from it is recorded as an inquiry at once.
    """
    key = address_key(signup.email)
    now = clock.now()
    with engine.connect() as conn:
        known = _active_prospect(conn, key)
        suppressed = _is_suppressed(conn, key)
    if known is not None and known.status == "active" and known.consent_basis != "unknown" and not suppressed:
        recorded = False
        if signup.text.strip():
            record_events(engine, [_inquiry(known.id, signup, now, confirmed=False)])
            recorded = True
        return Requested("active", inquiry_recorded=recorded)
    for _attempt in range(2):  # a concurrent first sign-up for the same address: the second try updates its row
        try:
            return _upsert_pending(engine, key, signup, now, confirm_for, resend_after)
        except IntegrityError:
            continue
    return Requested("too_soon")


def _upsert_pending(
    engine: Engine, key: str, signup: SignUp, now: datetime, confirm_for: timedelta, resend_after: timedelta
) -> Requested:
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        row = conn.execute(
            select(PendingSubscription).where(PendingSubscription.email_hash == email_hash(key)).with_for_update()
        ).first()
        values = {
            "email": key,
            "form_id": signup.form_id[:100],
            "fields": signup.fields(),
            "ip": signup.ip[:64],
            "user_agent": signup.user_agent[:2000],
            "wording": signup.wording,
        }
        if row is None:
            nonce = secrets.token_urlsafe(16)
            pending_id = conn.execute(
                insert(PendingSubscription)
                .values(
                    email_hash=email_hash(key),
                    nonce=nonce,
                    created_at=now,
                    expires_at=now + confirm_for,
                    last_sent_at=now,
                    sends=1,
                    **values,
                )
                .returning(PendingSubscription.id)
            ).scalar_one()
            return Requested("new", send=True, pending_id=pending_id, nonce=nonce)
        # The mail bomb guard: whatever happened to the old row, no second mail within the window.
        if row.last_sent_at is not None and now - row.last_sent_at < resend_after:
            if row.confirmed_at is None and row.expires_at > now:
                conn.execute(update(PendingSubscription).where(PendingSubscription.id == row.id).values(**values))
            return Requested("too_soon", pending_id=row.id)
        fresh = row.confirmed_at is not None or row.expires_at <= now
        nonce = secrets.token_urlsafe(16) if fresh else row.nonce
        conn.execute(
            update(PendingSubscription)
            .where(PendingSubscription.id == row.id)
            .values(
                nonce=nonce,
                created_at=now if fresh else row.created_at,
                confirmed_at=None,
                expires_at=now + confirm_for,
                last_sent_at=now,
                sends=row.sends + 1,
                **values,
            )
        )
        return Requested("new" if fresh else "resend", send=True, pending_id=row.id, nonce=nonce)


def pending_for(engine: Engine, pending_id: int, nonce: str) -> tuple[str, Any] | None:
    """(outcome, row) for a confirmation link without changing anything (the GET page): ``ok``, ``already``,
    ``expired``; None for no such row or a wrong nonce."""
    with engine.connect() as conn:
        row = conn.execute(select(PendingSubscription).where(PendingSubscription.id == pending_id)).first()
    if row is None or not hmac.compare_digest(row.nonce.encode(), nonce.encode()):
        return None
    if row.confirmed_at is not None:
        return "already", row
    if row.expires_at <= clock.now():
        return "expired", row
    return "ok", row


def confirm_signup(engine: Engine, pending_id: int, nonce: str) -> Confirmed:
    """The confirmation click (see the module docstring). Single use: a second click, or two at once, confirm once;
    the later ones get ``already``."""
    now = clock.now()
    with db.transaction(engine, immediate=True) as session:
        conn = session.connection()
        row = conn.execute(
            select(PendingSubscription).where(PendingSubscription.id == pending_id).with_for_update()
        ).first()
        if row is None or not hmac.compare_digest(row.nonce.encode(), nonce.encode()):
            return Confirmed("invalid")
        fields = dict(row.fields or {})
        language = str(fields.get("language", ""))
        if row.confirmed_at is not None:
            return Confirmed("already", email=row.email, language=language)
        if row.expires_at <= now:
            return Confirmed("expired", email=row.email, language=language)
        conn.execute(update(PendingSubscription).where(PendingSubscription.id == row.id).values(confirmed_at=now))
        source = f"form:{row.form_id}"
        prospect_id = _activate(conn, row.email, fields, source, now)
        topics = tuple(str(t) for t in fields.get("topics", []))
        offered = tuple(str(t) for t in fields.get("offered", []))
        for topic in dict.fromkeys(offered + topics):
            _set_topic(conn, prospect_id, topic, topic in topics, source, now)
        conn.execute(delete(Suppression).where(Suppression.email_hash == email_hash(row.email)))
        add_consent(
            conn,
            prospect_id,
            Consent(
                email=row.email,
                basis="opt_in",
                given_at=row.created_at,
                source_kind="form",
                source=row.form_id,
                ip=row.ip,
                user_agent=row.user_agent,
                wording=row.wording,
                confirmed_at=now,
                topics=topics,
                language=language,
            ),
        )
        signup = SignUp(
            email=row.email,
            language=language,
            form_id=row.form_id,
            wording=row.wording,
            text=str(fields.get("text", "")),
            ip=row.ip,
            user_agent=row.user_agent,
        )
    # After the commit: the events name a prospect that now exists. The dedup keys make a retry harmless.
    events = [
        NewEvent(
            SIGNED_UP,
            now,
            Source.WEB,
            prospect_id=prospect_id,
            ip=signup.ip,
            user_agent=signup.user_agent,
            dedup_key=f"signed_up:{pending_id}:{nonce}",
            data={"form": row.form_id, "topics": list(topics)},
        )
    ]
    if signup.text.strip():
        events.append(_inquiry(prospect_id, signup, now, confirmed=True, dedup=f"inquired:{pending_id}:{nonce}"))
    record_events(engine, events)
    return Confirmed("confirmed", prospect_id=prospect_id, email=row.email, language=language, topics=topics)


def _inquiry(prospect_id: int, signup: SignUp, now: datetime, *, confirmed: bool, dedup: str | None = None) -> NewEvent:
    return NewEvent(
        INQUIRED,
        now,
        Source.WEB,
        prospect_id=prospect_id,
        ip=signup.ip,
        user_agent=signup.user_agent,
        dedup_key=dedup,
        data={"text": signup.text[: LIMITS["text"]], "form": signup.form_id, "address_confirmed": confirmed},
    )


def _activate(conn: Connection, email: str, fields: dict[str, Any], source: str, now: datetime) -> int:
    """The prospect for ``email``, created or made active with consent ``opt_in`` from ``source``. Fields the
    person typed fill blanks only: what the operator keeps about a known prospect is not overwritten by a form."""
    current = conn.execute(select(Prospect).where(Prospect.email == email)).first()
    given = {k: str(fields.get(k, ""))[: LIMITS[k]] for k in ("name", "company", "title", "industry")}
    language = str(fields.get("language", ""))[:8]
    consent = {"consent_basis": "opt_in", "consent_source": source, "consent_at": now}
    if current is None:
        return int(
            conn.execute(
                insert(Prospect)
                .values(
                    email=email,
                    language=language,
                    status="active",
                    status_reason=f"signed up ({source})",
                    status_changed_at=now,
                    created_at=now,
                    updated_at=now,
                    attributes={},
                    **given,
                    **consent,
                )
                .returning(Prospect.id)
            ).scalar_one()
        )
    changes: dict[str, Any] = {k: v for k, v in given.items() if v and not getattr(current, k)}
    if language and not current.language:
        changes["language"] = language
    if current.status != "active":
        changes.update(status="active", status_reason=f"re-subscribed ({source})", status_changed_at=now)
    conn.execute(update(Prospect).where(Prospect.id == current.id).values(updated_at=now, **changes, **consent))
    return int(current.id)


def _set_topic(conn: Connection, prospect_id: int, topic: str, subscribed: bool, source: str, now: datetime) -> None:
    done = conn.execute(
        update(ProspectTopic)
        .where(ProspectTopic.prospect_id == prospect_id, ProspectTopic.topic == topic)
        .values(subscribed=subscribed, changed_at=now, source=source)
    ).rowcount
    if not done:
        conn.execute(
            insert(ProspectTopic).values(
                prospect_id=prospect_id, topic=topic[:100], subscribed=subscribed, changed_at=now, source=source
            )
        )


def set_topic(engine: Engine, prospect_id: int, topic: str, subscribed: bool, source: str = "preferences") -> None:
    """Subscribe ``prospect_id`` to ``topic`` or unsubscribe them from it; their other topics stay as they are."""
    with db.transaction(engine, immediate=True) as session:
        _set_topic(session.connection(), prospect_id, topic, subscribed, source, clock.now())


def topics_of(engine: Engine, prospect_id: int) -> dict[str, bool]:
    """``{topic: subscribed}`` for the topics ``prospect_id`` has chosen or refused (empty: never chose)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ProspectTopic.topic, ProspectTopic.subscribed).where(ProspectTopic.prospect_id == prospect_id)
        ).all()
    return {r.topic: bool(r.subscribed) for r in rows}


#: Pending sign-ups are deleted this long after their link expired: an unconfirmed address and what came with it
#: are not kept (data minimisation); a confirmed one lives on in the prospect and its consent record.
PURGE_AFTER = timedelta(days=7)


def purge_pending(engine: Engine) -> int:
    """Delete pending sign-ups whose link expired more than :data:`PURGE_AFTER` ago; how many. Safe in several
    processes at once (one DELETE)."""
    with db.transaction(engine) as session:
        done = session.connection().execute(
            delete(PendingSubscription).where(PendingSubscription.expires_at < clock.now() - PURGE_AFTER)
        )
    return int(done.rowcount or 0)
