"""Planning: which campaign mails whom, and when; no rendering, no sending.

Owns :mod:`~nurture.plan.campaigns` (campaign files -> validated, frozen :class:`~nurture.plan.campaigns.Campaign`
objects; all problems at once as ``file:line:``), :mod:`~nurture.plan.segments` (who a campaign is for: a
whitelist of fields and operators compiled to one SQL select; mailability) and :mod:`~nurture.plan.cadence`
(the sending calendar: intervals, send days and hours, holidays in the recipient's zone).
:mod:`~nurture.plan.planner` decides, per prospect, send, defer or skip, and queues the deliveries.

May import (layers in pyproject.toml): ``people``, ``score``, ``track``, ``store`` and ``core``. Import its
modules directly (``from nurture.plan.campaigns import load_campaign``); this package re-exports nothing.
"""
