"""The database tables (SQLAlchemy 2.x). Migrations in ``nurture/migrations`` create them; keep both in step
(``tests/store/test_config_db.py`` compares the migrated schema with these models).

Conventions:
- every instant is stored as UTC and comes back timezone-aware (:class:`UTCDateTime`);
- e-mail addresses are stored lower-cased, so uniqueness is case-insensitive on every database;
- vocabularies (temperature, stage, status, delivery state, event type) are plain strings checked in Python,
  named once in the constants below, so that a new value needs no schema change.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nurture.store.states import DeliveryState

TEMPERATURES = ("hot", "warm", "cold")
STAGES = ("MQL", "TQL", "SQL", "customer", "lost")
RANKS = ("A", "B", "C")
STATUSES = ("active", "unsubscribed", "bounced", "complained", "erased")
CONSENT_BASES = ("opt_in", "business_card", "existing_relationship", "published_business_address", "unknown")
#: The six relationship strengths of SEEDS 002, each 0-3; column names are ``strength_<name>``.
STRENGTHS = ("existing_business", "empathy", "contribution", "multiple_contacts", "decision_maker", "invested")

#: Delivery states. ``pending``: to be sent (maybe claimed under a lease, maybe waiting for ``next_attempt_at``);
#: ``sent``: accepted by the provider; ``failed``: given up, ``error`` says why; ``skipped``: deliberately not
#: sent, ``error`` says why; ``unknown``: the provider may have accepted it (timeout) — reconciled from
#: webhooks, never resent blindly.
DELIVERY_STATES = tuple(DeliveryState)


class UTCDateTime(TypeDecorator):
    """DateTime that stores UTC and always returns aware datetimes (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use nurture.core.clock.now() or attach a zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

#: The rules whose machine verdict convicts the hit's source (``nurture.track.botdetect.CATCHING_RULES``; a test
#: keeps the two in step), as the predicate of the partial index ``ix_events_catchers``.
CATCHING_RULES = (
    "honeypot",
    "honeypot_clicker",
    "click_burst",
    "security_gateway",
    "gateway_network",
    "head_request",
    "sg_machine_open",
)
CATCHING_WHERE = "rule IN ({})".format(", ".join(f"'{r}'" for r in CATCHING_RULES))
#: The events the campaigns report's open rate looks up by delivery (ix_events_human_opens, 0016).
HUMAN_OPENS_WHERE = "type = 'opened' AND label = 'human'"
#: The deliveries that reached the recipient's server (sent, or unknown: accepted or not, counted as mailed), which
#: the leaks report joins by prospect and campaign (ix_deliveries_mailed, 0018).
MAILED_WHERE = "state IN ('sent', 'unknown')"


def email_hash(email: str) -> str:
    """The suppression key of an address: SHA-256 of the lower-cased address (GDPR erasure keeps only this)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class Base(DeclarativeBase):
    pass


class Prospect(Base):
    """One person we nurture. The four fields of SEEDS 001 (name, last contact, next action, temperature)
    are first-class columns; anything else from the user's spreadsheet goes to ``attributes``."""

    __tablename__ = "prospects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    industry: Mapped[str] = mapped_column(String(100), default="", index=True)
    temperature: Mapped[str] = mapped_column(String(8), default="cold", index=True)
    stage: Mapped[str] = mapped_column(String(16), default="MQL")
    rank: Mapped[str] = mapped_column(String(1), default="C")
    #: The lead score: ``score`` = ``fit_score`` (who they are) + ``engagement_score`` (what they did, decayed),
    #: kept by :mod:`nurture.score` in the same transaction as the events that change them (0005).
    score: Mapped[float] = mapped_column(Float, default=0.0)
    fit_score: Mapped[float] = mapped_column(Float, server_default="0")
    engagement_score: Mapped[float] = mapped_column(Float, server_default="0")
    #: When scoring last looked at this prospect (online or the decay pass): decay is computed from here.
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The colleague group scoring puts the prospect in (``nurture.score.model.company_key``; "" = none), written
    #: when the prospect is scored (0010).
    company_key: Mapped[str] = mapped_column(String(200), server_default="", index=True)
    #: Online scoring's running tally of the engagement (``nurture.score.model.Tally``, JSON; "" = none yet):
    #: a new event is added to it instead of folding all the prospect's events again (0015).
    score_state: Mapped[str] = mapped_column(Text, server_default="")
    owner: Mapped[str] = mapped_column(String(200), default="")
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_action: Mapped[str] = mapped_column(Text, default="")
    next_action_due: Mapped[date | None] = mapped_column(Date)
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str] = mapped_column(String(8), default="")
    attributes: Mapped[dict] = mapped_column(JSONType, default=dict)
    strength_existing_business: Mapped[int] = mapped_column(Integer, default=0)
    strength_empathy: Mapped[int] = mapped_column(Integer, default=0)
    strength_contribution: Mapped[int] = mapped_column(Integer, default=0)
    strength_multiple_contacts: Mapped[int] = mapped_column(Integer, default=0)
    strength_decision_maker: Mapped[int] = mapped_column(Integer, default=0)
    strength_invested: Mapped[int] = mapped_column(Integer, default=0)
    consent_basis: Mapped[str] = mapped_column(String(32), default="unknown")
    consent_source: Mapped[str] = mapped_column(String(200), default="")
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The postal address (0013): 郵便番号 as NNN-NNNN, 都道府県, 市区町村・番地, 建物名, 部署. Complete when the
    #: code, prefecture and address line are set (nurture.postal.addresses).
    postal_code: Mapped[str] = mapped_column(String(16), server_default="")
    prefecture: Mapped[str] = mapped_column(String(16), server_default="")
    address_line: Mapped[str] = mapped_column(String(300), server_default="")
    building: Mapped[str] = mapped_column(String(200), server_default="")
    department: Mapped[str] = mapped_column(String(200), server_default="")
    #: "" (post welcome), "opted_out" (asked for no post) or "returned" (宛先不明: a postal bounce, set by the
    #: ``postal_returned`` event). Either stops postal newsletters, not e-mail.
    postal_status: Mapped[str] = mapped_column(String(16), server_default="")
    #: Set from the preferences page: no nurture mail before this instant.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set from the preferences page: multiplies the campaign interval (1 = as planned, 2 = half as often).
    frequency_factor: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The planner's lower bound (0014, nurture.plan.due): no campaign is due for this prospect before it unless
    #: something about the prospect changes; NULL = unknown (planned at the next run). Triggers reset it to NULL
    #: when a column of :data:`PLAN_COLUMNS`, a tag, a topic choice or a delivery's fate changes.
    next_plan_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: The latest ``sent_at`` of this prospect's mailed deliveries (state sent or unknown); NULL when none has one.
    #: Kept by triggers on deliveries (0019), so every write path keeps it right; the leaks report reads it
    #: instead of joining a million prospects to their deliveries.
    last_mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


