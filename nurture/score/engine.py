"""Scoring against the database: :func:`rescore` (a few prospects, inside the caller's transaction: the online
path) and :func:`recompute` (everyone, in chunks: ``nurture score``, the decay pass and the dry run).

Both evaluate :mod:`nurture.score.model` on the same facts, so they agree exactly. Online, a prospect's
engagement comes from its stored running tally (:class:`~nurture.score.model.Tally`, ``prospects.score_state``)
when that holds all its other events, else from a fold of all its events; on PostgreSQL an event costs two
statements (:func:`_rescore_pg`: a locked read of the group with tallies and event counts, one write) and the
rules and decay passes are set-based (:func:`_recompute_pg`). What they write, in the same
transaction as the events (online) or per chunk (recompute):

- ``prospects``: ``fit_score``, ``engagement_score``, ``score``, ``rank``, ``temperature`` and ``stage`` (the
  last two unless ``[fields]`` says ``hand``), ``company_key``, ``scored_at``;
- a :class:`~nurture.store.models.ScoreChange` per changed rank / temperature / stage, with the events that moved
  the score since the prospect's previous change, the rule names and an explanation in its language;
- a :class:`~nurture.store.models.Handoff` per crossing to rank A or stage SQL (``change_id`` unique), and one
  per ``inquired`` event (``event_id`` unique), with ``notice_due_at`` = now for :mod:`nurture.notify`.

Concurrency: the prospect rows are locked (``FOR NO KEY UPDATE`` on PostgreSQL, which does not conflict with the
key-share locks of event inserts; SQLite's writer lock is already held) in id order before their stored values
are read, so two workers recording events of one prospect at once see each other's result: one crossing, one
change row, one handoff.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, any_, bindparam, insert, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter, TextClause

from nurture.core import clock
from nurture.score import explain, model
from nurture.score.model import Counted, EventFact, ProspectFacts
from nurture.score.rules import Fit, Rules
from nurture.store import db
from nurture.store.models import Base, Delivery, Event, Handoff, Prospect, ScoreChange

log = logging.getLogger("nurture.score")
_PROSPECTS = Base.metadata.tables[Prospect.__tablename__]
_FACT_COLUMNS = (
    Prospect.id,
    Prospect.email,
    Prospect.company,
    Prospect.title,
    Prospect.industry,
    Prospect.attributes,
    Prospect.strength_existing_business,
    Prospect.strength_empathy,
    Prospect.strength_contribution,
    Prospect.strength_multiple_contacts,
    Prospect.strength_decision_maker,
    Prospect.strength_invested,
    Prospect.language,
    Prospect.owner,
    Prospect.rank,
    Prospect.temperature,
    Prospect.stage,
    Prospect.score,
    Prospect.fit_score,
    Prospect.engagement_score,
    Prospect.company_key,
    Prospect.scored_at,
)
_EVENT_COLUMNS = (
    Event.id,
    Event.prospect_id,
    Event.type,
    Event.occurred_at,
    Event.label,
    Event.confidence,
    Event.delivery_id,
    Event.campaign,
    Event.item_key,
)
EPS = 1e-6
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
# Statements built once: building a 22-column SELECT per event cost more than running it.
_MEMBERS = select(Prospect.id).where(Prospect.company_key.in_(bindparam("keys", expanding=True)))
_READ = select(*_FACT_COLUMNS).where(Prospect.id.in_(_IDS)).order_by(Prospect.id)
# PostgreSQL gets the ids as one array parameter: an IN list of a 5,000-id recompute chunk cost more to render
# and parse than the lock itself.
_LOCK_PG = (
    select(*_FACT_COLUMNS)
    .where(Prospect.id == any_(bindparam("id_array", type_=ARRAY(Prospect.id.type))))
    .order_by(Prospect.id)
    .with_for_update(key_share=True)
)
# The prospects of ``ids`` and everyone in their stored colleague groups, in one statement (the online path's
# common case: nobody's company changed since they were last scored).
_GROUP_READ = (
    select(*_FACT_COLUMNS)
    .where(
        or_(
            Prospect.id.in_(_IDS),
            Prospect.company_key.in_(
                select(Prospect.company_key)
                .where(Prospect.id.in_(bindparam("ids2", expanding=True)), Prospect.company_key != "")
                .scalar_subquery()
            ),
        )
    )
    .order_by(Prospect.id)
)
# On PostgreSQL an IN (subquery) inside an OR makes a sequential scan of prospects; ARRAY(subquery) is computed
# once first, so both arms use their index (a BitmapOr).
_GROUP_LOCK_PG = (
    select(*_FACT_COLUMNS)
    .where(
        text(
            "prospects.id = ANY(:id_array) OR prospects.company_key = ANY(ARRAY(SELECT g.company_key FROM prospects"
            " AS g WHERE g.id = ANY(:id_array) AND g.company_key <> ''))"
        ).bindparams(bindparam("id_array", type_=ARRAY(Prospect.id.type)))
    )
    .order_by(Prospect.id)
    .with_for_update(key_share=True)
)


# Online scoring reads, with each prospect, its stored tally and how many of its events can count (the tally's
# own count must match it: events recorded while no scoring listener ran are noticed and folded). The count's
# condition is :func:`model.can_count` in SQL with the rules' values written in (quoted), so the statements are
# built once per rule set and run with no list parameters to expand per event.
def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _countable(rules: Rules) -> str:
    """:func:`model.can_count` of an event ``e`` as an SQL condition, the rules' values written in."""
    labels = rules.labels
    weight = (
        f"CASE WHEN coalesce(e.label, 'unknown') = 'human' AND coalesce(e.confidence, 0.5) >= "
        f"{float(labels.human_min_confidence)!r} THEN {float(labels.human)!r} WHEN e.label = 'machine' THEN "
        f"{float(labels.machine)!r} ELSE {float(labels.unknown)!r} END"
    )
    kinds = ", ".join(_sql_text(k) for k in sorted(rules.events))
    labelled = ", ".join(_sql_text(k) for k in sorted(labels.types)) or "NULL"
    return f"e.type IN ({kinds}) AND (e.type NOT IN ({labelled}) OR {weight} > 0)"


_ONLINE: dict[str, tuple[Any, Any, Any, Any, Any]] = {}


def _online_statements(rules: Rules) -> tuple[Any, Any, Any, Any, Any]:
    """(read, PostgreSQL lock, group read, PostgreSQL group lock, PostgreSQL counts) with the tally, and on
    SQLite the countable column. The condition sits inside the aggregate, not in WHERE: with a type condition
    there SQLite picks the (type, occurred_at) index and scans every open of everyone. On PostgreSQL the count
    is a statement of its own: as a correlated column of the group lock it made the planner scan all prospects
    (29 ms instead of 0.5 ms per event at 100k prospects)."""
    built = _ONLINE.get(rules.digest())
    if built is None:
        condition = _countable(rules)
        counted: Any = literal_column(
            f"(SELECT count(CASE WHEN {condition} THEN 1 END) FROM events AS e WHERE e.prospect_id = prospects.id)"
        ).label("countable")
        lite = (*_FACT_COLUMNS, Prospect.score_state, counted)
        pg = (*_FACT_COLUMNS, Prospect.score_state)
        built = _ONLINE[rules.digest()] = (
            _READ.with_only_columns(*lite),
            _LOCK_PG.with_only_columns(*pg),
            _GROUP_READ.with_only_columns(*lite),
            _GROUP_LOCK_PG.with_only_columns(*pg),
            text(
                f"SELECT e.prospect_id, count(CASE WHEN {condition} THEN 1 END) FROM events AS e"
                " WHERE e.prospect_id = ANY(:id_array) GROUP BY e.prospect_id"
            ).bindparams(bindparam("id_array", type_=ARRAY(Prospect.id.type))),
        )
    return built


def _counts(conn: Connection, rows: Mapping[int, Row[Any]], rules: Rules) -> dict[int, int]:
    """How many of each prospect's events can count (the tally must hold them all)."""
    if conn.dialect.name != "postgresql" or all(hasattr(r, "countable") for r in rows.values()):
        return {pid: r.countable for pid, r in rows.items()}
    counts = dict(conn.execute(_online_statements(rules)[4], {"id_array": sorted(rows)}).all())
    return {pid: counts.get(pid, 0) for pid in rows}


_EXPLAINED = select(ScoreChange.prospect_id, ScoreChange.event_ids).where(ScoreChange.prospect_id.in_(_IDS))
_SUBJECTS = select(Delivery.id, Delivery.subject).where(Delivery.id.in_(_IDS))
_OWNERS = select(Prospect.id, Prospect.owner).where(Prospect.id.in_(_IDS))
# No type filter in SQL: with one, SQLite picks the (type, occurred_at) index and reads every open of everyone
# instead of one prospect's few events; the model ignores the types it has no rule for.
_EVENTS_OF = select(*_EVENT_COLUMNS).where(Event.prospect_id.in_(_IDS))
_UPDATE = update(_PROSPECTS).where(_PROSPECTS.c.id == bindparam("pid"))
_UPDATE_PG_FLOATS = ("fit_score", "engagement_score", "score")
_UPDATE_PG_TEXTS = ("rank", "temperature", "stage", "company_key")


