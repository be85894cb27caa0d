"""Reports: read-only queries that turn prospects, deliveries, events and the scoring history into rows, and
renderers that print the same rows as a terminal table, CSV, JSON, XLSX or a self-contained HTML page.

One module per kind (:data:`KINDS`), each ``build(...) -> Report`` (:mod:`nurture.report.model`); renderers in
:mod:`nurture.report.render` (table, CSV, JSON, XLSX) and :mod:`nurture.report.html` (HTML with pygal charts).
Reports never write. Every query is set-based (GROUP BY in the database, lists capped by ``Params.limit``) so a
report stays within seconds at a million prospects and ten million events (bench/report.py).

May import (layers in pyproject.toml): ``checks``, ``compose``, ``plan``, ``people``, ``score``, ``track``,
``store`` and ``core``; not ``deliver``, its sibling on the same layer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

from nurture.core.config import Config
from nurture.plan.campaigns import Campaign
from nurture.report import campaigns, content, conversion, handoffs, leaks, ranks, referrals
from nurture.report.model import Chart, Params, Report, Section

KINDS = ("ranks", "campaigns", "leaks", "conversion", "referrals", "handoffs", "content")


#: PostgreSQL settings of a report's own transactions (SET LOCAL: gone at its end, nothing else sees them).
#: JIT off: the report statements are estimated expensive (a JSON array of event ids is guessed at 100 elements,
#: a period scan at the whole table), so PostgreSQL compiled them, which cost 1.3-2.7 s of 3.6-10 s each at a
#: million prospects, more than it saved. work_mem: the period's events (770k rows at 10M events) are sorted
#: once per GROUPING SET and per count(DISTINCT); at the default 4 MB every sort spilled to disk (300 MB written),
#: and their bitmap would be lossy, so PostgreSQL read all 10M events instead of using ix_events_type_time.
#: The figures are in ARCHITECTURE.md ("Report queries at a million prospects").
PG_SETTINGS = {"jit": "off", "work_mem": "48MB"}


def reading(engine: Engine) -> Engine:
    """``engine`` as reports read through it: on PostgreSQL a copy (sharing its pool) whose transactions begin
    with :data:`PG_SETTINGS`; the engine itself and its other users are untouched. Elsewhere ``engine``."""
    if engine.dialect.name != "postgresql":
        return engine
    copy = engine.execution_options()
    event.listen(copy, "begin", _settings)
    return copy


def _settings(conn: Any) -> None:
    for name, value in PG_SETTINGS.items():
        conn.exec_driver_sql(f"SET LOCAL {name} = '{value}'")


def build(kind: str, engine: Engine, params: Params, config: Config, campaign_defs: list[Campaign]) -> Report:
    """The report ``kind`` (one of :data:`KINDS`) for ``params``; ``campaign_defs`` are the loaded campaign files
    (leaks and content read their segments and cadences). ValueError for an unknown kind."""
    engine = reading(engine)
    if kind == "ranks":
        return ranks.build(engine, params)
    if kind == "campaigns":
        return campaigns.build(engine, params)
    if kind == "leaks":
        return leaks.build(engine, params, config, campaign_defs)
    if kind == "conversion":
        return conversion.build(engine, params)
    if kind == "referrals":
        return referrals.build(engine, params)
    if kind == "handoffs":
        return handoffs.build(engine, params)
    if kind == "content":
        return content.build(engine, params, campaign_defs)
    raise ValueError(f"unknown report {kind!r}; one of {', '.join(KINDS)}")


__all__ = ["KINDS", "Chart", "Params", "Report", "Section", "build"]
