"""Planning: which campaign mails whom, and when; no rendering, no sending.

Owns :mod:`~nurture.plan.campaigns` (campaign files -> validated, frozen :class:`~nurture.plan.campaigns.Campaign`
objects; all problems at once as ``file:line:``), :mod:`~nurture.plan.segments` (who a campaign is for: a
whitelist of fields and operators compiled to one SQL select; mailability), :mod:`~nurture.plan.cadence` (the
sending calendar: intervals, send days and hours, holidays in the recipient's zone) and
:mod:`~nurture.plan.planner` (segment members -> decisions: send, defer or skip with a reason -> pending
deliveries).

May import (layers in pyproject.toml): ``people``, ``score``, ``track``, ``store`` and ``core``; never compose,
checks, deliver or anything above. What the planner has to tell its caller goes through the ``PlanSink``
protocol it defines (the sending run's report implements it), not through an import of the caller. Import its
modules directly (``from nurture.plan.campaigns import load_campaign``); this package re-exports nothing.
"""
