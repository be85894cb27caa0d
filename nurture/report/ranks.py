"""``nurture report ranks``: every move of rank, temperature or stage in the period, with the events behind it.

Reads ``score_changes`` (written by :mod:`nurture.score`, with the explanation in the prospect's language and the
ids of the events that moved the score) and the events those ids name, so that each move lists its opens, clicks
and offline events with their human / machine / unknown label: machine opens are shown apart, never hidden.
Totals: a transition matrix (``C->B 42``) and, per campaign item, how many moves its events took part in (which
content warms people up). Two statements: the moves, and their events joined through the JSON array of ids.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Engine, cast, select, true

from nurture.report.model import LIST_LIMIT, Chart, Params, Report, Section, week_start, weeks_between
from nurture.store import db
from nurture.store.models import Event, Prospect, ScoreChange

#: Better is later in each list: a move "up" goes right.
ORDER = {
    "rank": ["C", "B", "A"],
    "temperature": ["cold", "warm", "hot"],
    "stage": ["lost", "MQL", "TQL", "SQL", "customer"],
}


def direction(field_name: str, old: str, new: str) -> str:
    """``up``, ``down`` or ``same`` for a move of ``field_name`` (unknown values count as ``same``)."""
    order = ORDER.get(field_name, [])
    if old not in order or new not in order:
        return "up" if not old and new else "same"
    a, b = order.index(old), order.index(new)
    return "up" if b > a else "down" if b < a else "same"


@dataclass
class Move:
    id: int
    prospect_id: int
    email: str
    name: str
    company: str
    owner: str
    field: str
    old: str
    new: str
    at: datetime
    cause: str
    explanation: str
    score_before: float
    score_after: float
    events: list[dict[str, Any]] = dataclass_field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        labels = {"human": 0, "machine": 0, "unknown": 0}
        for e in self.events:
            labels[e["label"]] = labels.get(e["label"], 0) + 1
        return {
            "email": self.email,
            "name": self.name,
            "company": self.company,
            "owner": self.owner,
            "field": self.field,
            "from": self.old,
            "to": self.new,
            "direction": direction(self.field, self.old, self.new),
            "at": self.at,
            "cause": self.cause,
            "explanation": self.explanation,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "human_events": labels["human"],
            "machine_events": labels["machine"],
            "unknown_events": labels["unknown"],
            "events": self.events,
        }


def _filtered(query: Any, params: Params) -> Any:
    query = query.where(ScoreChange.at >= params.since, ScoreChange.at < params.until)
    if params.industries:
        query = query.where(Prospect.industry.in_(params.industries))
    if params.owners:
        query = query.where(Prospect.owner.in_(params.owners))
    return query


def load_moves(engine: Engine, params: Params) -> list[Move]:
    """The moves in the period (filters: industry and owner on the prospect, campaign on the moves' events),
    oldest first, each with its events (``type``, ``label``, ``campaign``, ``item``, ``at``).

    Two statements: the moves, and their events through the JSON array of ids joined to ``events`` (one
    set-based join, not a lookup per move)."""
    moves_q = _filtered(
        select(
            ScoreChange.id,
            ScoreChange.prospect_id,
            Prospect.email,
            Prospect.name,
            Prospect.company,
            Prospect.owner,
            ScoreChange.field,
            ScoreChange.old,
            ScoreChange.new,
            ScoreChange.at,
            ScoreChange.cause,
            ScoreChange.explanation,
            ScoreChange.score_before,
            ScoreChange.score_after,
        )
        .join(Prospect, Prospect.id == ScoreChange.prospect_id)
        .order_by(ScoreChange.at, ScoreChange.id),
        params,
    )
    ids = db.json_array_elements(engine, ScoreChange.event_ids)
    events_q = _filtered(
        select(ScoreChange.id, Event.id, Event.type, Event.label, Event.campaign, Event.item_key, Event.occurred_at)
        .select_from(ScoreChange)
        .join(Prospect, Prospect.id == ScoreChange.prospect_id)
        .join(ids, true())
        .join(Event, Event.id == cast(ids.c.value, BigInteger)),
        params,
    )
    with engine.connect() as conn:
        moves = [Move(**r._mapping) for r in conn.execute(moves_q).all()]  # fetchall: 2x a row-by-row fetch
        events: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for move_id, eid, kind, label, campaign, item, at in conn.execute(events_q).all():
            events[move_id].append(
                {"id": eid, "type": kind, "label": label, "campaign": campaign, "item": item, "at": at}
            )
    for m in moves:
        m.events = sorted(events.get(m.id, ()), key=lambda e: e["id"])
    if params.campaigns:
        wanted = set(params.campaigns)
        moves = [m for m in moves if any(e["campaign"] in wanted for e in m.events)]
    return moves


def move_counts(engine: Engine, params: Params) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """How many moves in the period name one of a campaign's events: per (campaign, item), and per (campaign, "")
    (each move once per campaign, however many of its items it names).

    One statement: the distinct (move, campaign, item) triples (a few per move), counted here — two GROUP BYs
    would each join the moves' events again."""
    ids = db.json_array_elements(engine, ScoreChange.event_ids)
    query = _filtered(
        select(ScoreChange.id, Event.campaign, Event.item_key)
        .distinct()
        .select_from(ScoreChange)
        .join(Prospect, Prospect.id == ScoreChange.prospect_id)
        .join(ids, true())
        .join(Event, Event.id == cast(ids.c.value, BigInteger))
        .where(Event.campaign != ""),
        params,
    )
    if params.campaigns:
        query = query.where(Event.campaign.in_(params.campaigns))
    per_item: Counter[tuple[str, str]] = Counter()
    per_campaign: dict[str, set[int]] = defaultdict(set)
    with engine.connect() as conn:
        for move_id, campaign, item in conn.execute(query):
            per_item[(str(campaign), str(item))] += 1
            per_campaign[str(campaign)].add(move_id)
    return dict(per_item), {(c, ""): len(m) for c, m in per_campaign.items()}


def item_moves(moves: list[Move]) -> dict[tuple[str, str], Counter[str]]:
    """Per (campaign, item): ``moves`` (moves its events took part in, each move once), ``up``, and the human /
    machine events of those moves."""
    out: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for m in moves:
        seen = set()
        for e in m.events:
            if not e["campaign"]:
                continue
            key = (e["campaign"], e["item"])
            out[key][e["label"]] += 1
            if key not in seen:
                seen.add(key)
                out[key]["moves"] += 1
                out[key]["up"] += direction(m.field, m.old, m.new) == "up"
    return out


def build(engine: Engine, params: Params) -> Report:
    moves = load_moves(engine, params)
    zone = ZoneInfo(params.time_zone)
    report = Report("ranks", "Rank, temperature and stage moves", params)
    # Rows (with their events) only for the moves shown: at a million prospects a month holds ~40k moves, and
    # building and printing every one took most of the report's time; the totals below count them all.
    newest = moves[: -(params.limit or LIST_LIMIT) - 1 : -1]
    rows, total = [m.as_row() for m in newest], len(moves)
    report.sections.append(
        Section(
            "moves",
            "Moves (newest first)",
            ["at", "email", "company", "field", "from", "to", "human_events", "machine_events", "explanation"],
            rows,
            total,
            note=""
            if moves
            else "No moves in this period: scoring records a move when events change a rank, temperature or stage.",
        )
    )
    transitions = Counter((m.field, m.old, m.new) for m in moves)
    report.sections.append(
        Section(
            "transitions",
            "Transition matrix",
            ["field", "from", "to", "count"],
            [
                {"field": f, "from": a, "to": b, "count": n}
                for (f, a, b), n in sorted(transitions.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1:]))
            ],
        )
    )
    per_item = item_moves(moves)
    report.sections.append(
        Section(
            "items",
            "Campaign items behind the moves",
            ["campaign", "item", "moves", "moves_up", "human_events", "machine_events"],
            [
                {
                    "campaign": c,
                    "item": i,
                    "moves": n["moves"],
                    "moves_up": n["up"],
                    "human_events": n["human"],
                    "machine_events": n["machine"],
                }
                for (c, i), n in sorted(per_item.items(), key=lambda kv: (-kv[1]["moves"], kv[0]))
            ],
        )
    )
    labels = Counter(e["label"] for m in moves for e in m.events)
    report.totals = {
        "moves_total": len(moves),
        "up": sum(direction(m.field, m.old, m.new) == "up" for m in moves),
        "down": sum(direction(m.field, m.old, m.new) == "down" for m in moves),
        "events_human": labels["human"],
        "events_machine": labels["machine"],
        "events_unknown": labels["unknown"],
    }
    weeks = weeks_between(params.since, params.until)
    index = {w: n for n, w in enumerate(weeks)}
    to_rank: dict[str, list[float | None]] = {r: [0] * len(weeks) for r in ("A", "B", "C")}
    human: list[float | None] = [0] * len(weeks)
    machine: list[float | None] = [0] * len(weeks)
    for m in moves:
        w = index.get(week_start(m.at.astimezone(zone).date()))
        if w is None:
            continue
        if m.field == "rank" and m.new in to_rank:
            to_rank[m.new][w] = (to_rank[m.new][w] or 0) + 1
        for e in m.events:
            if e["label"] == "human":
                human[w] = (human[w] or 0) + 1
            elif e["label"] == "machine":
                machine[w] = (machine[w] or 0) + 1
    x = [w.isoformat() for w in weeks]
    report.charts.append(
        Chart("rank_flow", "Rank moves per week, by new rank", "stacked", x, [(f"→{r}", v) for r, v in to_rank.items()])
    )
    report.charts.append(
        Chart(
            "move_events",
            "Events behind the moves: human vs machine",
            "bar",
            x,
            [("human", human), ("machine", machine)],
        )
    )
    return report