def _update_pg(texts: Sequence[str]) -> TextClause:
    return text(
        "UPDATE prospects AS p SET "
        + ", ".join(f"{c} = v.{c}" for c in (*_UPDATE_PG_FLOATS, *texts))
        + ", scored_at = :at FROM unnest(CAST(:pid AS bigint[]), "
        + ", ".join(f"CAST(:{c} AS float8[])" for c in _UPDATE_PG_FLOATS)
        + ", "
        + ", ".join(f"CAST(:{c} AS text[])" for c in texts)
        + f") AS v(pid, {', '.join((*_UPDATE_PG_FLOATS, *texts))}) WHERE p.id = v.pid"
    )


_UPDATE_PG = _update_pg(_UPDATE_PG_TEXTS)
_UPDATE_PG_STATE = _update_pg((*_UPDATE_PG_TEXTS, "score_state"))
_CHANGES = Base.metadata.tables[ScoreChange.__tablename__]
_HANDOFFS = Base.metadata.tables[Handoff.__tablename__]
_INSERT_CHANGE = insert(_CHANGES)
_INSERT_CHANGE_ID = insert(_CHANGES).returning(_CHANGES.c.id)
_INSERT_HANDOFF = insert(_HANDOFFS)


@dataclass
class Result:
    """One prospect scored at ``at``."""

    id: int
    fit: float
    fit_parts: dict[str, float]
    engagement: model.Engagement
    rank: str
    temperature: str
    stage: str
    company_key: str
    colleagues: int = 0

    @property
    def total(self) -> float:
        return round(self.fit + self.engagement.total, 6)


@dataclass
class Change:
    """A change of one field, for dry runs and reports."""

    prospect_id: int
    email: str
    field: str
    old: str
    new: str
    score_before: float
    score_after: float


@dataclass
class Summary:
    """What a recompute did (or would do)."""

    prospects: int = 0
    updated: int = 0
    changes: list[Change] = field(default_factory=list)
    handoffs: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.changes:
            out[f"{c.field} {c.old}→{c.new}"] += 1
        return dict(sorted(out.items()))


def facts_of(row: Row[Any] | Mapping[str, Any]) -> ProspectFacts:
    m = row._mapping if isinstance(row, Row) else row
    return ProspectFacts(
        id=m["id"],
        email=m["email"] or "",
        company=m["company"] or "",
        title=m["title"] or "",
        industry=m["industry"] or "",
        attributes=m["attributes"] or {},
        strengths={name: m[f"strength_{name}"] or 0 for name in model.STRENGTHS},
    )


def event_fact(row: Row[Any]) -> EventFact:
    return EventFact(
        id=row.id,
        type=row.type,
        occurred_at=row.occurred_at,
        label=row.label or "unknown",
        confidence=float(row.confidence if row.confidence is not None else 0.5),
        delivery_id=row.delivery_id,
        campaign=row.campaign or "",
        item_key=row.item_key or "",
    )


def score_group(
    facts: Mapping[int, ProspectFacts],
    engagements: Mapping[int, model.Engagement],
    group_engaged: Mapping[str, int],
    current_stage: Mapping[int, str],
    rules: Rules,
    fit_cache: dict[tuple[Any, ...], tuple[float, dict[str, float]]] | None = None,
    key_memo: dict[tuple[str, str], str] | None = None,
) -> dict[int, Result]:
    """Fit and the derived fields for prospects whose engagement is known. ``group_engaged``: company key ->
    number of engaged prospects in it. A prospect gets colleague points only if it has a counted event itself.
    ``fit_cache`` (the recompute's): fit is a pure function of the columns it reads and the colleague count, and
    most prospects share those, so it is computed once per distinct combination. ``keys``: company keys already
    by (company, e-mail domain), filled as it goes (see :func:`_company_key`)."""
    out = {}
    f = rules.fit
    for pid, p in facts.items():
        eng = engagements.get(pid) or model.Engagement()
        key = model.company_key(p.company, p.email, f) if key_memo is None else _company_key(p, key_memo, f)
        colleagues = 0
        if key and any(c.why == "counted" for c in eng.counted):
            n = group_engaged.get(key, 0)
            me = 1 if eng.total >= f.colleague_engaged_at else 0
            if n <= f.colleague_group_max:
                colleagues = n - me
        cache = _ONLINE_FIT if fit_cache is None else fit_cache
        memo = (
            rules.digest(),
            p.industry,
            p.title,
            model.employees(p.attributes, f),
            tuple(p.strengths.items()),
            colleagues,
        )
        hit = cache.get(memo)
        if hit is None:
            if len(cache) >= _ONLINE_FIT_MAX and fit_cache is None:
                cache.clear()
            hit = cache[memo] = model.fit(p, rules, colleagues)
        fit_total, parts = hit
        total = round(fit_total + eng.total, 6)
        out[pid] = Result(
            id=pid,
            fit=fit_total,
            fit_parts=parts,
            engagement=eng,
            rank=model.rank_of(total, rules),
            temperature=model.temperature_of(eng.total, rules),
            stage=model.stage_of(total, current_stage.get(pid, "MQL"), rules),
            company_key=key,
            colleagues=colleagues,
        )
    return out


# Fit by (rules digest, the columns fit reads, colleagues) for the online path, across events: the same few
# industries, titles, sizes and strengths recur, and matching them is regex work. Cleared when full.
_ONLINE_FIT: dict[tuple[Any, ...], tuple[float, dict[str, float]]] = {}
_ONLINE_FIT_MAX = 20_000


def _lock(conn: Connection, ids: Collection[int]) -> list[Row[Any]]:
    if conn.dialect.name == "postgresql":
        return list(conn.execute(_LOCK_PG, {"id_array": sorted(ids)}))
    return list(conn.execute(_READ, {"ids": sorted(ids)}))


def _lock_online(conn: Connection, ids: Collection[int], rules: Rules) -> list[Row[Any]]:
    read, lock_pg, _, _, _ = _online_statements(rules)
    if conn.dialect.name == "postgresql":
        return list(conn.execute(lock_pg, {"id_array": sorted(ids)}))
    return list(conn.execute(read, {"ids": sorted(ids)}))


def _lock_group(conn: Connection, ids: Collection[int], rules: Rules) -> list[Row[Any]]:
    ordered = sorted(ids)
    _, _, read, lock_pg, _ = _online_statements(rules)
    if conn.dialect.name == "postgresql":
        return list(conn.execute(lock_pg, {"id_array": ordered}))
    return list(conn.execute(read, {"ids": ordered, "ids2": ordered}))


def _events_of(conn: Connection, ids: Collection[int], rules: Rules) -> dict[int, list[model.EventLike]]:
    """The events of ``ids`` by prospect, as rows (the model reads their columns; no copy per event)."""
    out: dict[int, list[model.EventLike]] = defaultdict(list)
    if not ids:
        return out
    for r in conn.execute(_EVENTS_OF, {"ids": sorted(ids)}):
        out[r.prospect_id].append(r)
    return out


def rescore(
    conn: Connection,
    prospect_ids: Iterable[int],
    rules: Rules,
    *,
    at: datetime | None = None,
    cause: str = "events",
    inquiries: Sequence[tuple[int, int]] = (),
    new: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    refold: Collection[int] = (),
) -> list[Result]:
    """Score ``prospect_ids`` and their colleagues at ``at`` (default now) inside the caller's transaction; write
    changes, history and handoffs. ``inquiries``: (prospect id, event id) of ``inquired`` events to hand off.

    ``new``: the event rows just recorded, by prospect (the listener's). A prospect whose stored tally holds
    all its other events gets them added to it (:func:`model.advance`); everyone else, and everyone when
    ``new`` is None (a relabel) and those in ``refold`` (a row of theirs was relabelled), has all its events
    read and folded, and its tally stored afresh."""
    at = at or clock.now()
    ids = {int(i) for i in prospect_ids if i}
    if not ids and not inquiries:
        return []
    results: list[Result] = []
    if ids and new is not None and conn.dialect.name == "postgresql":
        fast = _rescore_pg(conn, ids, rules, at, cause, new, refold)
        if fast is not None:
            if inquiries:
                _inquiry_handoffs(conn, inquiries, at)
            return fast
    if ids:
        f = rules.fit
        if f.colleague_points:
            # One read (and lock) of the prospects and their stored colleague groups; a prospect whose company
            # changed since it was last scored also brings its new group (a second read, rare).
            rows = {r.id: r for r in _lock_group(conn, ids, rules)}
            stored = {r.company_key for r in rows.values()}
            fresh_keys = {model.company_key(rows[i].company, rows[i].email, f) for i in ids if i in rows}
            fresh_keys -= stored | {""}
            if fresh_keys:
                more = set(conn.execute(_MEMBERS, {"keys": sorted(fresh_keys)}).scalars()) - set(rows)
                if more:  # lock again in id order: the whole set, so the order holds across both reads
                    rows = {r.id: r for r in _lock_online(conn, set(rows) | more, rules)}
        else:  # without colleague points nobody's fit depends on anyone else
            rows = {r.id: r for r in _lock_online(conn, ids, rules)}
        engagements, tallies, folded = _online_engagements(conn, rows, new, rules, at, refold)
        facts = {pid: facts_of(r) for pid, r in rows.items()}
        group_engaged: dict[str, int] = defaultdict(int)
        for pid, p in facts.items():
            key = model.company_key(p.company, p.email, f)
            if key and engagements[pid].total >= f.colleague_engaged_at:
                group_engaged[key] += 1
        scored = score_group(facts, engagements, group_engaged, {pid: r.stage for pid, r in rows.items()}, rules)
        # The history names the events that moved a score: those a tally added get their fold now (the totals
        # stay the tally's, which decided the move).
        moving = [pid for pid, res in scored.items() if pid not in folded and _moves(rows[pid], res, rules)[2]]
        if moving:
            full = _events_of(conn, moving, rules)
            for pid in moving:
                total = scored[pid].engagement.total
                scored[pid].engagement = model.engagement(full.get(pid, ()), rules, at)
                scored[pid].engagement.total = total
        states = {pid: tallies[pid].dumps() if pid in tallies else row.score_state for pid, row in rows.items()}
        _write(conn, rows, scored, rules, at, cause, states=states)
        results = list(scored.values())
    if inquiries:
        _inquiry_handoffs(conn, inquiries, at)
    return results


