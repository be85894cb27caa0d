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

from sqlalchemy import Engine

from nurture.core.config import Config
from nurture.plan.campaigns import Campaign
from nurture.report import campaigns, content, conversion, handoffs, leaks, ranks, referrals
from nurture.report.model import Chart, Params, Report, Section

KINDS = ("ranks", "campaigns", "leaks", "conversion", "referrals", "handoffs", "content")


def build(kind: str, engine: Engine, params: Params, config: Config, campaign_defs: list[Campaign]) -> Report:
    """The report ``kind`` (one of :data:`KINDS`) for ``params``; ``campaign_defs`` are the loaded campaign files
    (leaks and content read their segments and cadences). ValueError for an unknown kind."""
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