#: The prospect columns the planner reads (segments, mailability, cadence, item choice): changing one resets
#: ``next_plan_at`` (the triggers of migration 0014 list them). Not the scoring bookkeeping (fit/engagement score,
#: scored_at, company_key), the postal address or ``attributes``, which no segment can read.
PLAN_COLUMNS = (
    "email",
    "status",
    "consent_basis",
    "paused_until",
    "frequency_factor",
    "time_zone",
    "language",
    "temperature",
    "industry",
    "rank",
    "stage",
    "owner",
    "score",
    "company",
    "title",
    "last_contact_at",
    "next_action",
    "next_action_due",
)


class PlanState(Base):
    """What the planner remembers between runs (0014): ``fingerprint``, the rules the stored ``next_plan_at``
    times were computed under (nurture.plan.due). Removing a suppression deletes it (a trigger)."""

    __tablename__ = "plan_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProspectTag(Base):
    """Tags as rows, so that "has tag" is an indexed, portable join on SQLite and PostgreSQL alike."""

    __tablename__ = "prospect_tags"

    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_prospect_tags_tag", "tag"),)


class Suppression(Base):
    """Addresses never to mail, keyed by :func:`email_hash` so an erased person leaves no address behind.
    Import and send both consult it; it outlives the prospect row."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))  # unsubscribed | bounced | complained | erased | manual
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """One mail: a (campaign, prospect, content item) triple, unique, so it can never be sent twice.

    Work is claimed by setting ``claimed_by`` and ``lease_until``; a claim whose lease has run out belongs
    to a dead process and may be taken again. ``attempts`` counts hand-overs to the provider.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign: Mapped[str] = mapped_column(String(100))
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(100))
    #: The mail's language (the campaign's ``language``), set when the row is planned; the tracking server's pages
    #: speak it. "" for rows planned before migration 0004. A server default (not a Python one), so that inserts
    #: that do not name it keep their compiled shape (db.Bulk).
    language: Mapped[str] = mapped_column(String(8), server_default="")
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    error: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(16), default="")
    message_id: Mapped[str] = mapped_column(String(255), default="")
    provider_message_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str] = mapped_column(String(100), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("campaign", "prospect_id", "item_key", name="uq_deliveries_campaign_prospect_item"),
        Index("ix_deliveries_state_next", "state", "next_attempt_at"),
        Index("ix_deliveries_state_id", "state", "id"),  # claims: next pending rows in id order (0003)
        Index("ix_deliveries_prospect_sent", "prospect_id", "sent_at"),
        # "Their last mail of this campaign" for a segment's members (leaks report, silent list): one index-only
        # probe per member instead of every delivery of the member from the heap (0018).
        Index(
            "ix_deliveries_mailed",
            "prospect_id",
            "campaign",
            "sent_at",
            sqlite_where=text(MAILED_WHERE),
            postgresql_where=text(MAILED_WHERE),
        ),
    )