# --- online, PostgreSQL: the fewest round trips ----------------------------------------------------------------
#
# One event costs two statements on top of recording it: (1) the prospect and its colleague group locked and
# read, with their tallies and the count and id sum of their countable events; (2) one statement that updates
# the group and, when a rank / temperature / stage moved, inserts the history and the handoffs. Events are read
# only to fold (no usable tally: one more statement) or to explain a move (one more, with the mails' subjects
# and what earlier changes named). Straight on the psycopg connection (same transaction): SQLAlchemy's work per
# statement cost more than the statements here. The statements are prepared (parsed and planned once).

_PG_FACTS = (
    "p.id, p.email, p.company, p.title, p.industry, p.attributes, "
    + ", ".join(f"p.strength_{name}" for name in model.STRENGTHS)
    + ", p.language, p.owner, p.rank, p.temperature, p.stage, p.score, p.fit_score, p.engagement_score,"
    " p.company_key, p.score_state"
)
_PG_GROUP_WHERE = (
    "p.id = ANY(%(ids)s) OR p.company_key = ANY(ARRAY(SELECT g.company_key FROM prospects AS g"
    " WHERE g.id = ANY(%(ids)s) AND g.company_key <> ''))"
)
_PG_ALONE_WHERE = "p.id = ANY(%(ids)s)"
# What explaining a move reads: the prospects' events, each with its mail's subject and the highest event id the
# prospect's earlier changes named (those before it are explained already).
_PG_EXPLAIN_READ = """
SELECT e.id, e.prospect_id, e.type, e.occurred_at, e.label, e.confidence, e.delivery_id, e.campaign, e.item_key,
       d.subject, coalesce(x.named, 0) AS named
FROM events AS e
LEFT JOIN deliveries AS d ON d.id = e.delivery_id
LEFT JOIN (SELECT c.prospect_id, max(CAST(v.value AS bigint)) AS named FROM score_changes AS c
           CROSS JOIN LATERAL jsonb_array_elements_text(c.event_ids) AS v(value)
           WHERE c.prospect_id = ANY(%(ids)s) GROUP BY c.prospect_id) AS x ON x.prospect_id = e.prospect_id
WHERE e.prospect_id = ANY(%(ids)s)
"""
_PG_ROWS = (
    "jsonb_to_recordset(CAST(%(rows)s AS jsonb)) AS v(pid integer, fit_score float8, engagement_score float8,"
    " score float8, rank text, temperature text, stage text, company_key text, score_state text)"
)
_PG_ONLINE_UPDATE = (
    "UPDATE prospects AS p SET fit_score = v.fit_score, engagement_score = v.engagement_score, score = v.score,"
    " rank = v.rank, temperature = v.temperature, stage = v.stage, company_key = v.company_key,"
    f" score_state = v.score_state, scored_at = %(at)s FROM {_PG_ROWS} WHERE p.id = v.pid"
)
# The update, the history rows in the order given and a handoff per crossing to rank A / stage SQL, at once.
_PG_ONLINE_WRITE = f"""
WITH u AS ({_PG_ONLINE_UPDATE}),
c AS (
  INSERT INTO score_changes (prospect_id, field, old, new, at, cause, score_before, score_after, event_ids, rules,
                             explanation, details)
  SELECT c.prospect_id, c.field, c.old, c.new, %(at)s, %(cause)s, c.score_before, c.score_after, c.event_ids,
         c.rules, c.explanation, c.details
  FROM jsonb_to_recordset(CAST(%(changes)s AS jsonb)) AS c(n integer, prospect_id integer, field text, old text,
       new text, score_before float8, score_after float8, event_ids jsonb, rules jsonb, explanation text,
       details jsonb)
  ORDER BY c.n
  RETURNING id, prospect_id, field, new
)
INSERT INTO handoffs (prospect_id, reason, change_id, event_id, owner, state, created_at, notice_due_at,
                      notice_attempts, notice_error, decided_by, verdict_reason)
SELECT c.prospect_id, CASE c.field WHEN 'rank' THEN 'rank_A' ELSE 'stage_SQL' END, c.id, NULL,
       coalesce(o.owner, ''), 'open', %(at)s, %(at)s, 0, '', '', ''
FROM c JOIN jsonb_to_recordset(CAST(%(owners)s AS jsonb)) AS o(id integer, owner text) ON o.id = c.prospect_id
WHERE (c.field = 'rank' AND c.new = 'A') OR (c.field = 'stage' AND c.new = 'SQL')
ORDER BY c.id
"""
_PG_ONLINE: dict[tuple[str, bool], str] = {}


def _pg_online_read(rules: Rules, group: bool) -> str:
    """The lock and read of a group (colleague points) or of the prospects alone, with the count and the sum of
    the ids of each one's countable events (a snapshot taken before the locks were granted may miss events that
    their holder committed: the tally then holds ids the sum lacks, and the prospect is folded)."""
    built = _PG_ONLINE.get((rules.digest(), group))
    if built is None:
        where = _PG_GROUP_WHERE if group else _PG_ALONE_WHERE
        built = _PG_ONLINE[(rules.digest(), group)] = (
            f"SELECT {_PG_FACTS}, c.n AS countable, c.s AS idsum FROM prospects AS p CROSS JOIN LATERAL"
            " (SELECT count(*) AS n, CAST(coalesce(sum(e.id), 0) AS bigint) AS s FROM events AS e"
            f" WHERE e.prospect_id = p.id AND {_countable(rules)}) AS c"
            f" WHERE {where} ORDER BY p.id FOR NO KEY UPDATE OF p"
        )
    return built


# company_key by (company, e-mail domain) for the online path (see :func:`_company_key`): normalising a name is
# Unicode and regex work, and the same companies come back. Cleared when full.
_ONLINE_KEYS: dict[tuple[str, str], str] = {}


def _rescore_pg(
    conn: Connection,
    ids: set[int],
    rules: Rules,
    at: datetime,
    cause: str,
    new: Mapping[int, Sequence[Mapping[str, Any]]],
    refold: Collection[int],
) -> list[Result] | None:
    """:func:`rescore` of events just recorded, on PostgreSQL, in two round trips when nothing moved (see above).
    None when a prospect's company changed since it was last scored (its new colleague group must be read: the
    caller does it the general way, locking again in id order)."""
    from psycopg.rows import namedtuple_row  # the PostgreSQL driver; imported here, as SQLite needs none

    f = rules.fit
    group = bool(f.colleague_points)
    raw = conn.connection.driver_connection
    with raw.cursor(row_factory=namedtuple_row) as cur:  # type: ignore[union-attr]
        rows = {r.id: r for r in cur.execute(_pg_online_read(rules, group), {"ids": sorted(ids)}, prepare=True)}
    if len(_ONLINE_KEYS) >= _ONLINE_FIT_MAX:
        _ONLINE_KEYS.clear()
    keys = {pid: _company_key(r, _ONLINE_KEYS, f) for pid, r in rows.items()}
    if group and {keys[i] for i in ids if i in rows} - {r.company_key for r in rows.values()} - {""}:
        return None
    engagements, tallies, _ = _online_engagements(conn, rows, new, rules, at, refold)
    states = {pid: tallies[pid].dumps() if pid in tallies else row.score_state for pid, row in rows.items()}
    facts = {pid: facts_of(r._asdict()) for pid, r in rows.items()}
    group_engaged: dict[str, int] = defaultdict(int)
    for pid in rows:
        if keys[pid] and engagements[pid].total >= f.colleague_engaged_at:
            group_engaged[keys[pid]] += 1
    scored = score_group(
        facts, engagements, group_engaged, {pid: r.stage for pid, r in rows.items()}, rules, key_memo=_ONLINE_KEYS
    )
    updates = []
    changed: list[tuple[Any, Result, list[tuple[str, str, str]]]] = []
    for pid, res in scored.items():
        row = rows[pid]
        temperature, stage, moved = _moves(row, res, rules)
        updates.append({**_scored_values(pid, res, temperature, stage), "score_state": states[pid]})
        if moved:
            changed.append((row, res, moved))
    if not changed:
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(_PG_ONLINE_UPDATE, {"rows": json.dumps(updates), "at": at}, prepare=True)
        return list(scored.values())
    # The history names the events that moved a score, with their mails' subjects: one round trip reads them and
    # what earlier changes named. A tally's totals stay (they decided the move).
    events: dict[int, list[Any]] = defaultdict(list)
    subjects: dict[int, str] = {}
    explained: dict[int, int] = {}
    with raw.cursor(row_factory=namedtuple_row) as cur:  # type: ignore[union-attr]
        for e in cur.execute(_PG_EXPLAIN_READ, {"ids": sorted(row.id for row, _, _ in changed)}, prepare=True):
            events[e.prospect_id].append(e)
            explained[e.prospect_id] = e.named
            if e.delivery_id:
                subjects[e.delivery_id] = e.subject or ""
    for row, res, _ in changed:
        total = res.engagement.total
        res.engagement = model.engagement(events.get(row.id, ()), rules, at)
        res.engagement.total = total
    changes = [
        {"n": n, **{k: v for k, v in change.items() if k not in ("at", "cause")}}
        for n, (_, change, _) in enumerate(_change_rows(changed, rules, at, cause, explained, subjects))
    ]
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(
            _PG_ONLINE_WRITE,
            {
                "rows": json.dumps(updates),
                "changes": json.dumps(changes, ensure_ascii=False),
                "owners": json.dumps([{"id": row.id, "owner": row.owner or ""} for row, _, _ in changed]),
                "at": at,
                "cause": cause,
            },
            prepare=True,
        )
    return list(scored.values())


