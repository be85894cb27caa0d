"""Who a campaign is for: the ``[segment]`` table, checked against a whitelist, compiled to one SQL select.

A segment is a set of conditions on whitelisted prospect fields, all AND-ed::

    temperature = { in = ["warm", "cold"] }     industry = { in = ["製造業"] }      rank = { in = ["B", "C"] }
    stage = { not_in = ["lost"] }               owner = { eq = "山田" }            score = { gte = 0, lte = 79 }
    last_contact = { older_than = 30 }          tags = { has = "seminar-2026" }    company / title = { eq | in }

Only fields in :data:`FIELDS` with their listed operators are accepted, and values of vocabulary fields
(temperature, rank, stage) must be known values, so a typo is a ConfigError instead of an empty segment.
Field names map to columns here, never by string from the file, so the file cannot reach other columns.

:func:`segment_select` adds what every nurture mail needs (the prospect is *mailable*): status active,
consent on record, no suppression entry, not paused by the prospect; and, unless the segment says otherwise,
no pending next action (short-term prospects are followed by that action, SEEDS 000) and not a customer.
The result is one SELECT of ``prospects.id``: set-based, so it holds at a million prospects; the caller
streams it (keyset on ``Prospect.id``) and never loads everyone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from nurture.core.tomlschema import KeyPath, Problems, dotted
from nurture.store.models import RANKS, STAGES, TEMPERATURES, Prospect, ProspectTag, ProspectTopic
from nurture.store.suppression import not_suppressed

#: Operators and the kind of value each takes.
OPERATORS = {
    "eq": "text",
    "in": "list",
    "not_in": "list",
    "gte": "number",
    "lte": "number",
    "older_than": "days",
    "newer_than": "days",
    "has": "text",
    "has_any": "list",
    "has_none": "list",
    "has_all": "list",
}

_CHOICE_OPS = ("eq", "in", "not_in")


@dataclass(frozen=True)
class FieldSpec:
    """A whitelisted segment field: the operators it takes and, for vocabulary fields, the allowed values."""

    operators: tuple[str, ...]
    vocabulary: tuple[str, ...] | None = None


FIELDS: Mapping[str, FieldSpec] = {
    "temperature": FieldSpec(_CHOICE_OPS, TEMPERATURES),
    "rank": FieldSpec(_CHOICE_OPS, RANKS),
    "stage": FieldSpec(_CHOICE_OPS, STAGES),
    "industry": FieldSpec(_CHOICE_OPS),
    "owner": FieldSpec(_CHOICE_OPS),
    "score": FieldSpec(("gte", "lte")),
    "last_contact": FieldSpec(("older_than", "newer_than")),
    "tags": FieldSpec(("has", "has_any", "has_none", "has_all")),
    "company": FieldSpec(("eq", "in")),
    "title": FieldSpec(("eq", "in")),
}

_COLUMNS = {
    "temperature": Prospect.temperature,
    "rank": Prospect.rank,
    "stage": Prospect.stage,
    "industry": Prospect.industry,
    "owner": Prospect.owner,
    "score": Prospect.score,
    "company": Prospect.company,
    "title": Prospect.title,
}

FLAGS = ("include_pending_next_action", "include_customers")


@dataclass(frozen=True)
class Condition:
    """``field op value``; ``value`` is a str, a float, or a tuple of str. ``line`` is where it is written."""

    field: str
    op: str
    value: Any
    line: int | None = None

    def describe(self) -> str:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.field} {self.op} {value!r}"


@dataclass(frozen=True)
class Segment:
    """Checked conditions (AND-ed) plus the two default exclusions a segment may switch off."""

    conditions: tuple[Condition, ...] = ()
    include_pending_next_action: bool = False
    include_customers: bool = False
    #: The campaign's ``topic`` ("" = none), set by the campaign loader: see :func:`topic_clause`.
    topic: str = ""

    def values(self, field: str, op: str) -> tuple[str, ...] | None:
        """The values of ``field op`` as a tuple (``eq`` gives one), or None when there is no such condition."""
        for c in self.conditions:
            if c.field == field and c.op == op:
                return c.value if isinstance(c.value, tuple) else (c.value,)
        return None


# ---------------------------------------------------------------------------------------------- parsing


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return f' (did you mean "{lowered[word.lower()]}"?)'
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _check_value(field: str, op: str, value: Any, path: KeyPath, problems: Problems) -> Any:
    kind = OPERATORS[op]
    where = dotted(path)
    if kind in ("number", "days"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(path, f"{where} must be a number, got {value!r}")
            return None
        if kind == "days" and value < 0:
            problems.add(path, f"{where} is a number of days and cannot be negative")
            return None
        return float(value)
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            problems.add(path, f'{where} must be a non-empty string, e.g. {op} = "…"')
            return None
        values = (value,)
    else:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            problems.add(path, f'{where} must be a non-empty array of strings, e.g. {op} = ["…", "…"]')
            return None
        values = tuple(value)
    vocabulary = FIELDS[field].vocabulary
    if vocabulary:
        for v in values:
            if v not in vocabulary:
                problems.add(
                    path,
                    f'{where}: "{v}" is not a known {field}{_suggest(v, vocabulary)}; '
                    f"use one of: {', '.join(vocabulary)}",
                )
                return None
    return value if kind == "text" else values


def parse_segment(table: Any, problems: Problems, path: KeyPath = ("segment",)) -> Segment:
    """Check a ``[segment]`` table and return the :class:`Segment`; every mistake is added to ``problems``
    (unknown field or operator with a suggestion, an operator that does not apply to the field, values outside
    a vocabulary, empty ranges, a stage condition that selects customers while customers are excluded)."""
    if not isinstance(table, dict):
        problems.add(path, f"[{dotted(path)}] must be a table")
        return Segment()
    conditions: list[Condition] = []
    flags: dict[str, Any] = {}  # the two booleans of FLAGS
    for key, spec in table.items():
        here = path + (key,)
        line = problems.source.line_of(here) if problems.source else None
        if key in FLAGS:
            if not isinstance(spec, bool):
                problems.add(here, f"{dotted(here)} must be true or false")
            else:
                flags[key] = spec
            continue
        if key not in FIELDS:
            tip = (
                _suggest(key, list(FIELDS) + list(FLAGS))
                or f" in [segment]; segment fields are: {', '.join(FIELDS)}, {', '.join(FLAGS)}"
            )
            problems.add(here, f'unknown key "{key}"{tip}')
            continue
        allowed = FIELDS[key].operators
        if not isinstance(spec, dict) or not spec:
            example = {
                "eq": '{ eq = "…" }',
                "gte": "{ gte = 0, lte = 79 }",
                "older_than": "{ older_than = 30 }",
                "has": '{ has = "seminar-2026" }',
            }[allowed[0]]
            problems.add(here, f"{dotted(here)} must be a table of operator = value, e.g. {key} = {example}")
            continue
        for op, value in spec.items():
            at = here + (op,)
            if op not in OPERATORS:
                problems.add(
                    at, f'unknown operator "{op}" for {key}{_suggest(op, allowed)}; {key} takes: {", ".join(allowed)}'
                )
                continue
            if op not in allowed:
                problems.add(at, f'operator "{op}" does not apply to {key}; {key} takes: {", ".join(allowed)}')
                continue
            checked = _check_value(key, op, value, at, problems)
            if checked is not None:
                conditions.append(Condition(key, op, checked, line))
    segment = Segment(tuple(conditions), **flags)
    _check_consistency(segment, table, problems, path)
    return segment


def _check_consistency(segment: Segment, table: dict, problems: Problems, path: KeyPath) -> None:
    low, high = segment.values("score", "gte"), segment.values("score", "lte")
    if low and high and float(low[0]) > float(high[0]):
        problems.add(
            path + ("score",), f"segment.score: gte {low[0]:g} is above lte {high[0]:g}; no prospect can match"
        )
    older, newer = segment.values("last_contact", "older_than"), segment.values("last_contact", "newer_than")
    if older and newer and float(newer[0]) <= float(older[0]):
        problems.add(
            path + ("last_contact",),
            f"segment.last_contact: newer_than {newer[0]:g} with older_than {older[0]:g} matches nothing; "
            "newer_than must be the larger number of days (e.g. older_than = 30, newer_than = 365)",
        )
    if not segment.include_customers:
        chosen = (segment.values("stage", "eq") or ()) + (segment.values("stage", "in") or ())
        if chosen and "customer" in chosen:
            problems.add(
                path + ("stage",),
                'segment.stage selects "customer" but customers are excluded by default; '
                "add include_customers = true to [segment]",
            )
    for field in ("industry", "owner", "temperature", "rank", "stage", "company", "title"):
        inside = set((segment.values(field, "eq") or ()) + (segment.values(field, "in") or ()))
        outside = set(segment.values(field, "not_in") or ())
        if inside and inside <= outside:
            problems.add(
                path + (field,), f"segment.{field}: every value chosen is also in not_in; no prospect can match"
            )


# ---------------------------------------------------------------------------------------------- SQL


def mailable_clauses(now: datetime) -> list[ColumnElement[bool]]:
    """Conditions every nurture recipient meets: active, consent on record, not paused (see also
    :func:`not_suppressed`, kept apart so that it can come last)."""
    return [
        Prospect.status == "active",
        Prospect.consent_basis != "unknown",
        or_(Prospect.paused_until.is_(None), Prospect.paused_until <= now),
    ]


def _tag_exists(tags: tuple[str, ...]) -> ColumnElement[bool]:
    return exists().where(ProspectTag.prospect_id == Prospect.id, ProspectTag.tag.in_(tags))


def condition_clause(condition: Condition, now: datetime) -> ColumnElement[bool]:
    """One condition as SQL. ``last_contact older_than N`` also matches prospects never contacted."""
    field, op, value = condition.field, condition.op, condition.value
    if field == "last_contact":
        cutoff = now - timedelta(days=float(value))
        if op == "older_than":
            return or_(Prospect.last_contact_at.is_(None), Prospect.last_contact_at < cutoff)
        return Prospect.last_contact_at >= cutoff
    if field == "tags":
        if op == "has":
            return _tag_exists((value,))
        if op == "has_any":
            return _tag_exists(value)
        if op == "has_none":
            return ~_tag_exists(value)
        return and_(*(_tag_exists((tag,)) for tag in value))  # has_all
    column = _COLUMNS[field]
    if op == "eq":
        return column == value
    if op == "in":
        return column.in_(value)
    if op == "not_in":
        return column.not_in(value)
    if op == "gte":
        return column >= value
    if op == "lte":
        return column <= value
    raise ValueError(f"segment operator {op!r} reached SQL unchecked")  # parse_segment rejects it first


def topic_clause(topic: str) -> ColumnElement[bool]:
    """Prospects who may get mail on ``topic``: those who chose it, and those who never chose any topic (imported
    people, whose consent is not per topic). Someone who chose other topics only, or unsubscribed from this one,
    is left out (:class:`~nurture.store.models.ProspectTopic`)."""
    # One NOT EXISTS whose inner query correlates only with its own row (``mine.prospect_id``), so PostgreSQL
    # plans it as an anti-join. The plain form, chosen OR (NOT chose_any AND NOT refused), became per-row subplans
    # that did not finish in 400 s at 200,000 prospects (bench/topics.py).
    row, mine = aliased(ProspectTopic), aliased(ProspectTopic)
    has_topic = exists().where(mine.prospect_id == row.prospect_id, mine.topic == topic, mine.subscribed.is_(True))
    excluding = or_(
        and_(row.topic == topic, row.subscribed.is_(False)),  # turned this topic off
        and_(row.subscribed.is_(True), row.topic != topic, ~has_topic),  # chose other topics, not this one
    )
    return ~exists().where(row.prospect_id == Prospect.id, excluding)


def labeled_segment_clauses(segment: Segment, now: datetime) -> list[tuple[str, ColumnElement[bool]]]:
    """:func:`segment_clauses`, each with what it says in words (for "why does no campaign select X")."""
    clauses = [(c.describe(), condition_clause(c, now)) for c in segment.conditions]
    if segment.topic:
        clauses.append((f"topic {segment.topic}", topic_clause(segment.topic)))
    if not segment.include_pending_next_action:
        # A next action (text or due date) makes the prospect short-term: followed by that action (SEEDS 000).
        clauses.append(
            (
                "pending next action",
                and_(func.coalesce(Prospect.next_action, "") == "", Prospect.next_action_due.is_(None)),
            )
        )
    if not segment.include_customers:
        clauses.append(("customer", Prospect.stage != "customer"))
    return clauses


def segment_clauses(segment: Segment, now: datetime) -> list[ColumnElement[bool]]:
    """The segment's own conditions plus its default exclusions (no next action, no customers)."""
    return [clause for _, clause in labeled_segment_clauses(segment, now)]