class CampaignState(Base):
    """What nurture itself decided about a campaign (the file says what the marketer decided)."""

    __tablename__ = "campaign_states"

    campaign: Mapped[str] = mapped_column(String(100), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(Base):
    """Everything that happened to a prospect, from any source, written only by ``nurture.track.record_events()``.

    ``label`` (human / machine / unknown), ``confidence`` (0-1) and ``rule`` say how much a human was behind an
    open or click and which rule decided. ``dedup_key`` makes webhook retries and replays change nothing.
    ``data`` keeps the raw payload beside the normalised fields.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    prospect_id: Mapped[int | None] = mapped_column(ForeignKey("prospects.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    campaign: Mapped[str] = mapped_column(String(100), default="")
    item_key: Mapped[str] = mapped_column(String(100), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32), default="")
    label: Mapped[str] = mapped_column(String(8), default="unknown")
    confidence: Mapped[float] = mapped_column(Float, default=0.5)
    rule: Mapped[str] = mapped_column(String(64), default="")
    #: Set when a rule over several events (honeypot, click burst, a source caught as a scanner) relabelled this
    #: event after it was first stored; ``rule`` then names that rule (0005).
    relabeled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    url: Mapped[str] = mapped_column(Text, default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    data: Mapped[dict] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        Index("ix_events_prospect_time", "prospect_id", "occurred_at"),
        Index("ix_events_delivery", "delivery_id"),
        Index("ix_events_type_time", "type", "occurred_at"),
        # Online scoring counts a prospect's events that can count (type, label, confidence) with each event it
        # scores: this index answers that without reading the rows (0015).
        Index("ix_events_prospect_scoring", "prospect_id", "type", "label", "confidence"),
        # The hits that convict their source (track.botdetect.CATCHING_RULES), read by every batch of tracking
        # hits: a partial index keeps that read to the few such rows instead of every hit in the window (0005).
        Index(
            "ix_events_catchers",
            "prospect_id",
            "occurred_at",
            sqlite_where=text(CATCHING_WHERE),
            postgresql_where=text(CATCHING_WHERE),
        ),
        # "Was this mail opened by a person before t?" for each mail of a period (report campaigns' open rate):
        # one index-only probe per mail instead of every event of the mail from the heap (0016).
        Index(
            "ix_events_human_opens",
            "delivery_id",
            "occurred_at",
            sqlite_where=text(HUMAN_OPENS_WHERE),
            postgresql_where=text(HUMAN_OPENS_WHERE),
        ),
    )


class ScoreChange(Base):
    """One change of a prospect's rank, temperature or stage, and why (written only by :mod:`nurture.score`).

    The seam between scoring and everything that reads its history (``prospects show``, the reports, the handoff
    to sales): a row is written in the same transaction as the events or the decay pass that caused it, so the
    history never disagrees with the prospect row. ``event_ids`` lists the events that moved the score since the
    previous change of this field (empty for ``cause = "decay"``); ``rules`` the rule names that gave points;
    ``explanation`` says it in the prospect's language (e.g. ``C→B: 2 human clicks on "…" (+12); 7 machine opens
    ignored``) and ``details`` keeps the same facts structured (counts per type and label, points per rule,
    campaigns and items) for reports.
    """

    __tablename__ = "score_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(16))  # rank | temperature | stage
    old: Mapped[str] = mapped_column(String(16), default="")
    new: Mapped[str] = mapped_column(String(16), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    cause: Mapped[str] = mapped_column(String(16), default="events")  # events | decay | rules | manual
    score_before: Mapped[float] = mapped_column(Float, default=0.0)
    score_after: Mapped[float] = mapped_column(Float, default=0.0)
    event_ids: Mapped[list] = mapped_column(JSONType, default=list)
    rules: Mapped[list] = mapped_column(JSONType, default=list)
    explanation: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        Index("ix_score_changes_prospect_at", "prospect_id", "at"),
        Index("ix_score_changes_at", "at"),
    )


class Handoff(Base):
    """A prospect handed to sales: made once per crossing to rank A or stage SQL (``change_id``, unique), or at
    once for an inquiry (``event_id``, unique). Its notice to the owner is an outbox row: ``notice_due_at`` is
    when the next attempt is due (NULL once delivered), so a notice that cannot be delivered is retried and never
    lost. ``state``: open -> acknowledged | rejected; ``escalated_at`` is set once when nobody acknowledged in
    time."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(16))  # rank_A | stage_SQL | inquiry
    change_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("score_changes.id", ondelete="SET NULL"), unique=True
    )
    event_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("events.id", ondelete="SET NULL"), unique=True
    )
    owner: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | acknowledged | rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notice_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notice_error: Mapped[str] = mapped_column(Text, default="")
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    verdict_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_handoffs_state_created", "state", "created_at"),
        Index("ix_handoffs_notice_due", "notice_due_at"),
        Index("ix_handoffs_prospect", "prospect_id"),
    )