def _online_engagements(
    conn: Connection,
    rows: Mapping[int, Row[Any]],
    new: Mapping[int, Sequence[Mapping[str, Any]]] | None,
    rules: Rules,
    at: datetime,
    refold: Collection[int],
) -> tuple[dict[int, model.Engagement], dict[int, model.Tally], set[int]]:
    """Each prospect's engagement at ``at``, from its stored tally where that is exact, else from all its events
    (those prospects are returned as folded); and the tallies that changed (new events added, or folded)."""
    out: dict[int, model.Engagement] = {}
    tallies: dict[int, model.Tally] = {}
    fold: list[int] = []
    counts = _counts(conn, rows, rules) if new is not None else {}
    # The sum of the ids, where the read gave it (PostgreSQL's online read, whose count may predate the tally).
    sums = {pid: r.idsum for pid, r in rows.items()} if all(hasattr(r, "idsum") for r in rows.values()) else None
    for pid, row in rows.items():
        mine = [] if new is None else [_fact(r) for r in new.get(pid, ())]
        t = model.Tally.loads(row.score_state, rules) if new is not None and pid not in refold else None
        if t is not None and all(e.id for e in mine):
            adding = [e.id for e in mine if model.can_count(e.type, e.label, e.confidence, rules)]
            if t.events + len(adding) == counts[pid] and (sums is None or t.ids + sum(adding) == sums[pid]):
                advanced = model.advance(t, mine, rules) if mine else t
                value = advanced.value(at, rules) if advanced is not None else None
                if advanced is not None and value is not None:
                    out[pid] = model.Engagement(total=value, counted=[_COUNTED] if advanced.counted else [])
                    if mine:  # a colleague's tally is unchanged: its stored text is written back as it is
                        tallies[pid] = advanced
                    continue
        fold.append(pid)
    if fold:
        events = _events_of(conn, fold, rules)
        for pid in fold:
            mine_all = events.get(pid, ())
            out[pid] = model.engagement(mine_all, rules, at)
            tallies[pid] = model.tally(mine_all, rules)
    return out, tallies, set(fold)


def _fact(row: Mapping[str, Any]) -> EventFact:
    """A recorded row as the model reads it (``id`` 0 when the insert returned none: the tally is not used)."""
    return EventFact(
        id=row.get("id") or 0,
        type=row.get("type") or "",
        occurred_at=row["occurred_at"],
        label=row.get("label") or "unknown",
        confidence=float(row["confidence"] if row.get("confidence") is not None else 0.5),
        delivery_id=row.get("delivery_id"),
    )


def _scored_values(pid: int, res: Result, temperature: str, stage: str) -> dict[str, Any]:
    """The prospect columns a scoring writes (both paths; ``pid`` keys the row), before their own extras."""
    return {
        "pid": pid,
        "fit_score": res.fit,
        "engagement_score": res.engagement.total,
        "score": res.total,
        "rank": res.rank,
        "temperature": temperature,
        "stage": stage,
        "company_key": res.company_key,
    }


def _moves(row: Row[Any], res: Result, rules: Rules) -> tuple[str, str, list[tuple[str, str, str]]]:
    """The temperature and stage to write for ``row`` scored as ``res`` (derived, or the row's when set by hand)
    and the fields that change as (name, old, new)."""
    temperature = res.temperature if rules.fields.temperature == "derived" else row.temperature
    stage = res.stage if rules.fields.stage == "derived" else row.stage
    fields = [("rank", row.rank, res.rank), ("temperature", row.temperature, temperature), ("stage", row.stage, stage)]
    return temperature, stage, [(name, old, new) for name, old, new in fields if (old or "") != new]


def _write(
    conn: Connection,
    rows: Mapping[int, Row[Any]],
    scored: Mapping[int, Result],
    rules: Rules,
    at: datetime,
    cause: str,
    summary: Summary | None = None,
    dry_run: bool = False,
    states: Mapping[int, str] | None = None,
) -> None:
    """Write the scored values (and ``states``, the prospects' tallies, when given), history and handoffs."""
    updates: list[dict[str, Any]] = []
    changed_prospects: list[tuple[Row[Any], Result, list[tuple[str, str, str]]]] = []
    for pid, res in scored.items():
        row = rows[pid]
        temperature, stage, moved = _moves(row, res, rules)
        same = (
            not moved
            and abs((row.fit_score or 0) - res.fit) < EPS
            and abs((row.engagement_score or 0) - res.engagement.total) < EPS
            and abs((row.score or 0) - res.total) < EPS
            and row.company_key == res.company_key
        )
        if summary is not None:
            summary.prospects += 1
            for name, old, new in moved:
                if name in ("rank", "stage"):
                    summary.changes.append(
                        Change(pid, row.email, name, old or "", new, float(row.score or 0), res.total)
                    )
        if same and cause in ("decay", "rules"):
            continue  # nothing to write; scored_at moves only when something else does (no 1M-row no-op writes)
        updates.append(
            {
                **_scored_values(pid, res, temperature, stage),
                "scored_at": at,
                **({"score_state": states[pid]} if states is not None else {}),
            }
        )
        if moved:
            changed_prospects.append((row, res, moved))
    if summary is not None:
        summary.updated += len(updates)
    if dry_run or not updates:
        return
    if conn.dialect.name == "postgresql":
        # One statement, not one per row (a recompute chunk is 5,000): the columns go as arrays, joined by id.
        texts = (*_UPDATE_PG_TEXTS, "score_state") if states is not None else _UPDATE_PG_TEXTS
        conn.execute(
            _UPDATE_PG_STATE if states is not None else _UPDATE_PG,
            {
                "at": at,
                "pid": [u["pid"] for u in updates],
                **{name: [float(u[name]) for u in updates] for name in _UPDATE_PG_FLOATS},
                **{name: [u[name] for u in updates] for name in texts},
            },
        )
    else:
        conn.execute(_UPDATE, updates)
    if changed_prospects:
        handoffs = _history(conn, changed_prospects, rules, at, cause)
        if summary is not None:
            summary.handoffs += handoffs


def _history(
    conn: Connection,
    changed: list[tuple[Row[Any], Result, list[tuple[str, str, str]]]],
    rules: Rules,
    at: datetime,
    cause: str,
) -> int:
    """Score change rows (+ handoffs) for prospects whose rank / temperature / stage moved. Returns handoffs."""
    pids = [row.id for row, _, _ in changed]
    # The events already explained: those named by this prospect's earlier changes (ids grow with time, so
    # "after the last one named" is "since the previous change", also with a clock that stands still).
    explained: dict[int, int] = defaultdict(int)
    for pid, ids in conn.execute(_EXPLAINED, {"ids": pids}):
        if ids:
            explained[pid] = max(explained[pid], max(ids))
    deliveries = {
        c.event.delivery_id
        for _, res, _ in changed
        for c in res.engagement.counted
        if c.event.delivery_id and c.event.id > explained[res.id]
    }
    subjects: dict[int, str] = {}
    if deliveries:
        subjects = {r.id: r.subject or "" for r in conn.execute(_SUBJECTS, {"ids": sorted(deliveries)})}
    handoffs = 0
    plain: list[dict[str, Any]] = []
    for row, change, reason in _change_rows(changed, rules, at, cause, explained, subjects):
        if not reason:
            plain.append(change)
            continue
        change_id = conn.execute(_INSERT_CHANGE_ID, [change]).scalar_one()
        conn.execute(
            _INSERT_HANDOFF,
            [
                {
                    "prospect_id": row.id,
                    "reason": reason,
                    "change_id": change_id,
                    "event_id": None,
                    "owner": row.owner or "",
                    "state": "open",
                    "created_at": at,
                    "notice_due_at": at,
                    "notice_attempts": 0,
                    "notice_error": "",
                    "decided_by": "",
                    "verdict_reason": "",
                }
            ],
        )
        handoffs += 1
    if plain:
        conn.execute(_INSERT_CHANGE, plain)
    return handoffs