def language_clause(language: str, default_language: str) -> ColumnElement[bool]:
    """Prospects who read ``language`` (``ja`` also matches ``ja-JP``); a prospect without a language is read as
    ``default_language`` (the workspace's, ``[workspace] language``), so an English campaign does not select a
    Japanese prospect whose language was never recorded."""
    column = func.coalesce(Prospect.language, "")
    own = or_(column == language, column.like(f"{language}-%"))
    return or_(own, column == "") if language == default_language else own


def labeled_campaign_clauses(
    campaign: Any, now: datetime, default_language: str | None
) -> list[tuple[str, ColumnElement[bool]]]:
    """:func:`labeled_segment_clauses` of a campaign plus its language (:func:`language_clause`;
    ``default_language`` None: no language condition, as for a bare Segment)."""
    segment = campaign if isinstance(campaign, Segment) else campaign.segment
    clauses = labeled_segment_clauses(segment, now)
    if default_language is not None and not isinstance(campaign, Segment):
        clauses.append((f"language {campaign.language}", language_clause(campaign.language, default_language)))
    return clauses


def campaign_clauses(campaign: Any, now: datetime, default_language: str | None) -> list[ColumnElement[bool]]:
    """The clauses of :func:`labeled_campaign_clauses`: who the campaign selects (before mailability)."""
    return [clause for _, clause in labeled_campaign_clauses(campaign, now, default_language)]