class ProspectTopic(Base):
    """A prospect's choice about one campaign topic (``topic = "..."`` in a campaign file), from the sign-up form
    or the preferences page (0012). No rows: the prospect never chose (an import) and gets every topic their
    consent covers; any row with ``subscribed`` true: only those topics. ``subscribed`` false keeps the refusal
    (unsubscribing from one topic keeps the others)."""

    __tablename__ = "prospect_topics"

    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Where the choice was made: ``form:<id>``, ``preferences``, ``operator``.
    source: Mapped[str] = mapped_column(String(200), default="")


class PendingSubscription(Base):
    """A sign-up waiting for its confirmation click (double opt-in, 0012). One open row per address
    (``email_hash`` unique): a repeated sign-up updates it instead of adding another. ``nonce`` is signed into the
    confirmation link; ``confirmed_at`` set makes the link single use. ``fields`` holds what the form sent (name,
    company, title, industry, topics, text, language); the proof (IP, user agent, wording shown) is kept for the
    consent record made at confirmation."""

    __tablename__ = "pending_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    form_id: Mapped[str] = mapped_column(String(100), default="")
    fields: Mapped[dict] = mapped_column(JSONType, default=dict)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")
    wording: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the last confirmation mail was sent (re-sends wait ``[subscribe] resend_minutes``); ``sends`` counts them.
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_pending_subscriptions_expires", "expires_at"),)


class ConsentRecord(Base):
    """How and when an address consented (特定電子メール法: keep the record; GDPR Art. 7(1): be able to prove it),
    0012. Append-only: a new consent adds a row, the prospect's ``consent_*`` columns say which one is current.
    ``source_kind``: form | import | operator; ``source``: the form id, ``file:row``, or the operator. ``email`` is
    kept beside ``prospect_id`` so the record outlives a deleted prospect row (erasure blanks it)."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prospect_id: Mapped[int | None] = mapped_column(ForeignKey("prospects.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320))
    basis: Mapped[str] = mapped_column(String(32))
    #: When consent was given (the form's submission; the card's date ...).
    given_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source_kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(300), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")
    #: The exact consent wording the person was shown (and ticked).
    wording: Mapped[str] = mapped_column(Text, default="")
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    topics: Mapped[list] = mapped_column(JSONType, default=list)
    language: Mapped[str] = mapped_column(String(8), default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_consent_records_prospect", "prospect_id"),
        Index("ix_consent_records_email", "email"),
        Index("ix_consent_records_given", "given_at"),
    )


class PostalBatch(Base):
    """One printing of a postal campaign (``nurture postal run``): the recipients were chosen and the labels, the
    vendor CSV and the issue written; ``mailed_on`` is set by ``nurture postal mailed`` (until then nobody in
    the batch counts as reached, and they are not chosen again)."""

    __tablename__ = "postal_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    mailed_on: Mapped[date | None] = mapped_column(Date)
    out_dir: Mapped[str] = mapped_column(Text, default="")


class PostalRecipient(Base):
    """One addressee of a batch with the address as printed (a snapshot: later edits do not change what was
    mailed). ``code`` (e.g. ``P12-0034``) is printed small on the label and in the vendor CSV, so returned mail
    is matched back without guessing. ``delivery_id`` links the touch recorded when the batch is mailed."""

    __tablename__ = "postal_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("postal_batches.id", ondelete="CASCADE"))
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    address: Mapped[dict] = mapped_column(JSONType, default=dict)
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("batch_id", "prospect_id", name="uq_postal_recipients_batch_prospect"),
        Index("ix_postal_recipients_prospect", "prospect_id"),
    )