def _change_rows(
    changed: list[tuple[Any, Result, list[tuple[str, str, str]]]],
    rules: Rules,
    at: datetime,
    cause: str,
    explained: Mapping[int, int],
    subjects: Mapping[int, str],
) -> list[tuple[Any, dict[str, Any], str]]:
    """The ``score_changes`` rows of ``changed`` as (prospect row, column values, handoff reason or ""), in order.
    ``explained``: prospect id -> the highest event id its earlier changes named; ``subjects``: delivery id ->
    subject (the mails of the events to name)."""
    out: list[tuple[Any, dict[str, Any], str]] = []
    digest = rules.digest()
    for row, res, moved in changed:
        moving: list[Counted] = (
            [c for c in res.engagement.counted if c.event.id > explained.get(row.id, 0)]
            if cause in ("events", "relabel")
            else []
        )
        said, skipped, details = explain.describe(moving, subjects, row.language or "")
        rule_names = sorted(
            {f"events.{c.event.type}" for c in moving if c.why == "counted"}
            | ({"fit.colleagues"} if res.colleagues else set())
        )
        base = {
            **details,
            "fit": res.fit_parts,
            "fit_score": res.fit,
            "engagement_score": res.engagement.total,
            "rules_version": rules.version,
            "rules_digest": digest,
        }
        for name, old, new in moved:
            threshold = _threshold_rule(name, new, old)
            text = explain.sentence(
                f"{old or '-'}→{new}",
                said,
                skipped,
                row.language or "",
                cause=cause,
                score_before=float(row.score or 0),
                score_after=res.total,
                colleagues=res.fit_parts.get("colleagues", 0.0) if cause == "events" and not said else 0.0,
                version=rules.version,
                below=_below(name, old, new, res, rules) if cause in ("events", "relabel") else None,
            )
            change = {
                "prospect_id": row.id,
                "field": name,
                "old": old or "",
                "new": new,
                "at": at,
                "cause": cause,
                "score_before": float(row.score or 0),
                "score_after": res.total,
                "event_ids": sorted(c.event.id for c in moving),
                "rules": [*rule_names, threshold],
                "explanation": text,
                "details": base,
            }
            out.append((row, change, {("rank", "A"): "rank_A", ("stage", "SQL"): "stage_SQL"}.get((name, new), "")))
    return out


#: The levels of each derived field, lowest first (a move to a lower index is a move down).
_LEVELS = {"rank": ("C", "B", "A"), "temperature": ("cold", "warm", "hot")}


def _below(name: str, old: str, new: str, res: Result, rules: Rules) -> tuple[str, float, str, float] | None:
    """For a rank or temperature move down: (the score it is derived from, its value, the lowest level it no
    longer reaches, that level's threshold), so the history does not read as if the events named after it had
    lowered it. None for a move up, a stage, or a level nurture does not know (a hand-typed value)."""
    levels = _LEVELS.get(name)
    if levels is None or old not in levels or new not in levels or levels.index(new) >= levels.index(old):
        return None
    t = rules.thresholds
    above = levels[levels.index(new) + 1]  # the lowest level the prospect no longer reaches
    if name == "rank":
        return ("total", res.total, above, t.rank_a if above == "A" else t.rank_b)
    return ("engagement", res.engagement.total, above, t.hot if above == "hot" else t.warm)


def _threshold_rule(name: str, new: str, old: str) -> str:
    if name == "rank":
        level = new if (old or "C") > new else old or "C"  # crossing up names the new rank's threshold
        return {"A": "thresholds.rank_a", "B": "thresholds.rank_b"}.get(level, "thresholds.rank_b")
    if name == "temperature":
        return "thresholds.hot" if "hot" in (new, old) else "thresholds.warm"
    return "thresholds.sql"


def _inquiry_handoffs(conn: Connection, inquiries: Sequence[tuple[int, int]], at: datetime) -> None:
    owners = dict(conn.execute(_OWNERS, {"ids": sorted({p for p, _ in inquiries})}).all())
    rows = [
        {
            "prospect_id": pid,
            "reason": "inquiry",
            "event_id": eid,
            "owner": owners.get(pid) or "",
            "state": "open",
            "created_at": at,
            "notice_due_at": at,
            "notice_attempts": 0,
            "notice_error": "",
            "decided_by": "",
            "verdict_reason": "",
        }
        for pid, eid in inquiries
        if pid in owners
    ]
    if rows:
        table = Base.metadata.tables[Handoff.__tablename__]
        conn.execute(db.insert_for(conn, table).on_conflict_do_nothing(index_elements=["event_id"]), rows)


# --- everyone -------------------------------------------------------------------------------------------------


def all_engagements(conn: Connection, rules: Rules, at: datetime) -> dict[int, model.Engagement]:
    """Every prospect's engagement at ``at``, streaming the events in prospect order (one pass)."""
    out: dict[int, model.Engagement] = {}
    stmt = (
        select(*_EVENT_COLUMNS)
        .where(Event.prospect_id.is_not(None), Event.type.in_(sorted(rules.events)))
        .order_by(Event.prospect_id)
        .execution_options(yield_per=20000)
    )
    current: int | None = None
    batch: list[model.EventLike] = []
    for r in conn.execute(stmt):
        if r.prospect_id != current:
            if current is not None:
                out[current] = _slim(model.engagement(batch, rules, at))
            current, batch = r.prospect_id, []
        batch.append(r)
    if current is not None:
        out[current] = _slim(model.engagement(batch, rules, at))
    return out


# One sort of the events that can count, by (prospect, mail, type, time): in that order a mail's weighted click
# (which proves its opens, so they do not count again) and the per-mail numbering come from windows over the same
# sort; the cap numbering re-sorts only within each prospect (an incremental sort: the input is already by
# prospect), and the sum groups the prospect's rows as they stream by. Types are sorted and partitioned by their
# number in ``r`` (``ti``), not their name: text compares through the locale (C.UTF-8 is not C to PostgreSQL),
# which cost more than the rest of the sort. Days and ages are computed in integers and float8, not numeric.
_SQL_ENGAGEMENT = """
WITH r(ti, type, points, half_life, cap, cap_days, per_mail, labelled) AS (VALUES {values}),
e AS (
  SELECT ev.id, ev.prospect_id, r.ti, ev.occurred_at, ev.delivery_id, r.half_life, r.cap, r.cap_days,
         r.per_mail, r.points * CASE WHEN NOT r.labelled THEN 1.0
              WHEN ev.label = 'human' AND ev.confidence >= :min_confidence THEN :w_human
              WHEN ev.label = 'machine' THEN :w_machine
              ELSE :w_unknown END AS points,
         CASE WHEN NOT r.labelled THEN 1.0
              WHEN ev.label = 'human' AND ev.confidence >= :min_confidence THEN :w_human
              WHEN ev.label = 'machine' THEN :w_machine
              ELSE :w_unknown END AS w
  FROM events ev JOIN r ON r.type = ev.type
  WHERE ev.prospect_id IS NOT NULL
),
m AS (
  SELECT e.*,
         e.delivery_id IS NOT NULL AND bool_or(e.ti = {clicked}) OVER mail AS proved,
         row_number() OVER (PARTITION BY e.prospect_id, e.delivery_id, e.ti ORDER BY e.occurred_at, e.id) AS nm
  FROM e
  WHERE e.w > 0
  WINDOW mail AS (PARTITION BY e.prospect_id, e.delivery_id)
),
c AS (
  SELECT m.*, row_number() OVER (
           PARTITION BY m.prospect_id, m.ti,
                        floor(CAST(CAST(m.occurred_at AT TIME ZONE 'UTC' AS date) - DATE '1970-01-01' AS float8)
                              / nullif(m.cap_days, 0))
           ORDER BY m.occurred_at, m.id) AS nc
  FROM m
  WHERE NOT (m.ti = {opened} AND m.proved) AND (m.per_mail = 0 OR m.delivery_id IS NULL OR m.nm <= m.per_mail)
)
SELECT prospect_id,
       sum(points * CASE WHEN half_life > 0
                         THEN power(CAST(0.5 AS float8),
                                    greatest(0, date_part('epoch', CAST(:at AS timestamptz) - occurred_at) / 86400.0)
                                    / half_life)
                         ELSE 1 END) AS total
FROM c WHERE cap = 0 OR nc <= cap
GROUP BY prospect_id
"""
_COUNTED = model.Counted(model.EventFact(0, "", datetime(1970, 1, 1)), 0.0, "counted", "")


