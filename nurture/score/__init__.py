"""Scoring: each prospect's lead score = fit (who they are) + engagement (what they did, decayed), the A/B/C
rank, hot/warm/cold temperature and MQL -> SQL stage derived from it, their explained history, and the handoff
rows for sales.

- :mod:`~nurture.score.rules` — the rules file (``scoring.toml`` beside the config; defaults from the seeds);
- :mod:`~nurture.score.model` — the score as a pure function of facts, events, rules and an instant;
- :mod:`~nurture.score.engine` — :func:`rescore` (online) and :func:`recompute` (everyone; decay; dry run);
- :mod:`~nurture.score.explain` — the history's sentences in the prospect's language.

Online: importing this package registers :func:`on_events` with :func:`nurture.track.add_listener`, so every
process that imports it scores every event recorded through the one door, in the event's transaction. The
rules it uses are the defaults until :func:`configure` is given a configuration; the layers that open a
configuration (``nurture.cli.app``, ``nurture.web.app``) call it, so the CLI, the tracking server and its
workers, and the forked senders (which inherit it) all score with the configured rules.

Rows a later rule relabelled (``"relabeled": True``) rescore their prospects too (cause ``relabel``), from all
their events. Otherwise the recorded rows are added to each prospect's stored running tally
(:class:`~nurture.score.model.Tally`) when it holds all the prospect's other events, so an event does not
reread them.

May import (layers in pyproject.toml): ``track``, ``store`` and ``core``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from nurture.core.config import Config
from nurture.score import model
from nurture.score import rules as rules_module
from nurture.score.engine import Result, Summary, explain_prospect, recompute, rescore, score_all
from nurture.score.rules import Rules
from nurture.store.models import Event
from nurture.track import record

_rules: Rules = rules_module.DEFAULT


def configure(config: Config | None = None, rules: Rules | None = None) -> Rules:
    """Use ``rules``, or those of ``config`` (its ``scoring.toml``), for online scoring in this process."""
    global _rules
    _rules = rules if rules is not None else rules_module.for_config(config) if config else rules_module.DEFAULT
    return _rules


def current_rules() -> Rules:
    """The rules online scoring uses in this process."""
    return _rules


def on_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The listener: rescore the prospects of ``rows`` (and their colleagues); hand off inquiries."""
    rules = _rules
    fresh = [r for r in rows if r.get("prospect_id") and not r.get("relabeled")]
    relabeled = [r for r in rows if r.get("prospect_id") and r.get("relabeled")]
    # Events that cannot move any score (no rule, or a label weighted 0) rescore nobody: skipping them keeps
    # every stored value equal to a recompute at its scored_at, since the model ignores them the same way.
    ids = {
        r["prospect_id"]
        for r in fresh
        if model.can_count(r.get("type") or "", r.get("label"), r.get("confidence"), rules)
    }
    inquiries = [r for r in fresh if r.get("type") == "inquired"]
    pairs: list[tuple[int, int]] = []
    for r in inquiries:
        event_id = r.get("id")
        if event_id is None:  # rows inserted without RETURNING carry no id: find it by its own columns
            event_id = conn.execute(
                select(Event.id)
                .where(
                    Event.prospect_id == r["prospect_id"],
                    Event.type == "inquired",
                    Event.occurred_at == r["occurred_at"],
                    Event.recorded_at == r["recorded_at"],
                )
                .order_by(Event.id.desc())
                .limit(1)
            ).scalar()
        if event_id is not None:
            pairs.append((r["prospect_id"], event_id))
    again = {r["prospect_id"] for r in relabeled}
    if ids or pairs:
        # A prospect with a relabelled row in the batch has all its events folded: its tally counted the old label.
        new: dict[int, list[dict[str, Any]]] = {}
        for r in fresh:
            new.setdefault(r["prospect_id"], []).append(r)
        rescore(conn, ids, rules, cause="events", inquiries=pairs, new=new, refold=ids & again)
    again -= ids
    if again:
        rescore(conn, again, rules, cause="relabel")


record.add_listener(on_events)

__all__ = [
    "Result",
    "Rules",
    "Summary",
    "configure",
    "current_rules",
    "explain_prospect",
    "on_events",
    "recompute",
    "rescore",
    "score_all",
]