def segment_select(campaign: Any, now: datetime, default_language: str | None = None) -> Select:
    """``SELECT prospects.id`` of the mailable members of ``campaign`` (a Campaign, or a bare Segment) at ``now``;
    with ``default_language`` (``config.workspace.language``) a Campaign also selects by its language.

    One statement, portable between SQLite and PostgreSQL, unordered: add ``.order_by(Prospect.id)`` and a
    keyset ``.where(Prospect.id > last_id)`` to stream it in batches.
    """
    clauses = campaign_clauses(campaign, now, default_language)
    return select(Prospect.id).where(*mailable_clauses(now), *clauses, not_suppressed())


def status_text(status: str, reason: str | None) -> str:
    """``unsubscribed (web)``: a prospect's status with its reason said once. Recorded reasons may repeat
    the status and name the event's source and type (``unsubscribed (web:unsubscribed)``): the status is
    not repeated and the source alone is kept."""
    if not reason:
        return status
    text = reason if reason.startswith(status) else f"{status} ({reason})"
    return re.sub(r"\(([a-z0-9_.-]+):[a-z_]+\)", r"(\1)", text)


def mailable_reason(prospect: Prospect, now: datetime, *, suppression: str | None = None) -> str | None:
    """Why this prospect may not be mailed at all (None: mailable) — the per-row twin of :func:`mailable_clauses`
    for dry-run output. ``suppression`` is the reason from
    :func:`nurture.store.suppression.suppression_reasons` when the caller looked."""
    if prospect.status != "active":
        return status_text(prospect.status, prospect.status_reason)
    if (prospect.consent_basis or "unknown") == "unknown":
        return "no consent on record (consent_basis unknown)"
    if suppression:
        return f"suppressed ({suppression})"
    if prospect.paused_until is not None and prospect.paused_until > now:
        return f"paused by the prospect until {prospect.paused_until.date().isoformat()}"
    return None