def _engagement_statement(rules: Rules, at: datetime) -> tuple[str, dict[str, Any]]:
    """The set-based engagement (``prospect_id, total`` unrounded) and its parameters."""
    params: dict[str, Any] = {
        "at": at,
        "min_confidence": rules.labels.human_min_confidence,
        "w_human": rules.labels.human,
        "w_machine": rules.labels.machine,
        "w_unknown": rules.labels.unknown,
    }
    values = []
    kinds = sorted(rules.events)
    for n, kind in enumerate(kinds):
        rule = rules.events[kind]
        params.update({f"t{n}": kind, f"p{n}": float(rule.points), f"h{n}": float(rule.half_life_days)})
        values.append(
            f"({n}, CAST(:t{n} AS varchar), CAST(:p{n} AS float8), CAST(:h{n} AS float8), {int(rule.cap)}, "
            f"{int(rule.cap_days)}, {int(rule.per_mail)}, {'true' if kind in rules.labels.types else 'false'})"
        )
    number = {kind: n for n, kind in enumerate(kinds)}
    sql = _SQL_ENGAGEMENT.format(
        values=", ".join(values), clicked=number.get("clicked", -1), opened=number.get("opened", -1)
    )
    return sql, params


def all_engagements_sql(conn: Connection, rules: Rules, at: datetime) -> dict[int, model.Engagement]:
    """:func:`all_engagements` as one set-based statement (PostgreSQL): the same order, caps, per-mail limits,
    click-before-open rule, label weights and decay as :func:`nurture.score.model.engagement`, computed by the
    database over every event at once. Each result carries a placeholder counted event (prospects with none
    counted are absent), as :func:`_slim` leaves."""
    sql, params = _engagement_statement(rules, at)
    out = {}
    for pid, total in conn.execute(text(sql), params):
        out[pid] = model.Engagement(total=round(float(total), 6), counted=[_COUNTED])
    return out


def _slim(e: model.Engagement) -> model.Engagement:
    """Keep one counted event (enough for "has a counted event"); the history reloads the rest when needed."""
    first = next((c for c in e.counted if c.why == "counted"), None)
    return model.Engagement(total=e.total, counted=[first] if first else [])


def recompute(
    engine: Engine,
    rules: Rules,
    *,
    cause: str = "rules",
    dry_run: bool = False,
    chunk: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Score every prospect from its events at now; write what changed (unless ``dry_run``), chunk by chunk,
    each chunk in its own transaction with its rows locked. A prospect scored online after the pass started is
    left alone (its value is newer)."""
    at = clock.now()
    f = rules.fit
    if (
        engine.dialect.name == "postgresql"
        and cause in ("rules", "decay")
        and f.colleague_points >= 0
        and f.colleagues_max >= 0
    ):
        return _recompute_pg(engine, rules, at, cause, dry_run, chunk, progress)
    summary = Summary()
    with engine.connect() as conn:
        # PostgreSQL computes every engagement in one set-based statement; SQLite streams the events through the
        # same Python function the online path uses.
        if conn.dialect.name == "postgresql":
            engagements = all_engagements_sql(conn, rules, at)
        else:
            engagements = all_engagements(conn, rules, at)
        group_engaged: dict[str, int] = defaultdict(int)
        key_memo: dict[tuple[str, str], str] = {}
        total = 0
        for r in conn.execute(select(Prospect.id, Prospect.company, Prospect.email).execution_options(yield_per=20000)):
            total += 1
            key = _company_key(r, key_memo, f)
            eng = engagements.get(r.id)
            if key and eng is not None and eng.total >= f.colleague_engaged_at:
                group_engaged[key] += 1
        if cause == "decay":
            # Time moves only engagement: a prospect without events has nothing to decay (its colleague points
            # need a counted event of its own), so the periodic pass reads only those with events.
            ids = sorted(engagements)
        else:
            ids = list(conn.execute(select(Prospect.id).order_by(Prospect.id)).scalars())
    done = 0
    fit_cache: dict[tuple[Any, ...], tuple[float, dict[str, float]]] = {}
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        with engine.connect() as conn, db.begin(conn, immediate=not dry_run):
            rows = {r.id: r for r in (_lock(conn, part) if not dry_run else _read(conn, part))}
            rows = {pid: r for pid, r in rows.items() if r.scored_at is None or r.scored_at <= at}
            facts = {pid: facts_of(r) for pid, r in rows.items()}
            scored = score_group(
                facts,
                engagements,
                group_engaged,
                {pid: r.stage for pid, r in rows.items()},
                rules,
                fit_cache=fit_cache,
                key_memo=key_memo,
            )
            if not dry_run and cause in ("events", "relabel"):
                # The history explains with the full event list: reload it for the few prospects that move.
                # (Decay and rules changes name no events, so their passes need no reload.)
                moving = [
                    pid
                    for pid, res in scored.items()
                    if (res.rank, res.temperature, res.stage)
                    != (rows[pid].rank, rows[pid].temperature, rows[pid].stage)
                ]
                if moving:
                    full = _events_of(conn, moving, rules)
                    for pid in moving:
                        scored[pid].engagement = model.engagement(full.get(pid, ()), rules, at)
            _write(conn, rows, scored, rules, at, cause, summary, dry_run)
        done += len(part)
        if progress:
            progress(done, total)
    return summary


def _company_key(p: Any, memo: dict[tuple[str, str], str], f: Fit) -> str:
    """:func:`model.company_key` of ``p`` (a row or facts with company and email), memoised by (company, e-mail
    domain): colleagues share both, so a recompute normalises each company name once, not once per prospect."""
    company, email = p.company or "", p.email or ""
    name = (company, email.rsplit("@", 1)[-1] if "@" in email else "")
    key = memo.get(name)
    if key is None:
        key = memo[name] = model.company_key(company, email, f)
    return key


def _read(conn: Connection, ids: Collection[int]) -> list[Row[Any]]:
    return list(conn.execute(_READ, {"ids": sorted(ids)}))


def score_all(conn: Connection, rules: Rules, at: datetime) -> dict[int, Result]:
    """Every prospect scored at ``at`` from the stored facts and events, writing nothing (tests, dry runs)."""
    f = rules.fit
    events: dict[int, list[model.EventLike]] = defaultdict(list)
    for r in conn.execute(select(*_EVENT_COLUMNS).where(Event.type.in_(sorted(rules.events)))):
        if r.prospect_id is not None:
            events[r.prospect_id].append(r)
    rows = {r.id: r for r in conn.execute(select(*_FACT_COLUMNS))}
    engagements = {pid: model.engagement(events.get(pid, ()), rules, at) for pid in rows}
    facts = {pid: facts_of(r) for pid, r in rows.items()}
    group_engaged: dict[str, int] = defaultdict(int)
    for pid, p in facts.items():
        key = model.company_key(p.company, p.email, f)
        if key and engagements[pid].total >= f.colleague_engaged_at:
            group_engaged[key] += 1
    return score_group(facts, engagements, group_engaged, {pid: r.stage for pid, r in rows.items()}, rules)


def explain_prospect(conn: Connection, prospect_id: int, rules: Rules, at: datetime) -> dict[str, Any]:
    """What ``prospects show`` prints: the stored scores, their parts now (fit rules, engagement per type and
    label, ignored events) and the history of changes, newest first."""
    row = conn.execute(select(*_FACT_COLUMNS).where(Prospect.id == prospect_id)).one()
    p = facts_of(row)
    events = _events_of(conn, [prospect_id], rules).get(prospect_id, [])
    eng = model.engagement(events, rules, at)
    key = model.company_key(p.company, p.email, rules.fit)
    engaged = 0
    if key:
        others = list(
            conn.execute(select(Prospect.id).where(Prospect.company_key == key, Prospect.id != prospect_id)).scalars()
        )
        if others:
            other_events = _events_of(conn, others, rules)
            engaged = sum(
                1
                for o in others
                if model.engagement(other_events.get(o, ()), rules, at).total >= rules.fit.colleague_engaged_at
            )
    me = 1 if eng.total >= rules.fit.colleague_engaged_at else 0
    scored = score_group(
        {prospect_id: p}, {prospect_id: eng}, {key: engaged + me} if key else {}, {prospect_id: row.stage}, rules
    )[prospect_id]
    per_type: dict[str, dict[str, Any]] = {}
    for c in eng.counted:
        t = per_type.setdefault(c.event.type, {"points": 0.0, "counted": 0, "ignored": {}})
        if c.why == "counted":
            t["points"] = round(t["points"] + c.points, 3)
            t["counted"] += 1
        else:
            t["ignored"][c.why] = t["ignored"].get(c.why, 0) + 1
    history = [
        {
            "at": h.at,
            "field": h.field,
            "old": h.old,
            "new": h.new,
            "cause": h.cause,
            "score_before": h.score_before,
            "score_after": h.score_after,
            "explanation": h.explanation,
            "event_ids": h.event_ids,
            "rules": h.rules,
        }
        for h in conn.execute(
            select(ScoreChange.__table__).where(ScoreChange.prospect_id == prospect_id).order_by(ScoreChange.id.desc())
        )
    ]
    return {
        "stored": {
            "score": row.score,
            "fit_score": row.fit_score,
            "engagement_score": row.engagement_score,
            "rank": row.rank,
            "temperature": row.temperature,
            "stage": row.stage,
            "scored_at": row.scored_at,
        },
        "now": {
            "at": at,
            "score": scored.total,
            "fit_score": scored.fit,
            "engagement_score": scored.engagement.total,
            "rank": scored.rank,
            "temperature": scored.temperature,
            "stage": scored.stage,
        },
        "fit_parts": scored.fit_parts,
        "engagement_parts": per_type,
        "fields": {"temperature": rules.fields.temperature, "stage": rules.fields.stage},
        "rules_version": rules.version,
        "history": history,
    }


# --- everyone, set-based (PostgreSQL) ---------------------------------------------------------------------------

# The e-mail's domain: what follows its last '@' (as ``str.rsplit``), without a regular expression per row.
_PG_DOMAIN = "CASE WHEN position('@' IN p.email) > 0 THEN split_part(p.email, '@', -1) ELSE '' END"
_PG_STRENGTHS = ", ".join(f"coalesce(p.strength_{name}, 0)" for name in model.STRENGTHS)
_PG_STRENGTH_NAMES = ", ".join(f"s_{name}" for name in model.STRENGTHS)
# What fit reads, per prospect: the columns that make its "combination" (fit is computed once per combination
# and colleague count, in Python, by the same function the online path uses).
_PG_COMBO = "coalesce(p.industry, '') AS industry, coalesce(p.title, '') AS title, {sizes} AS sizes, " + ", ".join(
    f"coalesce(p.strength_{name}, 0) AS s_{name}" for name in model.STRENGTHS
)
_PG_COMBO_JOIN = " AND ".join(
    f"f.{c} = o.{c}" for c in ("industry", "title", "sizes", *(f"s_{n}" for n in model.STRENGTHS))
)


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Load ``rows`` into a temporary table with COPY (psycopg), the fastest way in."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)


def _recompute_pg(
    engine: Engine,
    rules: Rules,
    at: datetime,
    cause: str,
    dry_run: bool,
    chunk: int,
    progress: Callable[[int, int], None] | None,
) -> Summary:
    """:func:`recompute` for ``rules`` and ``decay`` on PostgreSQL, set-based: the engagement of everyone in one
    grouped statement, company keys and fit computed in Python once per distinct company / combination of the
    columns fit reads (loaded with COPY), the rest (colleagues, totals, rank, temperature, stage, what changed)
    in SQL into a temporary table, then written with one ``UPDATE ... FROM`` per id range (rows locked in id
    order first, as the online path locks them, so the two never deadlock). The history of the prospects that
    moved is written by :func:`_history`, as on the other path. Totals are rounded to 6 decimals by the
    database (equal to the Python path's to 1e-6, as the set-based engagement is)."""
    f, t = rules.fit, rules.thresholds
    summary = Summary()
    cmax = max(1, math.ceil(f.colleagues_max / f.colleague_points)) if f.colleague_points > 0 else 1
    sizes = "ARRAY[" + ", ".join(f"p.attributes ->> CAST(:a{i} AS text)" for i in range(len(f.size_attributes))) + "]"
    sizes = sizes if f.size_attributes else "CAST(ARRAY[] AS text[])"
    size_params = {f"a{i}": name for i, name in enumerate(f.size_attributes)}
    with engine.connect() as conn:
        # The sorts of the engagement statement (about 60 bytes per counted event) stay in memory at 10M events.
        conn.execute(text("SET LOCAL work_mem = '512MB'"))
        # Compiling these statements took longer than running them (as for the reports).
        conn.execute(text("SET LOCAL jit = off"))
        # A pass that failed on this pooled connection may have left its temporary tables behind.
        conn.execute(text("DROP TABLE IF EXISTS s_eng, s_keys, s_fit, s_k, s_out"))
        phase = _phases()
        eng_sql, eng_params = _engagement_statement(rules, at)
        conn.execute(
            text(
                "CREATE TEMP TABLE s_eng AS SELECT prospect_id, CAST(round(CAST(total AS numeric), 6) AS float8)"
                f" AS total FROM ({eng_sql}) AS x"
            ),
            eng_params,
        )
        phase("engagement")
        conn.execute(text("CREATE TEMP TABLE s_keys (company text, domain text, key text)"))
        conn.execute(
            text(
                "CREATE TEMP TABLE s_fit (industry text, title text, sizes text[], "
                + ", ".join(f"s_{n} integer" for n in model.STRENGTHS)
                + ", c integer, fit float8, parts text)"
            )
        )
        pairs = conn.execute(text(f"SELECT DISTINCT coalesce(p.company, ''), {_PG_DOMAIN} FROM prospects AS p")).all()
        _copy(
            conn,
            "s_keys",
            ("company", "domain", "key"),
            ((c, d, model.company_key(c, f"x@{d}", f)) for c, d in pairs),
        )
        fits: dict[tuple[Any, ...], tuple[float, dict[str, float]]] = {}
        for combo in conn.execute(
            text(f"SELECT DISTINCT {_PG_COMBO.format(sizes=sizes)} FROM prospects AS p"), size_params
        ):
            industry, title, texts, *levels = combo
            attributes = {k: v for k, v in zip(f.size_attributes, texts or (), strict=False) if v is not None}
            facts = ProspectFacts(
                0,
                industry=industry,
                title=title,
                attributes=attributes,
                strengths=dict(zip(model.STRENGTHS, levels, strict=True)),
            )
            for c in range(cmax + 1):
                fits[(industry, title, tuple(texts or ()), *levels, c)] = model.fit(facts, rules, c)
        _copy(
            conn,
            "s_fit",
            ("industry", "title", "sizes", *(f"s_{n}" for n in model.STRENGTHS), "c", "fit", "parts"),
            ((*key[:2], list(key[2]), *key[3:], fit, json.dumps(parts)) for key, (fit, parts) in fits.items()),
        )
        phase("company keys and fit")
        conn.execute(text("ANALYZE s_eng; ANALYZE s_keys; ANALYZE s_fit"))
        params = {
            **size_params,
            "at": at,
            "engaged_at": f.colleague_engaged_at,
            "group_max": f.colleague_group_max,
            "cmax": cmax,
            "rank_a": t.rank_a,
            "rank_b": t.rank_b,
            "hot": t.hot,
            "warm": t.warm,
            "sql": t.sql,
            "eps": EPS,
            # Time moves only engagement: the decay pass looks only at prospects with a counted event (as the
            # Python path does; colleague points need a counted event of one's own).
            "decay": cause == "decay",
        }
        formats = {
            "sizes": sizes,
            "combo": _PG_COMBO.format(sizes=sizes),
            "domain": _PG_DOMAIN,
            "join": _PG_COMBO_JOIN,
            "demoted": "'MQL'" if t.sql_demotes else "'SQL'",
            "temperature": "o.temperature_new" if rules.fields.temperature == "derived" else "o.temperature",
            "stage": "o.stage_new" if rules.fields.stage == "derived" else "o.stage",
        }
        conn.execute(text(_PG_SCORE_K.format(**formats)), params)
        conn.execute(text("ANALYZE s_k"))
        # A merge join on the ten columns of fit sorted every prospect by them, comparing text by the locale's
        # collation (seconds at 100k); hashing the few combinations is linear.
        conn.execute(text("SET LOCAL enable_mergejoin = off"))
        conn.execute(text(_PG_SCORE.format(**formats)), params)
        phase("scores")
        conn.execute(text("CREATE INDEX ON s_out (id)"))
        conn.execute(text("ANALYZE s_out"))
        conn.commit()
        summary.prospects = conn.execute(text("SELECT count(*) FROM s_out")).scalar_one()
        for r in conn.execute(
            text(
                "SELECT id, email, rank, rank_new, stage, stage_w, score, total FROM s_out"
                " WHERE coalesce(rank, '') <> rank_new OR coalesce(stage, '') IS DISTINCT FROM stage_w ORDER BY id"
            )
        ):
            if (r.rank or "") != r.rank_new:
                summary.changes.append(
                    Change(r.id, r.email, "rank", r.rank or "", r.rank_new, float(r.score or 0), r.total)
                )
            if (r.stage or "") != r.stage_w:
                summary.changes.append(
                    Change(r.id, r.email, "stage", r.stage or "", r.stage_w, float(r.score or 0), r.total)
                )
        phase("changes listed")
        if dry_run:
            summary.updated = conn.execute(text("SELECT count(*) FROM s_out WHERE NOT same")).scalar_one()
            conn.commit()
        else:
            bounds = conn.execute(text("SELECT min(id), max(id) FROM s_out WHERE NOT same")).one()
            low, high = bounds if bounds[0] is not None else (0, -1)
            conn.commit()
            step = max(chunk, 1) * 10
            for start in range(low, high + 1, step):
                end = start + step - 1
                with conn.begin():
                    conn.execute(
                        text(
                            # The range on both sides: without o's, s_out (1M rows) was read whole per range.
                            "SELECT p.id FROM prospects AS p JOIN s_out AS o ON o.id = p.id WHERE NOT o.same"
                            " AND o.id BETWEEN :lo AND :hi AND p.id BETWEEN :lo AND :hi ORDER BY p.id"
                            " FOR NO KEY UPDATE OF p"
                        ),
                        {"lo": start, "hi": end},
                    )
                    written, handed = conn.execute(
                        text(_PG_WRITE),
                        {
                            "lo": start,
                            "hi": end,
                            "at": at,
                            "cause": cause,
                            "version": rules.version,
                            "digest": rules.digest(),
                        },
                    ).one()
                    summary.updated += written
                    summary.handoffs += handed
                if progress:
                    progress(min(end, high) - low + 1, high - low + 1)
        phase("written")
        conn.execute(text("DROP TABLE IF EXISTS s_eng, s_keys, s_fit, s_k, s_out"))
        conn.commit()
    return summary


def _phases() -> Callable[[str], None]:
    """A logger of the recompute's phases: wall seconds since the previous one (debug level)."""
    last = [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        log.debug("recompute: %s %.1f s", name, now - last[0])
        last[0] = now

    return phase


# The scores, in two statements: first each prospect with its company key, engagement and colleagues (``s_k``,
# analysed), then fit joined by equality on every column it reads and the colleague count (a hash join with the
# few combinations; in one statement the planner joined the combinations before it knew the colleagues, then
# sorted every prospect with each one to filter them).
_PG_SCORE_K = """
CREATE TEMP TABLE s_k AS
WITH k AS (
  SELECT p.id, p.email, p.language, p.owner, p.rank, p.temperature, p.stage, p.score, p.fit_score,
         p.engagement_score, p.company_key, p.scored_at, coalesce(kk.key, '') AS key, {combo},
         e.prospect_id IS NOT NULL AS has, coalesce(e.total, 0) AS eng
  FROM prospects AS p
  LEFT JOIN s_keys AS kk ON kk.company = coalesce(p.company, '') AND kk.domain = {domain}
  LEFT JOIN s_eng AS e ON e.prospect_id = p.id
),
g AS (SELECT key, count(*) AS n FROM k WHERE key <> '' AND eng >= :engaged_at GROUP BY key)
SELECT c.*, least(c.colleagues, :cmax) AS c
FROM (
  SELECT k.*, CASE WHEN k.key <> '' AND k.has AND coalesce(g.n, 0) <= :group_max
                   THEN coalesce(g.n, 0) - CAST(k.eng >= :engaged_at AS integer) ELSE 0 END AS colleagues
  FROM k LEFT JOIN g ON g.key = k.key
  WHERE (k.scored_at IS NULL OR k.scored_at <= :at) AND (k.has OR NOT :decay)
) AS c
"""
# (OFFSET 0 keeps each level a subquery of its own: inlined, every use of ``total`` and of the new fields
# evaluated its expression again, the numeric rounding included. Stored in id order, so that each id range the
# writes read through s_out's index is a few contiguous pages.)
_PG_SCORE = """
CREATE TEMP TABLE s_out AS
WITH o AS (
  SELECT o.*, f.fit, f.parts, CAST(round(CAST(f.fit + o.eng AS numeric), 6) AS float8) AS total
  FROM s_k AS o JOIN s_fit AS f ON {join} AND f.c = o.c
  OFFSET 0
),
n AS (
  SELECT o.*,
         CASE WHEN o.total >= :rank_a THEN 'A' WHEN o.total >= :rank_b THEN 'B' ELSE 'C' END AS rank_new,
         CASE WHEN o.eng >= :hot THEN 'hot' WHEN o.eng >= :warm THEN 'warm' ELSE 'cold' END AS temperature_new,
         CASE WHEN o.total >= :sql THEN 'SQL' WHEN o.stage = 'SQL' THEN {demoted}
              ELSE coalesce(nullif(o.stage, ''), 'MQL') END AS stage_new
  FROM o
  OFFSET 0
),
w AS (SELECT o.*, {temperature} AS temperature_w, {stage} AS stage_w FROM n AS o)
SELECT w.*,
       (coalesce(w.rank, '') <> w.rank_new OR coalesce(w.temperature, '') IS DISTINCT FROM w.temperature_w
        OR coalesce(w.stage, '') IS DISTINCT FROM w.stage_w) AS moved,
       (coalesce(w.rank, '') = w.rank_new AND coalesce(w.temperature, '') IS NOT DISTINCT FROM w.temperature_w
        AND coalesce(w.stage, '') IS NOT DISTINCT FROM w.stage_w
        AND abs(coalesce(w.fit_score, 0) - w.fit) < :eps AND abs(coalesce(w.engagement_score, 0) - w.eng) < :eps
        AND abs(coalesce(w.score, 0) - w.total) < :eps AND w.company_key IS NOT DISTINCT FROM w.key) AS same
FROM w
ORDER BY w.id
"""
# One id range written in one statement: the prospects whose values changed (and that nobody scored online since
# the pass began), then the history of those that moved, as :func:`_history` writes it for a rules or decay pass
# (no events to name), and a handoff per crossing to rank A / stage SQL. ``to_char`` formats with C's printf,
# rounding as Python's format. Returns (rows written, handoffs).
_PG_WRITE = """
WITH w AS (
  UPDATE prospects AS p SET fit_score = o.fit, engagement_score = o.eng, score = o.total, rank = o.rank_new,
         temperature = o.temperature_w, stage = o.stage_w, company_key = o.key, scored_at = :at
  FROM s_out AS o
  WHERE o.id = p.id AND NOT o.same AND o.id BETWEEN :lo AND :hi AND p.id BETWEEN :lo AND :hi
    AND (p.scored_at IS NULL OR p.scored_at <= :at)
  RETURNING p.id
),
moved AS (
  SELECT o.*, f.field, f.old, f.new, f.n,
         CASE WHEN f.old = '' THEN '-' ELSE f.old END || '→' || f.new || ': ' ||
         CASE WHEN lower(coalesce(o.language, '')) LIKE 'ja%'
              THEN CASE WHEN :cause = 'decay' THEN '時間経過による減衰 (スコア '
                        ELSE 'ルール ' || :version || ' で再計算 (スコア ' END
              ELSE CASE WHEN :cause = 'decay' THEN 'decay over time (score '
                        ELSE 'recomputed with rules ' || :version || ' (score ' END
         END || to_char(coalesce(o.score, 0), 'FM999999999990.0') || ' → '
           || to_char(o.total, 'FM999999999990.0') || ')' AS explanation,
         CASE f.field
           WHEN 'rank' THEN CASE WHEN (CASE WHEN coalesce(nullif(f.old, ''), 'C') COLLATE "C" > f.new THEN f.new
                                            ELSE coalesce(nullif(f.old, ''), 'C') END) = 'A'
                                 THEN 'thresholds.rank_a' ELSE 'thresholds.rank_b' END
           WHEN 'temperature' THEN CASE WHEN 'hot' IN (f.new, f.old) THEN 'thresholds.hot' ELSE 'thresholds.warm' END
           ELSE 'thresholds.sql' END AS threshold
  FROM s_out AS o
  JOIN w ON w.id = o.id
  CROSS JOIN LATERAL (VALUES (1, 'rank', coalesce(o.rank, ''), o.rank_new),
                             (2, 'temperature', coalesce(o.temperature, ''), o.temperature_w),
                             (3, 'stage', coalesce(o.stage, ''), o.stage_w)) AS f(n, field, old, new)
  WHERE o.id BETWEEN :lo AND :hi AND o.moved AND f.old IS DISTINCT FROM f.new
),
ins AS (
  INSERT INTO score_changes (prospect_id, field, old, new, at, cause, score_before, score_after, event_ids, rules,
                             explanation, details)
  SELECT id, field, old, new, :at, :cause, coalesce(score, 0), total, '[]'::jsonb,
         CASE WHEN colleagues > 0 THEN jsonb_build_array('fit.colleagues', threshold)
              ELSE jsonb_build_array(threshold) END,
         explanation,
         jsonb_build_object('counts', '{}'::jsonb, 'points', '{}'::jsonb, 'items', '[]'::jsonb,
                            'fit', CAST(parts AS jsonb), 'fit_score', fit, 'engagement_score', eng,
                            'rules_version', CAST(:version AS text), 'rules_digest', CAST(:digest AS text))
  FROM moved ORDER BY id, n
  RETURNING id, prospect_id, field, new
),
h AS (
  INSERT INTO handoffs (prospect_id, reason, change_id, event_id, owner, state, created_at, notice_due_at,
                        notice_attempts, notice_error, decided_by, verdict_reason)
  SELECT ins.prospect_id, CASE ins.field WHEN 'rank' THEN 'rank_A' ELSE 'stage_SQL' END, ins.id, NULL,
         coalesce(o.owner, ''), 'open', :at, :at, 0, '', '', ''
  FROM ins JOIN s_out AS o ON o.id = ins.prospect_id
  WHERE (ins.field = 'rank' AND ins.new = 'A') OR (ins.field = 'stage' AND ins.new = 'SQL')
  ORDER BY ins.id
  RETURNING id
)
SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM h)
"""
